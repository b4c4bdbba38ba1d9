"""One back-off policy for retrying a server that did not answer: the pool's connects while its database is down
(`pool.core`) and each host of a host list (`pool.hosts.HostBackoff`) follow it, each with its own delays."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

# Far past any cap in use, and below float's range: 2 ** 1024 does not fit in a float, so an outage of 1025 failures
# in a row would otherwise raise OverflowError where the caller expects a delay.
_MAX_DOUBLINGS = 64


@dataclass(frozen=True)
class Backoff:
    """After the n-th failure in a row, wait `first` x 2^(n-1), at most `cap`, shortened at random by up to `jitter`
    (a fraction of the delay), so that processes that failed together do not all retry at the same moment."""

    first: float
    cap: float
    jitter: float = 0.0

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        delay = min(self.cap, self.first * 2.0 ** min(failures - 1, _MAX_DOUBLINGS))
        return delay * (1.0 - rand() * self.jitter) if self.jitter else delay


class Streak:
    """Failures in a row of one server (a database, a host of a list) and when it may be tried again."""

    __slots__ = ("backoff", "failures", "retry_at")

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.failures = 0
        self.retry_at = float("-inf")

    def failed(self, now: float) -> float:
        """Count a failure at `now` (a monotonic clock's reading); returns the delay before the next attempt."""
        self.failures += 1
        delay = self.backoff.delay(self.failures)
        self.retry_at = now + delay
        return delay

    def clear(self) -> int:
        """It answered: forget the failures. Returns how many there were in a row."""
        failures, self.failures, self.retry_at = self.failures, 0, float("-inf")
        return failures
