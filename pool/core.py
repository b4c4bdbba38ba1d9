"""The bounded connection pool.

State machine, in one place:
- A *slot* is the right to hold one connection. ``len(self._leases)`` slots are taken; never more than ``size``.
  A caller takes a slot before it connects, so the cap holds under any interleaving.
- A returned connection (or the bare slot, if the connection was dropped) goes straight to the oldest waiter;
  only when nobody waits does the slot become free. Waiters are therefore served in arrival order and a newcomer
  can never overtake them.
- The internal lock guards only in-memory bookkeeping: connect, ping, reset and close run outside it.
- A slot is freed exactly once, in a ``finally``: whatever a reset or a check raises, the slot comes back.
- Housekeeping (idle and lifetime expiry, leak warnings, dead owners, the ``min_idle`` floor) runs in a maintenance
  loop of its own, so an idle process gives connections back without any traffic.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from . import stats as S
from .abc import Clock, Driver, LeaseMode
from .background import gevent_patched, start_background
from .backoff import Backoff, Streak
from .errors import ConnectionReturned, DatabaseUnavailable, PoolClosed, PoolTimeout, TooManyWaiters, WrongPool
from .settings import PoolConfig, resolve_config

log = logging.getLogger("pool")

_getcurrent: Callable[[], Any] | None
try:
    from greenlet import getcurrent as _getcurrent
except ImportError:  # pragma: no cover - greenlet comes with gevent, which the kit requires
    _getcurrent = None

# Deep enough to get past the ORM's own frames (a Django query is ~15 deep at checkout) to the caller's code.
_STACK_DEPTH = 30
MAINTENANCE_INTERVAL = 1.0
_LIFETIME_JITTER = 0.1
# At most one "cannot connect" line per pool in this many seconds; the ones in between are counted in the next.
_CONNECT_ERROR_LOG_INTERVAL = 10.0
# After a failed connect, the next attempt waits this long, doubling per failure up to the cap, jittered down by up to
# half so that workers do not probe in step. The cap is what bounds recovery: back within a second of the server.
_BACKOFF = Backoff(first=0.1, cap=1.0, jitter=0.5)
# Readiness turns only after this many readings in a row saw otherwise, each at least READING_INTERVAL seconds after
# the one before that counted: a moment's problem never takes a worker out of rotation, nor does a moment's relief bring
# it back, and a burst of probes (kubelet, a load balancer and a person at once) is one reading, not three.
READINGS = 3
READING_INTERVAL = 1.0


def _new_event() -> Any:
    # Chosen at wait time, not at import: a pool built before monkey-patching must still wait cooperatively after it.
    if gevent_patched():
        from gevent.event import Event

        return Event()
    return threading.Event()


def _current_owner() -> Any:
    """The greenlet (under gevent) or thread that is taking a connection."""
    if _getcurrent is not None:
        current = _getcurrent()
        if current.parent is not None:  # a spawned greenlet; a thread's main greenlet has no parent
            return current
    return threading.current_thread()


def _owner_alive(ref: weakref.ref[Any]) -> bool:
    owner = ref()
    if owner is None:
        return False
    # Greenlets say `dead`; threads say `is_alive()` (an isinstance test on threading.Thread would break once gevent
    # has replaced that class).
    dead = getattr(owner, "dead", None)
    return not dead if dead is not None else bool(owner.is_alive())


_Stack = list[tuple[Any, int]]


def _caller_stack() -> _Stack:
    # (code object, line) pairs, formatted only if a warning needs them: about a microsecond per checkout, where
    # traceback.extract_stack costs tens. Frames themselves are not kept, so no caller's locals stay alive.
    # Starts at acquire()'s caller, which may be no Python frame at all (gevent.spawn(pool.acquire)).
    frame = sys._getframe(1).f_back
    frames: _Stack = []
    append = frames.append
    for _ in range(_STACK_DEPTH):
        if frame is None:
            break
        append((frame.f_code, frame.f_lineno))
        frame = frame.f_back
    return frames


def _where_now(owner: weakref.ref[Any]) -> _Stack:
    """Where a lease's owner is at this moment, for a lease taken without its caller's stack: a greenlet's suspended
    frame, or a thread's current one."""
    current = owner()
    frame = getattr(current, "gr_frame", None)
    if frame is None and current is not None and getattr(current, "ident", None) is not None:
        frame = sys._current_frames().get(current.ident)
    frames: _Stack = []
    while frame is not None and len(frames) < _STACK_DEPTH:
        frames.append((frame.f_code, frame.f_lineno))
        frame = frame.f_back
    return frames


_POOL_DIR = os.path.dirname(os.path.abspath(__file__))


def _format_stack(stack: _Stack) -> str:
    lines = "".join(f'\n    File "{c.co_filename}", line {n}, in {c.co_name}'
                    for c, n in reversed(stack) if not c.co_filename.startswith(_POOL_DIR))
    return lines or " (no Python caller: the pool was called directly from a greenlet or thread start)"


class _Record:
    """One physical connection and what the pool knows of it."""

    __slots__ = ("conn", "created", "expires", "last_used", "info", "token")

    def __init__(self, conn: Any, now: float, lifetime: float | None, token: int = 0) -> None:
        self.conn = conn
        # Its place in the server budget (`ServerBudget.take`), given back when it closes; 0 without a budget.
        self.token = token
        self.created = now
        self.expires = now + lifetime * (1.0 - random.random() * _LIFETIME_JITTER) if lifetime else float("inf")
        self.last_used = now
        # Scratch space for integrations, for the life of this server session: emptied when a reset clears it.
        self.info: dict[str, Any] = {}


class Lease:
    """A caller's hold on one slot and (once ready) one connection. Give it back with `ConnectionPool.release`."""

    __slots__ = ("_pool", "_record", "_handle", "_owner", "_since", "_stack", "_released", "_leak_warned",
                 "_generation", "__weakref__")

    def __init__(self, pool: ConnectionPool, owner: weakref.ref[Any], since: float, stack: _Stack,
                 generation: int) -> None:
        self._pool = pool
        self._record: _Record | None = None
        self._handle: Any = None
        self._owner = owner
        self._since = since
        self._stack = stack
        self._released = False
        self._leak_warned = False
        self._generation = generation

    @property
    def connection(self) -> Any:
        """The connection for this checkout (a handle that refuses any use once the lease is released)."""
        if self._handle is None:
            raise ConnectionReturned(0, "this lease was released; acquire a new connection")
        return self._handle

    @property
    def info(self) -> dict[str, Any]:
        """Per-session scratch space: survives checkouts of the same server session, emptied when a reset clears the
        session's state."""
        if self._record is None:
            raise ConnectionReturned(0, "this lease was released; acquire a new connection")
        return self._record.info


