"""Wait and use time as distributions: Prometheus histograms fed by every worker's pools, and the Server-Timing header
that tells a browser how long its request queued for connections, checked against the pool's own measurement."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from harness.mariadb import PrivateMariaDB
from harness.tools import Gunicorn, wait_until

pytestmark = pytest.mark.slow


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of every series of `name` whose labels include `labels`."""
    total, found = 0.0, False
    for match in re.finditer(rf"^{name}\{{([^}}]*)\}} ([0-9.e+-]+)$", text, re.MULTILINE):
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
            found = True
    assert found, f"no {name}{labels} in /metrics"
    return total


def test_wait_and_use_histograms_hold_every_workers_checkouts(site_db: PrivateMariaDB) -> None:
    server = Gunicorn(site_db).start()
    try:
        # 50 ms queries from 40 clients on 2 x 5 connections: both workers queue.
        result = server.load(clients=40, requests=5, paths="/report/slow/?seconds=0.05")
        readings: dict[str, object] = {}

        def settled() -> bool:
            view = server.pool_view(fresh_since=time.monotonic())
            text = server.get("/metrics")[2].decode()
            total = view["total"]["default"]
            readings.update(view=view, text=text)
            # Nothing lent out, and every return observed: the histograms count what the snapshots count, the wait
            # histogram every caller (a wait of 0 for each that found a slot free).
            return (total["in_use"] == 0 and sample(text, "mysql_pool_use_seconds_count", pool="default")
                    == total["checkouts"] and sample(text, "mysql_pool_wait_seconds_count", pool="default")
                    == total["immediate"] + total["waits"])

        assert wait_until(settled, timeout=20, interval=0.3), (readings.get("view"), str(readings.get("text"))[-3000:])
    finally:
        server.stop()
    view, text = readings["view"], str(readings["text"])
    assert isinstance(view, dict)
    workers = {w["pid"]: w["pools"]["default"] for w in view["workers"]}
    wait_sum = sample(text, "mysql_pool_wait_seconds_sum", pool="default")
    use_sum = sample(text, "mysql_pool_use_seconds_sum", pool="default")
    largest_bucket = max(float(b) for b in re.findall(r'^mysql_pool_wait_seconds_bucket\{[^}]*le="([0-9.]+)"', text,
                                                      re.MULTILINE))
    print(f"\n{result['ok']} requests; per worker (checkouts, waits): "
          f"{ {pid: (p['checkouts'], p['waits']) for pid, p in workers.items()} }; histograms: use count "
          f"{sample(text, 'mysql_pool_use_seconds_count', pool='default'):.0f} sum {use_sum:.2f}s, wait count "
          f"{sample(text, 'mysql_pool_wait_seconds_count', pool='default'):.0f} sum {wait_sum:.2f}s; "
          f"/-/pool wait_ms {view['total']['default']['wait_ms']:.0f}, "
          f"usage_ms {view['total']['default']['usage_ms']:.0f}")
    assert result["failed"] == 0
    assert len(workers) == 2 and all(p["checkouts"] > 0 and p["waits"] > 0 for p in workers.values()), \
        "both workers served and queued: the sums above hold both"
    # Same waits, same time: the histogram's sum is the pools' own total, to the rounding of the snapshots.
    assert wait_sum * 1000 == pytest.approx(view["total"]["default"]["wait_ms"], abs=5)
    assert use_sum * 1000 == pytest.approx(view["total"]["default"]["usage_ms"], abs=5)
    assert largest_bucket == 10.0, "the buckets end at the pool timeout (10 s by default)"
    assert 'le="0.001"' in text
    assert sample(text, "mysql_pool_wait_seconds_bucket", pool="default", le="0.0") == view["total"]["default"][
        "immediate"], "the bucket at 0 holds exactly the checkouts that did not queue"


def _slow_request(server: Gunicorn, seconds: float) -> threading.Thread:
    thread = threading.Thread(target=server.get, args=(f"/report/slow/?seconds={seconds}",))
    thread.start()
    return thread


def test_server_timing_is_the_wait_the_pool_measured_for_the_request(site_db: PrivateMariaDB) -> None:
    # One worker with one connection: a request that arrives while a slow one holds it queues, and only it does, so
    # the pool's wait_ms grows by exactly its wait.
    server = Gunicorn(site_db, WEB_WORKERS="1", POOL_SIZE="1").start()
    rounds: list[tuple[float, float]] = []
    try:
        status, headers, _ = server.get("/select1/")
        idle_timing = headers.get("Server-Timing")
        for hold in (0.3, 0.5, 0.2):
            before = json.loads(server.get("/-/pool")[2])
            slow = _slow_request(server, hold)
            assert wait_until(lambda: json.loads(server.get("/-/pool")[2])["in_use"] == 1, timeout=10, interval=0.01)
            _, headers, _ = server.get("/select1/")
            slow.join(30)
            after = json.loads(server.get("/-/pool")[2])
            match = re.fullmatch(r"pool;dur=([0-9.]+), db-held;dur=[0-9.]+", headers.get("Server-Timing", ""))
            assert match, headers
            assert after["waits"] == before["waits"] + 1, (before, after)
            rounds.append((float(match.group(1)), after["wait_ms"] - before["wait_ms"]))
    finally:
        server.stop()
    print(f"\nServer-Timing without a wait: {idle_timing!r}; (header ms, the pool's wait_ms growth): {rounds}")
    assert status == 200 and idle_timing is not None and idle_timing.startswith("pool;dur=0.000, db-held;dur=")
    for header_ms, measured_ms in rounds:
        assert measured_ms > 50, "the request queued behind the slow one"
        assert header_ms == pytest.approx(measured_ms, abs=1.0)


@pytest.mark.parametrize("lease", ["request", "transaction"])
def test_server_timing_says_how_long_the_request_held_connections(site_db: PrivateMariaDB, lease: str) -> None:
    # /mixed/: SELECT 1, 50 ms waiting on something else, SELECT 2.
    server = Gunicorn(site_db, WEB_WORKERS="1", POOL_LEASE=lease).start()
    try:
        held = []
        for _ in range(3):
            status, headers, _ = server.get("/mixed/")
            match = re.search(r"db-held;dur=([0-9.]+)", headers.get("Server-Timing", ""))
            assert status == 200 and match, headers
            held.append(float(match.group(1)))
    finally:
        server.stop()
    if lease == "request":
        assert min(held) >= 50, held  # the connection waited with the view
    else:
        assert max(held) < 50, held  # only the two SELECTs held one


def test_server_timing_can_be_turned_off(site_db: PrivateMariaDB) -> None:
    server = Gunicorn(site_db, WEB_WORKERS="1", KIT_SERVER_TIMING="0").start()
    try:
        status, headers, _ = server.get("/select1/")
    finally:
        server.stop()
    assert status == 200 and "Server-Timing" not in headers
