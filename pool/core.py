"""The bounded connection pool.

State machine, in one place:
- A *slot* is the right to hold one connection. ``len(self._leases)`` slots are taken; never more than ``size``.
  A caller takes a slot before it connects, so the cap holds under any interleaving.
- A returned connection (or the bare slot, if the connection was dropped) goes straight to the oldest waiter;
  only when nobody waits does the slot become free. Waiters are therefore served in arrival order and a newcomer
  can never overtake them.
- The internal lock guards only in-memory bookkeeping: connect, ping, reset and close run outside it.
"""

from __future__ import annotations

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
from typing import Any

from . import driver
from . import stats as S
from .errors import PoolClosed, PoolTimeout, TooManyWaiters
from .settings import PoolConfig

log = logging.getLogger("pool")

try:
    from greenlet import getcurrent as _getcurrent
except ImportError:  # pragma: no cover - greenlet comes with gevent, which the kit requires
    _getcurrent = None

# Deep enough to get past the ORM's own frames (a Django query is ~15 deep at checkout) to the caller's code.
_STACK_DEPTH = 30
_HOUSEKEEPING_INTERVAL = 1.0
_LIFETIME_JITTER = 0.1


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def _new_event() -> Any:
    # Chosen at wait time, not at import: a pool built before monkey-patching must still wait cooperatively after it.
    if _gevent_patched():
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
    frame = sys._getframe(2)
    frames: _Stack = []
    append = frames.append
    for _ in range(_STACK_DEPTH):
        if frame is None:
            break
        append((frame.f_code, frame.f_lineno))
        frame = frame.f_back
    return frames


_POOL_DIR = os.path.dirname(os.path.abspath(__file__))


def _format_stack(stack: _Stack) -> str:
    return "".join(f'\n    File "{c.co_filename}", line {n}, in {c.co_name}'
                   for c, n in reversed(stack) if not c.co_filename.startswith(_POOL_DIR))


class _Record:
    """One physical connection and what the pool knows of it."""

    __slots__ = ("conn", "poller", "created", "expires", "last_used", "info")

    def __init__(self, conn: driver.Connection, now: float, lifetime: float | None) -> None:
        self.conn = conn
        self.poller = driver.readiness_poller(conn)
        self.created = now
        self.expires = now + lifetime * (1.0 - random.random() * _LIFETIME_JITTER) if lifetime else float("inf")
        self.last_used = now
        # Scratch space for integrations, for the life of this server session: emptied by a full reset.
        self.info: dict[str, Any] = {}


class Lease:
    """A caller's hold on one slot and (once ready) one connection. Give it back with `ConnectionPool.release`."""

    __slots__ = ("_record", "_owner", "_since", "_stack", "_released", "_leak_warned", "_generation", "__weakref__")

    def __init__(self, owner: weakref.ref[Any], since: float, stack: _Stack, generation: int) -> None:
        self._record: _Record | None = None
        self._owner = owner
        self._since = since
        self._stack = stack
        self._released = False
        self._leak_warned = False
        self._generation = generation

    @property
    def connection(self) -> driver.Connection:
        if self._record is None:
            raise PoolClosed("this lease was released; acquire a new connection")
        return self._record.conn

    @property
    def info(self) -> dict[str, Any]:
        """Per-session scratch space (survives checkouts of the same connection, cleared by a full reset)."""
        if self._record is None:
            raise PoolClosed("this lease was released; acquire a new connection")
        return self._record.info


class _Waiter:
    __slots__ = ("event", "since", "lease", "granted", "record")

    def __init__(self, lease: Lease, since: float) -> None:
        self.event = _new_event()
        self.since = since
        self.lease = lease
        self.granted = False
        self.record: _Record | None = None


