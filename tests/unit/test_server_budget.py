"""The server budget (`server_size`) with fake drivers that share one fake server: which connections are opened, taken
from another pool, handed over or queued, and that the server never counts more than the budget under any
interleaving."""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from typing import Any

import pytest

from pool import ConnectionPool, PoolClosed, PoolConfig, PoolTimeout
from pool import stats as S
from tests.unit.fakes import FakeClock, FakeConnection, FakeDriver
from tests.unit.test_state_machine import wait_for

_servers = itertools.count()


class FakeServer:
    """The connections of every driver that goes to it; the most ever open at once is recorded at each connect."""

    def __init__(self) -> None:
        self.key = f"app@fake-server-{next(_servers)}"  # budgets are per process: one key per test
        self.drivers: list[FakeDriver] = []
        self.lock = threading.Lock()
        self.peak = 0

    def driver(self) -> FakeDriver:
        server = self

        class Driver(FakeDriver):
            def connect(self) -> FakeConnection:
                conn = super().connect()
                with server.lock:
                    server.peak = max(server.peak, server.open_now())
                return conn

        driver = Driver()
        driver.server = self.key
        self.drivers.append(driver)
        return driver

    def open_now(self) -> int:
        return sum(len(d.open_now) for d in self.drivers)


def make_pool(server: FakeServer, name: str, **settings: Any) -> ConnectionPool:
    settings.setdefault("min_idle", 0)
    return ConnectionPool(config=PoolConfig(**settings), driver=server.driver(), clock=FakeClock(),
                          maintenance_interval=None, name=name)


def test_without_server_size_each_pool_counts_alone_and_the_log_says_so(caplog: pytest.LogCaptureFixture) -> None:
    server = FakeServer()
    with caplog.at_level(logging.INFO, logger="pool"):
        a, b = make_pool(server, "a", size=2), make_pool(server, "b", size=2)
    leases = [a.acquire(), a.acquire(), b.acquire(), b.acquire()]
    assert server.open_now() == 4
    assert "no server budget" in caplog.text
    for lease in leases:
        lease._pool.release(lease)


def test_a_pool_that_needs_room_takes_another_pools_idle_connection(caplog: pytest.LogCaptureFixture) -> None:
    server = FakeServer()
    with caplog.at_level(logging.INFO, logger="pool"):
        a = make_pool(server, "a", size=3, server_size=3)
        b = make_pool(server, "b", size=3, server_size=3)
    assert f"server budget for {server.key}: 3 connections per process (server_size), shared with 'a'" in caplog.text
    held = [a.acquire() for _ in range(3)]
    for lease in held:
        a.release(lease)
    assert a.stats()[S.IDLE] == 3
    taken = [b.acquire() for _ in range(3)]
    assert server.open_now() == 3 and server.peak == 3
    assert a.stats()[S.IDLE] == 0 and a.stats()[S.HANDED_OVER] == 3
    assert all(c.ended == "close" for c in server.drivers[0].opened)
    for lease in taken:
        b.release(lease)


def test_its_own_idle_connection_is_used_as_it_is() -> None:
    server = FakeServer()
    a = make_pool(server, "a", size=4, server_size=2)
    first, second = a.acquire(), a.acquire()
    a.release(first)
    third = a.acquire()  # the idle one, not a new connect
    assert len(server.drivers[0].opened) == 2 and server.peak == 2
    a.release(second)
    a.release(third)


def test_a_caller_queues_when_every_connection_of_the_server_is_in_use_and_times_out_naming_the_setting() -> None:
    server = FakeServer()
    a = make_pool(server, "a", size=3, server_size=3)
    b = make_pool(server, "b", size=3, server_size=3)
    held = [a.acquire() for _ in range(3)]
    started = time.monotonic()
    with pytest.raises(PoolTimeout) as caught:
        b.acquire(timeout=0.05)
    assert time.monotonic() - started >= 0.04
    message = str(caught.value)
    assert "server_size=3" in message and "'a' 3" in message and "PoolConfig(server_size=...)" in message
    assert message.startswith("pool 'b' had no connection after 0.05s")
    assert b.stats()[S.SERVER_WAITS] == 1 and b.stats()[S.TIMEOUTS] == 1
    assert b.stats()[S.IN_USE] == 0  # its slot came back
    for lease in held:
        a.release(lease)
    assert server.peak == 3


def test_a_returned_connection_goes_to_the_server_queue_first_closed_for_another_pool() -> None:
    server = FakeServer()
    a = make_pool(server, "a", size=3, server_size=3)
    b = make_pool(server, "b", size=3, server_size=3)
    held = [a.acquire() for _ in range(3)]
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(b.acquire(timeout=5)))
    waiter.start()
    assert wait_for(lambda: len(b._budget._waiters) == 1)  # type: ignore[union-attr]
    a.release(held[0])
    waiter.join(5)
    assert got and server.drivers[0].opened[0].ended == "close"
    assert a.stats()[S.HANDED_OVER] == 1 and a.stats()[S.IDLE] == 0
    assert server.peak == 3
    b.release(got[0])
    for lease in held[1:]:
        a.release(lease)


