"""Real gunicorn with gevent workers in front of the private server: bounds, reloads, kills, budget."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from harness.mariadb import PrivateMariaDB
from harness.tools import ConnectionMonitor, Gunicorn, app_connections_by_pid, wait_until

pytestmark = pytest.mark.slow

WORKERS, POOL = 2, 5
BUDGET = WORKERS * POOL


def test_200_mixed_clients_fail_nothing_and_stay_within_pool_x_workers(site_db: PrivateMariaDB) -> None:
    server = Gunicorn(site_db).start()
    try:
        with ConnectionMonitor(site_db) as mon:
            result = server.load(clients=200, requests=10, paths="/products/,/report/slow/,/products/7/,/select1/")
        stats = json.loads(server.get("/-/pool")[2])
    finally:
        server.stop()
    print(f"\n200 clients (half keep-alive, half a new connection per request): {result}; peak server connections "
          f"{mon.peak} (budget {BUDGET})")
    assert result["failed"] == 0, result
    assert result["ok"] == 2000
    assert 0 < mon.peak <= BUDGET
    assert stats["size"] == POOL  # the conf's POOL_SIZE reached the worker's pool
    assert {"pid", "size", "in_use", "idle", "waiting"} <= stats.keys()


def test_full_pool_answers_503_with_retry_after(site_db: PrivateMariaDB) -> None:
    server = Gunicorn(site_db, WEB_WORKERS="1", POOL_SIZE="1", POOL_TIMEOUT="0.2").start()
    try:
        with ConnectionMonitor(site_db) as mon:
            result = server.load(clients=20, requests=2, paths="/report/slow/?seconds=0.5", keepalive_share=0)
        # And one request, to read the answer's headers, while another holds the only connection.
        import threading

        busy = threading.Thread(target=server.get, args=("/report/slow/?seconds=1",))
        busy.start()
        # Ask only once the busy request holds the connection (the one worker's /-/pool takes none itself).
        assert wait_until(lambda: json.loads(server.get("/-/pool")[2])["in_use"] == 1, timeout=10, interval=0.02)
        status, headers, body = server.get("/report/slow/?seconds=0.1")
        busy.join()
    finally:
        server.stop()
    assert set(result["statuses"]) <= {"200", "503"}, result
    assert result["statuses"].get("503", 0) > 0 and result["statuses"].get("200", 0) > 0, result
    assert result["errors"] == {}
    assert status == 503 and headers.get("Retry-After") == "1", (status, headers, body)
    assert b"PoolTimeout" in body
    assert mon.peak <= 1


def test_preloaded_arbiter_connection_is_neither_shared_nor_quit_by_workers(site_db: PrivateMariaDB,
                                                                          tmp_path: Path) -> None:
    report = tmp_path / "preload-report"
    server = Gunicorn(site_db, "tests/gunicorn_preload.conf.py", KIT_PRELOAD_REPORT=str(report)).start()
    try:
        arbiter_conn = int(report.read_text().split()[1])
        result = server.load(clients=50, requests=10, paths="/products/,/select1/")
        by_pid = app_connections_by_pid(site_db)
        server.signal(signal.SIGHUP)  # the arbiter queries on its own connection, then starts new workers
        assert wait_until(lambda: "after" in report.read_text(), timeout=30)
        result_after_reload = server.load(clients=20, requests=5)
        still_there = arbiter_conn in site_db.app_thread_ids()
    finally:
        server.stop()
    lines = report.read_text()
    assert "replaced with a per-greenlet one" in server.log()  # made safe, not merely tolerated
    assert result["failed"] == 0 and result_after_reload["failed"] == 0
    assert f"after {arbiter_conn} ok" in lines, lines
    assert still_there, "a worker sent COM_QUIT on the arbiter's session"
    assert server.process is not None
    assert by_pid.get(server.process.pid) == 1, by_pid  # workers opened their own; the arbiter holds just its one


def test_reload_and_max_requests_recycling_lose_no_request(site_db: PrivateMariaDB) -> None:
    server = Gunicorn(site_db, MAX_REQUESTS="300", MAX_REQUESTS_JITTER="50").start()
    try:
        import threading

        def reload_midway() -> None:
            # Once the load is being served; 100 checkouts stays below any worker's max_requests (300 - 50).
            server.wait_for_checkouts(100)
            server.signal(signal.SIGHUP)

        reloader = threading.Thread(target=reload_midway)
        with ConnectionMonitor(site_db) as mon:
            reloader.start()
            result = server.load(clients=100, requests=40, paths="/products/,/report/slow/,/select1/")
            reloader.join()
        log = server.log()
    finally:
        server.stop()
    restarts = log.count("Autorestarting worker") + log.count("max requests")
    print(f"\nreload + max_requests: {result}; peak {mon.peak}, allowed {2 * BUDGET} during the reload overlap; "
          f"{restarts} max_requests restarts")
    assert result["failed"] == 0, result
    assert "Hang up" in log or "Handling signal: hup" in log
    assert restarts > 0, "the load should have recycled workers through max_requests"
    assert mon.peak <= 2 * BUDGET  # what the budget check allows for: old and new workers side by side


def test_sigkilled_worker_connections_leave_the_server(site_db: PrivateMariaDB) -> None:
    server = Gunicorn(site_db).start()
    try:
        server.load(clients=40, requests=5, paths="/report/slow/")
        before = app_connections_by_pid(site_db)
        victim = max(server.worker_pids(), key=lambda pid: before.get(pid, 0))
        assert before.get(victim, 0) > 0
        assert server.process is not None
        server_pid = server.process.pid
        import os

        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: victim not in app_connections_by_pid(site_db), timeout=30)
        assert wait_until(lambda: len(server.worker_pids()) == WORKERS and victim not in server.worker_pids(), 30)
        result = server.load(clients=40, requests=5, paths="/report/slow/")
        after = app_connections_by_pid(site_db)
    finally:
        server.stop()
    assert result["failed"] == 0
    new_workers = set(after) - set(before) - {server_pid}
    assert new_workers, f"the replacement worker should have opened its own connections: {after}"
    assert sum(after.values()) <= BUDGET


def test_budget_check_warns_and_strict_mode_refuses(site_db: PrivateMariaDB, db: PrivateMariaDB) -> None:
    db.set_global("max_connections", 25)  # 2 workers x 10 x 2 (reload) + 10 reserve = 50 > 25
    server = Gunicorn(site_db, POOL_SIZE="10").start()
    try:
        log = server.log()
    finally:
        server.stop()
    assert "connection budget" in log and "max_connections=25" in log and "50 > " in log, log
    # Without server_size the arbiter cannot know the Django aliases: it says what it assumed, and what bounds them.
    assert "counted as one pool per worker on the server" in log and "set server_size to bound them" in log, log
    strict = Gunicorn(site_db, POOL_SIZE="10", POOL_BUDGET_STRICT="1").start(wait=False)
    try:
        assert strict.process is not None
        code = strict.process.wait(60)
    finally:
        strict.stop()
    assert code != 0
    assert "refusing to start" in strict.log() and "max_connections=25" in strict.log()
