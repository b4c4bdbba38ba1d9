"""Real faults against the real server, with the kit served by gunicorn's gevent workers. Each test prints its figure
(run with -s to see them); docs/reliability.md collects them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from harness.mariadb import APP_PASSWORD, APP_USER, PrivateMariaDB
from harness.tools import Gunicorn, wait_until

pytestmark = pytest.mark.slow

WORKERS, POOL = 2, 5
BUDGET = WORKERS * POOL


def failure_times(result: dict[str, Any]) -> list[float]:
    """Wall-clock times of the failed requests."""
    return [result["wall_start"] + t for t, _ in result["failures_at"]]


def fault_during_load(server: Gunicorn, start: Callable[[], None], end: Callable[[], None], hold: float,
                      **load: Any) -> tuple[dict[str, Any], float, float]:
    """Load, `start` a fault once the load is being served, `end` it `hold` s later; returns the load's verdict and
    the wall-clock times the fault started and ended."""
    loader, result = server.load_in_background(**load)
    server.wait_for_checkouts(200)  # the load client starts in a subprocess: not after a guessed delay
    started_at = time.time()
    start()
    time.sleep(hold)
    end()
    ended_at = time.time()
    loader.join()
    return result, started_at, ended_at


def in_use_everywhere(server: Gunicorn) -> dict[int, int]:
    return {pid: stats["in_use"] for pid, stats in server.pool_stats_of_every_worker().items()}


def idle_until_every_session_expired(db: PrivateMariaDB) -> None:
    """No traffic until each app session open now has left the server (wait_timeout, or the pool's recycling)."""
    sessions = set(db.app_thread_ids())
    assert wait_until(lambda: not sessions & set(db.app_thread_ids()), timeout=30), sessions & set(db.app_thread_ids())


def test_wait_timeout_kills_never_reach_a_request(site_db: PrivateMariaDB, db: PrivateMariaDB) -> None:
    db.set_global("wait_timeout", 3)  # the pools connect after this: their sessions die after 3 s idle
    server = Gunicorn(site_db).start()
    try:
        server.load(clients=10, requests=5)
        idle_until_every_session_expired(db)
        keepalive = server.load(clients=10, requests=5, keepalive_share=1)
        idle_until_every_session_expired(db)
        fresh = server.load(clients=10, requests=5, keepalive_share=0)
        stats = server.pool_stats_of_every_worker()
    finally:
        server.stop()
    replaced = sum(s["discarded"] + s["recycled"] for s in stats.values())
    print(f"\nwait_timeout=3, 5 s idle: keep-alive {keepalive['ok']}/50 ok, new connections {fresh['ok']}/50 ok; "
          f"{replaced} expired connections replaced unseen")
    assert keepalive["failed"] == 0 and fresh["failed"] == 0
    assert keepalive["ok"] == 50 and fresh["ok"] == 50
    assert replaced > 0, "the idle connections should have been found dead or past their lifetime"


def test_server_restart_under_load_fails_only_while_it_is_down(site_db: PrivateMariaDB, db: PrivateMariaDB) -> None:
    server = Gunicorn(site_db, POOL_CONNECT_TIMEOUT="2").start()
    try:
        # ensure_running returns once the server accepts connections again: up_at is when it is back.
        result, down_at, up_at = fault_during_load(server, db.stop, db.ensure_running, hold=2,
                                                   clients=20, requests=100_000, think=0.02, deadline=14)
        in_use = in_use_everywhere(server)
        connections = db.app_connection_count()
        log = server.log()
    finally:
        server.stop()
    late = [t - up_at for t in failure_times(result) if t > up_at + 1.0]
    early = [down_at - t for t in failure_times(result) if t < down_at]
    print(f"\nserver down {up_at - down_at:.1f} s under load: {result['ok']} ok, {result['failed']} failed, all within "
          f"the outage; 0 later than 1 s after it was back; in_use afterwards {in_use}; {connections} server "
          f"connections (budget {BUDGET})")
    assert result["failed"] > 0, "the outage should have been felt"
    assert not late, f"failures {late} s after the server was back"
    assert not early, f"failures {early} s before the server went down"
    assert all(n == 0 for n in in_use.values()), in_use
    assert connections <= BUDGET
    assert set(result["statuses"]) <= {"200", "500", "503"}, result["statuses"]
    assert APP_PASSWORD not in log  # errors are logged, credentials are not


def test_killed_in_use_connections_fail_only_their_requests(site_db: PrivateMariaDB, db: PrivateMariaDB) -> None:
    server = Gunicorn(site_db).start()
    try:
        loader, result = server.load_in_background(clients=30, requests=40, paths="/report/slow/?seconds=0.1",
                                                   keepalive_share=1, deadline=60)
        kills = 0
        while loader.is_alive() and kills < 6:
            time.sleep(0.5)
            busy = db.query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND INFO LIKE %s",
                            (APP_USER, "%SLEEP%"))
            if busy:
                try:
                    db.kill(int(busy[0][0]))
                    kills += 1
                except Exception:  # noqa: BLE001 - it finished meanwhile
                    pass
        loader.join()
        after = server.load(clients=20, requests=10, paths="/report/slow/?seconds=0.01")
        stats = server.pool_stats_of_every_worker()
    finally:
        server.stop()
    discarded = sum(s["discarded"] for s in stats.values())
    print(f"\n{kills} in-use connections killed: {result['failed']} of {result['ok'] + result['failed']} requests "
          f"failed (status {result['statuses']}), {discarded} connections discarded; afterwards {after['ok']}/200 ok")
    assert kills >= 3
    assert 0 < result["failed"] <= kills
    assert set(result["statuses"]) <= {"200", "500"} and not result["errors"], result
    assert after["failed"] == 0
    assert all(s["in_use"] == 0 for s in stats.values())
    assert discarded >= 1


