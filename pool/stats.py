"""The pool's statistics, declared once: `ConnectionPool.stats()`, the `/-/pool` view, the Prometheus export and the
docs all read this table, so a name cannot mean one thing in one place and another elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Gauges: a snapshot of now.
SIZE = "size"
IN_USE = "in_use"
IDLE = "idle"
WAITING = "waiting"
MAXWAIT_MS = "maxwait_ms"
PID = "pid"

# Counters: since the pool was built in this process.
CHECKOUTS = "checkouts"
CONNECTS = "connects"
CONNECT_ERRORS = "connect_errors"
UNAVAILABLE = "unavailable"
CONNECT_MS = "connect_ms"
WAIT_MS = "wait_ms"
WAITS = "waits"
TIMEOUTS = "timeouts"
REJECTED = "rejected"
PINGS = "pings"
DISCARDED = "discarded"
ABORTED_IN_USE = "aborted_in_use"
SESSIONS_ENDED = "sessions_ended"
RECYCLED = "recycled"
IDLE_CLOSED = "idle_closed"
RECLAIMED = "reclaimed"
LEAKS = "leaks"
RESETS = "resets"
USAGE_MS = "usage_ms"


@dataclass(frozen=True)
class Stat:
    name: str
    kind: Literal["gauge", "counter", "info"]
    help: str


TABLE: tuple[Stat, ...] = (
    Stat(SIZE, "gauge", "the cap: most connections this process may hold"),
    Stat(IN_USE, "gauge", "slots taken by callers (connections lent out, or being opened for a caller)"),
    Stat(IDLE, "gauge", "open connections waiting in the pool"),
    Stat(WAITING, "gauge", "callers queued for a slot"),
    Stat(MAXWAIT_MS, "gauge", "how long the oldest waiter has waited so far, in milliseconds"),
    Stat(PID, "info", "the process the pool belongs to"),
    Stat(CHECKOUTS, "counter", "connections lent"),
    Stat(CONNECTS, "counter", "connections opened"),
    Stat(CONNECT_ERRORS, "counter", "failed attempts to open a connection"),
    Stat(UNAVAILABLE, "counter", "callers refused at once, without a connection attempt, while the database was not "
                                 "answering (DatabaseUnavailable)"),
    Stat(CONNECT_MS, "counter", "time spent opening connections, in milliseconds"),
    Stat(WAITS, "counter", "checkouts that had to queue for a slot"),
    Stat(WAIT_MS, "counter", "time callers spent queued, in milliseconds"),
    Stat(TIMEOUTS, "counter", "callers that gave up waiting (PoolTimeout)"),
    Stat(REJECTED, "counter", "callers refused at once because max_waiting callers already waited (TooManyWaiters)"),
    Stat(PINGS, "counter", "pings before lending a connection that idled past ping_after"),
    Stat(DISCARDED, "counter", "broken connections dropped: closed by the server, failed a check or a reset, or saw a "
                               "disconnect error"),
    Stat(ABORTED_IN_USE, "counter", "connections closed while still in use: a command was under way on them at "
                                    "return (used by another greenlet or thread, or interrupted mid-command), or they "
                                    "were still held when the pool was drained at exit"),
    Stat(SESSIONS_ENDED, "counter", "server sessions of aborted connections ended with KILL because a command was "
                                    "still running on them (so the server stops it and its count returns to the cap)"),
    Stat(RECYCLED, "counter", "connections closed at max_lifetime"),
    Stat(IDLE_CLOSED, "counter", "connections closed after idle_timeout beyond min_idle"),
    Stat(RECLAIMED, "counter", "connections taken back from an owner (greenlet or thread) that died holding them"),
    Stat(LEAKS, "counter", "connections held longer than leak_threshold (warned once each)"),
    Stat(RESETS, "counter", "connections made fit for the next caller on return"),
    Stat(USAGE_MS, "counter", "time connections were held by callers, checkout to return, in milliseconds"),
)

BY_NAME: dict[str, Stat] = {s.name: s for s in TABLE}
GAUGES: tuple[str, ...] = tuple(s.name for s in TABLE if s.kind == "gauge")
COUNTERS: tuple[str, ...] = tuple(s.name for s in TABLE if s.kind == "counter")


def duration_buckets(limit: float) -> tuple[float, ...]:
    """Histogram bounds in seconds for waits and uses (Prometheus and OpenTelemetry alike): 1-2.5-5 steps from 1 ms up
    to `limit` (the pool's timeout: a wait that long ends in PoolTimeout), `limit` itself the last one, so that a
    millisecond wait and a wait near the timeout each land in a bucket of their own."""
    steps = [round(m * 10.0**e, 6) for e in range(-3, 4) for m in (1.0, 2.5, 5.0)]
    return (*(b for b in steps if b < limit), float(limit))


def process_buckets() -> tuple[float, ...]:
    """The buckets for this process: up to the pool timeout the deployment sets (gunicorn.conf.py, POOL_TIMEOUT), or
    the default."""
    from .settings import resolve_config

    return duration_buckets(resolve_config().timeout)


def doc_table() -> str:
    """A Markdown table of every statistic, for the docs."""
    rows = ["| name | kind | meaning |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {s.kind} | {s.help} |" for s in TABLE]
    return "\n".join(rows)
