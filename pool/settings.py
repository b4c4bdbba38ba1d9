"""Every setting, declared once, and the one way a pool's settings are resolved.

The tables below drive parsing (from a mapping or the environment), validation, the gunicorn conf, Django's OPTIONS
and the docs, so that a setting cannot mean one thing in one place and another elsewhere.

Every pool (Django's, Celery's, a plain `ConnectionPool`) gets its settings from `resolve_config`, four layers, each
over the one before:

1. the defaults in `SETTINGS`;
2. the code's: `ConnectionPool(config=...)`, or Django's `DATABASES[alias]["OPTIONS"]["pool"]`;
3. the deployment conf's: what `configure_pool(...)` in gunicorn.conf.py set. The conf runs in gunicorn's arbiter; it
   hands its values to every pool of the arbiter and of the workers it forks in one environment variable,
   `POOL_CONF` (JSON), which `resolve_config` reads;
4. the environment's: `POOL_<NAME>`.

Each pool logs at creation which layer set each value that is not the default.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Literal

from .abc import LeaseMode, ResetMode
from .errors import ConfigError

RESET_MODES: tuple[str, ...] = tuple(ResetMode)
LEASE_MODES: tuple[str, ...] = tuple(LeaseMode)

log = logging.getLogger("pool.settings")


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    allow_none: bool = False
    choices: tuple[str, ...] = ()
    # For the deployment settings: who reads it, from the environment or from Django's settings (same POOL_ name).
    read_from: Literal["environment", "django settings"] = "environment"
    default_doc: str = ""  # the default in words, when it is not a value (e.g. "a private temporary directory")
    enum: type[StrEnum] | None = None  # a setting of choices parses to this enum's member

    @property
    def env(self) -> str:
        return "POOL_" + self.name.upper()

    def parse(self, raw: Any, source: str) -> Any:
        """Turn `raw` (a value or an environment string) into a valid value or raise ConfigError naming `source`."""
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none")):
            if self.allow_none:
                return None
            raise ConfigError(f"{source} must be set ({self.doc}); remove it to use the default {self.default!r}")
        try:
            if self.kind is bool:
                value: Any = _parse_bool(raw)
            elif self.kind is int:
                if isinstance(raw, float) and not raw.is_integer() or isinstance(raw, bool):
                    raise ValueError
                value = int(raw)
            elif self.kind is float:
                if isinstance(raw, bool):
                    raise ValueError
                value = float(raw)
            elif self.choices:
                value = str(raw).strip().lower()
            else:
                value = str(raw)  # a path, say: kept as written
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{source}={raw!r} is not a valid {self.kind.__name__}: {self.doc}") from None
        # NaN compares false with every bound and would pass them: a NaN wait never times out.
        if self.kind is float and not math.isfinite(value):
            raise ConfigError(f"{source}={raw!r} is not a finite number: {self.doc}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{source}={raw!r} is too small: it must be at least {self.minimum:g} ({self.doc})")
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"{source}={raw!r} is too large: it must be at most {self.maximum:g} ({self.doc})")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{source}={raw!r} is not one of {', '.join(self.choices)} ({self.doc})")
        if self.enum is not None:
            value = self.enum(value)  # the code compares with its members, never with string literals
        return value


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_DAY = 86400.0

SETTINGS: tuple[Setting, ...] = (
    Setting("size", int, 10, "maximum connections this process opens to the server", minimum=1, maximum=10_000),
    Setting("server_size", int, None, "maximum connections this process opens to one server (user, host, port) "
            "across every pool that goes there: aliases, tenants, isolation levels; each pool's size stays its own "
            "bound. When it is used up a checkout takes an idle connection of another pool, else queues in one FIFO "
            "for the server (None: each pool counts alone)", minimum=1, maximum=100_000, allow_none=True),
    Setting("min_idle", int, 1, "idle connections kept open: beyond it idle ones close after idle_timeout, below it "
            "the maintenance loop opens more (within size)", minimum=0, maximum=10_000),
    Setting("timeout", float, 10.0, "seconds a caller waits for a free connection before PoolTimeout", minimum=0.001,
            maximum=_DAY),
    Setting("max_waiting", int, 0, "callers allowed to wait at once; more fail at once with TooManyWaiters (0: no cap)",
            minimum=0, maximum=1_000_000),
    Setting("max_lifetime", float, None, "seconds before a connection is replaced (jittered -10%); default: half the "
            "server's wait_timeout, at most 3600", minimum=1.0, maximum=_DAY, allow_none=True),
    Setting("idle_timeout", float, 600.0, "seconds an idle connection beyond min_idle stays open", minimum=1.0,
            maximum=_DAY),
    Setting("ping_after", float, 1.0, "ping a connection before use only if it idled longer than this many seconds",
            minimum=0.0, maximum=_DAY),
    Setting("reset", str, "tracked", "how a returned connection is cleaned: 'tracked' (COM_RESET_CONNECTION after a "
            "checkout that changed session state, as the server reports it, the statements show and the server's "
            "catalogue of routines and triggers tells; no round trip otherwise), 'full' (the same reset after every "
            "checkout) or 'rollback' (cheapest: only an open transaction is undone, session state stays)",
            choices=RESET_MODES, enum=ResetMode),
    Setting("lease", str, "request", "how long a unit of work (a request, a task, a with-block) keeps a connection: "
            "'request' (from its first statement until it ends) or 'transaction' (per statement outside a transaction, "
            "for the whole transaction inside one; open cursors, unread results, session state and a value the next "
            "statement may read keep it longer: docs/lease.md)", choices=LEASE_MODES, enum=LeaseMode),
    Setting("leak_threshold", float, 60.0, "seconds a connection may be held before a warning with the checkout "
            "stack is logged (0: off)", minimum=0.0, maximum=_DAY),
    Setting("warm_start", bool, False, "open min_idle connections when a worker starts instead of at its first "
            "request (gunicorn's post_worker_init); the worker logs an error if the database does not answer"),
    Setting("connect_timeout", float, 5.0, "seconds to establish a connection", minimum=0.1, maximum=3600.0),
    Setting("read_timeout", float, 30.0, "seconds a query may wait for the server's answer before the connection "
            "is dropped; a hung server can hold a slot no longer than this", minimum=0.1, maximum=_DAY),
    Setting("write_timeout", float, 30.0, "seconds a write to the server may block", minimum=0.1, maximum=_DAY),
)

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

# Settings of the deployment rather than of a pool: read once by the gunicorn conf or its hooks from the environment,
# or by the kit's Django parts from Django's settings. Parsed and documented like the pool's.
DEPLOYMENT_SETTINGS: tuple[Setting, ...] = (
    Setting("start_without_database", bool, False, "1: start even when the database refuses at start (for a database "
            "that comes up later); failed checkouts are logged at most once per 10 s"),
    Setting("budget_strict", bool, False, "1: refuse to start, or to grow with TTIN, when workers x pool (x2 for a "
            "reload) + reserve exceeds the server's limits"),
    Setting("budget_reserve", int, 10, "connections left for everything else (admin, migrations, cron) in the budget "
            "check", minimum=0, maximum=1_000_000),
    Setting("otel", bool, False, "1: OpenTelemetry pool metrics and wait/connect spans in every worker (pool.otel, the "
            "otel extra; docs/observability.md)"),
    Setting("stats_dir", str, "", "where workers publish their pools' figures for /-/pool and the status page, once a "
            "second", default_doc="a private temporary directory, removed at exit"),
    Setting("read_body_first", bool, True, "PoolMiddleware reads the request body before the view takes a connection",
            read_from="django settings"),
    Setting("body_timeout", float, 30.0, "seconds a client may take to send its body under gevent; slower ones get 408",
            minimum=0.001, maximum=_DAY, read_from="django settings"),
    Setting("server_timing", bool, True, "PoolMiddleware adds Server-Timing: pool;dur=<ms>, db-held;dur=<ms> to every "
            "response: how long the request queued for pool connections, and how long it held them (False: no header)",
            read_from="django settings"),
    Setting("ready_stuck_after", float, None, "pool.django.readiness.readyz sees a pool as stuck when no caller has "
            "got a connection for this many seconds while all were in use and callers waited (or gave up); it answers "
            "503 after 3 readings at least 1 s apart that saw it stuck, or saw the database down, and 200 again after "
            "3 that did not. Replaces POOL_READY_MAX_WAITING (retired: a long queue that moves is ready)",
            minimum=0.1, maximum=_DAY, allow_none=True, read_from="django settings", default_doc="the pool's timeout"),
)

# Deployment settings that no longer do anything, with what to do instead: a system check warns while one is set.
RETIRED_SETTINGS: dict[str, str] = {
    "POOL_READY_MAX_WAITING": "readyz no longer answers 503 for a long queue alone (under a spike every replica would "
                              "leave rotation at once); it does when the pool is stuck: remove it, and set "
                              "POOL_READY_STUCK_AFTER if the pool's timeout is not the bound you want",
}

DEPLOYMENT_BY_NAME: dict[str, Setting] = {s.name: s for s in DEPLOYMENT_SETTINGS}


def deployment_setting(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """A deployment setting read from the environment (`POOL_<NAME>`), or its default; ConfigError names the
    variable."""
    setting = DEPLOYMENT_BY_NAME[name]
    environ = os.environ if environ is None else environ
    raw = environ.get(setting.env, "")
    if raw.strip() == "":
        return setting.default
    return setting.parse(raw, setting.env)


def _default(name: str) -> Any:
    return SETTINGS_BY_NAME[name].default


@dataclass(frozen=True)
class PoolConfig:
    """Validated pool settings. Build it with `PoolConfig.from_mapping` to get errors that name the setting.

    `where` says how the user sets a setting where this config came from (a template with `{name}` and `{NAME}`),
    so that the pool's error messages give advice that fits: an argument, a Django OPTIONS key, an environment
    variable of the gunicorn conf.
    """

    size: int = _default("size")
    server_size: int | None = _default("server_size")
    min_idle: int = _default("min_idle")
    timeout: float = _default("timeout")
    max_waiting: int = _default("max_waiting")
    max_lifetime: float | None = _default("max_lifetime")
    idle_timeout: float = _default("idle_timeout")
    ping_after: float = _default("ping_after")
    reset: ResetMode = _default("reset")
    lease: LeaseMode = _default("lease")
    leak_threshold: float = _default("leak_threshold")
    warm_start: bool = _default("warm_start")
    connect_timeout: float = _default("connect_timeout")
    read_timeout: float = _default("read_timeout")
    write_timeout: float = _default("write_timeout")
    where: str = field(default="PoolConfig({name}=...)", compare=False, repr=False)
    # Where each value that a layer set came from, as the user writes it (`POOL_SIZE`): for messages and the log.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if value is None and setting.allow_none:
                continue
            # Stored as parsed: PoolConfig(timeout="2") holds 2.0, never the string.
            object.__setattr__(self, setting.name, setting.parse(value, self.setting_source(setting.name)))
        if self.min_idle > self.size:
            raise ConfigError(f"{self.setting_source('min_idle')}={self.min_idle} is larger than "
                              f"{self.setting_source('size')}={self.size}; lower min_idle")

    def setting_source(self, name: str) -> str:
        """How the user sets `name` for this config, e.g. `POOL_SIZE` or
        `DATABASES['default']['OPTIONS']['pool']['size']`: where its value came from, else where this config's
        layer takes it."""
        return self.sources.get(name) or self.where.format(name=name, NAME=name.upper())

    def describe(self) -> str:
        """Every value, with the layer that set each one that is not the default: for the log at a pool's creation."""
        parts = []
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            source = self.sources.get(setting.name)
            parts.append(f"{setting.name}={value}" + (f" ({source})" if source and value != setting.default else ""))
        return ", ".join(parts)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "pool",
                     base: PoolConfig | None = None) -> PoolConfig:
        """Settings from a dict (Django's OPTIONS['pool'], a conf file); unknown names are an error."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source} must be a dict of pool settings, not {type(values).__name__}")
        unknown = sorted(set(values) - set(SETTINGS_BY_NAME))
        if unknown:
            raise ConfigError(
                f"unknown pool setting(s) {', '.join(map(repr, unknown))} in {source}; "
                f"known: {', '.join(SETTINGS_BY_NAME)}"
            )
        parsed = {name: SETTINGS_BY_NAME[name].parse(raw, f"{source}[{name!r}]") for name, raw in values.items()}
        base = base or cls()
        where = source + "['{name}']"
        sources = {**base.sources, **{name: where.format(name=name) for name in parsed}}
        return replace(base, **parsed, where=where, sources=sources)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, base: PoolConfig | None = None,
                 where: str | None = None) -> PoolConfig:
        """Settings from POOL_SIZE, POOL_TIMEOUT, ... (only those that are set)."""
        environ = os.environ if environ is None else environ
        parsed = {s.name: s.parse(environ[s.env], s.env) for s in SETTINGS if s.env in environ}
        base = base or cls()
        sources = {**base.sources, **{name: SETTINGS_BY_NAME[name].env for name in parsed}}
        return replace(base, **parsed, where=where or ("POOL_{NAME}" if parsed else base.where), sources=sources)

    def with_where(self, where: str) -> PoolConfig:
        return replace(self, where=where)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("where", "sources")}


CONF_ENV = "POOL_CONF"
# How a user changes a pool setting under gunicorn, for the pool's error messages.
CONF_WHERE = "POOL_{NAME} or {name}= in gunicorn.conf.py"
_CONF_SOURCE = "configure_pool({name}=...) in gunicorn.conf.py"


def conf_environment(values: Mapping[str, Any]) -> dict[str, str]:
    """The environment that hands the deployment conf's pool settings to every pool of this process and of the
    processes it forks: validated now, so that a bad value stops the start rather than the first request."""
    PoolConfig.from_mapping(values, source="configure_pool() in gunicorn.conf.py")
    return {CONF_ENV: json.dumps(dict(values), sort_keys=True)}


def _conf_layer(environ: Mapping[str, str]) -> dict[str, Any] | None:
    raw = environ.get(CONF_ENV)
    if not raw:
        return None
    try:
        values = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{CONF_ENV}={raw!r} is not JSON; it is set by configure_pool() in gunicorn.conf.py, "
                          f"unset it to do without") from None
    parsed = PoolConfig.from_mapping(values, source=f"{CONF_ENV} (configure_pool() in gunicorn.conf.py)")
    return {name: getattr(parsed, name) for name in values}


def resolve_config(code: PoolConfig | None = None, environ: Mapping[str, str] | None = None) -> PoolConfig:
    """The settings a pool runs with: `code` (the defaults when None), then the deployment conf's (`POOL_CONF`),
    then `POOL_<NAME>` from `environ` (os.environ when None), each over the one before. The result says per setting
    which layer set it. Resolving a resolved config again changes nothing."""
    environ = os.environ if environ is None else environ
    resolved = _layered(code, environ)
    if code is not None and CONF_ENV in environ and resolved.sources.get("size") == code.sources.get("size"):
        # The size is the code's: gunicorn's arbiter checked the connection budget with the size it sees, which
        # cannot include Django's OPTIONS.
        budgeted = _layered(None, environ).size
        if resolved.size > budgeted:
            log.warning("pool size=%d comes from %s, but gunicorn's start-up budget check counted size=%d: set the "
                        "size in gunicorn.conf.py (or POOL_SIZE) so that the check counts what the workers open",
                        resolved.size, resolved.setting_source("size"), budgeted)
    if code is not None and CONF_ENV in environ and resolved.server_size is not None \
            and resolved.sources.get("server_size") == code.sources.get("server_size"):
        # Likewise the server budget: the arbiter counted each worker at the conf's server_size, else at one pool.
        conf = _layered(None, environ)
        counted = conf.server_size or conf.size
        if resolved.server_size > counted:
            log.warning("pool server_size=%d comes from %s, but gunicorn's start-up budget check counted %d per "
                        "worker: set server_size in gunicorn.conf.py (or POOL_SERVER_SIZE) so that the check counts "
                        "what the workers open", resolved.server_size, resolved.setting_source("server_size"),
                        counted)
    return resolved


def _layered(code: PoolConfig | None, environ: Mapping[str, str]) -> PoolConfig:
    base = code or PoolConfig()
    conf = _conf_layer(environ)
    sources = dict(base.sources)
    values: dict[str, Any] = {}
    if conf is not None:
        values.update(conf)
        sources.update({name: _CONF_SOURCE.format(name=name) for name in conf})
    for setting in SETTINGS:
        if setting.env in environ:
            values[setting.name] = setting.parse(environ[setting.env], setting.env)
            sources[setting.name] = setting.env
    # Under the conf, its way of setting a value is the advice for those still at their default.
    where = CONF_WHERE if conf is not None else base.where
    return replace(base, **values, where=where, sources=sources)


def settings_doc_table() -> str:
    """A Markdown table of every pool setting, for the docs."""
    rows = ["| setting | env | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        rows.append(f"| `{s.name}` | `{s.env}` | `{s.default!r}` | {s.doc} |")
    return "\n".join(rows)


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def deployment_doc_table() -> str:
    """A Markdown table of every deployment setting, for the docs."""
    rows = ["| name | read from | type | default | meaning |", "|---|---|---|---|---|"]
    for s in DEPLOYMENT_SETTINGS:
        default = s.default_doc or f"`{s.default!r}`"
        bounds = f", {_number(s.minimum)} to {_number(s.maximum)}" if s.minimum is not None and s.maximum is not None \
            else ""
        rows.append(f"| `{s.env}` | {s.read_from} | {s.kind.__name__}{bounds} | {default} | {s.doc} |")
    return "\n".join(rows)
