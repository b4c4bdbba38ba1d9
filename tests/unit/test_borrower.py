"""lease="transaction" in the state machine: a unit of work holds a slot only while its connection is tied to it."""

from __future__ import annotations

import threading
from typing import Any

from pool import ConnectionPool, PoolConfig
from pool import stats as S
from pool.abc import LeaseMode
from pool.core import Borrower
from tests.unit.fakes import FakeBorrowing, FakeClock, FakeDriver


def make_pool(**settings: Any) -> tuple[ConnectionPool, FakeDriver]:
    driver = FakeDriver()
    pool = ConnectionPool(config=PoolConfig(min_idle=0, lease=LeaseMode.TRANSACTION, **settings), driver=driver,
                          clock=FakeClock(), maintenance_interval=None, name="unit")
    return pool, driver


def test_a_statement_outside_a_transaction_gives_its_slot_back_at_once() -> None:
    pool, driver = make_pool(size=1)
    with pool.connection() as unit:
        assert isinstance(unit, FakeBorrowing)
        first = unit.statement()
        assert pool.stats()[S.IN_USE] == 0  # between statements the unit holds nothing
        assert unit.statement() is first  # the next statement borrows again, the same connection here
    assert len(driver.opened) == 1 and pool.stats()[S.CHECKOUTS] == 2


def test_a_pinned_connection_stays_until_the_pin_goes_or_the_unit_ends() -> None:
    pool, _ = make_pool(size=2)
    with pool.connection() as unit:
        conn = unit.statement(pin=True)  # a transaction, say
        assert pool.stats()[S.IN_USE] == 1
        assert unit.statement(pin=True) is conn
        unit.statement(pin=False)  # COMMIT
        assert pool.stats()[S.IN_USE] == 0
        unit.statement(pin=True)
    assert pool.stats()[S.IN_USE] == 0  # the unit's end gives back what it held


def test_a_unit_of_work_whose_thread_dies_between_statements_holds_no_slot() -> None:
    pool, _ = make_pool(size=1)

    def work() -> None:
        unit = pool.borrowing(Borrower(pool))
        unit.statement()  # then the thread ends without ending its unit of work

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert pool.stats()[S.IN_USE] == 0
    with pool.connection() as unit:
        unit.statement()
    assert pool.stats()[S.RECLAIMED] == 0


def test_leases_taken_per_statement_keep_no_caller_stack() -> None:
    pool, _ = make_pool(size=1)
    borrower = Borrower(pool)
    lease = borrower.take()
    assert lease._stack == []  # the microsecond a stack costs is not paid per statement
    borrower.end()
    assert pool.acquire()._stack != []
