"""pool.otel under real gunicorn gevent workers and a load: every semantic-convention instrument read from each
worker's in-memory OpenTelemetry reader with the values /-/pool shows, the wait and connect spans, and with PyMySQL's
OpenTelemetry instrumentation on, the kit's queries as spans."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from harness.mariadb import PrivateMariaDB
from harness.tools import Gunicorn, wait_until

pytestmark = pytest.mark.slow
INSTRUMENTS = ("db.client.connection.count", "db.client.connection.idle.max", "db.client.connection.idle.min",
               "db.client.connection.max", "db.client.connection.pending_requests", "db.client.connection.timeouts",
               "db.client.connection.create_time", "db.client.connection.wait_time", "db.client.connection.use_time")
POOL_NAME = "db.client.connection.pool.name"


def readings(directory: Path) -> dict[int, dict[str, Any]]:
    found = {}
    for path in directory.glob("otel-*.json"):
        found[int(path.stem.split("-")[1])] = json.loads(path.read_text())
    return found


def points(reading: dict[str, Any], name: str) -> list[dict[str, Any]]:
    found = reading["metrics"].get(name, {}).get("points", [])
    return [p for p in found if p["attributes"].get(POOL_NAME) == "default"]


def value(reading: dict[str, Any], name: str, **attributes: str) -> float:
    matching = [p for p in points(reading, name) if all(p["attributes"].get(k) == v for k, v in attributes.items())]
    assert len(matching) == 1, (name, attributes, reading["metrics"].get(name))
    point = matching[0]
    return float(point["count"] if "count" in point else point["value"])


def settled(server: Gunicorn, directory: Path, since: float) -> dict[int, dict[str, Any]]:
    """Each worker's reading once it was taken after `since` with nothing lent out or queued."""
    found: dict[int, dict[str, Any]] = {}

    def ready() -> bool:
        found.clear()
        found.update(readings(directory))
        return set(found) == server.worker_pids() and all(
            r["at"] > since and r["pools"]["default"]["in_use"] == 0 and r["pools"]["default"]["waiting"] == 0
            for r in found.values())

    assert wait_until(ready, timeout=20, interval=0.2), found
    return found


def check_counts(reading: dict[str, Any]) -> dict[str, float]:
    """Every instrument against the worker's pool figures read at the same moment."""
    stats = reading["pools"]["default"]
    seen = {name: value(reading, name) for name in INSTRUMENTS[1:6]}
    seen["idle"] = value(reading, "db.client.connection.count", **{"db.client.connection.state": "idle"})
    seen["used"] = value(reading, "db.client.connection.count", **{"db.client.connection.state": "used"})
    seen["create_time"] = value(reading, "db.client.connection.create_time")
    seen["use_time"] = value(reading, "db.client.connection.use_time")
    assert seen["idle"] == stats["idle"] and seen["used"] == stats["in_use"] == 0
    assert seen["db.client.connection.max"] == seen["db.client.connection.idle.max"] == stats["size"] == 5
    assert seen["db.client.connection.idle.min"] == 1
    assert seen["db.client.connection.pending_requests"] == stats["waiting"] == 0
    assert seen["db.client.connection.timeouts"] == stats["timeouts"]
    assert seen["create_time"] == stats["connects"]
    assert seen["use_time"] == stats["checkouts"]  # every checkout returned
    return seen


