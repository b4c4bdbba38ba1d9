"""The served kit shows every worker's pool: /-/pool and /metrics cover all workers from the first request, and the
status page at / stays live and exact in a real browser while a load saturates the pool, without taking a pool
connection and without its server count changing the locust gate's verdict."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.mariadb import PrivateMariaDB
from harness.tools import ROOT, ConnectionMonitor, Gunicorn, wait_until
from tests.browser import chromium, text_of, wait_for

pytestmark = pytest.mark.slow
WORKERS, POOL = 2, 5  # the harness's Gunicorn defaults
BUDGET = WORKERS * POOL
# In one call: the page redraws every second, and an element found in one call may be gone by the next.
READ_FIGURES = ("const text = (selector) => (document.querySelector(selector) || {}).textContent || '';"
                "return [text('#total-in_use b'), text('#total-waiting b'), text('#server-count')];")


def metric(text: str, name: str) -> float:
    match = re.search(rf'^{name}{{pool="default"}} ([0-9.e+]+)$', text, re.MULTILINE)
    assert match, f"{name} missing from /metrics:\n{text[:2000]}"
    return float(match.group(1))


def test_every_worker_is_in_pool_stats_and_metrics_from_the_first_request(site_db: PrivateMariaDB,
                                                                          tmp_path: Path) -> None:
    stats_dir = tmp_path / "stats"
    server = Gunicorn(site_db, POOL_STATS_DIR=str(stats_dir)).start(wait=False)
    try:
        # Both workers booted (each published its snapshot); nothing has been asked of the site yet.
        assert wait_until(lambda: len(list(stats_dir.glob("worker-*.json"))) == WORKERS, timeout=60), server.log()
        first_scrape = server.get("/metrics")[2].decode()
        workers = server.worker_pids()
        answers = [json.loads(server.get("/-/pool")[2]) for _ in range(6)]

        # The status endpoints take no pool connection: checkouts stay where they were.
        time.sleep(1.5)  # every worker's snapshot is fresh
        before = json.loads(server.get("/-/pool")[2])["total"]["default"]["checkouts"]
        for _ in range(10):
            assert server.get("/")[0] == 200
            assert server.get("/-/pool?db=1")[0] == 200
        assert wait_until(lambda: "connections" in (json.loads(server.get("/-/pool?db=1")[2])["server"] or {}), 30)
        time.sleep(1.5)
        watched = json.loads(server.get("/-/pool?db=1")[2])
        root_view = site_db.app_connection_count()  # the pools' connections and the page's counter

        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: len(server.worker_pids()) == WORKERS and victim not in server.worker_pids(), 30)
        replaced = server.worker_pids()
        assert wait_until(lambda: {w["pid"] for w in json.loads(server.get("/-/pool")[2])["workers"]} == replaced, 30)
    finally:
        server.stop()
    print(f"\nfirst /metrics scrape: connects {metric(first_scrape, 'mysql_pool_connects_total'):.0f}, idle "
          f"{metric(first_scrape, 'mysql_pool_idle'):.0f}; /-/pool answered by {sorted({a['pid'] for a in answers})}; "
          f"server count {watched['server']['connections']} (root sees {root_view})")
    # Warm start: each worker opened its connection before serving, and both are in the first scrape.
    assert metric(first_scrape, "mysql_pool_connects_total") == WORKERS
    assert metric(first_scrape, "mysql_pool_idle") == WORKERS
    for answer in answers:  # whichever worker answers, every worker is there
        assert {w["pid"] for w in answer["workers"]} == workers
        assert all(w["pools"]["default"]["size"] == POOL for w in answer["workers"])
        assert answer["total"]["default"]["size"] == BUDGET
        assert answer["budget"] == {"workers": WORKERS, "connections": BUDGET, "during_reload": 2 * BUDGET}
        assert answer["pid"] in workers and answer["size"] == POOL  # the answering worker's own, as before
    assert watched["total"]["default"]["checkouts"] == before
    # One warm connection per worker; the counting connection is on the server but not in the count.
    assert watched["server"]["connections"] == WORKERS
    assert root_view == WORKERS + 1


def test_status_page_stays_live_and_exact_while_a_load_saturates_the_pool(site_db: PrivateMariaDB,
                                                                          tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    server = Gunicorn(site_db).start()
    seen: dict[str, int] = {"max_count": -1, "saturated": 0}
    try:
        with chromium() as driver:
            driver.get(f"{server.base}/")
            wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#worker-rows tr")) == WORKERS,
                     "a row per worker")
            wait_for(lambda: text_of(driver, "server-count").isdigit(), "the server's connection count")
            assert text_of(driver, "budget") == str(BUDGET)
            assert text_of(driver, "reload-budget") == str(2 * BUDGET)
            with ConnectionMonitor(site_db) as monitor:
                # 60 users without think time on 2 x 5 connections: every slot busy, requests queued.
                load = subprocess.Popen(
                    [str(Path(sys.executable).parent / "locust"), "-f", "loadtest/", "--headless", "--host",
                     server.base, "-u", "60", "-r", "60", "-t", "8s", "SpikeUser"],
                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    env={**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": site_db.app_url(),
                         "WEB_WORKERS": str(WORKERS), "POOL_SIZE": str(POOL)},
                )
                deadline = time.monotonic() + 60
                while load.poll() is None and time.monotonic() < deadline:
                    in_use, waiting, count = driver.execute_script(READ_FIGURES)
                    if count.isdigit():
                        seen["max_count"] = max(seen["max_count"], int(count))
                    if in_use == str(BUDGET) and waiting.isdigit() and int(waiting) > 0 and not seen["saturated"]:
                        seen["saturated"] = 1
                        driver.save_screenshot(str(tmp_path / "status-saturated.png"))
                    time.sleep(0.2)
                output = load.communicate(timeout=120)[0]
            driver.set_window_size(390, 844)  # a phone
            time.sleep(1.5)
            phone_overflow = driver.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            driver.save_screenshot(str(tmp_path / "status-phone.png"))
    finally:
        server.stop()
    gate = re.search(r"db connections: peak (\d+), .*; budget (\d+) = .*: (within budget|OVER BUDGET)", output)
    print(f"\npage: saturated seen {bool(seen['saturated'])}, highest server count shown {seen['max_count']}; "
          f"root saw {monitor.peak}; gate: {gate.group(0) if gate else output[-1500:]}; screenshots in {tmp_path}")
    assert seen["saturated"], "the page never showed every connection in use with requests waiting"
    # The page counted the pools' connections, never its own counter nor the gate's monitor...
    assert seen["max_count"] == BUDGET
    # ...which were on the server at the same time: the pools' 10, the page's counter and the gate's connection.
    assert monitor.peak == BUDGET + 2
    assert gate and gate.group(3) == "within budget" and int(gate.group(1)) == BUDGET, output[-3000:]
    assert phone_overflow <= 0, "the page scrolls sideways on a phone"
