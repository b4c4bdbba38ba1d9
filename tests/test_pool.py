"""The pool core against a real MariaDB: bound, waits, health, reset, ownership, fork. No Django here."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

import pymysql
import pytest

from harness.mariadb import APP_PASSWORD, ROOT_PASSWORD, PrivateMariaDB
from harness.tools import ConnectionMonitor, run_script, scalar, wait_until
from pool import ConfigError, ConnectionPool, PoolConfig, PoolTimeout, TooManyWaiters
from pool import stats as S
from pool.abc import ResetMode
from tests.unit.fakes import FakeClock


def connection_id(conn: pymysql.connections.Connection) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        row = cur.fetchone()
        assert row is not None
        return int(row[0])


GEVENT_BOUND_SCRIPT = """
    from gevent import monkey; monkey.patch_all()
    import json, os, gevent
    from pool import ConnectionPool, PoolConfig
    kwargs = json.loads(os.environ["KIT_CONNECT_KWARGS"])
    pool = ConnectionPool(kwargs, PoolConfig(size=5, timeout=60))
    holders = {}
    errors = []
    done = 0

    def work(i):
        global done
        with pool.connection() as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT CONNECTION_ID()")
                cid = cur.fetchone()[0]
            if cid in holders:
                errors.append(f"connection {cid} lent to {holders[cid]} and {i} at once")
            holders[cid] = i
            with conn.cursor() as cur:
                cur.execute("SELECT SLEEP(0.01)")
            del holders[cid]
        done += 1

    gevent.joinall([gevent.spawn(work, i) for i in range(200)], raise_error=True)
    print(json.dumps({"done": done, "errors": errors, "stats": pool.stats()}))
