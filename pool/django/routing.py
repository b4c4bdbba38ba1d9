"""Reads to a replica, writes to the primary, with read-your-writes inside a unit of work.

    DATABASES = {"default": {...primary..., "ENGINE": "pool.django"},
                 "replica": {...replica..., "ENGINE": "pool.django", "TEST": {"MIRROR": "default"}}}
    DATABASE_ROUTERS = ["pool.django.routing.PrimaryReplicaRouter"]

Each alias has its own pool, so each server gets its own cap (pool size x workers). Replication is asynchronous: a
read on the replica right after a write on the primary may not see it. The router therefore sends reads to the
primary once the current request (or unit of work) has written, and inside any transaction on the primary.
"""

from __future__ import annotations

from typing import Any

from asgiref.local import Local
from django.core.signals import request_started
from django.db import connections

PRIMARY = "default"
REPLICA = "replica"

# Per greenlet under gevent (Django's Local follows the patched threading), per thread otherwise.
_state = Local()


def _wrote() -> bool:
    return getattr(_state, "wrote", False)


def forget_writes(**_: Any) -> None:
    """Start a new unit of work: reads may go to the replica again. Connected to request_started; call it yourself
    at the start of work outside requests (a Celery task, a spawned greenlet) if they reuse a thread."""
    _state.wrote = False


request_started.connect(forget_writes, dispatch_uid="pool.django.routing.forget_writes")


class PrimaryReplicaRouter:
    """Writes to PRIMARY; reads to REPLICA unless this unit of work already wrote, or a transaction is open on the
    primary (a read there must see the transaction's own writes and hold its locks). Migrations run on the primary."""

    primary = PRIMARY
    replica = REPLICA

    def db_for_read(self, model: Any, **hints: Any) -> str:
        if self.replica not in connections.settings or _wrote() or connections[self.primary].in_atomic_block:
            return self.primary
        return self.replica

    def db_for_write(self, model: Any, **hints: Any) -> str:
        _state.wrote = True
        return self.primary

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the same data on both servers

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return db == self.primary
