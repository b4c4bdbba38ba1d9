"""Pool errors. They subclass PyMySQL's so that code catching the driver's errors (and Django's wrapper) sees them."""

from __future__ import annotations

from pymysql.err import OperationalError


class PoolError(OperationalError):
    """Base class of the errors the pool raises itself."""


class PoolTimeout(PoolError):
    """No connection became free within the pool's `timeout`."""


class TooManyWaiters(PoolError):
    """The pool is full and `max_waiting` callers already wait: fail fast instead of queueing."""


class PoolClosed(PoolError):
    """The pool was closed (worker exit) and hands out no more connections."""


class ConfigError(ValueError):
    """A pool setting has a bad value; the message names the setting and how to fix it."""
