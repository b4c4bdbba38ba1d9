"""The demo site with three more aliases on the same server (tenant databases), for tests/test_server_budget.py: each
alias has a pool of its own, and `server_size` makes them share one budget per worker."""

import threading
from typing import Any

from deploy.settings import *  # noqa: F403
from deploy.settings import DATABASES

ROOT_URLCONF = "tests.budget_urls"
TENANTS = ("tenant1", "tenant2", "tenant3")
for _tenant in TENANTS:
    DATABASES[_tenant] = {**DATABASES["default"], "NAME": _tenant, "ATOMIC_REQUESTS": False}


class TenantRouter:
    """Reads and writes go to the tenant the current greenlet names in `current.tenant` (a tenant middleware would set
    it), else to `default`: DATABASE_ROUTERS' way of choosing an alias."""

    current = threading.local()  # greenlet-local once gevent has patched threading

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return getattr(self.current, "tenant", None)

    db_for_write = db_for_read


DATABASE_ROUTERS = ["tests.budget_settings.TenantRouter"]
