"""A bounded, greenlet-aware pool of PyMySQL connections.

The core knows nothing of Django, gunicorn or locust; `pool.django` is the Django engine and `pool.gunicorn` the hooks.
"""

from .abc import Clock, Driver
from .core import ConnectionPool, Lease, all_pools, close_all, drain_all, reset_all_after_fork
from .errors import (
    ConcurrentUse,
    ConfigError,
    ConnectionReturned,
    DatabaseUnavailable,
    OutOfStep,
    PoolClosed,
    PoolError,
    PoolExhausted,
    PoolTimeout,
    TooManyWaiters,
    WrongPool,
)
from .settings import SETTINGS, PoolConfig, resolve_config

__all__ = [
    "SETTINGS",
    "Clock",
    "ConcurrentUse",
    "ConfigError",
    "ConnectionPool",
    "ConnectionReturned",
    "DatabaseUnavailable",
    "Driver",
    "Lease",
    "OutOfStep",
    "PoolClosed",
    "PoolConfig",
    "PoolError",
    "PoolExhausted",
    "PoolTimeout",
    "TooManyWaiters",
    "WrongPool",
    "all_pools",
    "close_all",
    "drain_all",
    "reset_all_after_fork",
    "resolve_config",
]
