"""Every pool setting, declared once.

The table below drives parsing (from a mapping or the environment), validation, the gunicorn conf, Django's OPTIONS
and the docs, so that a setting cannot mean one thing in one place and another elsewhere.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .errors import ConfigError

RESET_MODES = ("full", "tracked", "rollback")


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
            else:
                value = str(raw).strip().lower()
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
            choices=RESET_MODES),
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
    min_idle: int = _default("min_idle")
    timeout: float = _default("timeout")
    max_waiting: int = _default("max_waiting")
    max_lifetime: float | None = _default("max_lifetime")
    idle_timeout: float = _default("idle_timeout")
    ping_after: float = _default("ping_after")
    reset: str = _default("reset")
    leak_threshold: float = _default("leak_threshold")
    warm_start: bool = _default("warm_start")
    connect_timeout: float = _default("connect_timeout")
    read_timeout: float = _default("read_timeout")
    write_timeout: float = _default("write_timeout")
    where: str = field(default="PoolConfig({name}=...)", compare=False, repr=False)

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
        `DATABASES['default']['OPTIONS']['pool']['size']`."""
        return self.where.format(name=name, NAME=name.upper())

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
        return replace(base or cls(), **parsed, where=source + "['{name}']")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, base: PoolConfig | None = None,
                 where: str | None = None) -> PoolConfig:
        """Settings from POOL_SIZE, POOL_TIMEOUT, ... (only those that are set)."""
        environ = os.environ if environ is None else environ
        parsed = {s.name: s.parse(environ[s.env], s.env) for s in SETTINGS if s.env in environ}
        base = base or cls()
        return replace(base, **parsed, where=where or ("POOL_{NAME}" if parsed else base.where))

    def with_where(self, where: str) -> PoolConfig:
        return replace(self, where=where)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "where"}


# Settings applied on top of every pool built in this process: the gunicorn conf sets them in the arbiter, and the
# workers inherit them across fork, so the conf stays the one place where the pool is tuned.
_process_overrides: dict[str, Any] = {}
_process_overrides_where = "process overrides['{name}']"


def set_process_overrides(values: Mapping[str, Any], where: str | None = None) -> None:
    """Apply `values` over every pool's settings in this process (and in processes forked from it). `where` tells
    users how they set these (a template with `{name}`/`{NAME}`), for error messages."""
    global _process_overrides_where
    PoolConfig.from_mapping(values, source="process overrides")  # validate now, not in the first request
    _process_overrides.clear()
    _process_overrides.update(values)
    _process_overrides_where = where or "process overrides['{name}']"


def process_overrides() -> dict[str, Any]:
    return dict(_process_overrides)


def apply_process_overrides(config: PoolConfig) -> PoolConfig:
    """`config` with this process's overrides on top (they win: the gunicorn conf is the one place to tune)."""
    if not _process_overrides:
        return config
    return replace(config, **_process_overrides, where=_process_overrides_where)


def settings_doc_table() -> str:
    """A Markdown table of every setting, for the docs."""
    rows = ["| setting | env | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        rows.append(f"| `{s.name}` | `{s.env}` | `{s.default!r}` | {s.doc} |")
    return "\n".join(rows)