def test_a_caller_of_the_same_pool_gets_the_returned_connection_as_it_is() -> None:
    server = FakeServer()
    a = make_pool(server, "a", size=5, server_size=2)
    held = [a.acquire(), a.acquire()]
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(a.acquire(timeout=5)))
    waiter.start()
    assert wait_for(lambda: len(a._budget._waiters) == 1)  # type: ignore[union-attr]
    a.release(held[0])
    waiter.join(5)
    assert got and got[0].connection.conn is server.drivers[0].opened[0]
    assert len(server.drivers[0].opened) == 2 and a.stats()[S.HANDED_OVER] == 0
    a.release(got[0])
    a.release(held[1])


def test_the_server_queue_is_served_before_the_pools_own_waiters() -> None:
    """A burst on one pool (more callers than its size) cannot keep another pool's caller waiting: the next returned
    connection goes to the caller that queued for the server, not to the busy pool's next waiter."""
    server = FakeServer()
    busy = make_pool(server, "busy", size=2, server_size=2)
    quiet = make_pool(server, "quiet", size=2, server_size=2)
    held = [busy.acquire(), busy.acquire()]
    order: list[str] = []

    def use(pool: ConnectionPool) -> None:
        lease = pool.acquire(timeout=5)
        order.append(pool.name)
        pool.release(lease)

    threads = [threading.Thread(target=use, args=(busy,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert wait_for(lambda: busy.stats()[S.WAITING] == 3)
    threads.append(threading.Thread(target=use, args=(quiet,)))
    threads[-1].start()
    assert wait_for(lambda: len(quiet._budget._waiters) == 1)  # type: ignore[union-attr]
    busy.release(held[0])
    assert wait_for(lambda: len(order) >= 1) and order[0] == "quiet"
    busy.release(held[1])
    for thread in threads:
        thread.join(5)
    assert sorted(order) == ["busy", "busy", "busy", "quiet"]
    assert server.peak == 2


def test_a_caller_that_times_out_holding_another_connection_of_the_server_is_told_so() -> None:
    server = FakeServer()
    a = make_pool(server, "a", size=2, server_size=2)
    b = make_pool(server, "b", size=2, server_size=2)
    mine, other = a.acquire(), b.acquire()
    with pytest.raises(PoolTimeout, match="already holds a connection of pool '[ab]' on the same server"):
        b.acquire(timeout=0.02)
    a.release(mine)
    b.release(other)


def test_closing_a_pool_wakes_its_callers_queued_for_the_server() -> None:
    server = FakeServer()
    a = make_pool(server, "a", size=2, server_size=2)
    b = make_pool(server, "b", size=2, server_size=2)
    held = [a.acquire(), a.acquire()]
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            b.acquire(timeout=5)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    assert wait_for(lambda: len(b._budget._waiters) == 1)  # type: ignore[union-attr]
    b.close()
    thread.join(5)
    assert len(errors) == 1 and isinstance(errors[0], PoolClosed)
    for lease in held:
        a.release(lease)


def test_broken_and_expired_connections_give_their_place_back() -> None:
    server = FakeServer()
    a = make_pool(server, "a", size=2, server_size=2)
    b = make_pool(server, "b", size=2, server_size=2)
    first = a.acquire()
    a.release(first, discard=True)
    second = a.acquire()
    a.release(second)
    server.drivers[0].opened[1].alive = False  # the server closed the idle one
    leases = [b.acquire(), b.acquire()]  # one token free, one taken from a (dead: dropped, its place is free too)
    assert server.open_now() == 2 and server.peak == 2
    for lease in leases:
        b.release(lease)
    assert b._budget is not None and b._budget.stats()["open"] == 2


def test_the_smaller_server_size_holds_for_every_pool_of_the_server(caplog: pytest.LogCaptureFixture) -> None:
    server = FakeServer()
    a = make_pool(server, "a", size=3, server_size=3)
    with caplog.at_level(logging.WARNING, logger="pool"):
        b = make_pool(server, "b", size=3, server_size=2)
    assert "the smaller holds" in caplog.text
    assert a._budget is b._budget and b._budget is not None and b._budget.size == 2


def test_under_any_interleaving_the_server_never_counts_more_than_the_budget() -> None:
    server = FakeServer()
    pools = [make_pool(server, f"alias{i}", size=5, server_size=4, timeout=10) for i in range(4)]
    errors: list[BaseException] = []
    done = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(40):
                pool = pools[rng.randrange(4)]
                lease = pool.acquire()
                assert server.open_now() <= 4
                time.sleep(rng.random() * 0.001)
                pool.release(lease, discard=rng.random() < 0.1)
            done.append(seed)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(done) == 24
    assert server.peak <= 4
    budget = pools[0]._budget
    assert budget is not None and budget.stats()["open"] == server.open_now() <= 4
    assert sum(p.stats()[S.HANDED_OVER] for p in pools) > 0
