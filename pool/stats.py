"""The pool's statistics, declared once: `ConnectionPool.stats()`, the `/-/pool` view, the Prometheus export and the
docs all read this table, so a name cannot mean one thing in one place and another elsewhere.

Adding a statistic:
1. One `_stat(...)` line below, with its kind, its help and, for a gauge, how it adds up across workers. A gauge goes
   with the gauges (before `PID`), a counter anywhere after it: `stats()` lists them in table order.
2. Its value, in pool/core.py: a gauge as an entry of `ConnectionPool.stats()`, a counter as `self._counters[S.NAME]
   += ...` where it happens (the counters' dict is built from `COUNTERS`).
3. Paste `pool.metrics.doc_table()` over the table in docs/observability.md (tests/test_docs.py fails until then).
`/metrics`, the `/-/pool` totals and the status page's "every figure" follow from the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["gauge", "counter", "info"]
# How one worker's value adds up across gunicorn workers, in the `/-/pool` totals and the Prometheus scrape alike:
# "sum", "max" (the oldest wait), "none" (not added: the pid), or "cap" for a per-worker limit: the totals add the
# workers' caps up (the budget), the scrape shows the largest (what one worker may hold). A counter is a sum.
Combine = Literal["sum", "max", "cap", "none"]


@dataclass(frozen=True)
class Stat:
    name: str
    kind: Kind
    help: str
    combine: Combine = "sum"


_declared: list[Stat] = []


def _stat(name: str, kind: Kind, help: str, combine: Combine = "sum") -> str:
    """Declare a row of the table and return its name: code indexes stats by that plain `str`, so bumping a counter
    stays one lookup of an exact-str dict key."""
    if kind == "counter" and combine != "sum":
        raise ValueError(f"counter {name!r} must add up as a sum (Prometheus adds counters up)")
    _declared.append(Stat(name, kind, help, combine))
    return name


# Gauges: a snapshot of now.
SIZE = _stat("size", "gauge", "the cap: most connections this process may hold", "cap")
IN_USE = _stat("in_use", "gauge", "slots taken by callers (connections lent out, or being opened for a caller)")
IDLE = _stat("idle", "gauge", "open connections waiting in the pool")
WAITING = _stat("waiting", "gauge", "callers queued for a slot")
MAXWAIT_MS = _stat("maxwait_ms", "gauge", "how long the oldest waiter has waited so far, in milliseconds", "max")
PID = _stat("pid", "info", "the process the pool belongs to", "none")

# Counters: since the pool was built in this process.
CHECKOUTS = _stat("checkouts", "counter", "connections lent")
CONNECTS = _stat("connects", "counter", "connections opened")
CONNECT_ERRORS = _stat("connect_errors", "counter", "failed attempts to open a connection")
UNAVAILABLE = _stat("unavailable", "counter", "callers refused at once, without a connection attempt, while the "
                                              "database was not answering (DatabaseUnavailable)")
CONNECT_MS = _stat("connect_ms", "counter", "time spent opening connections, in milliseconds")
IMMEDIATE = _stat("immediate", "counter", "checkouts that found a free slot at once, without queueing: each is a wait "
                                        "of 0 in the wait histograms")
WAITS = _stat("waits", "counter", "checkouts that had to queue for a slot")
WAIT_MS = _stat("wait_ms", "counter", "time callers spent queued, in milliseconds")
TIMEOUTS = _stat("timeouts", "counter", "callers that gave up waiting (PoolTimeout)")
REJECTED = _stat("rejected", "counter", "callers refused at once because max_waiting callers already waited "
                                        "(TooManyWaiters)")
PINGS = _stat("pings", "counter", "pings before lending a connection that idled past ping_after")
DISCARDED = _stat("discarded", "counter", "broken connections dropped: closed by the server, failed a check or a "
                                          "reset, or saw a disconnect error")
ABORTED_IN_USE = _stat("aborted_in_use", "counter", "connections closed while still in use: a command was under way "
                                                    "on them at return (used by another greenlet or thread, or "
                                                    "interrupted mid-command), or they were still held when the pool "
                                                    "was drained at exit")
SESSIONS_ENDED = _stat("sessions_ended", "counter", "server sessions of aborted connections ended with KILL because a "
                                                    "command was still running on them (so the server stops it and "
                                                    "its count returns to the cap)")
RECYCLED = _stat("recycled", "counter", "connections closed at max_lifetime")
IDLE_CLOSED = _stat("idle_closed", "counter", "connections closed after idle_timeout beyond min_idle")
RECLAIMED = _stat("reclaimed", "counter", "connections taken back from an owner (greenlet or thread) that died "
                                          "holding them")
LEAKS = _stat("leaks", "counter", "connections held longer than leak_threshold (warned once each)")
SERVER_WAITS = _stat("server_waits", "counter", "checkouts that held a slot but had to queue for room on the server "
                                              "(server_size used up by the pools that share it)")
SERVER_WAIT_MS = _stat("server_wait_ms", "counter", "time callers spent queued for room on the server, in milliseconds")
HANDED_OVER = _stat("handed_over", "counter", "connections closed to give their place in the server budget "
                                              "(server_size) to another pool's caller: idle ones taken, or returned "
                                              "ones while that pool's callers queued")
RESETS = _stat("resets", "counter", "connections made fit for the next caller on return")
USAGE_MS = _stat("usage_ms", "counter", "time connections were held by callers, checkout to return, in milliseconds")

TABLE: tuple[Stat, ...] = tuple(_declared)
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


def wait_buckets() -> tuple[float, ...]:
    """The wait histograms' buckets: this process's, after one of their own at 0 for the callers that found a slot
    free. Without it those would share 0-1 ms with short queues, and a quantile interpolated there reads up to 1 ms
    for a pool nobody queued for; with it, a p99 of 0 says that 99 % of the checkouts waited for nothing."""
    return (0.0, *process_buckets())