def test_semantic_convention_instruments_and_spans_from_every_worker(site_db: PrivateMariaDB, tmp_path: Path) -> None:
    server = Gunicorn(site_db, conf="tests/otel_gunicorn.conf.py", POOL_OTEL="1", KIT_OTEL_DIR=str(tmp_path),
                      KIT_OTEL_PYMYSQL="1", POOL_TIMEOUT="2").start()
    try:
        workers = server.worker_pids()
        # Not saturated: 4 clients never need more than one worker's 5 connections.
        calm = server.load(clients=4, requests=25, paths="/products/")
        calm_readings = settled(server, tmp_path, time.monotonic())
        # Saturated: 40 clients of 50 ms queries on 2 x 5 connections; the readings taken meanwhile show the queue.
        thread, busy = server.load_in_background(clients=40, requests=5, paths="/report/slow/?seconds=0.05")
        most_pending = 0.0
        while thread.is_alive():
            for reading in readings(tmp_path).values():
                if points(reading, "db.client.connection.pending_requests"):
                    most_pending = max(most_pending, value(reading, "db.client.connection.pending_requests"))
            time.sleep(0.05)
        thread.join()
        # Timeouts: 20 clients hold 2.5 s on 10 connections with POOL_TIMEOUT=2: the 10 that queue give up.
        slow = server.load(clients=20, requests=1, paths="/report/slow/?seconds=2.5", keepalive_share=1.0)
        busy_readings = settled(server, tmp_path, time.monotonic())
        view = server.pool_view(fresh_since=time.monotonic())
    finally:
        server.stop()

    assert calm["failed"] == 0 and busy["failed"] == 0
    assert set(calm_readings) == set(busy_readings) == workers
    by_pid = {w["pid"]: w["pools"]["default"] for w in view["workers"]}
    summary = []
    sleep_spans = 0
    for pid in sorted(workers):
        quiet, loaded = calm_readings[pid], busy_readings[pid]
        check_counts(quiet)
        # Never saturated: every checkout found a slot free, a wait of 0 each.
        assert value(quiet, "db.client.connection.wait_time") == quiet["pools"]["default"]["checkouts"]
        assert quiet["pools"]["default"]["waits"] == 0
        seen = check_counts(loaded)
        stats = loaded["pools"]["default"]
        # /-/pool, read by the test after the readings, shows the same worker with the same figures.
        for key in ("checkouts", "connects", "waits", "timeouts"):
            assert by_pid[pid][key] == stats[key], (pid, key)
        wait = points(loaded, "db.client.connection.wait_time")[0]
        assert wait["count"] == stats["immediate"] + stats["waits"] == stats["checkouts"] + stats["timeouts"]
        assert stats["waits"] > 0 and wait["buckets"][0] == stats["immediate"]
        assert wait["sum"] * 1000 == pytest.approx(stats["wait_ms"], abs=5)
        assert wait["bounds"][:2] == [0.0, 0.001] and wait["bounds"][-1] == 2.0, "0, then 1 ms up to POOL_TIMEOUT"
        assert seen["db.client.connection.timeouts"] == stats["timeouts"]
        spans = loaded["spans"]
        waits = [s for s in spans if s["name"] == "pool.wait"]
        outcomes = {o: sum(1 for s in waits if s["attributes"]["pool.outcome"] == o) for o in ("granted", "timeout")}
        assert outcomes == {"granted": stats["waits"] - stats["timeouts"], "timeout": stats["timeouts"]}
        assert all(s["status"] == "ERROR" for s in waits if s["attributes"]["pool.outcome"] == "timeout")
        assert all(s["attributes"][POOL_NAME] == "default" and s["end"] >= s["start"] for s in waits)
        connects = [s for s in spans if s["name"] == "pool.connect"]
        assert len(connects) == stats["connects"] and all(s["status"] == "UNSET" for s in connects)
        queries = [s for s in spans if "SLEEP" in str(s["attributes"].get("db.statement", ""))
                   or "SLEEP" in str(s["attributes"].get("db.query.text", ""))]
        summary.append(f"pid {pid}: checkouts {stats['checkouts']}, connects {stats['connects']}, waits "
                       f"{stats['waits']} ({wait['sum']:.2f}s), timeouts {stats['timeouts']}, spans: wait {outcomes}, "
                       f"connect {len(connects)}, SLEEP queries {len(queries)}")
        sleep_spans += len(queries)
    total_timeouts = sum(r["pools"]["default"]["timeouts"] for r in busy_readings.values())
    print(f"\nmost pending_requests seen in one worker: {most_pending:.0f}; slow phase {slow['statuses']}; "
          + "; ".join(summary))
    assert most_pending > 0
    # PyMySQL's instrumentation sees the kit's queries: every slow request served is one SLEEP span, in some worker.
    assert sleep_spans == busy["ok"] + slow["statuses"].get("200", 0)
    assert total_timeouts == slow["statuses"].get("503", 0) > 0


