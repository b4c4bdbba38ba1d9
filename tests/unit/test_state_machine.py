"""The pool's state machine with a fake driver and a fake clock: slots, waiters, hand-offs, expiry, ownership, fork.
Milliseconds each; what touches MySQL is tested against a real server in the integration tests."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import pool.core as core
from pool import (
    ConfigError,
    ConnectionPool,
    ConnectionReturned,
    DatabaseUnavailable,
    PoolClosed,
    PoolConfig,
    PoolTimeout,
    TooManyWaiters,
    WrongPool,
)
from pool import stats as S
from pool.settings import SETTINGS
from tests.unit.fakes import FakeClock, FakeConnection, FakeDisconnect, FakeDriver


def make_pool(**settings: Any) -> tuple[ConnectionPool, FakeDriver, FakeClock]:
    driver, clock = FakeDriver(), FakeClock()
    settings.setdefault("min_idle", 0)
    pool = ConnectionPool(config=PoolConfig(**settings), driver=driver, clock=clock, maintenance_interval=None,
                          name="unit")
    return pool, driver, clock


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.001)
    return bool(predicate())


def conn_of(lease: Any) -> FakeConnection:
    return lease.connection.conn


def start_waiter(pool: ConnectionPool, results: list[Any], **kwargs: Any) -> threading.Thread:
    """A thread that queues for a connection; its lease (or error) lands in `results`."""
    queued = pool.stats()[S.WAITING]

    def run() -> None:
        try:
            results.append(pool.acquire(**kwargs))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            results.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert wait_for(lambda: pool.stats()[S.WAITING] > queued or results), "the waiter never queued"
    return thread


# -- slots and waiting -------------------------------------------------------------------------------------------


def test_waiters_are_served_in_arrival_order() -> None:
    pool, _, _ = make_pool(size=1, timeout=5)
    held = pool.acquire()
    order: list[int] = []
    threads = []
    for i in range(5):
        queued = pool.stats()[S.WAITING]

        def run(i: int = i) -> None:
            lease = pool.acquire()
            order.append(i)
            pool.release(lease)

        thread = threading.Thread(target=run)
        thread.start()
        assert wait_for(lambda queued=queued: pool.stats()[S.WAITING] == queued + 1)
        threads.append(thread)
    pool.release(held)
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_a_newcomer_never_overtakes_a_waiter() -> None:
    pool, _, _ = make_pool(size=1, timeout=5)
    held = pool.acquire()
    results: list[Any] = []
    waiter = start_waiter(pool, results)
    pool.release(held)
    # The slot went to the waiter with the connection: a caller arriving now finds the pool full.
    with pytest.raises(PoolTimeout):
        pool.acquire(timeout=0.01)
    waiter.join(5)
    assert conn_of(results[0]) is not None
    pool.release(results[0])


def test_full_pool_times_out_with_its_numbers_and_takes_nothing() -> None:
    pool, _, _ = make_pool(size=2, timeout=0.05)
    leases = [pool.acquire(), pool.acquire()]
    with pytest.raises(PoolTimeout) as caught:
        pool.acquire()
    error = caught.value
    assert (error.pool, error.size, error.in_use, error.waiting, error.timeout) == ("unit", 2, 2, 0, 0.05)
    stats = pool.stats()
    assert (stats[S.TIMEOUTS], stats[S.WAITS], stats[S.WAITING], stats[S.IN_USE]) == (1, 1, 0, 2)
    for lease in leases:
        pool.release(lease)
    assert pool.stats()[S.IN_USE] == 0


def test_max_waiting_refuses_at_once() -> None:
    pool, _, _ = make_pool(size=1, timeout=5, max_waiting=1)
    held = pool.acquire()
    results: list[Any] = []
    waiter = start_waiter(pool, results)
    started = time.monotonic()
    with pytest.raises(TooManyWaiters) as caught:
        pool.acquire()
    assert time.monotonic() - started < 1.0
    assert (caught.value.in_use, caught.value.waiting) == (1, 1)
    pool.release(held)
    waiter.join(5)
    pool.release(results[0])
    assert pool.stats()[S.REJECTED] == 1


def test_close_wakes_every_waiter_and_closes_what_comes_back() -> None:
    pool, driver, _ = make_pool(size=1, timeout=30)
    held = pool.acquire()
    results: list[Any] = []
    waiters = [start_waiter(pool, results) for _ in range(3)]
    started = time.monotonic()
    pool.close()
    for waiter in waiters:
        waiter.join(5)
    assert time.monotonic() - started < 5
    assert len(results) == 3 and all(isinstance(r, PoolClosed) for r in results)
    conn = conn_of(held)
    pool.release(held)
    assert conn.ended == "close", "a connection returned to a closed pool is closed, not kept"
    assert pool.stats()[S.IN_USE] == 0 and pool.stats()[S.IDLE] == 0
    with pytest.raises(PoolClosed):
        pool.acquire()


class _InterruptedEvent:
    """A waiter's event whose wait is interrupted (like a killed greenlet), after the grant if `after_grant`."""

    def __init__(self, after_grant: bool) -> None:
        self._real = threading.Event()
        self._after_grant = after_grant

    def set(self) -> None:
        self._real.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self._after_grant:
            self._real.wait(timeout)
        raise KeyboardInterrupt


