"""/readyz: 503 with the reason while the database is down or the pool saturated, 200 again within a second of the
database's return, answered without a pool connection; /healthz stays the liveness check."""

from __future__ import annotations

import json
import time

import pytest

from harness.mariadb import PrivateMariaDB
from harness.tools import Gunicorn, wait_until

pytestmark = pytest.mark.slow


def readyz(server: Gunicorn) -> tuple[int, dict]:
    status, _, body = server.get("/readyz")
    return status, json.loads(body)


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
        seen: dict[str, tuple[int, dict]] = {}

        def not_ready() -> bool:
            seen["answer"] = readyz(server)
            return seen["answer"][0] == 503

        assert wait_until(not_ready, timeout=15, interval=0.1), seen
        noticed_after = time.monotonic() - down_at
        down_answer = seen["answer"]
        time.sleep(0.5)
        later = readyz(server)
        db.ensure_running()  # returns once the server accepts connections
        back_at = time.monotonic()
        assert wait_until(lambda: readyz(server)[0] == 200, timeout=10, interval=0.05)
        ready_after = time.monotonic() - back_at
        served = server.get("/select1/")[0]
    finally:
        server.stop()
    status, body = down_answer
    pool = body["pools"]["default"]
    print(f"\nready: {first[0]}; 20 readyz took {checkouts_after - checkouts_before} checkouts; database stopped: "
          f"503 after {noticed_after:.2f}s: {body['reasons']}; back: 200 after {ready_after:.2f}s")
    assert first[0] == 200 and first[1]["status"] == "ready"
    assert checkouts_after == checkouts_before, "readyz took a pool connection"
    assert status == 503 and body["status"] == "not ready"
    assert "database unavailable" in body["reasons"][0]
    assert pool["unavailable_since"].endswith("+00:00") and pool["last_error"]
    assert later[0] == 503 and later[1]["pools"]["default"]["unavailable_for_s"] > pool["unavailable_for_s"]
    assert ready_after < 1.0, "the issue asks for 200 within a second of the database's return"
    assert served == 200


def test_readyz_says_saturated_while_callers_queue_past_the_bound(site_db: PrivateMariaDB) -> None:
    # One worker, two connections, 20 clients holding each for 0.3 s: far more waiting than the pool's size.
    server = Gunicorn(site_db, WEB_WORKERS="1", POOL_SIZE="2").start()
    answers: list[tuple[int, dict, float]] = []
    try:
        thread, result = server.load_in_background(clients=20, requests=4, paths="/report/slow/?seconds=0.3")
        while thread.is_alive():
            started = time.monotonic()
            status, body = readyz(server)
            answers.append((status, body, time.monotonic() - started))
            time.sleep(0.1)
        thread.join()
        assert wait_until(lambda: readyz(server)[0] == 200, timeout=10)
    finally:
        server.stop()
    saturated = [body for status, body, _ in answers if status == 503]
    slowest = max(took for _, _, took in answers)
    print(f"\n{len(answers)} readyz during the load, {len(saturated)} saturated, slowest answer "
          f"{slowest * 1000:.0f} ms; {saturated[0]['reasons'] if saturated else None}; load {result.get('statuses')}")
    assert saturated, "readyz never said the pool was saturated"
    assert "saturated" in saturated[0]["reasons"][0] and saturated[0]["pools"]["default"]["waiting"] > 2
    assert slowest < 1.0, "readyz waited for a pool connection"