def test_kill_query_fails_that_request_and_leaves_a_working_connection(site_db: PrivateMariaDB,
                                                                        db: PrivateMariaDB) -> None:
    # One worker, one connection: whatever the killed request leaves behind, the next requests get.
    server = Gunicorn(site_db, WEB_WORKERS="1", POOL_SIZE="1").start()
    try:
        loader, result = server.load_in_background(clients=1, requests=1, paths="/report/slow/?scan=3000000000")
        assert wait_until(lambda: bool(db.query(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND INFO LIKE %s", (APP_USER, "%seq_1_to%")
        )), timeout=20)
        (victim,), = db.query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND INFO LIKE %s",
                              (APP_USER, "%seq_1_to%"))
        db.kill(int(victim), query_only=True)
        loader.join()
        after = server.load(clients=5, requests=10, paths="/products/,/select1/")
        stats = json.loads(server.get("/-/pool")[2])
        still_same = int(victim) in db.app_thread_ids()
    finally:
        server.stop()
    print(f"\nKILL QUERY: the request answered {result['statuses']}; then {after['ok']}/50 ok on the "
          f"{'same' if still_same else 'a new'} connection (discarded {stats['discarded']})")
    assert result["statuses"] == {"500": 1}
    assert after["failed"] == 0 and after["ok"] == 50


