"""Celery workers on the pool: call `pool.celery.install()` once, in the module that makes the Celery app.

    app = Celery(...)
    from pool.celery import install
    install()

It connects to Celery's signals, which are process-wide, so it takes no app. What each handler does:

- After each task (`task_postrun`, which Celery sends in the task's own greenlet or thread for successes, failures
  and retries alike) the connections that greenlet or thread took through Django go back to the pool, as a request's
  do (`pool.django.returning_connections`). In the gevent and eventlet pools every task is a greenlet of its own:
  without this, a finished task keeps its connection until the pool takes it back from the dead greenlet (about a
  second later, with a warning), and tasks queue behind connections nobody uses (measured: 30 tasks on a pool of 3
  took 9 s instead of 0.2 s). In the threads pool the threads live on, so nothing is ever taken back: a pool smaller
  than the concurrency ends in PoolTimeout. Celery's own Django fixup (active when DJANGO_SETTINGS_MODULE is set as
  the app is made) closes connections after each task too, which the engine turns into a return; install() does not
  depend on it. A task killed before postrun (a hard time limit in the gevent pool) is still covered by the pool's
  dead-owner reclaim.
- In each prefork child (`worker_process_init`) the pools inherited from the parent are reset without COM_QUIT.
  `os.register_at_fork` in pool.core already does that for the pools, but it cannot reach Django: a connection the
  parent checked out before forking (Django set up and used at import) stays in the child's Django wrapper, pointing
  at a connection the reset forgot, and every task of that child would fail with InterfaceError. The handler gives
  such wrappers back (the pool sees a checkout from before the fork and only forgets it: no byte reaches the
  parent's session). Wrappers of other engines are left alone: closing them would send COM_QUIT on the parent's
  socket.
- When a worker process shuts down (`worker_process_shutdown` in prefork children, `worker_shutdown` in the main
  process) the shutting-down thread's own connections are given back, then every pool is drained: connections still
  lent out get up to DRAIN_SECONDS to come back, and each session ends with COM_QUIT.

Tested with real workers (tests/test_celery.py): gevent, threads, prefork, and eventlet when it is installed.
"""

from __future__ import annotations

from typing import Any

from .core import drain_all, reset_all_after_fork

# The most a shutting-down worker process waits for connections still lent out (Celery's warm shutdown has already
# let the running tasks finish by then).
DRAIN_SECONDS = 5.0


def _django_ready() -> bool:
    # A Celery app that does not use Django's ORM (the plain pool API) returns its own connections.
    from django.apps import apps

    return bool(apps.ready)


def _return_connections(**_: Any) -> None:
    if not _django_ready():
        return
    from .django import returning_connections

    returning_connections().__exit__(None, None, None)


def _after_fork(**_: Any) -> None:
    reset_all_after_fork()  # already done by os.register_at_fork; cheap, and Celery's documented place for it
    if not _django_ready():
        return
    from django.db import connections

    from .django.base import DatabaseWrapper

    for wrapper in connections.all(initialized_only=True):
        # Only the kit's engine: its close of a checkout from before the fork does no I/O.
        if isinstance(wrapper, DatabaseWrapper) and wrapper.connection is not None:
            wrapper.close()


def _drain(**_: Any) -> None:
    _return_connections()
    drain_all(DRAIN_SECONDS)


def install() -> None:
    """Connect the kit's handlers to Celery's signals (process-wide; calling it again changes nothing)."""
    from celery import signals

    signals.task_postrun.connect(_return_connections, weak=False, dispatch_uid="pool.celery.return_connections")
    signals.worker_process_init.connect(_after_fork, weak=False, dispatch_uid="pool.celery.after_fork")
    signals.worker_process_shutdown.connect(_drain, weak=False, dispatch_uid="pool.celery.drain_child")
    signals.worker_shutdown.connect(_drain, weak=False, dispatch_uid="pool.celery.drain")