class Borrower:
    """One unit of work's use of a pool under lease="transaction" (a request, a task, a with-block): a lease is taken
    when a statement needs a connection, and given back as soon as the connection says nothing ties it to this unit
    of work (`Driver.may_release`: no transaction, no unread answer, no session state...). `end()` gives back what is
    still held when the unit of work ends. The driver's connection object (`Driver.borrowing`) calls these."""

    __slots__ = ("pool", "_timeout", "_lease")

    def __init__(self, pool: ConnectionPool, timeout: float | None = None) -> None:
        self.pool = pool
        self._timeout = timeout
        self._lease: Lease | None = None

    @property
    def held(self) -> Lease | None:
        """The lease held now, if any."""
        return self._lease

    def take(self) -> Lease:
        """The lease for the next statement: the one held, or a new one."""
        lease = self._lease
        if lease is None:
            # No handle: the driver's borrowing object is itself what refuses use once the unit of work is over.
            lease = self._lease = self.pool.acquire(self._timeout, remember_stack=False, lend=False)
        return lease

    def statement_done(self) -> None:
        """A statement (and its cursor), a COMMIT or a ROLLBACK is over: give the connection back unless it is
        still tied to this unit of work."""
        lease = self._lease
        if lease is not None:
            record = lease._record
            if record is None:
                self._lease = None
                self.pool.release(lease)
            elif self.pool._driver.may_release(record.conn):
                self._lease = None
                self.pool._release(lease, None, vetted=True)

    def end(self, *, discard: bool = False) -> None:
        """The unit of work is over: give back what is held (reset as usual, or dropped if ``discard``)."""
        lease, self._lease = self._lease, None
        if lease is not None:
            self.pool.release(lease, discard=discard)


class _Outage(Streak):
    """While the database does not answer: its failed connects in a row and the back-off (`Streak`), whether the one
    probe allowed at a time is under way, since when and why it fails, and the rate limit of the log lines saying so.
    Read and written under the pool's lock, except the log's two fields, which only `_connect` touches."""

    __slots__ = ("probing", "since", "last_error", "next_report", "unreported")

    def __init__(self) -> None:
        super().__init__(_BACKOFF)
        self.probing = False
        self.since: float | None = None  # the pool's clock at the first failure of the current streak
        self.last_error = ""
        self.next_report = float("-inf")
        self.unreported = 0  # failures not logged since the last line

    def holds_off(self, now: float) -> bool:
        """Whether a connect at `now` is to be refused without an attempt: the database is failing and either its
        back-off runs or another caller's probe is under way."""
        return self.failures > 0 and (now < self.retry_at or self.probing)

    def failed_with(self, now: float, error: str) -> None:
        if not self.failures:
            self.since = now
        self.failed(now)
        self.last_error = error

    def answered(self) -> None:
        self.clear()
        self.probing = False
        self.since = None


class _Waiter:
    __slots__ = ("event", "since", "lease", "granted", "record")

    def __init__(self, lease: Lease, since: float) -> None:
        self.event = _new_event()
        self.since = since
        self.lease = lease
        self.granted = False
        self.record: _Record | None = None


class _TokenWaiter:
    __slots__ = ("pool", "event", "since", "granted", "record")

    def __init__(self, pool: ConnectionPool, since: float) -> None:
        self.pool = pool
        self.event = _new_event()
        self.since = since
        self.granted = False
        self.record: _Record | None = None  # granted with a connection of its own pool, else with a token


_token_generations = itertools.count(1)


class ServerBudget:
    """The connections this process may hold to one server (user, host, port) across every pool that goes there
    (`server_size`): one token per connection open or being opened, whichever pool holds it.

    A pool that needs a new connection takes a token. With none free it takes an idle connection from the pools of
    the server (its own is used as it is; another pool's is closed and its token passes on), else it queues in one
    FIFO for the whole server. A returned connection goes to that queue before anything else: to its head as it is
    if the head is a caller of the same pool, else closed and its token handed over. A burst on one pool therefore
    keeps the others waiting no longer than the statements ahead of them, at the price of a connect per handover.

    Lock order: the budget's lock, then a pool's; never the other way round."""

    def __init__(self, key: str, size: int) -> None:
        self.key = key
        self.size = size
        self._pools: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()
        self._init_process_state()

    def _init_process_state(self) -> None:
        self._pid = _process.pid
        self._lock = threading.Lock()
        # Tokens of an earlier process (or of a pool's reset_after_fork) carry an older generation and are ignored.
        self._generation = next(_token_generations)
        self._open = 0
        self._waiters: deque[_TokenWaiter] = deque()

    def __repr__(self) -> str:
        return f"<ServerBudget {self.key} size={self.size} open={self._open} waiting={len(self._waiters)}>"

    def _check_process(self) -> None:
        if self._pid != _process.pid:
            self._init_process_state()

    def try_take(self) -> int:
        """A token if one is free and nobody queues for one (for the min_idle floor and probes), else 0."""
        self._check_process()
        with self._lock:
            if self._open < self.size and not self._waiters:
                self._open += 1
                return self._generation
        return 0

    def take(self, pool: ConnectionPool, deadline: float, timeout: float) -> int | _Record:
        """For `pool`, which holds a slot and needs a connection: a token (an int: open one) or an idle connection of
        its own (check it, as any idle one). Waits in the server's queue until `deadline` on the pool's clock (the end
        of the caller's `timeout`, part of which it may have spent queued for the slot), then raises PoolTimeout."""
        self._check_process()
        stolen: tuple[ConnectionPool, _Record] | None = None
        with self._lock:
            if self._open < self.size and not self._waiters:
                self._open += 1
                return self._generation
            for member in (pool, *(p for p in self._pools if p is not pool)):
                with member._lock:
                    # Its own newest (warmest); another pool's oldest (nearest its idle_timeout anyway).
                    record = (member._idle.pop() if member is pool else member._idle.popleft()) if member._idle \
                        else None
                if record is not None:
                    if member is pool:
                        return record
                    stolen = (member, record)
                    break
            else:
                waiter = _TokenWaiter(pool, pool._clock())
                self._waiters.append(waiter)
        if stolen is not None:
            member, record = stolen
            member._counters[S.HANDED_OVER] += 1
            member._driver.close(record.conn)  # its token is the caller's now
            return record.token
        try:
            waiter.event.wait(max(0.0, deadline - pool._clock()))
        except BaseException:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted:
                self._pass_on(waiter)
            raise
        with self._lock:
            granted = waiter.granted
            if not granted and waiter in self._waiters:
                self._waiters.remove(waiter)
            waiting, in_use = len(self._waiters), self._open
        waited = max(0.0, pool._clock() - waiter.since)
        pool._counters[S.SERVER_WAITS] += 1
        pool._counters[S.SERVER_WAIT_MS] += waited * 1000.0
        if granted:
            return waiter.record if waiter.record is not None else self._generation
        if pool._closed:
            raise PoolClosed(f"pool {pool.name!r} was closed while waiting for a connection")
        pool._counters[S.TIMEOUTS] += 1
        raise PoolTimeout(
            f"pool {pool.name!r} had no connection after {timeout:g}s ({waited:.3g}s of it queued for room on server "
            f"{self.key}, whose budget for this process, server_size={self.size}, is taken by its pools: "
            f"{self.describe_pools()}); {waiting} more wait. "
            + (self._holds_another(pool) or
               f"Raise {pool.config.setting_source('server_size')} if the server has room for server_size x processes "
               f"connections, or find what holds connections so long"),
            pool=pool.name, size=self.size, in_use=in_use, waiting=waiting, timeout=timeout,
        )

    def _holds_another(self, pool: ConnectionPool) -> str:
        """Advice for a caller that times out while it holds a connection of another pool of this server: callers
        that each hold one alias's connection while they wait for another's can take the whole budget."""
        owner = _current_owner()
        for member in self._pools:
            if any(lease._owner() is owner and lease._record is not None for lease in list(member._leases.values())):
                return (f"This caller already holds a connection of pool {member.name!r} on the same server while it "
                        f"waits for another: when every connection of the budget is held that way nobody can go on. "
                        f"Let go of one connection before taking the next (lease='transaction' does so between "
                        f"statements; close a connection.copy() before using the alias again, or the other way "
                        f"round), or raise {pool.config.setting_source('server_size')} above the connections a "
                        f"request holds at once x its concurrency")
        return ""

    def give_back(self, token: int) -> None:
        """A connection holding `token` closed: its place goes to the oldest waiter, else becomes free."""
        self._check_process()
        if token != self._generation:
            return  # counted before a fork, or never counted
        with self._lock:
            waiter = self._waiters.popleft() if self._waiters else None
            if waiter is not None:
                waiter.granted = True
            else:
                self._open -= 1
        if waiter is not None:
            waiter.event.set()

    def _pass_on(self, waiter: _TokenWaiter) -> None:
        """What a waiter that was interrupted after its grant holds goes to the next one."""
        record = waiter.record
        if record is None:
            self.give_back(self._generation)
        else:
            waiter.pool._hand_back(None, record)

    def _grant_locked(self, pool: ConnectionPool, record: _Record) -> tuple[_TokenWaiter, _Record | None] | None:
        """Under the budget's lock: `pool` has `record` to give back while callers queue for the server. The oldest
        gets it, as it is if it waits for the same pool; else it is to be closed (returned) and its token is the
        waiter's."""
        if not self._waiters or record.token != self._generation:
            return None
        waiter = self._waiters.popleft()
        waiter.granted = True
        if waiter.pool is pool:
            waiter.record = record
            return waiter, None
        return waiter, record

    def cancel(self, pool: ConnectionPool) -> None:
        """`pool` closed: wake its callers that queue here (they raise PoolClosed)."""
        with self._lock:
            mine = [w for w in self._waiters if w.pool is pool]
            for waiter in mine:
                self._waiters.remove(waiter)
        for waiter in mine:
            waiter.event.set()

    def describe_pools(self) -> str:
        return ", ".join(f"{p.name!r} {p._open_count()}" for p in sorted(self._pools, key=lambda p: p.name)) or "none"

    def stats(self) -> dict[str, Any]:
        """This process's figures for the server: the budget, connections open (or being opened), callers queued,
        and each pool's open connections."""
        self._check_process()
        with self._lock:
            open_now, waiting = self._open, len(self._waiters)
        return {"server": self.key, "server_size": self.size, "open": open_now, "waiting": waiting,
                "pools": {p.name: p._open_count() for p in sorted(self._pools, key=lambda p: p.name)}}