@pytest.fixture
def interrupted_waits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    modes: list[bool] = []
    monkeypatch.setattr(core, "_new_event", lambda: _InterruptedEvent(modes.pop(0)))
    yield modes


def test_a_waiter_killed_before_its_grant_leaves_the_queue(interrupted_waits: list[bool]) -> None:
    pool, _, _ = make_pool(size=1, timeout=5)
    held = pool.acquire()
    interrupted_waits.append(False)
    with pytest.raises(KeyboardInterrupt):
        pool.acquire()
    assert pool.stats()[S.WAITING] == 0
    pool.release(held)
    assert pool.stats()[S.IN_USE] == 0 and pool.stats()[S.IDLE] == 1


def test_a_waiter_killed_after_its_grant_passes_the_connection_on(interrupted_waits: list[bool]) -> None:
    pool, _, _ = make_pool(size=1, timeout=5)
    held = pool.acquire()
    conn = conn_of(held)
    interrupted_waits.append(True)
    results: list[Any] = []
    killed = start_waiter(pool, results)
    pool.release(held)  # granted to the waiter, whose wait then raises
    killed.join(5)
    assert isinstance(results[0], KeyboardInterrupt)
    # Without the hand-back the slot would stay taken for good: in_use 1 and every later checkout would time out.
    assert pool.stats()[S.IN_USE] == 0
    again = pool.acquire(timeout=0.05)
    assert conn_of(again) is conn
    pool.release(again)


