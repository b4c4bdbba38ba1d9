"""gunicorn hooks for the pool. Imported by gunicorn.conf.py, which runs in the arbiter before any patching, so nothing
here imports Django or gevent at module level.

Order of events in a gevent worker (gunicorn 23-27): fork -> post_fork (not yet patched) -> monkey-patching ->
app loaded -> post_worker_init -> requests ... -> worker_exit (usually in the worker; in the arbiter when the worker
is already gone).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from . import budget
from .core import all_pools, close_all, reset_all_after_fork
from .dburl import parse_database_url
from .errors import ConfigError
from .settings import PoolConfig, set_process_overrides

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
                 hosts: int = 1) -> budget.Budget | None:
    """At start: can the server take workers x pool (x2 during a SIGHUP reload) + reserve connections? Warns, or
    refuses to start in strict mode. Allows for the reload overlap because gunicorn runs both sets of workers for up
    to graceful_timeout; USR2 upgrades (two arbiters) would double it again and are not counted."""
    if not database_url:
        return None
    try:
        kwargs = parse_database_url(database_url)
        result = budget.check(kwargs, workers=server.cfg.workers, pool_size=config.size, hosts=hosts, reserve=reserve)
    except Exception as exc:  # noqa: BLE001 - a check that cannot run must not stop a server that may be fine
        message = f"connection budget not checked: cannot read the server's limits ({type(exc).__name__}: {exc})"
        if strict:
            sys.exit(f"refusing to start (POOL_BUDGET_STRICT=1): {message}")
        server.log.warning(message)
        return None
    for problem in result.problems:
        if strict:
            sys.exit(f"refusing to start (POOL_BUDGET_STRICT=1): {problem}")
        server.log.warning("connection budget: %s", problem)
    if not result.problems:
        server.log.info("connection budget fits: %d needed (%s + reserve %d) of max_connections=%d", result.needed,
                        result.formula, result.reserve, result.max_connections)
    return result


def prepare_metrics_dir(path: str) -> None:
    """prometheus_client's multiprocess mode: one directory of per-worker files, emptied at start (stale files from
    a previous run would be added to the totals). Must run before any process imports prometheus_client."""
    import shutil

    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", path)
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)


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


def child_exit(server: Any, worker: Any) -> None:
    """In the arbiter, after a worker died: its gauges leave the metrics totals."""
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
    """Close this worker's pools. gunicorn may call this in the arbiter for a worker already gone: then the pools in
    hand are the arbiter's own, and are left alone."""
    if os.getpid() == worker.pid:
        close_all()
