"""gunicorn hooks for the pool: glue between gunicorn's events and the parts that do the work (pool.conf for the
conf's settings, pool.budget for the start-up and TTIN checks, pool.workerstats for the shared figures,
pool.django.storage for Django under gevent). Imported by gunicorn.conf.py, which runs in the arbiter before any
patching, so nothing here imports Django or gevent at module level.

Order of events in a gevent worker (gunicorn 23-27): fork -> post_fork (not yet patched) -> monkey-patching ->
app loaded -> post_worker_init -> requests ... -> worker_exit (usually in the worker; in the arbiter when the worker
is already gone).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from . import budget, workerstats
from .conf import PROMETHEUS_DIR_ENV, configure_pool, env_flag, env_int, env_setting, env_str, prometheus_dir
from .core import all_pools, drain_all, reset_all_after_fork
from .dburl import parse_database_url
from .errors import ConfigError
from .settings import CONF_WHERE, PoolConfig

# Names the conf used before pool.conf existed: a copied gunicorn.conf.py keeps working.
CONF_SETTING_SOURCE = CONF_WHERE
__all__ = ["configure_pool", "env_flag", "env_int", "env_setting", "env_str"]

# What the start-up check found, for TTIN's: both run in the arbiter.
_startup_budget: budget.StartupBudget | None = None


def check_budget(server: Any, config: PoolConfig, *, database_url: str | None, strict: bool, reserve: int,
                 hosts: int = 1, start_without_database: bool | None = None) -> budget.Budget | None:
    """on_starting: pool.budget.check_at_start for this many workers, each holding at most the conf's server_size on
    the server (without it, its size: one pool per worker); gunicorn exits with its one line if it refuses."""
    global _startup_budget
    if not database_url:
        return None
    if start_without_database is None:
        start_without_database = env_setting("start_without_database")
    try:
        _startup_budget = budget.check_at_start(
            server.log, database_url, workers=server.cfg.workers, pool_size=config.size, strict=strict,
            reserve=reserve, hosts=hosts, start_without_database=bool(start_without_database),
            server_size=config.server_size)
    except budget.Refusal as refusal:
        sys.exit(str(refusal))
    return _startup_budget.results[0] if _startup_budget else None


def nworkers_changed(server: Any, new_value: int, old_value: int | None) -> None:
    """TTIN/TTOU: pool.budget.check_growth for the new number of workers; over budget, a warning, or in strict mode
    the increase is refused."""
    start = _startup_budget
    if old_value is None or start is None or new_value <= old_value:
        return
    problem = budget.check_growth(server.log, start, new_value)
    if problem is not None:
        # Through the private attribute: the num_workers setter would call this hook again.
        server._num_workers = old_value
        server.log.error("pool: refused to grow from %d to %d workers (POOL_BUDGET_STRICT=1): %s", old_value,
                         new_value, problem)


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

    os.environ.setdefault(PROMETHEUS_DIR_ENV, path)
    folder = prometheus_dir()
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
    if prometheus_dir():
        from .metrics import start_background_sync

        start_background_sync()
    _warm_start(worker)
    _share_from_the_start()


def _share_from_the_start() -> None:
    """Every worker in /metrics, /-/pool and the status page from the first request: this worker's figures are copied
    once now, after the warm start built its pools and before it serves, then every second."""
    if prometheus_dir():
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
    """Each pool whose settings have warm_start on opens its min_idle connections before the first request (after
    fork and patching). A database that does not answer is logged, not fatal: the pools find it later, as without
    warm start."""
    try:
        django_apps = sys.modules.get("django.apps")
        if django_apps is not None and django_apps.apps.ready:
            from .django import warm_up

            opened = warm_up()
        else:
            opened = {pool.name: pool.warm_up() for pool in all_pools() if pool.config.warm_start}
    except Exception as exc:  # noqa: BLE001 - the worker serves anyway; the error says why it could not warm up
        worker.log.error("pool: warm start failed, the pools will connect at the first requests: %s", exc)
        return
    if opened:
        worker.log.info("pool: warm start opened %s", ", ".join(f"{n} to {alias!r}" for alias, n in opened.items()))


def child_exit(server: Any, worker: Any) -> None:
    """In the arbiter, after a worker died: its figures leave /-/pool and its gauges the metrics totals."""
    directory = workerstats.StatsDir.from_env()
    if directory is not None:
        directory.forget(worker.pid)
    if prometheus_dir():
        from .metrics import mark_worker_dead

        mark_worker_dead(worker.pid)


def _check_connection_storage_per_greenlet(worker: Any) -> None:
    from .django.storage import ensure_storage_per_greenlet

    replaced, refusal = ensure_storage_per_greenlet()
    if refusal:
        _refuse(worker, refusal)
    if replaced:
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