def test_the_cap_holds_under_a_storm_of_threads() -> None:
    pool, driver, _ = make_pool(size=3, timeout=30)
    lent: set[int] = set()
    peak = {"lent": 0, "open": 0}
    errors: list[str] = []
    guard = threading.Lock()

    def work() -> None:
        for _ in range(100):
            with pool.connection() as handle:
                with guard:
                    if handle.conn.number in lent:
                        errors.append(f"connection {handle.conn.number} lent twice")
                    lent.add(handle.conn.number)
                    peak["lent"] = max(peak["lent"], len(lent))
                    peak["open"] = max(peak["open"], len(driver.open_now))
                time.sleep(0)
                with guard:
                    lent.discard(handle.conn.number)

    threads = [threading.Thread(target=work) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert peak["lent"] <= 3 and peak["open"] <= 3 and len(driver.opened) <= 3
    assert pool.stats()[S.CHECKOUTS] == 2000 and pool.stats()[S.IN_USE] == 0


# -- returning connections ---------------------------------------------------------------------------------------


def test_releasing_twice_frees_the_slot_once() -> None:
    pool, _, _ = make_pool(size=1, timeout=0.05)
    first = pool.acquire()
    pool.release(first)
    second = pool.acquire()
    pool.release(first)  # a no-op: must not free the slot `second` holds
    assert pool.stats()[S.IN_USE] == 1
    with pytest.raises(PoolTimeout):
        pool.acquire()
    pool.release(second)
    assert pool.stats()[S.IN_USE] == 0 and pool.stats()[S.RESETS] == 2


def test_a_released_handle_refuses_any_use() -> None:
    pool, _, _ = make_pool(size=1)
    lease = pool.acquire()
    handle = lease.connection
    pool.release(lease)
    assert handle.conn is None, "the driver's revoke must have been called for the caller's handle"
    with pytest.raises(ConnectionReturned):
        lease.connection  # noqa: B018


def test_release_to_the_wrong_pool_raises_and_changes_nothing() -> None:
    mine, _, _ = make_pool(size=1)
    other, _, _ = make_pool(size=1)
    lease = mine.acquire()
    with pytest.raises(WrongPool, match="'unit'"):
        other.release(lease)
    assert mine.stats()[S.IN_USE] == 1 and other.stats()[S.IN_USE] == 0
    mine.release(lease)
    assert mine.stats()[S.IN_USE] == 0
    mine.release(mine.acquire(timeout=0.05))  # the slot is usable again


def test_a_connection_still_in_use_elsewhere_is_aborted_on_return(caplog: pytest.LogCaptureFixture) -> None:
    pool, _, _ = make_pool(size=1)
    lease = pool.acquire()
    conn = conn_of(lease)
    conn.in_flight = True  # another greenlet is still reading from it
    pool.release(lease)
    assert conn.ended == "abort" and conn.resets == []
    stats = pool.stats()
    # The server would run that command on for nobody: a connection opened in the same slot ended its session.
    assert (stats[S.ABORTED_IN_USE], stats[S.DISCARDED], stats[S.IN_USE], stats[S.IDLE]) == (1, 0, 0, 1)
    assert "still under way" in caplog.text


def test_an_abandoned_session_is_ended_through_an_idle_connection_first() -> None:
    pool, driver, _ = make_pool(size=2)
    first, second = pool.acquire(), pool.acquire()
    pool.release(second)  # idle now
    conn_of(first).in_flight = True
    pool.release(first)
    assert driver.sessions_ended == [(2, 1)], "the idle connection ended the abandoned session; nothing new opened"
    assert len(driver.opened) == 2 and len(driver.open_now) == 1
    assert pool.stats()[S.SESSIONS_ENDED] == 1 and pool.stats()[S.IDLE] == 1


def test_the_connection_that_ended_an_abandoned_session_goes_to_the_next_waiter() -> None:
    pool, driver, _ = make_pool(size=1, timeout=5)
    lease = pool.acquire()
    results: list[Any] = []
    thread = start_waiter(pool, results)
    conn_of(lease).in_flight = True
    pool.release(lease)
    thread.join(5)
    assert driver.sessions_ended == [(2, 1)]
    assert conn_of(results[0]).number == 2 and len(driver.open_now) == 1, "the cap holds on this side throughout"
    pool.release(results[0])


@pytest.mark.parametrize("error", [FakeDisconnect("gone"), RuntimeError("refused")])
def test_a_failed_end_of_an_abandoned_session_keeps_the_slot_sound(error: Exception) -> None:
    pool, driver, _ = make_pool(size=1)
    lease = pool.acquire()
    conn_of(lease).in_flight = True
    driver.end_session_error = error
    pool.release(lease)
    kept = isinstance(error, RuntimeError)  # an error the server answered leaves the connection usable
    assert pool.stats()[S.IDLE] == int(kept) and pool.stats()[S.SESSIONS_ENDED] == 0
    assert len(driver.open_now) == int(kept)
    pool.release(pool.acquire())


def test_a_connection_merely_broken_is_not_chased_on_the_server() -> None:
    pool, driver, _ = make_pool(size=1)
    lease = pool.acquire()
    pool.release(lease, discard=True)
    assert driver.sessions_ended == [] and len(driver.opened) == 1


@pytest.mark.parametrize("error", [RuntimeError("reset failed"), KeyboardInterrupt()])
def test_a_failed_reset_drops_the_connection_and_frees_the_slot(error: BaseException) -> None:
    pool, _, _ = make_pool(size=1, timeout=0.05)
    lease = pool.acquire()
    conn = conn_of(lease)
    conn.reset_error = error
    if isinstance(error, Exception):
        pool.release(lease)
    else:
        with pytest.raises(KeyboardInterrupt):
            pool.release(lease)
    assert conn.ended == "abort"
    assert pool.stats()[S.DISCARDED] == 1 and pool.stats()[S.IN_USE] == 0
    pool.release(pool.acquire())


def test_connection_block_keeps_drops_or_aborts_by_exception_kind() -> None:
    pool, _, _ = make_pool(size=1)
    with pytest.raises(ValueError):
        with pool.connection() as handle:
            app_error = handle.conn
            raise ValueError("the application's own error")
    assert app_error.ended is None and app_error.resets == ["tracked"], \
        "an application error leaves a usable connection"
    with pytest.raises(FakeDisconnect):
        with pool.connection() as handle:
            lost = handle.conn
            raise FakeDisconnect()
    assert lost.ended == "abort"
    with pytest.raises(KeyboardInterrupt):
        with pool.connection() as handle:
            interrupted = handle.conn
            raise KeyboardInterrupt
    assert interrupted.ended == "abort" and interrupted.resets == [], \
        "an interrupted block may have left a half-done command"
    assert pool.stats()[S.DISCARDED] == 2 and pool.stats()[S.IN_USE] == 0


def test_lease_info_is_cleared_only_when_the_reset_clears_the_session() -> None:
    for mode, kept in (("full", False), ("rollback", True)):
        pool, _, _ = make_pool(size=1, reset=mode)
        lease = pool.acquire()
        lease.info["isolation_sent"] = True
        pool.release(lease)
        lease = pool.acquire()
        assert ("isolation_sent" in lease.info) is kept
        pool.release(lease)


# -- health, expiry, maintenance ---------------------------------------------------------------------------------


def test_a_dead_idle_connection_is_replaced_inside_the_same_slot() -> None:
    pool, driver, _ = make_pool(size=1)
    pool.release(pool.acquire())
    driver.opened[0].alive = False
    lease = pool.acquire()
    assert conn_of(lease).number == 2 and driver.opened[0].ended == "abort"
    assert pool.stats()[S.DISCARDED] == 1 and len(driver.open_now) == 1
    pool.release(lease)


def test_ping_only_after_ping_after_and_a_failed_ping_replaces() -> None:
    pool, driver, clock = make_pool(size=1, ping_after=1.0)
    pool.release(pool.acquire())
    pool.release(pool.acquire())
    assert driver.pings == 0
    clock.advance(1.5)
    driver.opened[0].ping_error = FakeDisconnect()
    lease = pool.acquire()
    assert driver.pings == 1 and conn_of(lease).number == 2
    pool.release(lease)


def test_lifetime_and_idle_expiry_follow_the_clock() -> None:
    pool, driver, clock = make_pool(size=4, min_idle=1, idle_timeout=60, max_lifetime=3600)
    leases = [pool.acquire() for _ in range(4)]
    for lease in leases:
        pool.release(lease)
    clock.advance(59)
    pool.maintain()
    assert pool.stats()[S.IDLE] == 4
    clock.advance(2)
    pool.maintain()
    assert pool.stats()[S.IDLE_CLOSED] == 3 and pool.stats()[S.IDLE] == 1
    clock.advance(3600)
    pool.maintain()
    stats = pool.stats()
    assert stats[S.RECYCLED] >= 1 and stats[S.IDLE] <= 1
    assert all(c.ended == "close" for c in driver.opened[:4]), "expired connections say goodbye (COM_QUIT)"


def test_maintenance_keeps_min_idle_open_one_at_a_time() -> None:
    pool, driver, clock = make_pool(size=3, min_idle=2)
    pool.maintain()
    assert len(driver.open_now) == 2 and pool.stats()[S.IDLE] == 2 and pool.stats()[S.IN_USE] == 0
    pool.maintain()
    assert len(driver.opened) == 2, "nothing more to open while min_idle are idle"
    driver.connect_error = FakeDisconnect("server down")
    for conn in driver.opened:
        conn.alive = False
    with pytest.raises(DatabaseUnavailable):
        pool.acquire()  # both idle ones are found dead, the replacement fails
    pool.maintain()  # a failing connect ends the round quietly; the next round tries again
    assert pool.stats()[S.IN_USE] == 0 and pool.stats()[S.IDLE] == 0
    driver.connect_error = None
    clock.advance(2)  # past the back-off
    pool.maintain()
    assert pool.stats()[S.IDLE] == 2


def test_leak_is_warned_once_with_the_checkout_stack(caplog: pytest.LogCaptureFixture) -> None:
    pool, _, clock = make_pool(size=1, leak_threshold=30)
    lease = pool.acquire()
    clock.advance(31)
    pool.maintain()
    pool.maintain()
    assert pool.stats()[S.LEAKS] == 1
    warnings = [r for r in caplog.records if "has been held" in r.getMessage()]
    assert len(warnings) == 1 and "test_leak_is_warned_once_with_the_checkout_stack" in warnings[0].getMessage()
    pool.release(lease)


def test_a_dead_owners_connection_is_reclaimed_and_counted_once(caplog: pytest.LogCaptureFixture) -> None:
    pool, _, _ = make_pool(size=1, timeout=0.05)
    taken: list[Any] = []
    thread = threading.Thread(target=lambda: taken.append(pool.acquire()))
    thread.start()
    thread.join(5)
    conn = conn_of(taken[0])
    pool.maintain()
    stats = pool.stats()
    assert (stats[S.RECLAIMED], stats[S.DISCARDED], stats[S.IN_USE]) == (1, 0, 0)
    assert conn.ended == "abort", "the owner may have died mid-command: aborted, never reused"
    assert "owner died" in caplog.text and "discarded" not in caplog.text
    pool.release(pool.acquire())


def test_the_maintenance_loop_runs_without_traffic() -> None:
    driver, clock = FakeDriver(), FakeClock()
    pool = ConnectionPool(config=PoolConfig(size=3, min_idle=0, idle_timeout=5), driver=driver, clock=clock,
                          maintenance_interval=0.01)
    for lease in [pool.acquire() for _ in range(3)]:
        pool.release(lease)
    clock.advance(10)
    assert wait_for(lambda: pool.stats()[S.IDLE] == 0), "idle connections must close with no request arriving"
    assert pool.stats()[S.IDLE_CLOSED] == 3
    pool.close()


def test_acquire_works_from_a_bare_greenlet() -> None:
    import gevent

    pool, _, _ = make_pool(size=1)
    lease = gevent.spawn(pool.acquire).get(timeout=5)  # no Python frame above acquire()
    pool.release(lease)
    assert pool.stats()[S.CHECKOUTS] == 1


# -- shutdown ------------------------------------------------------------------------------------------------------


def test_drain_waits_for_connections_in_use_and_says_goodbye_to_each() -> None:
    pool, driver, _ = make_pool(size=3)
    idle = pool.acquire()
    pool.release(idle)
    busy = pool.acquire()
    results: list[Any] = []
    waiter_pool_full = [pool.acquire(), pool.acquire()]
    waiter = start_waiter(pool, results, timeout=30)
    returner = threading.Timer(0.2, lambda: pool.release(busy))
    returner.start()
    for lease in waiter_pool_full:
        pool.release(lease)  # granted to the waiter, which still holds it when the drain starts
    waiter.join(5)
    later = threading.Timer(0.3, lambda: pool.release(results[0]))
    later.start()
    pool.drain(timeout=5)
    returner.join()
    later.join()
    assert all(c.ended == "close" for c in driver.opened), driver.opened
    assert pool.stats()[S.IN_USE] == 0 and pool.stats()[S.ABORTED_IN_USE] == 0


def test_drain_closes_what_is_still_held_at_the_deadline_with_its_stack(caplog: pytest.LogCaptureFixture) -> None:
    pool, driver, _ = make_pool(size=2)
    kept = pool.acquire()
    started = time.monotonic()
    pool.drain(timeout=0.1)
    assert time.monotonic() - started < 2
    assert conn_of_closed(driver) == ["abort"]
    assert pool.stats()[S.ABORTED_IN_USE] == 1 and pool.stats()[S.IN_USE] == 0
    assert "still held" in caplog.text and "test_drain_closes_what_is_still_held" in caplog.text
    pool.release(kept)  # the owner coming back late changes nothing
    with pytest.raises(ConnectionReturned):
        kept.connection  # noqa: B018


def conn_of_closed(driver: FakeDriver) -> list[str | None]:
    return [c.ended for c in driver.opened]


# -- fork ----------------------------------------------------------------------------------------------------------


def test_connections_from_before_a_fork_are_forgotten_never_reset() -> None:
    pool, driver, _ = make_pool(size=2)
    idle = pool.acquire()
    pool.release(idle)
    held = pool.acquire()
    pool.reset_after_fork()  # what the child does first
    assert [c.ended for c in driver.opened] == ["forget"]
    pool.release(held)  # a lease of the parent's generation
    inherited = driver.opened[0]
    assert inherited.resets == ["tracked"], "the parent's session must not be reset from the child"
    assert pool.stats()[S.IN_USE] == 0
    fresh = [pool.acquire(), pool.acquire()]
    assert {conn_of(lease).number for lease in fresh} == {2, 3}
    for lease in fresh:
        pool.release(lease)


# -- connect failures ----------------------------------------------------------------------------------------------


def test_connect_failures_are_logged_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="pool")
    pool, driver, clock = make_pool(size=1)
    driver.connect_error = FakeDisconnect("(1045) Access denied for user 'app'")
    for _ in range(5):
        with pytest.raises(DatabaseUnavailable) as caught:
            pool.acquire()
        assert isinstance(caught.value.__cause__, FakeDisconnect)
        clock.advance(1.1)  # past the back-off: each is a real attempt
    assert len(caplog.records) == 1 and "cannot open a connection to fake@nowhere/test" in caplog.text
    clock.advance(11)
    with pytest.raises(DatabaseUnavailable):
        pool.acquire()
    assert len(caplog.records) == 2 and "4 more failures" in caplog.records[1].getMessage()
    assert pool.stats()[S.CONNECT_ERRORS] == 6 and pool.stats()[S.IN_USE] == 0


