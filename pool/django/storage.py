"""Django's connection storage under gevent: one DatabaseWrapper per greenlet, or the pool cannot bound anything.

Django keeps database connections in a `threading.local` made when `django.db` is imported. Imported before gevent
patched threading (gunicorn's `preload_app = True`, or a conf that imports Django), that is a real thread-local: one
wrapper, one connection, for every greenlet of the worker.
"""

from __future__ import annotations

import sys
from typing import Any


def _storage_is_per_greenlet(connections: Any) -> bool:
    import gevent

    def wrapper() -> Any:
        return connections["default"]

    # Both results stay referenced until compared, so two distinct wrappers cannot share an address.
    first, second = gevent.spawn(wrapper), gevent.spawn(wrapper)
    gevent.joinall([first, second])
    return first.value is not second.value


def ensure_storage_per_greenlet() -> tuple[bool, str | None]:
    """After gevent patched this process: give Django a fresh storage made under patching if the one it has is shared
    by all greenlets. Returns (whether it was replaced, why the process must not serve, or None)."""
    django_db = sys.modules.get("django.db")
    if django_db is None or "default" not in django_db.connections.settings:
        return False, None
    connections = django_db.connections
    if _storage_is_per_greenlet(connections):
        return False, None
    from asgiref.local import Local

    # The wrappers left in the old storage (the arbiter's, inherited across fork) are dropped unclosed: their
    # sockets close when collected, without COM_QUIT, so the arbiter's sessions live on.
    connections._connections = Local(connections.thread_critical)
    if not _storage_is_per_greenlet(connections):
        return True, ("Django's connection storage is shared by all greenlets of this worker and could not be "
                      "replaced. Set preload_app = False and keep Django imports out of gunicorn.conf.py.")
    return True, None
