"""A bounded, greenlet-aware pool of PyMySQL connections.

The core knows nothing of Django, gunicorn or locust; `pool.django` is the Django engine and `pool.gunicorn` the hooks.
"""

from .core import ConnectionPool, Lease, all_pools, close_all, reset_all_after_fork
from .errors import ConfigError, PoolClosed, PoolError, PoolTimeout, TooManyWaiters
from .settings import SETTINGS, PoolConfig, set_process_overrides

__all__ = [
    "SETTINGS",
    "ConfigError",
    "ConnectionPool",
    "Lease",
    "PoolClosed",
    "PoolConfig",
    "PoolError",
    "PoolTimeout",
    "TooManyWaiters",
    "all_pools",
    "close_all",
    "reset_all_after_fork",
    "set_process_overrides",
]