def test_while_the_database_is_down_callers_fail_fast_and_one_probe_finds_it_back() -> None:
    pool, driver, clock = make_pool(size=5, timeout=5)
    driver.connect_error = FakeDisconnect("(2003) Can't connect")
    with pytest.raises(DatabaseUnavailable):
        pool.acquire()
    for _ in range(50):  # within the back-off: refused without touching the server
        with pytest.raises(DatabaseUnavailable, match="not answering") as caught:
            pool.acquire()
        assert 0 < caught.value.retry_after <= 1.0
    assert driver.connect_attempts == 1 and pool.stats()[S.UNAVAILABLE] == 50
    delays = []
    for _ in range(6):  # the back-off doubles up to its cap of a second
        delays.append(pool._outage.retry_at - clock.now)
        clock.advance(1.01)
        with pytest.raises(DatabaseUnavailable):
            pool.acquire()
    assert driver.connect_attempts == 7
    assert delays[0] <= 0.1 and all(0.5 <= d <= 1.0 for d in delays[-2:])
    driver.connect_error = None
    clock.advance(1.01)
    lease = pool.acquire()  # the probe finds it back; everyone after it connects normally
    more = [pool.acquire() for _ in range(3)]
    for held in [lease, *more]:
        pool.release(held)
    assert pool.stats()[S.IN_USE] == 0 and driver.connect_attempts == 11


