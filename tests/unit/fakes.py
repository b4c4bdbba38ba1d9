"""A fake driver and a fake clock for the pool's state machine: what each connection went through is recorded, so a
test can say exactly which connections were opened, lent, reset, closed, aborted or forgotten.

These stand in for the driver only in the unit layer, to test the pool's bookkeeping in milliseconds; everything that
touches MySQL is tested against a real server in the integration tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pool.abc import Clock, Driver, ResetMode


class FakeDisconnect(Exception):
    """What the fake driver classifies as a disconnect."""


class FakeConnection:
    def __init__(self, number: int) -> None:
        self.number = number
        self.alive = True
        self.in_flight = False
        self.pinned = False  # something ties it to its borrower between statements (lease="transaction")
        self.ended: str | None = None  # "close", "abort" or "forget"
        self.resets: list[str] = []
        self.reset_error: BaseException | None = None
        self.ping_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<fake connection {self.number}{' ' + self.ended if self.ended else ''}>"


class FakeHandle:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn: FakeConnection | None = conn


class FakeDriver:
    target = "fake@nowhere/test"
    server = "fake@nowhere"

    def __init__(self) -> None:
        self.opened: list[FakeConnection] = []
        self.connect_error: BaseException | None = None
        self.connect_attempts = 0
        self.pings = 0
        self.sessions_ended: list[tuple[int, int]] = []  # (through, of)
        self.end_session_error: BaseException | None = None

    @property
    def open_now(self) -> list[FakeConnection]:
        return [c for c in self.opened if c.ended is None]

    def connect(self) -> FakeConnection:
        self.connect_attempts += 1
        if self.connect_error is not None:
            raise self.connect_error
        conn = FakeConnection(len(self.opened) + 1)
        self.opened.append(conn)
        return conn

    def is_alive(self, conn: FakeConnection) -> bool:
        return conn.alive and conn.ended is None

    def in_flight(self, conn: FakeConnection) -> bool:
        return conn.in_flight and conn.ended is None

    def ping(self, conn: FakeConnection) -> None:
        self.pings += 1
        if conn.ping_error is not None:
            raise conn.ping_error

    def reset(self, conn: FakeConnection, mode: ResetMode, vetted: bool = False) -> bool:
        if conn.reset_error is not None:
            raise conn.reset_error
        conn.resets.append(mode)
        return mode == ResetMode.FULL

    def close(self, conn: FakeConnection) -> None:
        conn.ended = conn.ended or "close"

    def abort(self, conn: FakeConnection) -> None:
        conn.ended = conn.ended or "abort"

    def end_session(self, conn: FakeConnection, aborted: FakeConnection) -> None:
        self.sessions_ended.append((conn.number, aborted.number))
        if self.end_session_error is not None:
            raise self.end_session_error

    def forget(self, conn: FakeConnection) -> None:
        conn.ended = conn.ended or "forget"

    def is_disconnect(self, exc: BaseException) -> bool:
        return isinstance(exc, FakeDisconnect)

    def server_wait_timeout(self, conn: FakeConnection) -> float | None:
        return 28800.0

    def lend(self, conn: FakeConnection) -> FakeHandle:
        return FakeHandle(conn)

    def revoke(self, conn: FakeConnection, handle: Any) -> None:
        if handle is not None:
            handle.conn = None

    def may_release(self, conn: FakeConnection) -> bool:
        return not conn.pinned

    def borrowing(self, borrower: Any) -> FakeBorrowing:
        return FakeBorrowing(borrower)


class FakeBorrowing:
    """A unit of work's connection object under lease="transaction": `statement()` runs one on a leased connection."""

    def __init__(self, borrower: Any) -> None:
        self.borrower = borrower

    def statement(self, pin: bool = False) -> FakeConnection:
        conn: FakeConnection = self.borrower.take().connection  # lent without a handle
        conn.pinned = pin
        self.borrower.statement_done()
        return conn


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


if TYPE_CHECKING:
    # For mypy (scripts/lint) only: the fakes keep the shape of the seam they stand in for, method by method.
    _driver: Driver[FakeConnection] = FakeDriver()
    _clock: Clock = FakeClock()


class RecordedLog:
    """gunicorn's logger as the budget check uses it, keeping each line with its level."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(("info", msg % args))

    def warning(self, msg: str, *args: Any) -> None:
        self.lines.append(("warning", msg % args))
