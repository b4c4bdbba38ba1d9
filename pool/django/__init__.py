"""The Django engine (`ENGINE: "pool.django"`) and a helper for work outside the request cycle."""

from __future__ import annotations

from contextlib import ContextDecorator
from typing import Any


def kit_setting(name: str) -> Any:
    """One of the kit's Django settings (`settings.POOL_<NAME>`, declared in pool.settings.DEPLOYMENT_SETTINGS),
    parsed and bounded as the table says; a bad value is ImproperlyConfigured naming it."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from ..errors import ConfigError
    from ..settings import DEPLOYMENT_BY_NAME

    row = DEPLOYMENT_BY_NAME[name]
    raw = getattr(settings, row.env, row.default)
    if raw is None and row.default is None:
        return None
    try:
        return row.parse(raw, f"settings.{row.env}")
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from None


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
    """Open `min_idle` connections now for each pooled database whose pool has `warm_start` on (gunicorn's
    post_worker_init calls this). The engine builds a pool at the first connection, so one is made and given back
    first. Returns the connections opened per alias; raises if a database does not answer."""
    from django.db import connections

    from .base import pool_config_for, pools

    opened: dict[str, int] = {}
    for alias in connections:
        settings_dict = connections.settings[alias]
        if settings_dict.get("ENGINE") != "pool.django" or not pool_config_for(settings_dict, alias).warm_start:
            continue
        wrapper = connections[alias]
        wrapper.ensure_connection()
        wrapper.close()
        opened[alias] = 1 + pools()[alias].warm_up()
    return opened