def test_frozen_server_fails_requests_within_the_bound_and_recovers(site_db: PrivateMariaDB,
                                                                    db: PrivateMariaDB) -> None:
    read_timeout, connect_timeout, wait = 2.0, 2.0, 3.0
    server = Gunicorn(site_db, POOL_READ_TIMEOUT=str(read_timeout), POOL_CONNECT_TIMEOUT=str(connect_timeout),
                      POOL_TIMEOUT=str(wait)).start()
    try:
        result, frozen_at, thawed_at = fault_during_load(server, db.freeze, db.thaw, hold=6,
                                                         clients=10, requests=100_000, think=0.05, deadline=16)
        in_use = in_use_everywhere(server)
    finally:
        db.thaw()
        server.stop()
    bound_ms = (read_timeout + connect_timeout + wait + 3.0) * 1000  # the worst chain, plus scheduling margin
    late = [t - thawed_at for t in failure_times(result) if t > thawed_at + 1.0 + read_timeout]
    print(f"\nserver frozen 6 s (read_timeout {read_timeout:g} s): {result['failed']} failed, {result['ok']} ok; "
          f"slowest request {result['max_ms']:.0f} ms (bound {bound_ms:.0f} ms); in_use afterwards {in_use}")
    assert result["failed"] > 0
    assert result["max_ms"] <= bound_ms, "a request waited longer than the configured bounds allow"
    assert not late, f"failures {late} s after the thaw"
    assert all(n == 0 for n in in_use.values()), in_use
    assert all(t >= frozen_at for t in failure_times(result))


def test_full_pool_answers_503_and_the_server_never_1040(site_db: PrivateMariaDB, db: PrivateMariaDB) -> None:
    db.set_global("max_connections", 12)  # tight, but the pool (1 worker x 2) stays below it
    server = Gunicorn(site_db, WEB_WORKERS="1", POOL_SIZE="2", POOL_TIMEOUT="0.5").start()
    try:
        result = server.load(clients=40, requests=3, paths="/report/slow/?seconds=1", keepalive_share=0)
        log = server.log()
        connections = db.app_connection_count()
    finally:
        server.stop()
    print(f"\nevery slot held by 1 s queries, 40 clients: {result['statuses']}; 1040 errors: {log.count('1040')}; "
          f"slowest answer {result['max_ms']:.0f} ms")
    assert set(result["statuses"]) == {"200", "503"}, result
    assert "1040" not in log and "Too many connections" not in log
    assert connections <= 2
    assert result["max_ms"] < 30_000


def test_greenlet_dying_with_a_connection_gives_the_slot_back(site_db: PrivateMariaDB) -> None:
    server = Gunicorn(site_db, WEB_WORKERS="1", POOL_SIZE="2", POOL_TIMEOUT="5").start()
    try:
        # Done right first: greenlets wrapped in returning_connections() give their connections back themselves.
        polite_status = server.get("/fanout/?n=4")[0]
        polite = json.loads(server.get("/-/pool")[2])
        status, _, _ = server.get("/fanout/?n=2&leak=1")  # two greenlets end holding both connections
        after = server.load(clients=5, requests=4)
        stats = json.loads(server.get("/-/pool")[2])
        log = server.log()
    finally:
        server.stop()
    print(f"\n2 connections leaked by dead greenlets: reclaimed {stats['reclaimed']}; then {after['ok']}/20 ok")
    assert polite_status == 200 and polite["reclaimed"] == 0 and polite["in_use"] == 0
    assert status == 200
    assert after["failed"] == 0
    assert stats["reclaimed"] == 2
    assert "owner died" in log and "stock_of" in log  # the warning names the checkout's stack


def test_startup_check_warns_before_any_request_fails(site_db: PrivateMariaDB, db: PrivateMariaDB) -> None:
    assert wait_until(lambda: db.app_connection_count() == 0, timeout=30)  # earlier tests' sessions are gone
    db.set_global("max_connections", 10)  # MariaDB's minimum; below 2 workers x 5 x 2 (reload) + reserve
    server = Gunicorn(site_db).start()
    try:
        result = server.load(clients=40, requests=5, paths="/report/slow/?seconds=0.05")
        log = server.log()
    finally:
        server.stop()
    warning_at = log.find("connection budget")
    print(f"\nmax_connections=10 < budget: warned at start; then {result['failed']} of 200 requests failed")
    assert 0 <= warning_at < log.find("Booting worker"), "the warning must come before any worker serves"
    assert "30 > the server's max_connections=10" in log, log[warning_at:warning_at + 400]
