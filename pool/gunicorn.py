"""gunicorn hooks for the pool. Imported by gunicorn.conf.py, which runs in the arbiter before any patching, so nothing
here imports Django or gevent at module level.

Order of events in a gevent worker (gunicorn 23-27): fork -> post_fork (not yet patched) -> monkey-patching ->
app loaded -> post_worker_init -> requests ... -> worker_exit (usually in the worker; in the arbiter when the worker
is already gone).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Any

import pymysql

from . import budget, workerstats
from .core import all_pools, drain_all, reset_all_after_fork
from .dburl import parse_database_url
from .errors import ConfigError
from .settings import PoolConfig, process_overrides, set_process_overrides

log = logging.getLogger("pool.gunicorn")


def configure_pool(**defaults: Any) -> PoolConfig:
    """Declare the pool's settings in gunicorn.conf.py; each is overridden by POOL_<NAME> from the environment.

    The result becomes every pool's settings in this process and in the workers it forks, over anything in Django's
    settings: the conf is the one place to tune a deployment.
    """
    try:
        config = PoolConfig.from_env(base=PoolConfig.from_mapping(defaults, source="gunicorn.conf.py configure_pool"))
    except ConfigError as exc:
        sys.exit(f"gunicorn.conf.py: {exc}")
    set_process_overrides(config.as_dict(), where=CONF_SETTING_SOURCE)
    return config.with_where(CONF_SETTING_SOURCE)


# How a user changes a pool setting under gunicorn, for the pool's error messages.
CONF_SETTING_SOURCE = "POOL_{NAME} or {name}= in gunicorn.conf.py"


def check_budget(server: Any, config: PoolConfig, *, database_url: str | None, strict: bool, reserve: int,
                 hosts: int = 1, start_without_database: bool | None = None) -> budget.Budget | None:
    """At start, in the arbiter, in this order:

    1. DATABASE_URL must parse: a malformed one never works, so gunicorn exits with one line naming the bad part.
    2. The database must answer (credentials, database name, reachable): otherwise gunicorn exits with one line naming
       the cause, unless POOL_START_WITHOUT_DATABASE=1 (for a database that comes up later); then it warns, serves,
       and each pool logs failed checkouts (rate-limited).
    3. The connection budget: workers x pool (x2 during a SIGHUP reload) + reserve against the server's limits.
       Warns, or refuses to start in strict mode. gunicorn runs both sets of workers for up to graceful_timeout
       during a reload; USR2 upgrades (two arbiters) would double it again and are not counted.
    4. The tier, as each server lists it: the app user's connections by client address. With other app hosts in
       sight, this host's full share must still fit beside theirs (pool.budget.Budget.tier_needed); warns, or
       refuses in strict mode, in one line naming the other hosts and their counts.
    """
    global _startup_budget
    if not database_url:
        return None
    try:
        kwargs = parse_database_url(database_url)
    except ConfigError as exc:
        sys.exit(f"refusing to start: {exc}")
    if start_without_database is None:
        start_without_database = _env_flag("POOL_START_WITHOUT_DATABASE")
    try:
        results, unreachable = budget.check_each(kwargs, workers=server.cfg.workers, pool_size=config.size,
                                                 hosts=hosts, reserve=reserve)
    except pymysql.err.MySQLError as exc:
        results, unreachable = [], [("", exc)]
    if not results:
        cause = describe_connect_failure(unreachable[0][1], kwargs)
        if not start_without_database:
            sys.exit(f"refusing to start: {cause}. Fix DATABASE_URL or the server, or set "
                     f"POOL_START_WITHOUT_DATABASE=1 to serve anyway (requests fail until the database answers)")
        server.log.warning("pool: starting without the database (POOL_START_WITHOUT_DATABASE=1): %s; connection "
                           "budget not checked", cause)
        return None
    for label, error in unreachable:
        # A failover list may start with a node down; the pool skips it until it answers.
        server.log.warning("pool: host %s of DATABASE_URL does not answer at start (%s); its budget is not checked",
                           label, describe_connect_failure(error, {**kwargs, "host": label, "port": ""}))
    for result in results:
        if result.tier is not None:
            server.log.info("connection budget: the tier%s as the server lists it: %s", _on(result), result.tier.line())
        for problem in result.problems:
            if strict:
                sys.exit(f"refusing to start (POOL_BUDGET_STRICT=1): {problem}")
            server.log.warning("connection budget: %s", problem)
        if not result.problems:
            server.log.info("connection budget fits%s: %d needed (%s + reserve %d)%s of max_connections=%d",
                            _on(result), result.needed, result.formula, result.reserve, _tier_needed(result),
                            result.max_connections)
    _startup_budget = _StartupBudget(results, strict, kwargs, hosts, reserve, config.size)
    return results[0]


def _on(result: budget.Budget) -> str:
    return f" on {result.server}" if result.server else ""


def _tier_needed(result: budget.Budget) -> str:
    tier = result.tier
    if tier is None or not tier.others:
        return ""
    return f"; the tier with this host at its full share {result.tier_needed}"


@dataclasses.dataclass(frozen=True)
class _StartupBudget:
    results: list[budget.Budget]
    strict: bool
    connect_kwargs: dict[str, Any]
    hosts: int
    reserve: int
    pool_size: int


_startup_budget: _StartupBudget | None = None
# TTIN's check runs in the arbiter's main loop, between its other duties: the tier is read again (it may have grown
# since the start), with timeouts short enough that a server that does not answer delays the arbiter little.
TTIN_CHECK_TIMEOUT = 2.0


def nworkers_changed(server: Any, new_value: int, old_value: int | None) -> None:
    """TTIN/TTOU change the number of workers at run time: check the budget again, the tier read anew (bounded by
    TTIN_CHECK_TIMEOUT; the limits read at start when the server does not answer). Over budget: a warning, or in
    strict mode the increase is refused."""
    if old_value is None or _startup_budget is None or new_value <= old_value:
        return
    start = _startup_budget
    strict = start.strict
    try:
        now, unreachable = budget.check_each(start.connect_kwargs, workers=new_value, pool_size=start.pool_size,
                                             hosts=start.hosts, reserve=start.reserve, timeout=TTIN_CHECK_TIMEOUT)
    except (pymysql.err.MySQLError, OSError) as exc:
        now, unreachable = [], [("", exc)]
    if not now:
        server.log.warning("pool: cannot read the tier for TTIN (%s); checking %d workers against the limits read "
                           "at start", unreachable[0][1] if unreachable else "no server", new_value)
        now = [dataclasses.replace(result, workers=new_value, tier=None) for result in start.results]
    for result in now:
        if result.tier is not None:
            server.log.info("pool: TTIN to %d workers: the tier%s as the server lists it: %s", new_value, _on(result),
                            result.tier.line())
    problems = [p for result in now for p in result.problems]
    for problem in problems:
        if strict:
            # Through the private attribute: the num_workers setter would call this hook again.
            server._num_workers = old_value
            server.log.error("pool: refused to grow from %d to %d workers (POOL_BUDGET_STRICT=1): %s", old_value,
                             new_value, problem)
            return
        server.log.warning("pool: %d workers no longer fit the connection budget: %s", new_value, problem)


def describe_connect_failure(exc: BaseException, kwargs: dict[str, Any]) -> str:
    """One line on why the database refused, naming the part of DATABASE_URL to look at (never the password)."""
    code = exc.args[0] if getattr(exc, "args", None) and isinstance(exc.args[0], int) else None
    port = kwargs.get("port", 3306)
    where = kwargs.get("unix_socket") or (f"{kwargs.get('host')}:{port}" if port else str(kwargs.get("host")))
    if code == 1045:
        return f"the server at {where} refused user {kwargs.get('user')!r} with this password (1045 access denied)"
    if code == 1049:
        return f"the server at {where} has no database {kwargs.get('database')!r} (1049 unknown database)"
    if code == 1044:
        return f"user {kwargs.get('user')!r} may not use database {kwargs.get('database')!r} at {where} (1044)"
    if code in (2003, 2002):
        return f"no database server answers at {where} ({code} cannot connect)"
    text = exc.args[1] if code is not None and len(exc.args) > 1 else str(exc)
    return f"the database at {where} refused the connection ({code or type(exc).__name__}: {text})"


def _env_flag(name: str) -> bool:
    return env_flag(name)


# Environment readers for gunicorn.conf.py: a bad value stops the start with one line naming the variable, where a
# bare int() would end in a traceback.
def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_flag(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    sys.exit(f"{name}={raw!r} is not a yes/no value; use 1 or 0")


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        sys.exit(f"{name}={raw!r} is not a whole number of at least {minimum}; fix it, or unset it for the default "
                 f"{default}")
    return value


def share_stats(metrics_dir: str) -> None:
    """In the arbiter at start: where workers share their pools' figures. Snapshots for /-/pool and the status page
    go to POOL_STATS_DIR (default: a fresh private temporary directory, removed at exit); Prometheus files for
    /metrics to `metrics_dir` ("" leaves /metrics to each worker alone)."""
    if metrics_dir:
        prepare_metrics_dir(metrics_dir)
    if not os.environ.get(workerstats.ENV_DIR):
        os.environ[workerstats.ENV_DIR] = workerstats.make_private_dir()  # the workers inherit it
    workerstats.StatsDir(os.environ[workerstats.ENV_DIR]).clear()


def prepare_metrics_dir(path: str) -> None:
    """prometheus_client's multiprocess mode: one directory of per-worker files, emptied at start (stale files from
    a previous run would be added to the totals). Must run before any process imports prometheus_client."""
    import shutil

    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", path)
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)


def arbiter_keeps_no_idle(server: Any) -> None:
    """In the arbiter (on_starting): it serves no request, so the pools a preloaded app made there keep no idle
    connections (min_idle would otherwise open some that every worker inherits and forgets)."""
    for pool in all_pools():
        pool.keep_no_idle()


def post_fork(server: Any, worker: Any) -> None:
    # os.register_at_fork already did this; calling it again is harmless and keeps the hook explicit.
    reset_all_after_fork()


def post_worker_init(worker: Any) -> None:
    """After gevent patched the worker and the app is loaded: insist on per-greenlet connections."""
    if worker.__class__.__module__.startswith("gunicorn.workers.ggevent"):
        from gevent import monkey

        if not monkey.is_module_patched("threading") or not monkey.is_module_patched("socket"):
            _refuse(worker, "gevent did not patch threading and socket in this worker; database I/O would block "
                            "every greenlet. Do not patch selectively; let gunicorn's gevent worker patch everything.")
        _check_connection_storage_per_greenlet(worker)
    # Pools built before patching (preload_app) get primitives made under patching; nothing is in use yet.
    if all_pools():
        reset_all_after_fork()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from .metrics import start_background_sync

        start_background_sync()
    _warm_start(worker)
    _share_from_the_start()


def _share_from_the_start() -> None:
    """Every worker in /metrics, /-/pool and the status page from the first request: this worker's figures are copied
    once now, after the warm start built its pools and before it serves, then every second."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from .metrics import metrics

        metrics().sync(force=True)
    directory = workerstats.StatsDir.from_env()
    if directory is None:
        return
    url = os.environ.get("DATABASE_URL", "")
    try:
        kwargs = parse_database_url(url) if url else None
        why_not = "" if url else "DATABASE_URL is not set in the workers' environment"
    except ConfigError as exc:
        kwargs, why_not = None, str(exc)
    workerstats.start_publishing(directory, workerstats.ServerCounter(directory, kwargs, why_not))


