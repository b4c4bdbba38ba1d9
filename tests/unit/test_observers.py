"""The core's observer hooks, readiness and the maintenance loop's dead-idle check, on the fake driver and clock."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pool import ConnectionPool, DatabaseUnavailable, PoolTimeout, TooManyWaiters
from pool import stats as S
from pool.core import subscribe_pools, unsubscribe_pools
from tests.unit.fakes import FakeDisconnect
from tests.unit.test_state_machine import make_pool, start_waiter, wait_for


def observe(pool: ConnectionPool) -> list[tuple[Any, ...]]:
    events: list[tuple[Any, ...]] = []
    pool.wait_observers.append(lambda seconds, granted: events.append(("wait", round(seconds, 3), granted)))
    pool.use_observers.append(lambda seconds: events.append(("use", round(seconds, 3))))
    pool.connect_observers.append(lambda seconds, error: events.append(("connect", type(error).__name__)))
    pool.refusal_observers.append(lambda outcome: events.append(("refused", outcome)))
    return events


def test_observers_see_connects_uses_waits_and_refusals() -> None:
    pool, driver, clock = make_pool(size=1, timeout=0.05, max_waiting=1)
    events = observe(pool)
    lease = pool.acquire()
    clock.advance(2.5)
    pool.release(lease)
    held = pool.acquire()
    results: list[Any] = []
    waiter = start_waiter(pool, results, timeout=5)
    with pytest.raises(TooManyWaiters):
        pool.acquire()
    pool.release(held)
    waiter.join(5)
    pool.release(results[0])
    with pytest.raises(PoolTimeout):
        held = pool.acquire()
        try:
            pool.acquire()
        finally:
            pool.release(held)
    pool.release(pool.acquire())
    driver.connect_error = FakeDisconnect("down")
    driver.opened[0].alive = False
    with pytest.raises(DatabaseUnavailable):
        pool.acquire()  # the idle one is dead: a connect, which fails
    with pytest.raises(DatabaseUnavailable):
        pool.acquire()  # fail-fast: refused without an attempt
    kinds = [e[0] for e in events]
    print(events)
    assert events[0] == ("connect", "NoneType") and events[1] == ("use", 2.5)
    assert ("refused", "rejected") in events
    assert [e[2] for e in events if e[0] == "wait"] == [True, False]
    assert events[-3:] == [("connect", "FakeDisconnect"), ("refused", "unavailable"), ("refused", "unavailable")]
    assert kinds.count("use") == pool.stats()[S.CHECKOUTS]


def test_an_observer_that_raises_costs_no_slot(caplog: pytest.LogCaptureFixture) -> None:
    pool, _, _ = make_pool(size=1, timeout=1)

    def broken(seconds: float) -> None:
        raise RuntimeError("an integration's bug")

    pool.use_observers.append(broken)
    for _ in range(3):
        pool.release(pool.acquire(timeout=0.1))  # a lost slot would make the second acquire time out
    assert pool.stats()[S.IN_USE] == 0 and "pool observer" in caplog.text


def test_subscribers_see_existing_and_new_pools() -> None:
    seen: list[str] = []

    def subscriber(pool: ConnectionPool) -> None:
        seen.append(pool.name)

    first, _, _ = make_pool()
    subscribe_pools(subscriber)
    try:
        assert "unit" in seen
        seen.clear()
        make_pool()
        assert seen == ["unit"]
    finally:
        unsubscribe_pools(subscriber)
    make_pool()
    assert seen == ["unit"]


def test_readiness_from_the_pools_state() -> None:
    pool, driver, clock = make_pool(size=1, timeout=5)
    assert pool.readiness().ready
    held = pool.acquire()
    waiters: list[Any] = []
    threads = [start_waiter(pool, waiters) for _ in range(2)]
    saturated = pool.readiness()
    assert not saturated.ready and "saturated: 2 callers waiting (more than 1)" in saturated.reason
    assert pool.readiness(max_waiting=2).ready
    pool.close()
    for thread in threads:
        thread.join(5)
    pool.release(held)
    assert not pool.readiness().ready and "closed" in pool.readiness().reason


def test_readiness_while_the_database_is_down_and_the_probe_that_ends_it() -> None:
    pool, driver, clock = make_pool(size=2)
    driver.connect_error = FakeDisconnect("refused")
    with pytest.raises(DatabaseUnavailable):
        pool.acquire()
    clock.advance(3.0)
    down = pool.readiness()  # also starts one background connect attempt, which fails again
    assert not down.ready and down.unavailable_for_s == 3.0 and "refused" in down.last_error
    assert abs(down.unavailable_since - (time.time() - 3.0)) < 1  # type: ignore[operator]
    assert wait_for(lambda: driver.connect_attempts == 2)
    driver.connect_error = None
    assert wait_for(lambda: (pool.readiness(), driver.connect_attempts >= 3)[1])  # the back-off does not apply
    assert wait_for(lambda: pool.readiness().ready)
    assert pool.stats()[S.IDLE] == 1, "the probe's connection waits for the next caller"


def test_maintenance_drops_idle_connections_the_server_closed() -> None:
    pool, driver, clock = make_pool(size=2, min_idle=1)
    pool.release(pool.acquire())
    driver.opened[0].alive = False
    driver.connect_error = FakeDisconnect("refused")
    pool.maintain()
    assert driver.opened[0].ended == "abort" and pool.stats()[S.DISCARDED] == 1
    assert not pool.readiness().ready, "the min_idle refill found the database gone, with no traffic"
