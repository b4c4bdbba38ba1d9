"""The Django engine (`ENGINE: "pool.django"`) and a helper for work outside the request cycle."""

from __future__ import annotations

from contextlib import ContextDecorator
from typing import Any


class returning_connections(ContextDecorator):  # noqa: N801 - reads as a decorator
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
