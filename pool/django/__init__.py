"""The Django engine (`ENGINE: "pool.django"`) and a helper for work outside the request cycle."""

from __future__ import annotations

from contextlib import ContextDecorator
from typing import Any


class returning_connections(ContextDecorator):  # lower case: it reads as a decorator
    """Give this greenlet's (or thread's) connections back to the pool when the block or function ends.

    Django does that at the end of each request; code outside requests (spawned greenlets, RPC handlers, Celery
    tasks, scripts) must say when its unit of work is over::

        @returning_connections()
        def handle_rpc(...): ...

        with returning_connections():
            Order.objects.create(...)
    """

    def __init__(self, using: str | None = None) -> None:
        self.using = using

    def __enter__(self) -> returning_connections:
        return self

    def __exit__(self, *exc: Any) -> None:
        from django.db import connections

        wrappers = [connections[self.using]] if self.using else connections.all(initialized_only=True)
        for wrapper in wrappers:
            wrapper.close()


def warm_up() -> dict[str, int]:
    """Open each pooled database's `min_idle` connections now (gunicorn's post_worker_init calls this when the pool's
    `warm_start` is on). The engine builds a pool at the first connection, so one is made and given back first.
    Returns the connections opened per alias; raises if a database does not answer."""
    from django.db import connections

    from .base import pools

    opened: dict[str, int] = {}
    for alias in connections:
        if connections.settings[alias].get("ENGINE") != "pool.django":
            continue
        wrapper = connections[alias]
        wrapper.ensure_connection()
        wrapper.close()
        opened[alias] = 1 + pools()[alias].warm_up()
    return opened