_budgets: dict[str, ServerBudget] = {}
_budgets_lock = threading.Lock()


def _join_budget(pool: ConnectionPool) -> ServerBudget | None:
    size = pool.config.server_size
    if size is None:
        return None
    with _budgets_lock:
        budget = _budgets.get(pool.server)
        if budget is None:
            budget = _budgets[pool.server] = ServerBudget(pool.server, size)
        elif size != budget.size:
            log.warning("pool %r: server_size=%d (%s) differs from the %d another pool of server %s set; the smaller "
                        "holds for all of them", pool.name, size, pool.config.setting_source("server_size"),
                        budget.size, pool.server)
            budget.size = min(size, budget.size)
        budget._pools.add(pool)
    return budget


def server_budgets() -> list[ServerBudget]:
    """This process's server budgets (one per server that pools with `server_size` go to)."""
    with _budgets_lock:
        return list(_budgets.values())


@dataclass(frozen=True)
class Readiness:
    """`ConnectionPool.readiness()`: whether this process should be sent callers, and why not."""

    ready: bool
    reason: str
    pool: str
    size: int
    in_use: int
    waiting: int
    maxwait_s: float
    # How long no caller has got a connection while every one was in use and callers needed one (0: it moves, or
    # nobody needs one), and the bound past which a reading calls the pool stuck.
    stuck_for_s: float
    stuck_after_s: float
    # Readings in a row (READING_INTERVAL apart) that saw otherwise than `ready`; at READINGS it turns.
    readings_against: int = 0
    unavailable_for_s: float | None = None
    unavailable_since: float | None = None  # wall-clock time (time.time()) of the first failed connect in a row
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Verdict:
    """A pool's readiness and the readings that may turn it (see READINGS)."""

    __slots__ = ("ready", "against", "last_reading", "problem")

    def __init__(self) -> None:
        self.ready: bool | None = None  # no reading yet
        self.against = 0
        self.last_reading = float("-inf")
        self.problem = ""  # what the last reading that saw a problem saw

    def read(self, now: float, problem: str) -> bool:
        """A reading at `now` that saw `problem` ("" for none); one closer than READING_INTERVAL to the last that
        counted does not count. Returns whether it counted."""
        if now - self.last_reading < READING_INTERVAL:
            return False
        self.last_reading = now
        if problem:
            self.problem = problem
        if self.ready is None:
            self.ready = not problem  # a new process has no verdict to hold on to: its first reading decides
        elif self.ready == bool(problem):
            self.against += 1
            if self.against >= READINGS:
                self.ready, self.against = not problem, 0
        else:
            self.against = 0
        return True


class _Maintenance:
    """Runs `pool.maintain()` every `interval` seconds in this process: a greenlet under gevent, a daemon thread
    otherwise. Holds only a weak reference, so a pool nobody uses any more can still be collected."""

    def __init__(self, pool: ConnectionPool, interval: float) -> None:
        self._pool = weakref.ref(pool)
        self._name = pool.name
        self._interval = interval
        self._pid = os.getpid()
        self._stopped = False
        self._wakeup = _new_event()
        start_background(self._run, f"pool-maintenance-{pool.name}")

    def stop(self) -> None:
        self._stopped = True
        self._wakeup.set()

    def _run(self) -> None:
        while True:
            self._wakeup.wait(self._interval)
            # A fork copies a sleeping greenlet into the child: only the process that started the loop runs it.
            if self._stopped or os.getpid() != self._pid:
                return
            pool = self._pool()
            if pool is None:
                return
            try:
                pool.maintain()
            except Exception:  # the loop must outlive one bad round; the next one retries
                log.exception("pool %r: maintenance round failed; retrying in %gs", self._name, self._interval)
            del pool