def test_only_one_probe_at_a_time_while_others_fail_fast() -> None:
    pool, driver, clock = make_pool(size=5, timeout=5)
    driver.connect_error = FakeDisconnect("down")
    with pytest.raises(DatabaseUnavailable):
        pool.acquire()
    clock.advance(2)
    pool._outage.probing = True  # as if another caller's probe were under way right now
    with pytest.raises(DatabaseUnavailable, match="not answering"):
        pool.acquire()
    assert driver.connect_attempts == 1


# -- settings and stats --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.kind is float])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf", "1e999"])
def test_every_float_setting_refuses_nan_and_infinity(setting: Any, value: Any) -> None:
    with pytest.raises(ConfigError, match=setting.env):
        PoolConfig.from_env({setting.env: str(value)})
    with pytest.raises(ConfigError, match=setting.name):
        PoolConfig(**{setting.name: value})


def test_config_stores_parsed_values() -> None:
    config = PoolConfig(timeout="2", size="3")  # type: ignore[arg-type]
    assert config.timeout == 2.0 and isinstance(config.timeout, float) and config.size == 3


def test_error_advice_names_where_the_setting_was_made() -> None:
    django = PoolConfig.from_mapping({"size": 1, "timeout": 0.01}, source="DATABASES['default']['OPTIONS']['pool']")
    pool = ConnectionPool(config=django, driver=FakeDriver(), maintenance_interval=None)
    held = pool.acquire()
    with pytest.raises(PoolTimeout, match=r"DATABASES\['default'\]\['OPTIONS'\]\['pool'\]\['size'\]"):
        pool.acquire()
    pool.release(held)
    conf = PoolConfig(size=1, timeout=0.01).with_where("POOL_{NAME} or {name}= in gunicorn.conf.py")
    pool = ConnectionPool(config=conf, driver=FakeDriver(), maintenance_interval=None)
    held = pool.acquire()
    with pytest.raises(PoolTimeout, match=r"\(POOL_SIZE or size= in gunicorn.conf.py\).*\(POOL_TIMEOUT or"):
        pool.acquire()
    pool.release(held)