def _warm_start(worker: Any) -> None:
    """With warm_start on, open each pool's min_idle connections before the first request (after fork and patching).
    A database that does not answer is logged, not fatal: the pools find it later, as without warm start."""
    overrides = PoolConfig.from_mapping(process_overrides()) if process_overrides() else None
    if overrides is None or not overrides.warm_start:
        return
    try:
        django_apps = sys.modules.get("django.apps")
        if django_apps is not None and django_apps.apps.ready:
            from .django import warm_up

            opened = warm_up()
        else:
            opened = {pool.name: pool.warm_up() for pool in all_pools()}
    except Exception as exc:  # noqa: BLE001 - the worker serves anyway; the error says why it could not warm up
        worker.log.error("pool: warm start failed, the pools will connect at the first requests: %s", exc)
        return
    worker.log.info("pool: warm start opened %s", ", ".join(f"{n} to {alias!r}" for alias, n in opened.items()))


def child_exit(server: Any, worker: Any) -> None:
    """In the arbiter, after a worker died: its figures leave /-/pool and its gauges the metrics totals."""
    directory = workerstats.StatsDir.from_env()
    if directory is not None:
        directory.forget(worker.pid)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from .metrics import mark_worker_dead

        mark_worker_dead(worker.pid)


def _storage_is_per_greenlet(connections: Any) -> bool:
    import gevent

    def wrapper() -> Any:
        return connections["default"]

    # Both results stay referenced until compared, so two distinct wrappers cannot share an address.
    first, second = gevent.spawn(wrapper), gevent.spawn(wrapper)
    gevent.joinall([first, second])
    return first.value is not second.value