class ConnectionPool:
    """A hard-capped pool of database connections for one process, cooperative under gevent and safe with threads.

    ``connect_kwargs`` are PyMySQL's `connect()` arguments, for the default driver. ``config`` is the code's layer of
    settings: the deployment's (gunicorn.conf.py, then `POOL_*`) go over it (`pool.settings.resolve_config`), and the
    pool runs with the result, `pool.config`. ``session_init`` are statements
    sent after each connect and after each full reset (an integration's session set-up, e.g. the isolation level).
    ``driver`` replaces the PyMySQL driver (see `pool.abc.Driver`); ``clock`` the monotonic clock.
    ``maintenance_interval`` is how often the maintenance loop runs (None: never; call `maintain()` yourself).
    """

    def __init__(
        self,
        connect_kwargs: Mapping[str, Any] | None = None,
        config: PoolConfig | None = None,
        *,
        name: str = "default",
        session_init: Sequence[str] = (),
        driver: Driver[Any] | None = None,
        clock: Clock = time.monotonic,
        maintenance_interval: float | None = MAINTENANCE_INTERVAL,
    ) -> None:
        self.name = name
        # The code's settings under the deployment's: every pool resolves the same layers (pool.settings).
        self.config = resolve_config(config)
        if driver is None:
            from .pymysql_driver import PyMySQLDriver

            if connect_kwargs is None:
                raise TypeError("ConnectionPool needs connect_kwargs (PyMySQL's connect() arguments) or a driver")
            driver = PyMySQLDriver.for_config(connect_kwargs, self.config, session_init=session_init, clock=clock)
        self._driver: Driver[Any] = driver
        self._clock = clock
        self._maintenance_interval = maintenance_interval
        self._lifetime: float | None = self.config.max_lifetime
        self._generation = 0
        # Integrations (Prometheus, OpenTelemetry, the middleware's Server-Timing) subscribe here; the pool imports
        # none of them. Each is called in the caller's greenlet or thread; an empty list costs one truth test.
        # (seconds queued, whether a connection was granted) after every wait for a slot; a caller that found a slot
        # free is not observed, only counted (stats' `immediate`):
        self.wait_observers: list[Callable[[float, bool], None]] = []
        # (seconds held, checkout to return) at every return:
        self.use_observers: list[Callable[[float], None]] = []
        # (seconds spent, the error or None) after every attempt to open a connection:
        self.connect_observers: list[Callable[[float, BaseException | None], None]] = []
        # ("rejected" | "unavailable") when a caller is refused without a connection (TooManyWaiters,
        # DatabaseUnavailable):
        self.refusal_observers: list[Callable[[str], None]] = []
        # The server its connections count against (user, host, port: every database there, every pool).
        self.server: str = getattr(driver, "server", None) or driver.target
        self._init_process_state()
        self._budget = _join_budget(self)
        _all_pools.add(self)
        for subscriber in list(_pool_subscribers):
            subscriber(self)
        log.info("pool %r created for %s: %s; %s", name, driver.target, self.config.describe(), self._budget_line())

    def _budget_line(self) -> str:
        budget = self._budget
        if budget is None:
            return (f"no server budget: this pool counts its own {self.config.size} connections to {self.server} "
                    f"alone (set server_size to share one cap among every pool going there)")
        others = sorted(p.name for p in budget._pools if p is not self)
        return (f"server budget for {self.server}: {budget.size} connections per process (server_size), shared "
                f"with " + (", ".join(map(repr, others)) if others else "no other pool yet"))

    def __repr__(self) -> str:
        return (
            f"<ConnectionPool {self.name!r} {self.target} size={self.config.size} "
            f"in_use={len(self._leases)} idle={len(self._idle)} waiting={len(self._waiters)}>"
        )

    def _init_process_state(self) -> None:
        # Everything here belongs to one process: rebuilt after fork, never shared with a parent.
        self._pid = _process.pid
        self._generation += 1
        self._lock = threading.Lock()
        self._idle: deque[_Record] = deque()  # used as a stack: the most recently returned goes out first
        self._leases: dict[int, Lease] = {}
        self._waiters: deque[_Waiter] = deque()
        self._closed = False
        self._keeps_idle = True  # False in a process that serves nothing (keep_no_idle)
        self._suspect_before = float("-inf")
        self._counters: dict[str, float] = dict.fromkeys(S.COUNTERS, 0)
        self._maintenance: _Maintenance | None = None
        # Fail-fast state while the database does not answer: one probe at a time, after a back-off.
        self._outage = _Outage()
        # For readiness: when a caller last got a slot, and when one last was turned away (gave up waiting, or
        # max_waiting refused it), on the pool's clock.
        self._moved_at = self._clock()
        self._turned_away_at = float("-inf")
        self._verdict = _Verdict()
        self._drained: Any = None

    # -- public API ---------------------------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """Where the pool connects, without credentials."""
        return self._driver.target

    def acquire(self, timeout: float | None = None, *, remember_stack: bool = True, lend: bool = True) -> Lease:
        """Take a slot and a healthy connection, waiting up to ``timeout`` (default: the pool's) for a free slot.
        ``remember_stack``: keep the caller's stack for leak and dead-owner warnings (about a microsecond); leases
        taken per statement do without, and a warning shows where the owner is at that moment instead. ``lend``:
        wrap the connection in the driver's revocable handle; without it `Lease.connection` is the driver's
        connection itself, for a caller that is its own revocable object (`Borrower`'s per-statement leases)."""
        if self._pid != _process.pid:
            self.reset_after_fork()
        if self._maintenance is None and self._maintenance_interval and not self._closed:
            self._maintenance = _Maintenance(self, self._maintenance_interval)
        now = self._clock()
        lease = Lease(self, weakref.ref(_current_owner()), now, _caller_stack() if remember_stack else [],
                      self._generation)
        record: _Record | None = None
        waiter: _Waiter | None = None
        rejected_at: tuple[int, int] | None = None
        with self._lock:
            if self._closed:
                raise PoolClosed(f"pool {self.name!r} is closed (the process is shutting down)")
            if len(self._leases) < self.config.size and not self._waiters:
                self._leases[id(lease)] = lease
                record = self._idle.pop() if self._idle else None
                self._moved_at = now
            elif self.config.max_waiting and len(self._waiters) >= self.config.max_waiting:
                rejected_at = (len(self._leases), len(self._waiters))
                self._counters[S.REJECTED] += 1
                self._turned_away_at = now
            else:
                waiter = _Waiter(lease, now)
                self._waiters.append(waiter)
        if rejected_at is not None:
            if self.refusal_observers:
                _notify(self.refusal_observers, "rejected")
            where = self.config.setting_source
            raise TooManyWaiters(
                f"pool {self.name!r} is full (size={self.config.size}, in_use={rejected_at[0]}) and {rejected_at[1]} "
                f"callers already wait, the max_waiting limit ({where('max_waiting')}); raise it, or raise the pool "
                f"size ({where('size')}) if the server has room",
                pool=self.name, size=self.config.size, in_use=rejected_at[0], waiting=rejected_at[1],
            )
        if timeout is None:
            timeout = self.config.timeout
        if waiter is not None:
            # A slot whose owner ended without giving it back is free now, not at the next maintenance round (one
            # pass over the leases, paid only by callers that queue).
            self._reclaim_dead_owners()
            record = self._wait(waiter, timeout)
            lease._since = self._clock()  # held from now: usage and leak time do not count the queueing
        try:
            # Room on the server (server_size) is waited for within the same bound as the slot.
            record = self._make_ready(record, now + timeout, timeout)
            lease._handle = self._driver.lend(record.conn) if lend else record.conn
        except BaseException:
            self._hand_back(lease, None)
            raise
        lease._record = record
        counters = self._counters
        counters[S.CHECKOUTS] += 1
        if waiter is None:
            # A wait of 0, counted, not observed: the exporters add these to the wait histograms when they are read,
            # so a checkout that queued for nothing costs one increment, not an observer call. Counted with the
            # checkout itself, so that figures copied meanwhile never show one without the other.
            counters[S.IMMEDIATE] += 1
        return lease

    def borrowing(self, borrower: Borrower) -> Any:
        """The connection object of one unit of work under lease="transaction" (the driver's, over `borrower`): it
        takes a connection per statement or transaction; `borrower.end()` gives back what it still holds."""
        return self._driver.borrowing(borrower)

    def release(self, lease: Lease, *, discard: bool = False) -> None:
        """Give a connection back: it is reset for the next user, or dropped if broken (or if ``discard``).
        Releasing a lease twice does nothing the second time."""
        if lease._pool is not self:
            raise WrongPool(
                f"a connection of pool {lease._pool.name!r} was given back to pool {self.name!r}; nothing was changed. "
                f"Release it to the pool it came from"
            )
        self._release(lease, S.DISCARDED if discard else None)

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Any]:
        """Borrow a connection for a block: ``with pool.connection() as conn: ...``. Transactions left open are
        rolled back when the block ends; a connection that saw a disconnect error, or whose block was interrupted
        (greenlet killed, KeyboardInterrupt, a gevent Timeout) in the middle of who knows what, is dropped. Under
        lease="transaction" the block is one unit of work whose connection object holds a pool connection only per
        statement or transaction (`Borrower`)."""
        if self.config.lease == LeaseMode.TRANSACTION:
            # The block is the unit of work; the connection object takes a lease per statement or transaction.
            borrower = Borrower(self, timeout)
            try:
                yield self.borrowing(borrower)
            except Exception as exc:
                borrower.end(discard=self._driver.is_disconnect(exc))
                raise
            except BaseException:
                borrower.end(discard=True)
                raise
            borrower.end()
            return
        lease = self.acquire(timeout)
        try:
            yield lease.connection
        except Exception as exc:
            self.release(lease, discard=self._driver.is_disconnect(exc))
            raise
        except BaseException:
            self.release(lease, discard=True)
            raise
        self.release(lease)

    def stats(self) -> dict[str, float | int]:
        """Every statistic of `pool.stats.TABLE`, for this process's pool."""
        now = self._clock()
        with self._lock:
            in_use, idle, waiting = len(self._leases), len(self._idle), len(self._waiters)
            oldest = self._waiters[0].since if self._waiters else now
            counters = dict(self._counters)
        return {
            S.SIZE: self.config.size,
            S.IN_USE: in_use,
            S.IDLE: idle,
            S.WAITING: waiting,
            S.MAXWAIT_MS: round(max(0.0, now - oldest) * 1000.0, 3),
            S.PID: os.getpid(),
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in counters.items()},
        }

    def readiness(self, stuck_after: float | None = None) -> Readiness:
        """Whether this process should be sent callers, read from the pool's own state: no connection is taken and
        nothing is sent to the server.

        Each reading looks for a problem: the database does not answer (the fail-fast state), or the pool is stuck:
        every slot in use, callers waiting or turned away since, and no caller has got a connection for
        ``stuck_after`` seconds (default: the pool's timeout, after which every caller queued meanwhile has failed).
        A pool that is busy but moving has none, however long its queue. The answer turns only after READINGS readings
        in a row, READING_INTERVAL apart, saw otherwise (a call in between reports the figures of the moment without
        counting); the first reading in a process decides at once, and a closed pool is not ready at once.

        While the database is marked down a reading that counts also starts one connect attempt in the background
        (one at a time, outside the back-off), so that a worker no traffic reaches (a load balancer sends none to a
        worker that is not ready) learns of the database's return by its readings."""
        if self._pid != os.getpid():
            self.reset_after_fork()
        bound = self.config.timeout if stuck_after is None else stuck_after
        size = self.config.size
        now = self._clock()
        with self._lock:
            waiting, in_use = len(self._waiters), len(self._leases)
            oldest = self._waiters[0].since if self._waiters else now
            outage = self._outage
            down_since, failures, error = outage.since, outage.failures, outage.last_error
            needed = waiting > 0 or self._turned_away_at >= self._moved_at
            stuck_for = max(0.0, now - self._moved_at) if in_use >= size and needed else 0.0
            down_for = max(0.0, now - down_since) if down_since is not None else None
            if down_for is not None:
                problem = f"database unavailable for {down_for:.1f}s ({failures} failed connects in a row: {error})"
            elif stuck_for >= bound:
                problem = (f"pool {self.name!r} stuck: no caller got a connection for {stuck_for:.1f}s (the bound is "
                           f"{bound:g}s), all {size} in use, {waiting} callers waiting")
            else:
                problem = ""
            verdict = self._verdict
            counted = verdict.read(now, problem)
            ready, against, last_problem = bool(verdict.ready), verdict.against, verdict.problem
            probe = counted and failures > 0 and not outage.probing and not self._closed
        if probe:
            start_background(self._probe, f"pool-probe-{self.name}")
        if self._closed:
            ready, reason = False, f"pool {self.name!r} is closed (the process is shutting down)"
        elif ready:
            reason = "ready" if not against else \
                f"ready; {against} of {READINGS} readings in a row saw: {problem or last_problem}"
        else:
            reason = problem or f"{last_problem}; {against} of {READINGS} readings in a row found it serving again"
        return Readiness(
            ready, reason, pool=self.name, size=size, in_use=in_use, waiting=waiting,
            maxwait_s=round(max(0.0, now - oldest), 3), stuck_for_s=round(stuck_for, 3), stuck_after_s=bound,
            readings_against=against,
            unavailable_for_s=None if down_for is None else round(down_for, 3),
            unavailable_since=None if down_for is None else time.time() - down_for, last_error=error)

    def _probe(self) -> None:
        """One connect attempt into a free slot while the database is marked down, whatever the back-off says; the
        connection, if it opens, stays idle for the next caller."""
        placeholder = Lease(self, weakref.ref(_current_owner()), self._clock(), [], self._generation)
        with self._lock:
            if (self._closed or self._outage.probing or not self._outage.failures
                    or len(self._leases) >= self.config.size):
                return
            self._outage.probing = True
            self._leases[id(placeholder)] = placeholder
        record: _Record | None = None
        try:
            token = self._budget.try_take() if self._budget is not None else 0
            if self._budget is not None and not token:
                with self._lock:
                    self._outage.probing = False
                return  # no room on the server now; the next reading tries again
            record = self._connect(token, probe_claimed=True)
        except Exception:  # noqa: BLE001 - reported by _connect; readiness stays false until a probe succeeds
            pass
        finally:
            self._hand_back(placeholder, record)

    def maintain(self) -> None:
        """One round of housekeeping (the maintenance loop calls this every second): leak warnings, connections of
        dead owners taken back, idle connections past max_lifetime or idle_timeout closed, `min_idle` kept open."""
        if self._pid != os.getpid() or self._closed:
            return
        # Dead owners first: a connection taken back is reported once, as reclaimed, not also as a leak.
        self._reclaim_dead_owners()
        now = self._clock()
        self._warn_leaks(now)
        self._expire_idle(now)
        self._fill_min_idle()

    def close(self) -> None:
        """Close idle connections, refuse new checkouts and wake every waiter. Connections lent out are closed when
        they come back. Safe to call more than once, and from any process (a foreign process only forgets)."""
        if self._pid != os.getpid():
            self.reset_after_fork()
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
            waiters, self._waiters = list(self._waiters), deque()
            maintenance, self._maintenance = self._maintenance, None
        if maintenance is not None:
            maintenance.stop()
        for waiter in waiters:
            waiter.event.set()
        if self._budget is not None:
            self._budget.cancel(self)
        for record in idle:
            self._close(record)

    def drain(self, timeout: float) -> None:
        """Shut down in order: refuse new checkouts and wake every waiter (as `close`), close idle connections with
        COM_QUIT, give connections still lent out up to ``timeout`` seconds to come back (each is closed with COM_QUIT
        as it does), then close what is still held, logging where it was checked out."""
        if self._pid != os.getpid():
            self.reset_after_fork()
        drained = _new_event()
        with self._lock:
            self._drained = drained
            if not self._leases:
                drained.set()
        self.close()
        drained.wait(max(0.0, timeout))
        with self._lock:
            held = [lease for lease in self._leases.values() if not lease._released]
        for lease in held:
            log.warning(
                "pool %r: a connection was still held %.1fs after shutdown began (held %.1fs); closed. Checked out "
                "at:%s", self.name, timeout, self._clock() - lease._since, _format_stack(lease._stack),
            )
            self._release(lease, S.ABORTED_IN_USE)

    def keep_no_idle(self) -> None:
        """Close the idle connections and keep none in this process from now on (a fork's child starts afresh): for
        a process that serves nothing but forks workers that do, such as gunicorn's arbiter with a preloaded app,
        where idle connections would only be inherited and forgotten. Connections in use stay until returned."""
        with self._lock:
            self._keeps_idle = False
            idle, self._idle = list(self._idle), deque()
        for record in idle:
            self._close(record)

    def reset_after_fork(self) -> None:
        """Forget every inherited connection without a word to the server (the parent still uses those sessions)."""
        inherited = list(self._idle) + [lease._record for lease in self._leases.values() if lease._record]
        self._init_process_state()
        for record in inherited:
            self._forget(record)

    # -- internals ----------------------------------------------------------------------------------------------

    def _close(self, record: _Record) -> None:
        """COM_QUIT and drop; its place in the server budget is free."""
        self._driver.close(record.conn)
        if record.token:
            self._budget.give_back(record.token)  # type: ignore[union-attr]

    def _drop(self, record: _Record) -> None:
        """Close the socket for real (`Driver.abort`); its place in the server budget is free."""
        self._driver.abort(record.conn)
        if record.token:
            self._budget.give_back(record.token)  # type: ignore[union-attr]

    def _forget(self, record: _Record) -> None:
        """Drop the handle of a connection of another process (or generation); after a fork its token is of the
        budget's older generation, which give_back ignores."""
        self._driver.forget(record.conn)
        if record.token:
            self._budget.give_back(record.token)  # type: ignore[union-attr]

    def _open_count(self) -> int:
        """Connections open now (idle or lent), for the server budget's figures."""
        return len(self._idle) + sum(1 for lease in list(self._leases.values()) if lease._record is not None)

    def _wait(self, waiter: _Waiter, timeout: float) -> _Record | None:
        try:
            # Set by a grant or by close(); nothing else wakes it, so one wait is the whole bound.
            waiter.event.wait(timeout)
        except BaseException:
            # Interrupted (greenlet killed, KeyboardInterrupt): give the slot on if it was granted meanwhile.
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted:
                self._hand_back(waiter.lease, waiter.record)
            raise
        now = self._clock()
        waited = max(0.0, now - waiter.since)
        with self._lock:
            granted = waiter.granted
            if not granted and waiter in self._waiters:
                self._waiters.remove(waiter)
            waiting, in_use = len(self._waiters), len(self._leases)
            self._counters[S.WAITS] += 1
            self._counters[S.WAIT_MS] += waited * 1000.0
            if granted:
                self._moved_at = now
            elif not self._closed:
                self._counters[S.TIMEOUTS] += 1
                self._turned_away_at = now
        if self.wait_observers:
            _notify(self.wait_observers, waited, granted)
        if granted:
            return waiter.record
        if self._closed:
            raise PoolClosed(f"pool {self.name!r} was closed while waiting for a connection")
        log.warning("pool %r: timeout after %.3fs (size=%d in_use=%d waiting=%d)", self.name, waited,
                    self.config.size, in_use, waiting)
        where = self.config.setting_source
        raise PoolTimeout(
            f"pool {self.name!r} had no free connection after {timeout:g}s: size={self.config.size}, "
            f"in_use={in_use}, waiting={waiting}. " + (self._waiting_on_a_spawner() or
            f"Raise the pool size ({where('size')}) if the server has room for size x processes connections, or "
            f"the wait ({where('timeout')}), or find what holds connections so long"),
            pool=self.name, size=self.config.size, in_use=in_use, waiting=waiting, timeout=timeout,
        )

    def _waiting_on_a_spawner(self) -> str:
        """Advice for a greenlet that timed out while one that spawned it (or its spawner...) holds a connection of
        this pool: most likely a transaction that joins greenlets which query, waiting on its own children."""
        with self._lock:
            holders = {id(lease._owner()) for lease in self._leases.values() if lease._record is not None}
        spawner = getattr(_getcurrent(), "spawning_greenlet", None) if _getcurrent is not None else None
        while spawner is not None:
            greenlet = spawner()
            if greenlet is None:
                break
            if id(greenlet) in holders:
                return (f"The greenlet that spawned this one holds a connection of pool {self.name!r} while it waits: "
                        f"a transaction (ATOMIC_REQUESTS, atomic()) or a connection held across statements keeps its "
                        f"slot while it joins greenlets that query, and each of them needs a slot of its own. Spawn "
                        f"them outside the transaction (transaction.non_atomic_requests, or before atomic()), let the "
                        f"transaction run them itself, or size the pool for both "
                        f"({self.config.setting_source('size')})")
            spawner = getattr(greenlet, "spawning_greenlet", None)
        return ""

    def _release(self, lease: Lease, drop: str | None, vetted: bool = False) -> None:
        """Give `lease`'s connection back: reset it (``drop`` None) or abort it, counted under ``drop``. ``vetted``:
        the driver's `may_release` has just said the connection has nothing to undo (`Driver.reset`). A lease taken
        before a fork has an older generation (os.register_at_fork reset the pool in the child)."""
        with self._lock:
            if lease._released:
                return
            lease._released = True
        record, lease._record = lease._record, None
        handle, lease._handle = lease._handle, None
        now = self._clock()
        held = now - lease._since
        self._counters[S.USAGE_MS] += held * 1000.0
        if self.use_observers:
            _notify(self.use_observers, held)
        if record is not None and handle is not None:
            self._driver.revoke(record.conn, None if handle is record.conn else handle)
        if lease._generation != self._generation:
            # Taken before a fork (or before reset_after_fork): the session belongs to the parent.
            if record is not None:
                self._forget(record)
            return
        kept: _Record | None = None
        try:
            if record is not None:
                if drop is None:
                    kept = self._check_in(record, now, vetted)
                else:
                    self._counters[drop] += 1
                    kept = self._abort(record)
        finally:
            self._hand_back(lease, kept)

    def _abort(self, aborted: _Record) -> _Record | None:
        """Close `aborted`'s connection for real. If a command was still under way on it (a greenlet killed
        mid-query, a connection used elsewhere), the server would go on running it, and keep the session, for nobody:
        end that session from the same slot, so the server's count is back within the cap after one round trip.
        Returns the connection that did it, to be handed on in the slot, or None."""
        conn = aborted.conn
        in_use = self._driver.in_flight(conn)
        if not in_use or self._closed:
            self._drop(aborted)
            return None
        self._driver.abort(conn)
        # Until it is ended the session still counts on the server: its place in the server budget stays taken, and
        # is the one a new connection to end it from opens on.
        spare = aborted.token
        with self._lock:
            idle = self._idle.pop() if self._idle else None
        try:
            record = self._first_healthy(idle)
            if record is None:
                spare, record = 0, self._connect(aborted.token)
        except Exception as exc:  # noqa: BLE001 - the server may be gone too; the session then ends with it
            log.info("pool %r: no connection to end an abandoned session with (%s)", self.name, _describe_error(exc))
            self._give_back(spare)
            return None
        try:
            self._driver.end_session(record.conn, conn)
        except Exception as exc:  # noqa: BLE001
            log.info("pool %r: could not end an abandoned session (%s)", self.name, _describe_error(exc))
            if self._driver.is_disconnect(exc):
                self._drop(record)
                self._give_back(spare)
                return None
        except BaseException:
            self._drop(record)  # it holds no slot of its own
            self._give_back(spare)
            raise
        else:
            self._counters[S.SESSIONS_ENDED] += 1
        self._give_back(spare)
        return record

    def _give_back(self, token: int) -> None:
        if token:
            self._budget.give_back(token)  # type: ignore[union-attr]

    def _check_in(self, record: _Record, now: float, vetted: bool = False) -> _Record | None:
        """Make a returned connection fit for the next caller, or drop it (then None)."""
        conn = record.conn
        if self._driver.in_flight(conn):
            self._counters[S.ABORTED_IN_USE] += 1
            log.warning(
                "pool %r: closed a connection that was given back while a command was still under way on it (another "
                "greenlet or thread was using it, or its command was interrupted); its server session ends", self.name,
            )
            return self._abort(record)
        try:
            cleared = self._driver.reset(conn, self.config.reset, vetted)
        except BaseException as exc:
            if self._driver.is_disconnect(exc):
                self._suspect_before = self._clock()
            self._counters[S.DISCARDED] += 1
            log.info("pool %r: dropped a connection that could not be reset (%s)", self.name, type(exc).__name__)
            self._drop(record)
            if not isinstance(exc, Exception):
                raise
            return None
        self._counters[S.RESETS] += 1
        if cleared:
            record.info.clear()
        record.last_used = now
        if now >= record.expires:
            self._counters[S.RECYCLED] += 1
            self._close(record)
            return None
        return record

    def _hand_back(self, lease: Lease | None, record: _Record | None) -> None:
        """Free ``lease``'s slot (None: a connection that holds no slot). With a server budget, a caller queued for
        room on the server gets the connection first (`ServerBudget`); then the slot goes to this pool's oldest
        waiter (with the connection, if it is still here), else both go back to the pool."""
        budget = self._budget
        handover = None
        if budget is None:
            waiter, to_close = self._free_slot(lease, record)
        else:
            with budget._lock:  # held across the idle append too, so that nobody can queue past an idle connection
                if record is not None and not self._closed and (lease is None or
                                                                 lease._generation == self._generation):
                    handover = budget._grant_locked(self, record)
                    if handover is not None:
                        record = None
                waiter, to_close = self._free_slot(lease, record)
        if handover is not None:
            granted, handed = handover
            if handed is not None:
                self._counters[S.HANDED_OVER] += 1
                self._driver.close(handed.conn)  # its token is the waiter's now
            granted.event.set()
        if waiter is not None:
            waiter.event.set()
        if to_close is not None:
            self._close(to_close)
        if self._drained is not None and not self._leases:
            self._drained.set()

    def _free_slot(self, lease: Lease | None, record: _Record | None) -> tuple[_Waiter | None, _Record | None]:
        """Under this pool's lock: the slot to the oldest waiter (with `record`), else `record` to the idle ones.
        Returns the waiter to wake and the connection to close."""
        with self._lock:
            if lease is not None and self._leases.pop(id(lease), None) is None:
                return None, record  # its slot was already freed (reset_after_fork)
            if lease is not None and self._waiters and not self._closed:
                waiter = self._waiters.popleft()
                waiter.granted = True
                waiter.record = record
                self._leases[id(waiter.lease)] = waiter.lease
                return waiter, None
            if record is not None and not self._closed and self._keeps_idle:
                self._idle.append(record)
                return None, None
            return None, record

    def _first_healthy(self, record: _Record | None) -> _Record | None:
        """`record` if it is fit for use, else the next idle one that is (dead ones are dropped), else None."""
        while record is not None:
            if self._healthy(record):
                return record
            with self._lock:
                record = self._idle.pop() if self._idle else None
        return None

    def _make_ready(self, record: _Record | None, deadline: float, timeout: float) -> _Record:
        """Turn an idle record (or nothing) into a healthy connection, replacing dead ones inside the same slot; a new
        connection needs room in the server budget, if there is one, waited for until `deadline`."""
        if record is not None:
            if self._healthy(record):
                return record  # the common case, without the loop's calls
            with self._lock:
                record = self._idle.pop() if self._idle else None
        while True:
            ready = self._first_healthy(record)
            if ready is not None:
                return ready
            if self._budget is None:
                return self._connect(0)
            room = self._budget.take(self, deadline, timeout)
            if isinstance(room, int):
                return self._connect(room)
            record = room

    def _healthy(self, record: _Record) -> bool:
        now = self._clock()
        conn = record.conn
        if now >= record.expires:
            self._counters[S.RECYCLED] += 1
            self._close(record)
            return False
        if not self._driver.is_alive(conn):
            # The server closed it (wait_timeout, KILL, restart): others idle since before now are suspect too.
            self._suspect_before = now
            self._counters[S.DISCARDED] += 1
            self._drop(record)
            return False
        if now - record.last_used > self.config.ping_after or record.last_used < self._suspect_before:
            self._counters[S.PINGS] += 1
            try:
                self._driver.ping(conn)
            except Exception:  # noqa: BLE001 - any failure means this connection is not to be used
                self._suspect_before = now
                self._counters[S.DISCARDED] += 1
                self._drop(record)
                return False
        return True

    def _connect(self, token: int, probe_claimed: bool = False) -> _Record:
        """A new connection, opened on `token` (its place in the server budget, 0 without one): given back if none
        opens."""
        try:
            return self._open_connection(token, probe_claimed)
        except BaseException:
            if token:
                self._budget.give_back(token)  # type: ignore[union-attr]
            raise

    def _open_connection(self, token: int, probe_claimed: bool) -> _Record:
        now = self._clock()
        outage = self._outage
        with self._lock:
            refused = not probe_claimed and outage.holds_off(now)
            if outage.failures and not refused:
                outage.probing = True  # this caller is the one probe; everyone else fails fast meanwhile
        if refused:
            self._counters[S.UNAVAILABLE] += 1
            if self.refusal_observers:
                _notify(self.refusal_observers, "unavailable")
            wait = max(0.0, outage.retry_at - now)
            raise DatabaseUnavailable(
                f"pool {self.name!r}: the database at {self.target} is not answering ({outage.last_error}); "
                f"{outage.failures} attempts failed in a row, the next one in {wait:.1f}s",
                pool=self.name, retry_after=max(wait, _BACKOFF.first),
            )
        started = now
        try:
            conn = self._driver.connect()
        except BaseException as exc:
            self._counters[S.CONNECT_ERRORS] += 1
            failed_at = self._clock()
            with self._lock:
                outage.probing = False
                if isinstance(exc, Exception):
                    outage.failed_with(failed_at, _describe_error(exc))
            if self.connect_observers:
                _notify(self.connect_observers, max(0.0, failed_at - started), exc)
            if not isinstance(exc, Exception):
                raise
            self._report_connect_error(exc)
            if self.refusal_observers:
                _notify(self.refusal_observers, "unavailable")
            raise DatabaseUnavailable(
                f"pool {self.name!r}: cannot open a connection to {self.target}: {outage.last_error}",
                pool=self.name, retry_after=max(0.0, outage.retry_at - self._clock()),
            ) from exc
        with self._lock:
            outage.answered()
        if self._lifetime is None:
            # Below the server's wait_timeout, so the pool recycles a connection before the server kills it.
            wait_timeout = self._driver.server_wait_timeout(conn) or 28800.0
            self._lifetime = max(1.0, min(3600.0, wait_timeout / 2.0))
        now = self._clock()
        self._counters[S.CONNECTS] += 1
        self._counters[S.CONNECT_MS] += max(0.0, now - started) * 1000.0
        if self.connect_observers:
            _notify(self.connect_observers, max(0.0, now - started), None)
        if outage.unreported:
            log.warning("pool %r: connecting to %s works again (%d more failures since the last report)", self.name,
                        self.target, outage.unreported)
            outage.unreported = 0
        outage.next_report = float("-inf")
        return _Record(conn, now, self._lifetime, token)

    def _report_connect_error(self, exc: Exception) -> None:
        # One line per failed checkout would flood the log while the database is down; none would hide it.
        now = self._clock()
        outage = self._outage
        if now < outage.next_report:
            outage.unreported += 1
            return
        more, outage.unreported = outage.unreported, 0
        outage.next_report = now + _CONNECT_ERROR_LOG_INTERVAL
        log.error("pool %r: cannot open a connection to %s: %s%s", self.name, self.target, _describe_error(exc),
                  f" ({more} more failures since the last report)" if more else "")

    def _warn_leaks(self, now: float) -> None:
        if not self.config.leak_threshold:
            return
        leaks: list[Lease] = []
        with self._lock:
            for lease in self._leases.values():
                if not lease._leak_warned and lease._record is not None and \
                        now - lease._since > self.config.leak_threshold:
                    lease._leak_warned = True
                    leaks.append(lease)
        for lease in leaks:
            self._counters[S.LEAKS] += 1
            where = (f"Checked out at:{_format_stack(lease._stack)}" if lease._stack
                     else f"Its holder is now at:{_format_stack(_where_now(lease._owner))}")
            log.warning("pool %r: a connection has been held for %.1fs (leak_threshold=%gs). %s", self.name,
                        now - lease._since, self.config.leak_threshold, where)

    def _reclaim_dead_owners(self) -> None:
        with self._lock:
            dead = [
                lease for lease in self._leases.values()
                if lease._record is not None and not lease._released and not _owner_alive(lease._owner)
            ]
        for lease in dead:
            log.warning(
                "pool %r: reclaimed a connection whose owner died without returning it (held %.1fs); its server "
                "session is closed, which rolls back its transaction and frees its locks. Checked out at:%s",
                self.name, self._clock() - lease._since, _format_stack(lease._stack),
            )
            # Aborted, not reused: the owner may have died in the middle of a command, or handed the connection to
            # someone still using it.
            self._release(lease, S.RECLAIMED)

    def _expire_idle(self, now: float) -> None:
        to_close: list[tuple[_Record, str]] = []
        with self._lock:
            keep: deque[_Record] = deque()
            # Oldest-returned first: those are the ones past idle_timeout.
            for index, record in enumerate(self._idle):
                surplus = len(self._idle) - index > self.config.min_idle
                if now >= record.expires:
                    to_close.append((record, S.RECYCLED))
                elif surplus and now - record.last_used > self.config.idle_timeout:
                    to_close.append((record, S.IDLE_CLOSED))
                else:
                    keep.append(record)
            self._idle = keep
            candidates = list(keep)
        for record, reason in to_close:
            self._counters[reason] += 1
            self._close(record)
        # Idle connections the server closed (a restart, a kill, wait_timeout) are dropped now rather than at the next
        # checkout: the min_idle refill then finds out whether the database answers, and readiness says so, with no
        # traffic needed. A zero-timeout poll per idle connection, outside the lock; one lent out meanwhile is left.
        dead = [record for record in candidates if not self._driver.is_alive(record.conn)]
        if dead:
            with self._lock:
                dead = [record for record in dead if record in self._idle]
                for record in dead:
                    self._idle.remove(record)
            self._suspect_before = now
            for record in dead:
                self._counters[S.DISCARDED] += 1
                self._drop(record)

    def _fill_min_idle(self, *, quiet: bool = True) -> int:
        """Open connections, one at a time, until `min_idle` are idle, while slots are free and nobody waits. Returns
        how many were opened; a failed connect ends the round (``quiet``) or raises."""
        opened = 0
        while True:
            if quiet and self._outage.holds_off(self._clock()):
                return opened  # the database is not answering: wait for the back-off, like everyone else
            placeholder = Lease(self, weakref.ref(_current_owner()), self._clock(), [], self._generation)
            with self._lock:
                if (self._closed or not self._keeps_idle or len(self._idle) >= self.config.min_idle or self._waiters
                        or len(self._leases) >= self.config.size):
                    return opened
                self._leases[id(placeholder)] = placeholder
            record: _Record | None = None
            try:
                token = self._budget.try_take() if self._budget is not None else 0
                if self._budget is not None and not token:
                    return opened  # the server's budget is in use: idle connections would only be taken back
                record = self._connect(token)
                opened += 1
            except Exception:  # reported by _connect; the next round tries again
                if not quiet:
                    raise
                return opened
            finally:
                self._hand_back(placeholder, record)

    def warm_up(self) -> int:
        """Open `min_idle` connections now (at worker start, say) instead of at the first requests, and start the
        maintenance loop. Raises DatabaseUnavailable if the database does not answer; returns how many were opened."""
        if self._pid != os.getpid():
            self.reset_after_fork()
        if self._maintenance is None and self._maintenance_interval and not self._closed:
            self._maintenance = _Maintenance(self, self._maintenance_interval)
        return self._fill_min_idle(quiet=False)


