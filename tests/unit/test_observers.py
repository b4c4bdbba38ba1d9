"""The core's observer hooks, readiness and the maintenance loop's dead-idle check, on the fake driver and clock."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pool import ConnectionPool, DatabaseUnavailable, PoolTimeout, TooManyWaiters
from pool import stats as S
from pool.core import Readiness, subscribe_pools, unsubscribe_pools
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


def test_a_busy_pool_that_moves_stays_ready_however_long_its_queue() -> None:
    pool, _, clock = make_pool(size=1, timeout=60)
    held = pool.acquire()
    results: list[Any] = []
    threads = [start_waiter(pool, results) for _ in range(5)]
    answers = []
    for served in range(1, 5):
        clock.advance(3.0)  # a reading 3 s after the last grant, each one counted: under the bound of 5 s
        answers.append(pool.readiness(stuck_after=5))
        pool.release(held)  # the queue moves: its oldest caller gets the connection
        assert wait_for(lambda: len(results) == served)  # noqa: B023 - waited for here, in this round
        held = results[-1]
    pool.release(held)
    for thread in threads:
        thread.join(5)
    pool.release(results[-1])
    assert all(answer.ready and answer.reason == "ready" for answer in answers), answers
    assert max(answer.waiting for answer in answers) == 5, "a queue five times the pool's size"


def test_a_stuck_pool_goes_unready_after_three_readings_a_second_apart_and_back_after_three() -> None:
    pool, _, clock = make_pool(size=1, timeout=60)
    held = pool.acquire()
    results: list[Any] = []
    waiter = start_waiter(pool, results)
    assert pool.readiness(stuck_after=5).ready  # the first reading: nothing has been still for 5 s yet
    clock.advance(6.0)
    first = pool.readiness(stuck_after=5)
    assert first.ready and first.readings_against == 1 and first.stuck_for_s == 6.0
    assert "ready; 1 of 3 readings in a row saw: pool 'unit' stuck: no caller got a connection for 6.0s" in first.reason
    burst = [pool.readiness(stuck_after=5) for _ in range(10)]
    clock.advance(0.9)
    burst.append(pool.readiness(stuck_after=5))
    assert all(state.ready and state.readings_against == 1 for state in burst), "calls within a second are one reading"
    clock.advance(0.1)
    assert pool.readiness(stuck_after=5).readings_against == 2
    clock.advance(1.0)
    stuck = pool.readiness(stuck_after=5)
    assert not stuck.ready and stuck.readings_against == 0 and (stuck.in_use, stuck.waiting) == (1, 1)
    assert stuck.reason == ("pool 'unit' stuck: no caller got a connection for 8.0s (the bound is 5s), all 1 in use, "
                            "1 callers waiting")
    pool.release(held)  # the connection comes back: the waiter gets it, the pool moves again
    waiter.join(5)
    pool.release(results[0])
    back = []
    for _ in range(3):
        clock.advance(1.0)
        back.append(pool.readiness(stuck_after=5))
    assert [state.ready for state in back] == [False, False, True]
    assert back[0].reason.endswith("1 callers waiting; 1 of 3 readings in a row found it serving again")


def test_a_full_pool_whose_callers_gave_up_stays_unready_until_a_connection_comes_back() -> None:
    pool, _, clock = make_pool(size=1, timeout=0.01)
    assert pool.readiness(stuck_after=5).ready
    held = pool.acquire()
    with pytest.raises(PoolTimeout):
        pool.acquire()  # nobody waits any more, but a caller was turned away since the pool last moved
    answers = []
    for _ in range(6):
        clock.advance(2.0)  # still for 2, 4, then 6, 8, 10 s: three readings past the bound of 5 s
        answers.append(pool.readiness(stuck_after=5))
    assert [state.ready for state in answers] == [True, True, True, True, False, False] and answers[-1].waiting == 0
    pool.release(held)  # with no traffic at all (a worker out of rotation), the return alone ends it
    for _ in range(3):
        clock.advance(1.0)
        answers.append(pool.readiness(stuck_after=5))
    assert [state.ready for state in answers[-3:]] == [False, False, True]


def test_the_first_reading_decides_and_a_closed_pool_is_not_ready_at_once() -> None:
    pool, driver, clock = make_pool(size=1)
    driver.connect_error = FakeDisconnect("refused")
    with pytest.raises(DatabaseUnavailable):
        pool.acquire()
    assert not pool.readiness().ready, "a process's first reading has no verdict to hold on to"
    ready, _, _ = make_pool(size=1)
    assert ready.readiness().ready
    ready.close()
    closed = ready.readiness()
    assert not closed.ready and "closed" in closed.reason


def test_readiness_while_the_database_is_down_and_the_probe_that_ends_it() -> None:
    pool, driver, clock = make_pool(size=2)
    assert pool.readiness().ready
    driver.connect_error = FakeDisconnect("refused")
    with pytest.raises(DatabaseUnavailable):
        pool.acquire()
    down = []
    for _ in range(3):
        clock.advance(1.0)
        down.append(pool.readiness())  # each also starts a background connect attempt if none is under way
    assert [state.ready for state in down] == [True, True, False]
    assert "ready; 1 of 3 readings in a row saw: database unavailable for 1.0s" in down[0].reason
    assert down[-1].unavailable_for_s == 3.0 and "refused" in down[-1].last_error
    assert abs(down[-1].unavailable_since - (time.time() - 3.0)) < 1  # type: ignore[operator]
    assert wait_for(lambda: driver.connect_attempts >= 2 and not pool._outage.probing), "no background attempt"
    driver.connect_error = None
    back: list[Readiness] = []
    while not (back and back[-1].ready) and len(back) < 100:
        clock.advance(1.0)
        back.append(pool.readiness())  # the back-off does not apply to its background attempt
        wait_for(lambda: not pool._outage.probing)
    assert back[-1].ready and [state.readings_against for state in back[-3:-1]] == [1, 2]
    assert "found it serving again" in back[-2].reason
    assert wait_for(lambda: pool.stats()[S.IDLE] == 1), "the probe's connection waits for the next caller"


def test_maintenance_drops_idle_connections_the_server_closed() -> None:
    pool, driver, clock = make_pool(size=2, min_idle=1)
    pool.release(pool.acquire())
    driver.opened[0].alive = False
    driver.connect_error = FakeDisconnect("refused")
    pool.maintain()
    assert driver.opened[0].ended == "abort" and pool.stats()[S.DISCARDED] == 1
    assert not pool.readiness().ready, "the min_idle refill found the database gone, with no traffic"