"""


def test_200_greenlets_never_exceed_5_server_connections(db: PrivateMariaDB, connect_kwargs: dict[str, Any]) -> None:
    with ConnectionMonitor(db) as mon:
        out = run_script(GEVENT_BOUND_SCRIPT, env={"KIT_CONNECT_KWARGS": json.dumps(connect_kwargs)})
    assert out["done"] == 200
    assert out["errors"] == []
    assert 0 < mon.peak <= 5, f"server saw {mon.peak} connections from a pool of 5"
    assert out["stats"][S.CONNECTS] <= 5
    assert out["stats"][S.WAITS] > 0, "200 greenlets on 5 slots must have queued: the test did not exercise waiting"
    assert out["stats"][S.IN_USE] == 0


def test_threads_share_a_pool_without_exceeding_its_size(db: PrivateMariaDB, connect_kwargs: dict[str, Any]) -> None:
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=5, timeout=60))
    holders: dict[int, int] = {}
    guard = threading.Lock()
    errors: list[str] = []

    def work(i: int) -> None:
        for _ in range(3):
            with pool.connection() as conn:
                cid = connection_id(conn)
                with guard:
                    if cid in holders:
                        errors.append(f"connection {cid} lent to {holders[cid]} and {i} at once")
                    holders[cid] = i
                scalar(conn, "SELECT SLEEP(0.005)")
                with guard:
                    del holders[cid]

    with ConnectionMonitor(db) as mon:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    pool.close()
    assert errors == []
    assert 0 < mon.peak <= 5
    stats = pool.stats()
    assert stats[S.CHECKOUTS] == 150
    assert stats[S.IN_USE] == 0


def test_full_pool_times_out_with_named_error(connect_kwargs: dict[str, Any]) -> None:
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, timeout=0.5), name="orders-db")
    held = pool.acquire()
    started = time.monotonic()
    with pytest.raises(PoolTimeout) as caught:
        pool.acquire()
    waited = time.monotonic() - started
    assert 0.5 <= waited < 3.0
    message = str(caught.value)
    # Built with the plain API: the advice names its arguments, not the gunicorn conf's variables.
    for part in ("orders-db", "size=1", "in_use=1", "waiting=0", "PoolConfig(size=...)", "PoolConfig(timeout=...)"):
        assert part in message
    assert "POOL_SIZE" not in message
    assert (caught.value.pool, caught.value.size, caught.value.in_use, caught.value.waiting) == ("orders-db", 1, 1, 0)
    assert caught.value.timeout == 0.5
    assert isinstance(caught.value, pymysql.err.OperationalError)  # callers catching the driver's errors see it
    assert pool.stats()[S.TIMEOUTS] == 1
    pool.release(held)
    pool.release(pool.acquire())  # the slot is usable again; the timed-out waiter took nothing
    assert pool.stats()[S.IN_USE] == 0


def test_max_waiting_fails_fast_instead_of_queueing(connect_kwargs: dict[str, Any]) -> None:
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, timeout=5, max_waiting=1))
    held = pool.acquire()
    waiter = threading.Thread(target=lambda: pool.release(pool.acquire()))
    waiter.start()
    assert wait_until(lambda: pool.stats()[S.WAITING] == 1, timeout=10)
    started = time.monotonic()
    with pytest.raises(TooManyWaiters, match=r"PoolConfig\(max_waiting=\.\.\.\)"):
        pool.acquire()
    assert time.monotonic() - started < 1.0, "a rejected caller must not wait"
    pool.release(held)
    waiter.join(10)
    assert pool.stats()[S.REJECTED] == 1


def test_waiters_are_served_in_arrival_order(connect_kwargs: dict[str, Any]) -> None:
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, timeout=30))
    held = pool.acquire()
    served: list[int] = []

    def wait_in_line(i: int) -> None:
        lease = pool.acquire()
        served.append(i)
        pool.release(lease)

    threads = []
    for i in range(8):
        t = threading.Thread(target=wait_in_line, args=(i,))
        t.start()
        threads.append(t)

        def all_queued(count: int = i + 1) -> bool:
            return pool.stats()[S.WAITING] == count

        assert wait_until(all_queued, timeout=10)
    pool.release(held)
    for t in threads:
        t.join(30)
    assert served == list(range(8))


def test_connection_killed_by_wait_timeout_is_replaced_invisibly(db: PrivateMariaDB,
                                                                 connect_kwargs: dict[str, Any]) -> None:
    db.set_global("wait_timeout", 2)  # sessions opened from now on are closed by the server after 2 s idle
    # min_idle=0: the maintenance loop drops idle connections the server closed; refilling min_idle would open more
    # that die of the 2 s wait_timeout too, and make the count depend on timing.
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=3, max_lifetime=3600, min_idle=0))
    leases = [pool.acquire() for _ in range(3)]
    old_ids = {connection_id(lease.connection) for lease in leases}
    for lease in leases:
        pool.release(lease)
    assert wait_until(lambda: db.app_connection_count() == 0, timeout=15), "the server should have closed them"
    for _ in range(5):
        with pool.connection() as conn:
            assert scalar(conn, "SELECT 1") == 1  # no 2006/2013 reaches the caller
            assert connection_id(conn) not in old_ids
    stats = pool.stats()
    assert stats[S.DISCARDED] == 3
    assert stats[S.CONNECTS] == 4


def test_server_restart_costs_callers_nothing_once_it_is_back(db: PrivateMariaDB,
                                                              connect_kwargs: dict[str, Any]) -> None:
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=4))
    leases = [pool.acquire() for _ in range(4)]
    for lease in leases:
        pool.release(lease)
    db.restart()
    for _ in range(8):
        with pool.connection() as conn:
            assert scalar(conn, "SELECT 1") == 1
    assert pool.stats()[S.DISCARDED] == 4


def clocked_pool(connect_kwargs: dict[str, Any], config: PoolConfig) -> tuple[ConnectionPool, FakeClock]:
    """A pool on the real server whose clock the test moves, with no maintenance loop: expiry is made to happen, not
    waited for. How the clock drives expiry is the unit tests' (tests/unit/test_state_machine.py); these show what
    the server sees of it."""
    clock = FakeClock(time.monotonic())
    return ConnectionPool(connect_kwargs, config, clock=clock, maintenance_interval=None), clock


def test_lifetime_recycles_connections(db: PrivateMariaDB, connect_kwargs: dict[str, Any]) -> None:
    pool, clock = clocked_pool(connect_kwargs, PoolConfig(size=1, max_lifetime=1))
    with pool.connection() as conn:
        first = connection_id(conn)
    clock.advance(1.2)
    with pool.connection() as conn:  # the checkout finds the idle connection past its lifetime
        second = connection_id(conn)
    assert first != second
    assert pool.stats()[S.RECYCLED] == 1
    # Recycled means closed with COM_QUIT: the old session leaves the server, it is not merely forgotten.
    assert wait_until(lambda: first not in db.app_thread_ids(), timeout=10), "the recycled session is still open"
    assert second in db.app_thread_ids()
    pool.close()


def test_default_lifetime_stays_below_the_servers_wait_timeout(db: PrivateMariaDB,
                                                               connect_kwargs: dict[str, Any]) -> None:
    db.set_global("wait_timeout", 40)
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1))
    lease = pool.acquire()
    record = lease._record
    assert record is not None
    assert record.expires - record.created <= 20.0  # half of wait_timeout, jittered down
    assert record.expires - record.created >= 20.0 * 0.9
    pool.release(lease)


def test_idle_connections_beyond_min_idle_are_closed(db: PrivateMariaDB, connect_kwargs: dict[str, Any]) -> None:
    pool, clock = clocked_pool(connect_kwargs, PoolConfig(size=4, min_idle=1, idle_timeout=1))
    leases = [pool.acquire() for _ in range(4)]
    ours = {connection_id(lease.connection) for lease in leases}
    for lease in leases:
        pool.release(lease)
    assert ours <= set(db.app_thread_ids())
    clock.advance(2.2)
    pool.maintain()  # one round of the maintenance loop, which runs it every second with no traffic needed
    assert pool.stats()[S.IDLE_CLOSED] == 3
    assert pool.stats()[S.IDLE] == 1
    # Counted by session id: other tests' pools may still hold sessions of the same user.
    assert wait_until(lambda: len(ours & set(db.app_thread_ids())) == 1, timeout=10), \
        "the server still has the idle sessions the pool closed"
    pool.close()


@pytest.mark.parametrize("reset", ["full", "rollback"])
def test_open_transaction_is_rolled_back_before_the_next_user(
    db: PrivateMariaDB, connect_kwargs: dict[str, Any], reset: str
) -> None:
    db.query("CREATE TABLE IF NOT EXISTS app.ledger (id INT PRIMARY KEY AUTO_INCREMENT, note VARCHAR(50))")
    db.query("DELETE FROM app.ledger")
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, reset=ResetMode(reset)))
    lease = pool.acquire()
    conn = lease.connection
    conn.begin()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO app.ledger (note) VALUES ('uncommitted')")
    pool.release(lease)  # forgot to commit or roll back
    with pool.connection() as conn:
        assert conn.get_autocommit()
        assert scalar(conn, "SELECT COUNT(*) FROM app.ledger") == 0
        assert not (conn.server_status & 1), "the next user must not start inside the old transaction"
    assert db.query("SELECT COUNT(*) FROM app.ledger")[0][0] == 0


def test_autocommit_is_restored_on_return(connect_kwargs: dict[str, Any]) -> None:
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, reset=ResetMode.ROLLBACK))
    lease = pool.acquire()
    lease.connection.autocommit(False)
    pool.release(lease)
    with pool.connection() as conn:
        assert conn.get_autocommit()


def test_connection_that_saw_a_disconnect_is_discarded(db: PrivateMariaDB, connect_kwargs: dict[str, Any]) -> None:
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, reset=ResetMode.ROLLBACK))
    lease = pool.acquire()
    victim = connection_id(lease.connection)
    db.kill(victim)
    with pytest.raises(pymysql.err.OperationalError):
        scalar(lease.connection, "SELECT 1")
    pool.release(lease)
    assert pool.stats()[S.IDLE] == 0, "a dead connection must never go back to the idle set"
    with pool.connection() as conn:
        assert scalar(conn, "SELECT 1") == 1
        assert connection_id(conn) != victim
    assert pool.stats()[S.DISCARDED] == 1


def test_context_manager_discards_on_disconnect_error(db: PrivateMariaDB, connect_kwargs: dict[str, Any]) -> None:
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1))
    with pytest.raises(pymysql.err.OperationalError):
        with pool.connection() as conn:
            db.kill(connection_id(conn))
            scalar(conn, "SELECT 1")
    assert pool.stats()[S.IDLE] == 0
    assert pool.stats()[S.IN_USE] == 0


def test_session_state_never_reaches_the_next_user_with_full_reset(connect_kwargs: dict[str, Any]) -> None:
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, reset=ResetMode.FULL),
                          session_init=["SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"])
    with pool.connection() as conn:
        first = connection_id(conn)
        with conn.cursor() as cur:
            cur.execute("SET @secret = 'from the previous request'")
            cur.execute("CREATE TEMPORARY TABLE scratch (x INT)")
            cur.execute("SELECT GET_LOCK('kit-test-lock', 0)")
            cur.execute("SET SESSION sql_mode = 'ANSI_QUOTES'")
            cur.execute("SET SESSION time_zone = '+05:00'")
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    with pool.connection() as conn:
        assert connection_id(conn) == first, "the test must reuse the same physical connection"
        assert scalar(conn, "SELECT @secret") is None
        with pytest.raises(pymysql.err.ProgrammingError, match="scratch"):
            scalar(conn, "SELECT COUNT(*) FROM scratch")  # the temporary table went with the reset
        assert scalar(conn, "SELECT IS_USED_LOCK('kit-test-lock')") is None
        assert "ANSI_QUOTES" not in scalar(conn, "SELECT @@SESSION.sql_mode")
        assert scalar(conn, "SELECT @@SESSION.time_zone") == "SYSTEM"
        assert scalar(conn, "SELECT @@SESSION.tx_isolation") == "READ-COMMITTED"  # session_init re-applied
        assert scalar(conn, "SELECT @@character_set_client") == "utf8mb4"


def test_dead_owner_slot_comes_back_with_a_warning(connect_kwargs: dict[str, Any],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, timeout=10))

    def checkout_and_die() -> None:
        pool.acquire()  # never released: the thread ends holding it

    t = threading.Thread(target=checkout_and_die)
    t.start()
    t.join()
    with caplog.at_level(logging.WARNING, logger="pool"):
        with pool.connection() as conn:
            assert scalar(conn, "SELECT 1") == 1
    assert pool.stats()[S.RECLAIMED] == 1
    assert any("checkout_and_die" in r.getMessage() and "owner died" in r.getMessage() for r in caplog.records)


def test_a_caller_that_queues_takes_back_a_dead_owners_slot_at_once(connect_kwargs: dict[str, Any]) -> None:
    # No maintenance loop at all: only the queueing caller's own look can free the slot (issue 30; before, a pool of 1
    # waited for the once-a-second round, and here it would wait forever, then time out).
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, timeout=5), maintenance_interval=None)
    thread = threading.Thread(target=pool.acquire)  # ends holding the lease
    thread.start()
    thread.join()
    with pool.connection(timeout=2) as conn:
        assert scalar(conn, "SELECT 1") == 1
    assert pool.stats()[S.RECLAIMED] == 1
    assert pool.stats()[S.TIMEOUTS] == 0
    pool.close()


STATEMENTS_PER_CHECKOUT_SCRIPT = """
    import json, os, pymysql
    from pool import ConnectionPool, PoolConfig

    kwargs = json.loads(os.environ["KIT_CONNECT_KWARGS"])
    admin = pymysql.connect(**json.loads(os.environ["KIT_ADMIN_KWARGS"]))

    def questions():  # the server's statement count; reading it is one statement of its own
        with admin.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
            return int(cur.fetchone()[1])

    def select_one(conn):
        with conn.cursor() as cur:
            cur.execute("SELECT 1")

    def begin_insert_commit(conn):
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO counted (note) VALUES ('begin')")
            cur.execute("COMMIT")

    def like_atomic(conn):  # what Django's atomic() sends around a write
        conn.autocommit(False)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO counted (note) VALUES ('atomic')")
        conn.commit()
        conn.autocommit(True)

    kinds = {"select_one": (select_one, 1), "begin_insert_commit": (begin_insert_commit, 3),
             "like_atomic": (like_atomic, 4)}
    out = {}
    for mode in os.environ["KIT_MODES"].split(","):
        pool = ConnectionPool(kwargs, PoolConfig(size=1, reset=mode, ping_after=60), name=mode,
                              maintenance_interval=None)
        for work, _ in kinds.values():  # connected, catalogue read
            with pool.connection() as conn:
                work(conn)
        out[mode] = {}
        for kind, (work, own) in kinds.items():
            before = questions()
            for _ in range(20):
                with pool.connection() as conn:
                    work(conn)
            out[mode][kind] = (questions() - before - 1 - 20 * own) / 20
        pool.close()
    print(json.dumps(out))
