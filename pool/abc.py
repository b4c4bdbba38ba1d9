"""The seam between the pool and a database driver, and the clock it reads.

The pool core holds no driver code: it opens, checks, resets and drops connections through a `Driver`, as
SQLAlchemy's pool goes through its dialect. `pool.pymysql_driver.PyMySQLDriver` is the implementation the kit ships;
tests drive the state machine with a fake one and a fake clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

Clock = Callable[[], float]
"""Seconds from a monotonic source: `time.monotonic` in production."""

ConnT = TypeVar("ConnT")


class Driver(Protocol[ConnT]):
    """What the pool needs from a driver. No method but `connect`, `ping`, `reset`, `close`, `end_session` and
    `server_wait_timeout` may do I/O that waits for the server; none is called with the pool's lock held."""

    @property
    def target(self) -> str:
        """Where connections go, without credentials (for messages and logs)."""

    def connect(self) -> ConnT:
        """Open a connection with the session set up; raise on failure."""

    def is_alive(self, conn: ConnT) -> bool:
        """False if the server closed the connection or sent something unasked. Must not do a round trip."""

    def in_flight(self, conn: ConnT) -> bool:
        """True if a command is under way on `conn`: someone else is still using it, or a command was interrupted and
        the protocol state is unknown. Such a connection is never reset or reused."""

    def ping(self, conn: ConnT) -> None:
        """One round trip; raise if the connection is unusable. Never reconnects."""

    def reset(self, conn: ConnT, mode: str) -> bool:
        """Make `conn` fit for the next caller (`mode` is the pool's `reset` setting). Return True if the server
        session's state was cleared (then per-session notes such as `Lease.info` are dropped). Raise on failure."""

    def close(self, conn: ConnT) -> None:
        """Say goodbye to the server (it frees the session at once) and drop the socket; never raises."""

    def abort(self, conn: ConnT) -> None:
        """Close the socket for real, even if another greenlet or thread is blocked on it: the server sees the
        session end. For broken connections and ones still in use when taken back; never raises."""

    def end_session(self, conn: ConnT, aborted: ConnT) -> None:
        """Through `conn`, end the server session of `aborted`, a connection just aborted while a command was under
        way on it (the server would run that command to its end). A no-op where `conn` cannot reach that session."""

    def forget(self, conn: ConnT) -> None:
        """Drop this process's handle of a connection inherited across fork, without a word to the server and
        without shutting the socket down (the parent still uses that session); never raises."""

    def is_disconnect(self, exc: BaseException) -> bool:
        """True if `exc` means the connection is gone or out of sync and must never be reused."""

    def server_wait_timeout(self, conn: ConnT) -> float | None:
        """The server's idle timeout for this session in seconds (to keep max_lifetime below it), if known."""

    def lend(self, conn: ConnT) -> Any:
        """The object a caller uses for one checkout. After `revoke`, it (and every cursor made from it) refuses use."""

    def revoke(self, conn: ConnT, handle: Any) -> None:
        """End `handle`'s access to `conn`: the caller gave it back."""
