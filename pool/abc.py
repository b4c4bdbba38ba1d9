"""The seam between the pool and a database driver, and the clock it reads.

The pool core holds no driver code: it opens, checks, resets and drops connections through a `Driver`, as
SQLAlchemy's pool goes through its dialect. `pool.pymysql_driver.PyMySQLDriver` is the implementation the kit ships;
tests drive the state machine with a fake one and a fake clock.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol, TypeVar

Clock = Callable[[], float]
"""Seconds from a monotonic source: `time.monotonic` in production."""

ConnT = TypeVar("ConnT")


class ResetMode(StrEnum):
    """The values of the pool's `reset` setting (`pool.settings.RESET_MODES`), which `Driver.reset` is given: compare
    with these, not with string literals. Members are str, so a plain "full" compares equal."""

    FULL = "full"
    TRACKED = "tracked"
    ROLLBACK = "rollback"


class LeaseMode(StrEnum):
    """The values of the pool's `lease` setting: how long a unit of work keeps a connection."""

    REQUEST = "request"  # from its first statement until the unit of work ends
    TRANSACTION = "transaction"  # per statement outside a transaction, for the whole transaction inside one


class Driver(Protocol[ConnT]):
    """What the pool needs from a driver. Each method says whether it waits on the server; none is called with the
    pool's lock held. "Never waits" means no network I/O at all, or (`close`) none that waits for an answer."""

    @property
    def target(self) -> str:
        """Where connections go, without credentials (for messages and logs). Never waits."""

    @property
    def server(self) -> str:
        """The server connections count against, for the server budget (`server_size`): the same for every pool whose
        connections go to the same server as the same user, whatever the database (user@host:port). Never waits."""

    def connect(self) -> ConnT:
        """Open a connection with the session set up; raise on failure. Waits on the server: the TCP connect, TLS and
        authentication, then the session set-up (PyMySQL's driver: one pipelined round trip, one more to read the
        catalogue on a pool's first connection with reset="tracked", one more per host of a host list tried, for its
        Galera check), for each host of a list until one answers."""

    def is_alive(self, conn: ConnT) -> bool:
        """False if the server closed the connection or sent something unasked. Never waits (no round trip: a look at
        the socket)."""

    def in_flight(self, conn: ConnT) -> bool:
        """True if a command is under way on `conn`: someone else is still using it, or a command was interrupted and
        the protocol state is unknown. Such a connection is never reset or reused. Never waits."""

    def ping(self, conn: ConnT) -> None:
        """Raise if the connection is unusable. Never reconnects. Waits on the server: one round trip."""

    def reset(self, conn: ConnT, mode: ResetMode, vetted: bool = False) -> bool:
        """Make `conn` fit for the next caller (`mode` is the pool's `reset` setting, a `ResetMode`). Return True if
        the server session's state was cleared (then per-session notes such as `Lease.info` are dropped). Raise on
        failure. Waits on the server: not at all when there is nothing to undo (reset="tracked" after a checkout that
        changed nothing, "rollback" with no transaction open); else one pipelined round trip. Each of these adds a
        wait: reading results the caller left unread; a round trip each to read a catalogue due again ("tracked"),
        to put back a character set the caller changed, to put back autocommit. ``vetted``: `may_release` has just
        returned True for `conn`, so nothing is to be undone (except under "full", which resets every time) and what
        that check covered may be skipped: the per-statement return's fast path."""

    def close(self, conn: ConnT) -> None:
        """Say goodbye to the server (it frees the session at once) and drop the socket; never raises. Never waits
        for an answer: COM_QUIT is written (a write blocks only while the socket's send buffer is full), not
        answered."""

    def abort(self, conn: ConnT) -> None:
        """Close the socket for real, even if another greenlet or thread is blocked on it: the server sees the
        session end. For broken connections and ones still in use when taken back; never raises. Never waits."""

    def end_session(self, conn: ConnT, aborted: ConnT) -> None:
        """Through `conn`, end the server session of `aborted`, a connection just aborted while a command was under
        way on it (the server would run that command to its end). A no-op where `conn` cannot reach that session.
        Waits on the server: one round trip (none in the no-op case)."""

    def forget(self, conn: ConnT) -> None:
        """Drop this process's handle of a connection inherited across fork, without a word to the server and
        without shutting the socket down (the parent still uses that session); never raises. Never waits."""

    def is_disconnect(self, exc: BaseException) -> bool:
        """True if `exc` means the connection is gone or out of sync and must never be reused. Never waits."""

    def server_wait_timeout(self, conn: ConnT) -> float | None:
        """The server's idle timeout for this session in seconds (to keep max_lifetime below it), if known. Waits on
        the server: one round trip."""

    def lend(self, conn: ConnT) -> Any:
        """The object a caller uses for one checkout. After `revoke`, it (and every cursor made from it) refuses use.
        Never waits."""

    def revoke(self, conn: ConnT, handle: Any | None) -> None:
        """End `handle`'s access to `conn`: the caller gave it back. None: `conn` was lent without a handle (to a
        `borrowing` object, itself revoked when its unit of work ends); only what the checkout made from `conn`
        (cursors) is revoked. Never waits."""

    def may_release(self, conn: ConnT) -> bool:
        """Under lease="transaction", between two statements of one unit of work: True if nothing ties `conn` to its
        borrower any more (no transaction, no answer left to read, no session state, no value of the last statement
        the next one may read), so that it can go back to the pool. Never waits."""

    def borrowing(self, borrower: Any) -> Any:
        """The connection object a unit of work uses under lease="transaction": the driver's connection API, taking a
        lease from `borrower` (a `pool.core.Borrower`) when a statement needs one and telling it when one is done.
        Never waits."""