def test_stats_carry_exactly_the_tables_keys() -> None:
    pool, _, _ = make_pool()
    assert list(pool.stats()) == [s.name for s in S.TABLE]


def test_a_pool_told_to_keep_no_idle_closes_what_comes_back_until_the_next_fork() -> None:
    pool, driver, _ = make_pool(size=2, min_idle=1)
    held, idle = pool.acquire(), pool.acquire()
    pool.release(idle)
    pool.keep_no_idle()  # gunicorn's arbiter with a preloaded app
    assert conn_of(held).ended is None and driver.opened[1].ended == "close"
    pool.maintain()
    assert len(driver.open_now) == 1, "min_idle opens nothing in a process that serves nothing"
    pool.release(held)
    assert driver.open_now == [] and pool.stats()[S.IDLE] == 0
    pool.reset_after_fork()  # a worker forked from it pools as usual
    pool.release(pool.acquire())
    pool.maintain()
    assert pool.stats()[S.IDLE] == 1


def test_a_database_down_for_thousands_of_attempts_still_fails_fast_at_the_cap() -> None:
    # 2 ** 1024 does not fit in a float: the doubling must stop at the cap, not at the 1025th failure.
    pool, driver, clock = make_pool(size=1)
    driver.connect_error = FakeDisconnect("(2003) Can't connect")
    for _ in range(1100):
        clock.advance(1.01)  # past the cap: every acquire is an attempt
        with pytest.raises(DatabaseUnavailable):
            pool.acquire()
    assert driver.connect_attempts == 1100
    with pytest.raises(DatabaseUnavailable, match="not answering") as refused:
        pool.acquire()  # within the back-off that followed the last attempt
    assert 0 < refused.value.retry_after <= 1.0