def scraped(text: str, name: str) -> float:
    """`name` of pool "default" in a /metrics text, every worker and outcome added up."""
    series = re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.MULTILINE)
    values = [float(v) for labels, v in series if 'pool="default"' in labels]
    assert values, f"{name} missing from /metrics"
    return sum(values)


def test_every_checkout_is_a_wait_sample_in_opentelemetry_and_in_metrics(site_db: PrivateMariaDB,
                                                                          tmp_path: Path) -> None:
    server = Gunicorn(site_db, conf="tests/otel_gunicorn.conf.py", POOL_OTEL="1", KIT_OTEL_DIR=str(tmp_path)).start()
    try:
        first = server.get("/metrics")[2].decode()
        # One client, one request at a time: no checkout ever queues.
        calm = server.load(clients=1, requests=30, paths="/select1/", keepalive_share=1.0)
        otel = settled(server, tmp_path, time.monotonic())
        scrape: dict[str, str] = {}

        def copied() -> bool:  # each worker copies its figures once a second; the one answering, at the scrape
            scrape["text"] = server.get("/metrics")[2].decode()
            return scraped(scrape["text"], "mysql_pool_checkouts_total") >= \
                scraped(first, "mysql_pool_checkouts_total") + 30

        assert wait_until(copied, timeout=20, interval=0.2)
        text = scrape["text"]
    finally:
        server.stop()
    checkouts = scraped(text, "mysql_pool_checkouts_total")
    count = scraped(text, "mysql_pool_wait_seconds_count")
    per_worker = {pid: (value(r, "db.client.connection.wait_time"), r["pools"]["default"]["checkouts"])
                  for pid, r in otel.items()}
    print(f"\nfirst scrape: wait count {scraped(first, 'mysql_pool_wait_seconds_count'):.0f} for "
          f"{scraped(first, 'mysql_pool_checkouts_total'):.0f} checkouts; after 30 requests: /metrics wait count "
          f"{count:.0f} for {checkouts:.0f} checkouts; OpenTelemetry (count, checkouts) per worker: {per_worker}")
    assert calm["failed"] == 0 and calm["statuses"] == {"200": 30}
    # From the first scrape on, the wait histogram has a sample for each checkout (the warm start's, the harness's
    # /healthz), all in the bucket at 0.
    assert scraped(first, "mysql_pool_wait_seconds_count") == scraped(first, "mysql_pool_checkouts_total") > 0
    assert count == checkouts == scraped(text, "mysql_pool_immediate_total")
    assert scraped(text, "mysql_pool_waits_total") == 0 and scraped(text, "mysql_pool_wait_seconds_sum") == 0
    zero_bucket = sum(float(v) for v in re.findall(r'^mysql_pool_wait_seconds_bucket\{[^}]*le="0\.0"[^}]*\} (\S+)$',
                                                   text, re.MULTILINE))
    assert zero_bucket == count
    assert sum(r["pools"]["default"]["checkouts"] for r in otel.values()) == checkouts
    for reading in otel.values():
        stats = reading["pools"]["default"]
        wait = points(reading, "db.client.connection.wait_time")[0]
        assert wait["count"] == stats["checkouts"] == stats["immediate"] and stats["waits"] == 0
        assert wait["sum"] == 0 and wait["bounds"][:2] == [0.0, 0.001] and wait["buckets"][0] == wait["count"]
