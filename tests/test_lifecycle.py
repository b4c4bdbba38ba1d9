"""Lifecycle in production (issue 14), with real gunicorn gevent workers and the real server: the database down under
load, a SIGTERM during writes, a warm start. Each test prints its figures (run with -s); docs/reliability.md keeps
them."""

from __future__ import annotations

import http.client
import json
import random
import signal
import threading
import time
from typing import Any

import pytest

from harness.mariadb import PrivateMariaDB
from harness.tools import Gunicorn, wait_until

pytestmark = pytest.mark.slow


def every_worker(server: Gunicorn) -> dict[int, dict[str, Any]]:
    return server.pool_stats_of_every_worker()


def test_database_down_under_load_fails_fast_and_recovers_within_a_second(site_db: PrivateMariaDB,
                                                                         db: PrivateMariaDB) -> None:
    # MAX_REQUESTS=0: no worker recycling, so the counters read at the end cover the whole outage.
    server = Gunicorn(site_db, WEB_WORKERS="2", POOL_SIZE="5", POOL_MIN_IDLE="0", MAX_REQUESTS="0").start()
    try:
        loader, result = server.load_in_background(clients=200, requests=100_000, paths="/products/", deadline=24,
                                                   think=0.05)
        server.wait_for_checkouts(500)  # a steady load, however long its client takes to start
        down_at = time.time()
        db.stop()
        time.sleep(10)
        db.ensure_running()
        up_at = time.time()
        loader.join()
        stats = every_worker(server)
    finally:
        server.stop()
    start = result["wall_start"]
    failures = [(start + t, status) for t, status in result["failures_at"]]
    attempts = sum(s["connect_errors"] for s in stats.values())
    refused = sum(s["unavailable"] for s in stats.values())
    back = [start + t for t in result["ok_at"] if start + t > up_at]
    recovery = back[0] - up_at if back else float("inf")
    failed_ms = sorted(result["failed_ms"])
    median_ms = failed_ms[len(failed_ms) // 2] if failed_ms else 0.0
    print(f"\ndatabase down {up_at - down_at:.1f}s under 200 users: {len(failures)} requests failed "
          f"({sum(1 for _, st in failures if st == '500')} of them 500s in flight at the stop), median "
          f"{median_ms:.1f} ms each; {attempts} connect attempts in all, {refused} callers refused without one; "
          f"first success {recovery:.2f}s after the server was back")
    assert result["errors"] == {}, result["errors"]
    # Requests using a connection when the server went away fail with 2013 (a 500, as any error in flight); after
    # that, every refusal is the pool's 503. At most one per connection then held: 2 workers x pool 5.
    in_flight = [t for t, status in failures if status == "500"]
    assert {status for _, status in failures} <= {"500", "503"}
    assert len(in_flight) <= 10 and all(down_at - 1 <= t <= down_at + 5 for t in in_flight), in_flight
    # Before: one connect attempt per request, thousands. Now: a probe per worker at most every second or so.
    assert attempts <= 2 * 30, attempts
    assert refused > attempts
    assert median_ms < 200, failed_ms[-10:]
    assert recovery < 3.0, "recovery should take about the back-off cap (1 s); the bound is generous for CI"
    assert all(down_at - 1 <= t <= up_at + 3 for t, _ in failures), "failures only while the server was away"


def _place_orders(port: int, stop: threading.Event, created: list[int], errors: list[str]) -> None:
    while not stop.is_set():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("POST", "/orders/", body=json.dumps({"product_id": random.randint(1, 100), "quantity": 1}),
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            body = response.read()
            if response.status == 201:
                created.append(int(json.loads(body)["order"]))
            elif response.status != 409:  # out of stock is an answer
                errors.append(str(response.status))
        except OSError:
            if not stop.is_set():
                time.sleep(0.05)  # the server is shutting down: nothing more will be accepted
        finally:
            conn.close()


def test_sigterm_during_writes_loses_no_order_and_quits_every_session(site_db: PrivateMariaDB,
                                                                      db: PrivateMariaDB) -> None:
    assert wait_until(lambda: db.app_connection_count() == 0, timeout=30)
    aborted_before = db.status("Aborted_clients")
    server = Gunicorn(site_db, WEB_WORKERS="2", POOL_SIZE="5", GRACEFUL_TIMEOUT="10").start()
    stop, created, errors = threading.Event(), list[int](), list[str]()
    clients = [threading.Thread(target=_place_orders, args=(server.port, stop, created, errors)) for _ in range(20)]
    try:
        for client in clients:
            client.start()
        # SIGTERM while orders are being written: once some were answered, however slow the start.
        assert wait_until(lambda: len(created) >= 20, timeout=30), errors
        server.signal(signal.SIGTERM)
        exit_code = server.process.wait(60) if server.process else None
    finally:
        stop.set()
        for client in clients:
            client.join(30)
        server.stop()
    ids = ",".join(str(i) for i in created)  # ints: safe to inline
    rows = db.query(f"SELECT id FROM app.shop_order WHERE id IN ({ids})") if created else []
    stored = {int(row[0]) for row in rows}
    sessions_left = db.app_connection_count()
    aborted = db.status("Aborted_clients") - aborted_before
    print(f"\nSIGTERM during writes: {len(created)} orders answered 201, {len(stored)} of them in the table; "
          f"{sessions_left} sessions left, {aborted} closed without COM_QUIT")
    assert exit_code == 0
    assert created and errors == [], errors
    assert stored == set(created), "an order answered 201 must be committed"
    assert sessions_left == 0
    assert aborted == 0, "each pooled session must end with COM_QUIT when the worker drains its pool"


def test_warm_start_opens_min_idle_before_the_first_request(site_db: PrivateMariaDB, db: PrivateMariaDB) -> None:
    assert wait_until(lambda: db.app_connection_count() == 0, timeout=30)
    server = Gunicorn(site_db, WEB_WORKERS="2", POOL_WARM_START="1", POOL_MIN_IDLE="2").start(wait=False)
    try:
        # No request at all: the connections must come from the workers' start.
        warmed = wait_until(lambda: db.app_connection_count() == 4, timeout=60)
        log = server.log()
    finally:
        server.stop()
    assert warmed, f"{db.app_connection_count()} connections; expected min_idle 2 x 2 workers\n{log}"
    assert log.count("warm start opened 2 to 'default'") == 2


def test_warm_start_without_the_database_logs_and_serves(site_db: PrivateMariaDB) -> None:
    server = Gunicorn(site_db, WEB_WORKERS="1", POOL_WARM_START="1", POOL_START_WITHOUT_DATABASE="1",
                      DATABASE_URL=f"mysql://app:wrong-password@127.0.0.1:{site_db.port}/app").start(wait=False)
    try:
        assert wait_until(lambda: "warm start failed" in server.log(), timeout=60), server.log()
        status = server.get("/products/")[0]
    finally:
        server.stop()
    assert status == 503
