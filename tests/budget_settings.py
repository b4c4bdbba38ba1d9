"""The demo site with three more aliases on the same server (tenant databases), for tests/test_server_budget.py: each
alias has a pool of its own, and `server_size` makes them share one budget per worker."""

from deploy.settings import *  # noqa: F403
from deploy.settings import DATABASES

ROOT_URLCONF = "tests.budget_urls"
TENANTS = ("tenant1", "tenant2", "tenant3")
for _tenant in TENANTS:
    DATABASES[_tenant] = {**DATABASES["default"], "NAME": _tenant, "ATOMIC_REQUESTS": False}
