"""Names of the pool's statistics, so the JSON view, the metrics export and the docs cannot drift apart."""

from __future__ import annotations

# Gauges (a snapshot of now).
SIZE = "size"  # the cap: most connections this process may hold
IN_USE = "in_use"  # slots taken by callers (connections lent out, or being opened for a caller)
IDLE = "idle"  # open connections waiting in the pool
WAITING = "waiting"  # callers queued for a slot
MAXWAIT_MS = "maxwait_ms"  # how long the oldest waiter has waited so far
PID = "pid"

# Counters (since the pool was built in this process).
CHECKOUTS = "checkouts"
CONNECTS = "connects"
CONNECT_ERRORS = "connect_errors"
CONNECT_MS = "connect_ms"  # total time spent opening connections
WAIT_MS = "wait_ms"  # total time callers spent queued
WAITS = "waits"  # checkouts that had to queue
TIMEOUTS = "timeouts"
REJECTED = "rejected"  # refused at once because max_waiting callers already waited
PINGS = "pings"
DISCARDED = "discarded"  # dropped because dead, broken or failed to reset
RECYCLED = "recycled"  # closed for reaching max_lifetime
IDLE_CLOSED = "idle_closed"  # closed for idling past idle_timeout beyond min_idle
RECLAIMED = "reclaimed"  # taken back from an owner (greenlet or thread) that died holding it
LEAKS = "leaks"  # held longer than leak_threshold
RESETS = "resets"
USAGE_MS = "usage_ms"  # total time connections were held by callers, checkout to return

GAUGES = (SIZE, IN_USE, IDLE, WAITING, MAXWAIT_MS)
COUNTERS = (
    CHECKOUTS, CONNECTS, CONNECT_ERRORS, CONNECT_MS, WAIT_MS, WAITS, TIMEOUTS, REJECTED, PINGS, DISCARDED, RECYCLED,
    IDLE_CLOSED, RECLAIMED, LEAKS, RESETS, USAGE_MS,
)