def _notify(observers: list[Callable[..., None]], *args: Any) -> None:
    # An integration's bug must not cost the pool a slot: every call site is in the middle of its bookkeeping.
    for observe in observers:
        try:
            observe(*args)
        except Exception:
            log.exception("pool observer %r failed", observe)


def _describe_error(exc: BaseException) -> str:
    args = exc.args
    if len(args) == 2 and isinstance(args[0], int):
        return f"({args[0]}) {args[1]}"
    return f"{type(exc).__name__}: {exc}"


_all_pools: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()
_pool_subscribers: list[Callable[[ConnectionPool], None]] = []


def subscribe_pools(subscriber: Callable[[ConnectionPool], None]) -> None:
    """Call `subscriber(pool)` now for every pool of this process, and for every pool built from now on: how an
    integration attaches its observers to pools it has not seen yet (Django builds them at the first query)."""
    _pool_subscribers.append(subscriber)
    for pool in list(_all_pools):
        subscriber(pool)


def unsubscribe_pools(subscriber: Callable[[ConnectionPool], None]) -> None:
    """Stop calling `subscriber` for new pools (the observers it attached stay where they are)."""
    if subscriber in _pool_subscribers:
        _pool_subscribers.remove(subscriber)


class _Process:
    """This process's id, read once and again after each fork: os.getpid() is a system call (half a microsecond
    here), and every checkout asks."""

    pid = os.getpid()


_process = _Process()


def reset_all_after_fork() -> None:
    """Drop every pool's inherited connections in a new child process (no COM_QUIT)."""
    _process.pid = os.getpid()
    for budget in server_budgets():
        budget._check_process()  # first: the pools' inherited connections then hold tokens of the parent's count
    for pool in list(_all_pools):
        pool.reset_after_fork()


def close_all() -> None:
    for pool in list(_all_pools):
        pool.close()


def drain_all(timeout: float) -> None:
    """`drain` every pool of this process, sharing one deadline."""
    deadline = time.monotonic() + timeout
    for pool in list(_all_pools):
        pool.drain(max(0.0, deadline - time.monotonic()))


def all_pools() -> list[ConnectionPool]:
    return list(_all_pools)


# Forks no hook sees (multiprocessing, Celery's prefork) are covered as well as gunicorn's.
os.register_at_fork(after_in_child=reset_all_after_fork)