"""


def test_extra_statements_per_checkout_by_reset_mode() -> None:
    # A server of its own: the server-wide statement count must see this script's statements and no others (pools
    # left by earlier tests reconnect to the session's server after each test's kills, and set their sessions up).
    db = PrivateMariaDB().start()
    try:
        db.query("CREATE TABLE IF NOT EXISTS app.counted (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(20))")
        admin = {"unix_socket": db.socket_path, "user": "root", "password": ROOT_PASSWORD, "autocommit": True}
        out = run_script(STATEMENTS_PER_CHECKOUT_SCRIPT, env={
            "KIT_CONNECT_KWARGS": json.dumps(db.app_connect_kwargs()), "KIT_ADMIN_KWARGS": json.dumps(admin),
            "KIT_MODES": "tracked,rollback,full"})
    finally:
        db.destroy()
    # Before (issue 30): tracked sent 3.0 more after the atomic()-like checkout, resetting the session as if the
    # autocommit round trip were state left behind.
    assert out["tracked"] == {"select_one": 0.0, "begin_insert_commit": 0.0, "like_atomic": 0.0}, out
    assert out["rollback"] == {"select_one": 0.0, "begin_insert_commit": 0.0, "like_atomic": 0.0}, out
    # full resets after every checkout: COM_RESET_CONNECTION (a plain pool has no session set-up to replay).
    assert out["full"] == {"select_one": 1.0, "begin_insert_commit": 1.0, "like_atomic": 1.0}, out


GEVENT_DEAD_OWNER_SCRIPT = """
    from gevent import monkey; monkey.patch_all()
    import json, os, gevent, logging, io
    stream = io.StringIO()
    logging.basicConfig(stream=stream, level=logging.WARNING)
    from pool import ConnectionPool, PoolConfig
    pool = ConnectionPool(json.loads(os.environ["KIT_CONNECT_KWARGS"]), PoolConfig(size=2, timeout=10))

    def leak_one():
        pool.acquire()
        raise RuntimeError("boom")  # a view's spawned greenlet dies holding the connection

    for g in [gevent.spawn(leak_one) for _ in range(2)]:
        g.join()
    ok = 0
    for _ in range(5):
        with pool.connection() as conn:
            conn.ping()
            ok += 1
    print(json.dumps({"ok": ok, "stats": pool.stats(), "log": stream.getvalue()}))
