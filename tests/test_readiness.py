"""/readyz: 503 only while the database is down or the pool is stuck, after several readings a second apart, and 200
again after several; a busy pool that moves stays ready, whatever its queue; answered without a pool connection.
/healthz stays the liveness check."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from harness.mariadb import APP_DATABASE, PrivateMariaDB
from harness.tools import Gunicorn, wait_until

pytestmark = pytest.mark.slow
READINGS = 3  # pool.core.READINGS


def readyz(server: Gunicorn) -> tuple[int, dict[str, Any]]:
    status, _, body = server.get("/readyz")
    return status, json.loads(body)


def until_every_worker_says(server: Gunicorn, status: int, timeout: float = 90) -> list[tuple[int, dict[str, Any]]]:
    """Ask /readyz until each worker has answered `status` at least once; every answer meanwhile, in order. Requests
    land on whichever worker accepts them, so this asks until each pid has been heard."""
    workers = server.worker_pids()
    said: set[int] = set()
    answers: list[tuple[int, dict[str, Any]]] = []

    def heard() -> bool:
        answer = readyz(server)
        answers.append(answer)
        if answer[0] == status:
            said.add(answer[1]["pid"])
        return said >= workers

    assert wait_until(heard, timeout=timeout, interval=0.1), (status, said, workers, answers[-3:])
    return answers


def default_pool(answer: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    return answer[1]["pools"]["default"]


def turned_after_two_readings(answers: list[tuple[int, dict[str, Any]]], status: int) -> bool:
    """Whether each worker's first answer with `status` came after answers with the other status whose readings had
    seen the change once, then twice (a worker's readings come only from /readyz requests: these ones)."""
    for pid in {answer[1]["pid"] for answer in answers}:
        own = [answer for answer in answers if answer[1]["pid"] == pid]
        turned = next(i for i, answer in enumerate(own) if answer[0] == status)
        against = [default_pool(answer)["readings_against"] for answer in own[:turned]]
        if against and not (against[-1] == 2 and 1 in against):
            return False
    return True


def test_readyz_follows_the_database_down_and_back(site_db: PrivateMariaDB, db: PrivateMariaDB) -> None:
    server = Gunicorn(site_db, WEB_WORKERS="1").start()
    try:
        first = readyz(server)
        checkouts_before = json.loads(server.get("/-/pool")[2])["checkouts"]
        for _ in range(20):
            readyz(server)
        checkouts_after = json.loads(server.get("/-/pool")[2])["checkouts"]
        db.stop()
        down_at = time.monotonic()
        # No traffic: the maintenance loop finds its idle connection closed, and the refill finds the server gone.
        going = until_every_worker_says(server, 503, timeout=30)
        noticed_after = time.monotonic() - down_at
        time.sleep(0.5)
        later = readyz(server)
        db.ensure_running()  # returns once the server accepts connections
        back_at = time.monotonic()
        coming = until_every_worker_says(server, 200, timeout=30)
        ready_after = time.monotonic() - back_at
        served = server.get("/select1/")[0]
    finally:
        server.stop()
    down = going[-1]
    pool = default_pool(down)
    print(f"\nready: {first[0]}; 20 readyz took {checkouts_after - checkouts_before} checkouts; database stopped: "
          f"503 after {noticed_after:.2f}s: {down[1]['reasons']}; back: 200 after {ready_after:.2f}s")
    assert first[0] == 200 and first[1]["status"] == "ready"
    assert checkouts_after == checkouts_before, "readyz took a pool connection"
    assert down[1]["status"] == "not ready" and "database unavailable" in down[1]["reasons"][0]
    assert pool["unavailable_since"].endswith("+00:00") and pool["last_error"]
    # One reading never takes the worker out, nor brings it back: 200s that saw the outage came first, then 503s
    # that saw the database answer again.
    assert turned_after_two_readings(going, 503) and turned_after_two_readings(coming, 200)
    assert later[0] == 503 and default_pool(later)["unavailable_for_s"] > pool["unavailable_for_s"]
    assert served == 200


def test_readyz_stays_ready_while_busy_and_says_503_only_while_stuck_or_down(site_db: PrivateMariaDB,
                                                                             db: PrivateMariaDB) -> None:
    # Two gevent workers of 5 connections. A stuck pool is one where no caller got a connection for 3 s while all
    # were in use and callers waited; the read timeout is long enough that no blocked statement ends by itself.
    server = Gunicorn(site_db, KIT_READY_STUCK_AFTER="3", POOL_READ_TIMEOUT="300").start()
    lock = None
    try:
        # Busy but moving: 60 clients of 0.1 s queries on 2 x 5 connections, every request completes.
        thread, busy = server.load_in_background(clients=60, requests=10, paths="/report/slow/?seconds=0.1")
        during_load = []
        while thread.is_alive():
            during_load.append(readyz(server))
            time.sleep(0.1)
        thread.join()

        # Stuck: every connection held by a statement that waits for a table lock nobody releases.
        lock = db.admin()
        with lock.cursor() as cursor:
            cursor.execute(f"LOCK TABLES {APP_DATABASE}.shop_order WRITE")
        thread, blocked = server.load_in_background(clients=40, requests=3, paths="/report/slow/?seconds=0.01",
                                                    keepalive_share=0.0)
        stuck = until_every_worker_says(server, 503)
        with lock.cursor() as cursor:
            cursor.execute("UNLOCK TABLES")  # the blocked statements finish, their connections come back
        moving_again = until_every_worker_says(server, 200)
        thread.join()

        # Down: the server stops under load; requests get 503 at once, and so, after three readings, does /readyz.
        thread, outage = server.load_in_background(clients=10, requests=100, paths="/select1/", think=0.2)
        server.wait_for_checkouts(20)
        db.stop()
        down = until_every_worker_says(server, 503)
        db.ensure_running()
        up = until_every_worker_says(server, 200)
        thread.join()
    finally:
        if lock is not None:
            lock.close()
        server.stop()

    waiting = [default_pool(a)["waiting"] for a in during_load]
    last_stuck = next(a for a in reversed(stuck) if a[0] == 503)
    print(f"\nbusy: {len(during_load)} readyz, all {sorted({s for s, _ in during_load})}, most waiting "
          f"{max(waiting)}, load {busy['statuses']}; stuck: 503 after {len(stuck)} answers: "
          f"{last_stuck[1]['reasons']}; back after {len(moving_again)}; load {blocked['statuses']}; server stopped: "
          f"503 after {len(down)} answers ({down[-1][1]['reasons']}), back after {len(up)}; load {outage['statuses']}")
    assert busy["failed"] == 0 and set(busy["statuses"]) == {"200"}
    assert {status for status, _ in during_load} == {200}, "a busy pool that moves is ready"
    assert max(waiting) > 5, "the load queued more callers than a pool holds (the old rule's 503)"
    pool = default_pool(last_stuck)
    assert "stuck" in last_stuck[1]["reasons"][0] and pool["in_use"] == pool["size"] == 5
    assert pool["stuck_for_s"] >= 3 and pool["stuck_after_s"] == 3
    assert set(blocked["statuses"]) <= {"200", "503"} and blocked["statuses"].get("200", 0) > 0
    assert "database unavailable" in next(a for a in reversed(down) if a[0] == 503)[1]["reasons"][0]
    # Refused at once while it was down (a statement in flight at the stop may end in a 500, as in test_lifecycle).
    assert outage["statuses"].get("503", 0) > 0 and set(outage["statuses"]) <= {"200", "500", "503"}
    for answers, status in ((stuck, 503), (moving_again, 200), (down, 503), (up, 200)):
        # Never on one reading, either way.
        assert turned_after_two_readings(answers, status), (status, answers)
