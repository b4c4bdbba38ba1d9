"""Pool errors. They subclass PyMySQL's so that code catching the driver's errors (and Django's wrapper) sees them."""

from __future__ import annotations

from pymysql.err import InterfaceError, OperationalError


class PoolError(OperationalError):
    """Base class of the errors the pool raises itself."""


class PoolExhausted(PoolError):
    """No connection for this caller now: the pool is full. Carries the numbers behind the decision."""

    def __init__(self, message: str, *, pool: str, size: int, in_use: int, waiting: int) -> None:
        super().__init__(message)
        self.pool = pool
        self.size = size
        self.in_use = in_use
        self.waiting = waiting


class PoolTimeout(PoolExhausted):
    """No connection became free within the pool's `timeout`."""

    def __init__(self, message: str, *, pool: str, size: int, in_use: int, waiting: int, timeout: float) -> None:
        super().__init__(message, pool=pool, size=size, in_use=in_use, waiting=waiting)
        self.timeout = timeout


class TooManyWaiters(PoolExhausted):
    """The pool is full and `max_waiting` callers already wait: fail fast instead of queueing."""


class DatabaseUnavailable(PoolError):
    """The database did not answer the last attempt to connect: callers that need a new connection fail at once
    until the next probe (at most `retry_after` seconds away) finds it back."""

    def __init__(self, message: str, *, pool: str, retry_after: float) -> None:
        super().__init__(message)
        self.pool = pool
        self.retry_after = retry_after


class PoolClosed(PoolError):
    """The pool was closed (worker exit) and hands out no more connections."""


class WrongPool(PoolError):
    """A lease was given back to a pool that did not lend it; nothing was changed."""


class ConnectionReturned(InterfaceError):
    """The application used a connection (or a cursor) after giving it back to the pool. The connection may already
    serve another caller, so the use is refused; take a new one from the pool instead."""


class ConfigError(ValueError):
    """A pool setting has a bad value; the message names the setting and how to fix it."""


class ConcurrentUse(InterfaceError):
    """A greenlet or thread sent a command on a connection while another one still waited for the answer to its own
    (both within one checkout). Refused before anything was written; the other one's command is unaffected."""


class OutOfStep(InterfaceError):
    """The connection owes its caller an answer it cannot read any more (a read was cut off, or an answer was left
    unread): every later command is refused, and the pool closes the connection when it comes back."""