def _check_connection_storage_per_greenlet(worker: Any) -> None:
    """Django keeps database connections in a threading.local made when django.db is imported. Imported before
    gevent patched threading (preload_app = True, or a conf that imports Django), that is a real thread-local: one
    wrapper, one connection, for every greenlet of the worker. Give Django a fresh storage made under patching."""
    django_db = sys.modules.get("django.db")
    if django_db is None or "default" not in django_db.connections.settings:
        return
    connections = django_db.connections
    if _storage_is_per_greenlet(connections):
        return
    from asgiref.local import Local

    # The wrappers left in the old storage (the arbiter's, inherited across fork) are dropped unclosed: their
    # sockets close when collected, without COM_QUIT, so the arbiter's sessions live on.
    connections._connections = Local(connections.thread_critical)
    if not _storage_is_per_greenlet(connections):
        _refuse(worker, "Django's connection storage is shared by all greenlets of this worker and could not be "
                        "replaced. Set preload_app = False and keep Django imports out of gunicorn.conf.py.")
    worker.log.info("pool: Django's connection storage was made before gevent patching (preload_app); replaced "
                    "with a per-greenlet one")


def _refuse(worker: Any, message: str) -> None:
    worker.log.critical("pool: refusing to serve: %s", message)
    # gunicorn's worker exit code for a failed boot: the arbiter stops instead of forking the same failure forever.
    sys.exit(3)


def worker_exit(server: Any, worker: Any) -> None:
    """Drain this worker's pools: by now gunicorn has let requests finish (up to graceful_timeout) or killed them;
    work outside requests still holding a connection gets a few more seconds, then what is left is closed and logged
    with its checkout stack. Every session ends with COM_QUIT, so the server frees it at once.

    gunicorn may call this in the arbiter for a worker already gone: then the pools in hand are the arbiter's own, and
    are left alone."""
    if os.getpid() == worker.pid:
        drain_all(min(float(worker.cfg.graceful_timeout), DRAIN_SECONDS))


# The most worker_exit waits for connections still lent out; gunicorn's graceful_timeout is spent by then.
DRAIN_SECONDS = 5.0