"""


def test_greenlet_that_dies_holding_a_connection_does_not_shrink_the_pool(connect_kwargs: dict[str, Any]) -> None:
    out = run_script(GEVENT_DEAD_OWNER_SCRIPT, env={"KIT_CONNECT_KWARGS": json.dumps(connect_kwargs)})
    assert out["ok"] == 5
    assert out["stats"][S.RECLAIMED] == 2
    assert "leak_one" in out["log"]


def test_fork_child_never_quits_the_parents_connections(db: PrivateMariaDB, connect_kwargs: dict[str, Any]) -> None:
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=2))
    with pool.connection() as conn:
        parent_id = connection_id(conn)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the at-fork hook already dropped the inherited connection
        try:
            with pool.connection() as conn:
                child_id = connection_id(conn)
            pool.close()
            os.write(write_end, str(child_id).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    child_id = int(os.read(read_end, 64) or b"0")
    assert status == 0
    assert child_id and child_id != parent_id
    with pool.connection() as conn:  # still the same session: the child neither used nor QUIT it
        assert connection_id(conn) == parent_id
    assert pool.stats()[S.DISCARDED] == 0


def test_explicit_reset_after_fork_drops_connections_without_quit(db: PrivateMariaDB,
                                                                  connect_kwargs: dict[str, Any]) -> None:
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1))
    with pool.connection() as conn:
        first = connection_id(conn)
    inherited = pool._idle[0].conn
    pool.reset_after_fork()
    assert inherited._sock is None
    # Without COM_QUIT the server still has the session until its socket's last holder goes; in one process
    # that was us, so the server sees the socket close, not a QUIT: the session goes away as an abort.
    with pool.connection() as conn:
        assert connection_id(conn) != first


def test_one_ssl_context_serves_every_connect(connect_kwargs: dict[str, Any]) -> None:
    # PyMySQL 1.2 prefers TLS by default and builds a context for every connect (the cost this test is about); 1.1
    # builds one only when given TLS options, and then does not insist on TLS, which this private server lacks.
    kwargs = connect_kwargs if pymysql.VERSION >= (1, 2) else {**connect_kwargs, "ssl": {"check_hostname": False}}
    pool = ConnectionPool(kwargs, PoolConfig(size=2))
    a, b = pool.acquire(), pool.acquire()
    assert a.connection.ctx is b.connection.ctx
    pool.release(a)
    pool.release(b)


def test_read_and_write_timeouts_are_set_by_default(connect_kwargs: dict[str, Any]) -> None:
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, read_timeout=7, write_timeout=8))
    with pool.connection() as conn:
        assert conn._read_timeout == 7
        assert conn._write_timeout == 8


def test_credentials_stay_out_of_repr_stats_and_logs(connect_kwargs: dict[str, Any],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="pool"):
        pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, timeout=0.2))
        held = pool.acquire()
        with pytest.raises(PoolTimeout) as caught:
            pool.acquire()
        pool.release(held)
    texts = [repr(pool), str(pool.stats()), str(caught.value), caplog.text]
    assert all(APP_PASSWORD not in text for text in texts)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"size": 0}, "size"),
        ({"size": "many"}, "size"),
        ({"timeout": -1}, "timeout"),
        ({"reset": "sometimes"}, "reset"),
        ({"sizee": 5}, "sizee"),
        ({"min_idle": 5, "size": 2}, "min_idle"),
    ],
)
def test_bad_settings_name_the_setting(settings: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        PoolConfig.from_mapping(settings)


def test_settings_come_from_the_environment() -> None:
    config = PoolConfig.from_env({"POOL_SIZE": "7", "POOL_TIMEOUT": "2.5", "POOL_RESET": "rollback"})
    assert (config.size, config.timeout, config.reset) == (7, 2.5, "rollback")
    with pytest.raises(ConfigError, match="POOL_SIZE"):
        PoolConfig.from_env({"POOL_SIZE": "0"})


def test_session_tracking_payloads_do_not_disturb_pymysql(db: PrivateMariaDB, connect_kwargs: dict[str, Any]) -> None:
    # With CLIENT_SESSION_TRACK the server appends state-change data to OK packets, which PyMySQL reads as the
    # packet's message: results, affected rows, insert ids and warnings must come through as before.
    db.query("CREATE TABLE IF NOT EXISTS app.tracked (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB")
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, reset=ResetMode.TRACKED))
    with pool.connection() as conn:
        with conn.cursor() as cur:
            cur.execute("SET @v = 41, SESSION time_zone = '+01:00'")
            cur.execute("INSERT INTO app.tracked (v) VALUES (@v + 1), (2)")
            assert cur.rowcount == 2 and conn.insert_id() > 0
            cur.execute("SELECT CAST('x' AS INT)")  # a warning
            assert cur.fetchone()[0] == 0
            assert conn.show_warnings()
            cur.execute("SELECT v FROM app.tracked ORDER BY id DESC LIMIT 2")
            assert [row[0] for row in cur.fetchall()] == [2, 42]
    with pool.connection() as conn:
        assert scalar(conn, "SELECT @v") is None and scalar(conn, "SELECT @@session.time_zone") == "SYSTEM"
    assert pool.stats()[S.RESETS] == 2
    pool.close()


def test_a_connection_another_thread_is_polling_is_checked_out_and_back_in(connect_kwargs: dict[str, Any]) -> None:
    # The maintenance thread looks at idle connections outside the pool's lock, so a checkout or a return in another
    # thread may look at the same connection at the same moment. select.poll refuses a second poll() on one object
    # while the first runs: the RuntimeError reached the caller of acquire() (Django's suite under lease="transaction",
    # whose checkout per statement makes the overlap likely) or dropped the connection on its return.
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, min_idle=0), maintenance_interval=None)
    lease = pool.acquire()
    assert lease._record is not None
    conn = lease._record.conn
    pool.release(lease)
    poller = conn._pool_poller

    def look_until_woken() -> None:  # as the maintenance thread's poll, held open until the socket is shut
        while True:
            try:
                poller.poll(60_000)
                return
            except RuntimeError:  # the main thread's own look below came first
                continue

    def other_thread_polls() -> bool:
        try:
            poller.poll(0)
        except RuntimeError:
            return True
        return False

    looker = threading.Thread(target=look_until_woken, daemon=True)
    looker.start()
    try:
        assert wait_until(other_thread_polls)
        lease = pool.acquire()
        assert lease._record is not None and lease._record.conn is conn
        pool.release(lease)
        stats = pool.stats()
        assert (stats[S.IDLE], stats[S.DISCARDED]) == (1, 0)
    finally:
        pool.release(pool.acquire(), discard=True)  # shuts the socket, which ends the other thread's poll
        looker.join(timeout=30)
        pool.close()
    assert not looker.is_alive()