class ConnectionPool:
    """A hard-capped pool of PyMySQL connections for one process, cooperative under gevent and safe with threads.

    ``connect_kwargs`` are PyMySQL's `connect()` arguments. ``session_init`` are statements sent after each connect
    and after each full reset (an integration's session set-up, e.g. the isolation level).
    """

    def __init__(
        self,
        connect_kwargs: Mapping[str, Any],
        config: PoolConfig | None = None,
        *,
        name: str = "default",
        session_init: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.config = config or PoolConfig()
        self._connector = driver.Connector(
            connect_kwargs,
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
            write_timeout=self.config.write_timeout,
            session_init=session_init,
        )
        self._lifetime: float | None = self.config.max_lifetime
        self._generation = 0
        # Called with (seconds waited, whether a connection was granted) after every wait: metrics hook in here.
        self.wait_observers: list[Callable[[float, bool], None]] = []
        self._init_process_state()
        _all_pools.add(self)
        log.info("pool %r created for %s: %s", name, self._connector.target, self._describe_config())

    def __repr__(self) -> str:
        return (
            f"<ConnectionPool {self.name!r} {self._connector.target} size={self.config.size} "
            f"in_use={len(self._leases)} idle={len(self._idle)} waiting={len(self._waiters)}>"
        )

    def _describe_config(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.as_dict().items())

    def _init_process_state(self) -> None:
        # Everything here belongs to one process: rebuilt after fork, never shared with a parent.
        self._pid = os.getpid()
        self._generation += 1
        self._lock = threading.Lock()
        self._idle: deque[_Record] = deque()  # used as a stack: the most recently returned goes out first
        self._leases: dict[int, Lease] = {}
        self._waiters: deque[_Waiter] = deque()
        self._closed = False
        self._suspect_before = 0.0
        self._next_housekeeping = 0.0
        self._next_reclaim = 0.0
        self._counters = dict.fromkeys(S.COUNTERS, 0)

    # -- public API ---------------------------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """Where the pool connects, without credentials."""
        return self._connector.target

    def acquire(self, timeout: float | None = None) -> Lease:
        """Take a slot and a healthy connection, waiting up to ``timeout`` (default: the pool's) for a free slot."""
        if self._pid != os.getpid():
            self.reset_after_fork()
        now = time.monotonic()
        if now >= self._next_housekeeping:
            self._housekeep(now)
        lease = Lease(weakref.ref(_current_owner()), now, _caller_stack(), self._generation)
        record: _Record | None = None
        waiter: _Waiter | None = None
        rejected_at: tuple[int, int] | None = None
        with self._lock:
            if self._closed:
                raise PoolClosed(f"pool {self.name!r} is closed (the worker is shutting down)")
            if len(self._leases) < self.config.size and not self._waiters:
                self._leases[id(lease)] = lease
                record = self._idle.pop() if self._idle else None
            elif self.config.max_waiting and len(self._waiters) >= self.config.max_waiting:
                rejected_at = (len(self._leases), len(self._waiters))
                self._counters[S.REJECTED] += 1
            else:
                waiter = _Waiter(lease, now)
                self._waiters.append(waiter)
        if rejected_at is not None:
            raise TooManyWaiters(
                f"pool {self.name!r} is full (size={self.config.size}, in_use={rejected_at[0]}) and {rejected_at[1]} "
                f"callers already wait, the max_waiting limit (POOL_MAX_WAITING); raise it, or raise the pool size "
                f"(POOL_SIZE) if the server has room"
            )
        if waiter is not None:
            record = self._wait(waiter, self.config.timeout if timeout is None else timeout)
            lease._since = time.monotonic()  # held from now: usage and leak time do not count the queueing
        try:
            lease._record = self._make_ready(record)
        except BaseException:
            self._hand_back(lease, None)
            raise
        self._counters[S.CHECKOUTS] += 1
        return lease

    def release(self, lease: Lease, *, discard: bool = False) -> None:
        """Give a connection back: it is reset for the next user, or dropped if broken (or if ``discard``)."""
        with self._lock:
            if lease._released:
                return
            lease._released = True
        record, lease._record = lease._record, None
        self._counters[S.USAGE_MS] += (time.monotonic() - lease._since) * 1000.0
        if lease._generation != self._generation:
            # Taken before a fork (or before reset_after_fork): the session belongs to the parent.
            if record is not None:
                driver.discard(record.conn)
            return
        if record is not None and not discard:
            record = self._reset(record)
        elif record is not None:
            self._drop(record, S.DISCARDED)
            record = None
        self._hand_back(lease, record)

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[driver.Connection]:
        """Borrow a connection for a block: ``with pool.connection() as conn: ...``. Transactions left open are
        rolled back when the block ends; a connection that saw a disconnect error is dropped."""
        lease = self.acquire(timeout)
        try:
            yield lease.connection
        except BaseException as exc:
            self.release(lease, discard=driver.is_disconnect(exc))
            raise
        self.release(lease)

    def stats(self) -> dict[str, float | int]:
        now = time.monotonic()
        with self._lock:
            in_use, idle, waiting = len(self._leases), len(self._idle), len(self._waiters)
            oldest = self._waiters[0].since if self._waiters else now
            counters = dict(self._counters)
        return {
            S.SIZE: self.config.size,
            S.IN_USE: in_use,
            S.IDLE: idle,
            S.WAITING: waiting,
            S.MAXWAIT_MS: round((now - oldest) * 1000.0, 3),
            S.PID: os.getpid(),
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in counters.items()},
        }

    def close(self) -> None:
        """Close idle connections, refuse new checkouts and wake every waiter. Connections lent out are closed when
        they come back. Safe to call more than once, and from any process (a foreign process only forgets)."""
        if self._pid != os.getpid():
            self.reset_after_fork()
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
            waiters, self._waiters = list(self._waiters), deque()
        for waiter in waiters:
            waiter.event.set()
        for record in idle:
            driver.close(record.conn)

    def reset_after_fork(self) -> None:
        """Forget every inherited connection without sending COM_QUIT (the parent still uses those sessions)."""
        inherited = list(self._idle) + [lease._record for lease in self._leases.values() if lease._record]
        self._init_process_state()
        for record in inherited:
            driver.discard(record.conn)

    # -- internals ----------------------------------------------------------------------------------------------

    def _wait(self, waiter: _Waiter, timeout: float) -> _Record | None:
        deadline = waiter.since + timeout
        try:
            while True:
                # A greenlet that died holding a connection would otherwise keep its slot until the worker restarts.
                # Scanned at most once a second: on a busy pool nearly every caller waits, and owners rarely die.
                if time.monotonic() >= self._next_reclaim:
                    self._reclaim_dead_owners()
                remaining = deadline - time.monotonic()
                if remaining <= 0 or waiter.event.wait(min(remaining, _HOUSEKEEPING_INTERVAL)) or waiter.granted:
                    break
                if self._closed:
                    break
        except BaseException:
            # Interrupted (greenlet killed, KeyboardInterrupt): give the slot on if it was granted meanwhile.
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted:
                self._hand_back(waiter.lease, waiter.record)
            raise
        waited = time.monotonic() - waiter.since
        with self._lock:
            granted = waiter.granted
            if not granted and waiter in self._waiters:
                self._waiters.remove(waiter)
            waiting, in_use = len(self._waiters), len(self._leases)
            self._counters[S.WAITS] += 1
            self._counters[S.WAIT_MS] += waited * 1000.0
            if not granted and not self._closed:
                self._counters[S.TIMEOUTS] += 1
        for observe in self.wait_observers:
            observe(waited, granted)
        if granted:
            return waiter.record
        if self._closed:
            raise PoolClosed(f"pool {self.name!r} was closed while waiting for a connection")
        log.warning("pool %r: timeout after %.3fs (size=%d in_use=%d waiting=%d)", self.name, waited,
                    self.config.size, in_use, waiting)
        raise PoolTimeout(
            f"pool {self.name!r} had no free connection after {timeout:g}s: size={self.config.size}, "
            f"in_use={in_use}, waiting={waiting}. Raise the pool size (POOL_SIZE) if the server has room for "
            f"size x workers connections, or the wait (POOL_TIMEOUT), or find what holds connections so long"
        )

    def _hand_back(self, lease: Lease, record: _Record | None) -> None:
        """Free ``lease``'s slot: to the oldest waiter if there is one (with the connection, if any), else to the pool."""
        waiter = None
        to_close = None
        with self._lock:
            if self._leases.pop(id(lease), None) is None:
                to_close = record  # its slot was already freed (reset_after_fork, reclaim)
            elif self._waiters and not self._closed:
                waiter = self._waiters.popleft()
                waiter.granted = True
                waiter.record = record
                self._leases[id(waiter.lease)] = waiter.lease
            elif record is not None and not self._closed:
                self._idle.append(record)
            else:
                to_close = record
        if waiter is not None:
            waiter.event.set()
        if to_close is not None:
            driver.close(to_close.conn)

    def _make_ready(self, record: _Record | None) -> _Record:
        """Turn an idle record (or nothing) into a healthy connection, replacing dead ones inside the same slot."""
        while record is not None:
            if self._healthy(record):
                return record
            with self._lock:
                record = self._idle.pop() if self._idle else None
        return self._connect()

    def _healthy(self, record: _Record) -> bool:
        now = time.monotonic()
        if now >= record.expires:
            self._drop(record, S.RECYCLED)
            return False
        conn = record.conn
        if driver.socket_is_dead(conn, record.poller):
            # The server closed it (wait_timeout, KILL, restart): others idle since before now are suspect too.
            self._suspect_before = now
            self._drop(record, S.DISCARDED)
            return False
        if now - record.last_used > self.config.ping_after or record.last_used < self._suspect_before:
            self._counters[S.PINGS] += 1
            try:
                driver.ping(conn)
            except Exception:  # noqa: BLE001 - any failure means this connection is not to be used
                self._suspect_before = now
                self._drop(record, S.DISCARDED)
                return False
        return True

    def _connect(self) -> _Record:
        started = time.monotonic()
        try:
            conn = self._connector.connect()
        except BaseException:
            self._counters[S.CONNECT_ERRORS] += 1
            raise
        if self._lifetime is None:
            # Below the server's wait_timeout, so the pool recycles a connection before the server kills it.
            wait_timeout = driver.server_wait_timeout(conn) or 28800.0
            self._lifetime = max(1.0, min(3600.0, wait_timeout / 2.0))
        now = time.monotonic()
        self._counters[S.CONNECTS] += 1
        self._counters[S.CONNECT_MS] += (now - started) * 1000.0
        return _Record(conn, now, self._lifetime)

    def _reset(self, record: _Record) -> _Record | None:
        conn = record.conn
        if not driver.is_open(conn) or driver.socket_is_dead(conn, record.poller):
            self._suspect_before = time.monotonic()
            self._drop(record, S.DISCARDED)
            return None
        try:
            self._connector.reset(conn, self.config.reset)
        except BaseException as exc:
            if driver.is_disconnect(exc):
                self._suspect_before = time.monotonic()
            self._drop(record, S.DISCARDED)
            if not isinstance(exc, Exception):
                raise
            return None
        self._counters[S.RESETS] += 1
        if self.config.reset == "full":
            record.info.clear()
        now = time.monotonic()
        record.last_used = now
        if now >= record.expires:
            self._drop(record, S.RECYCLED)
            return None
        return record

    def _drop(self, record: _Record, reason: str) -> None:
        self._counters[reason] += 1
        if reason == S.DISCARDED:
            log.info("pool %r: discarded a broken connection (closed by the server, or failed a check or reset)",
                     self.name)
        else:
            log.debug("pool %r: closed a connection (%s)", self.name, reason)
        if reason == S.DISCARDED:
            driver.discard(record.conn)
        else:
            driver.close(record.conn)

    def _reclaim_dead_owners(self) -> None:
        self._next_reclaim = time.monotonic() + _HOUSEKEEPING_INTERVAL
        with self._lock:
            dead = [
                lease for lease in self._leases.values()
                if lease._record is not None and not lease._released and not _owner_alive(lease._owner)
            ]
        for lease in dead:
            self._counters[S.RECLAIMED] += 1
            log.warning(
                "pool %r: reclaimed a connection whose owner died without returning it (held %.1fs); its "
                "transaction is rolled back by the server. Checked out at:%s",
                self.name, time.monotonic() - lease._since, _format_stack(lease._stack),
            )
            # Dropped, not reused: the owner may have died in the middle of a command.
            self.release(lease, discard=True)

    def _housekeep(self, now: float) -> None:
        self._next_housekeeping = now + _HOUSEKEEPING_INTERVAL
        leaks: list[Lease] = []
        to_close: list[tuple[_Record, str]] = []
        with self._lock:
            if self.config.leak_threshold:
                for lease in self._leases.values():
                    if not lease._leak_warned and now - lease._since > self.config.leak_threshold:
                        lease._leak_warned = True
                        leaks.append(lease)
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
        for record, reason in to_close:
            self._drop(record, reason)
        for lease in leaks:
            self._counters[S.LEAKS] += 1
            log.warning(
                "pool %r: a connection has been held for %.1fs (leak_threshold=%gs). Checked out at:%s",
                self.name, now - lease._since, self.config.leak_threshold, _format_stack(lease._stack),
            )
        self._reclaim_dead_owners()


_all_pools: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()


def reset_all_after_fork() -> None:
    """Drop every pool's inherited connections in a new child process (no COM_QUIT)."""
    for pool in list(_all_pools):
        pool.reset_after_fork()


def close_all() -> None:
    for pool in list(_all_pools):
        pool.close()


def all_pools() -> list[ConnectionPool]:
    return list(_all_pools)


# Forks no hook sees (multiprocessing, Celery's prefork) are covered as well as gunicorn's.
os.register_at_fork(after_in_child=reset_all_after_fork)
