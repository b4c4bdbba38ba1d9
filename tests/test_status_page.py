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

from harness.mariadb import APP_USER, PrivateMariaDB
from harness.tools import ROOT, Gunicorn, wait_until
from tests.browser import chromium, text_of, wait_for

pytestmark = pytest.mark.slow
WORKERS, POOL = 2, 5  # the harness's Gunicorn defaults
BUDGET = WORKERS * POOL
# In one call: the page redraws every second, and an element found in one call may be gone by the next.
READ_FIGURES = ("const text = (selector) => (document.querySelector(selector) || {}).textContent || '';"
                "return [text('#total-in_use b'), text('#total-waiting b'), text('#server-count')];")


def connections_of(db: PrivateMariaDB, pids: set[int]) -> tuple[int, int]:
    """(app connections, monitors) that these processes hold on the server, told apart by their current database and
    traced by the pid PyMySQL announces (the session's server runs performance_schema); other tests' are left out."""
    rows = db.query(
        "SELECT a.ATTR_VALUE, p.DB FROM performance_schema.session_connect_attrs a "
        "JOIN information_schema.PROCESSLIST p ON p.ID = a.PROCESSLIST_ID WHERE a.ATTR_NAME = '_pid' AND p.USER = %s",
        (APP_USER,),
    )
    mine = [name for pid, name in rows if int(pid) in pids]
    monitors = mine.count("information_schema")
    return len(mine) - monitors, monitors


def metric(text: str, name: str) -> float:
    match = re.search(rf'^{name}{{pool="default"}} ([0-9.e+]+)$', text, re.MULTILINE)
    assert match, f"{name} missing from /metrics:\n{text[:2000]}"
    return float(match.group(1))


def test_one_counter_at_a_time_and_only_while_watched(site_db: PrivateMariaDB, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Two workers' counters, here in one process (an flock conflicts between two opens of the file, as between two
    # processes), on real files and the real server.
    from pool import workerstats

    monkeypatch.setattr(workerstats, "WATCH_SECONDS", 0.5)
    shared = workerstats.StatsDir(tmp_path)
    shared.clear()
    kwargs = site_db.app_connect_kwargs()
    first, second = workerstats.ServerCounter(shared, kwargs), workerstats.ServerCounter(shared, kwargs)
    try:
        first.tick()
        assert shared.server_count() is None, "nobody watches: no count, no connection"
        shared.watch()
        first.tick()
        second.tick()  # the flock is taken: it neither connects nor writes
        reading = shared.server_count()
        assert reading is not None and reading["connections"] == site_db.app_connection_count() - 1  # not itself
        assert first._conn is not None and second._conn is None
        time.sleep(0.6)  # the watch lapses: the counter lets go of its connection and of the lock
        first.tick()
        assert first._conn is None
        shared.watch()
        second.tick()
        assert second._conn is not None
    finally:
        first.release()
        second.release()


def test_every_worker_is_in_pool_stats_and_metrics_from_the_first_request(site_db: PrivateMariaDB,
                                                                          tmp_path: Path) -> None:
    # The server count below is of every app connection: earlier tests' sessions must be gone first.
    assert wait_until(lambda: site_db.app_connection_count() == 0, timeout=30)
    stats_dir = tmp_path / "stats"
    server = Gunicorn(site_db, POOL_STATS_DIR=str(stats_dir)).start(wait=False)
    try:
        # Both workers booted (each published its snapshot); nothing has been asked of the site yet.
        assert wait_until(lambda: len(list(stats_dir.glob("worker-*.json"))) == WORKERS, timeout=60), server.log()
        first_scrape = server.get("/metrics")[2].decode()
        workers = server.worker_pids()
        answers: list[dict] = []
        while len(answers) < 100 and {a["pid"] for a in answers} != workers:  # try to hear from both workers
            answers.append(json.loads(server.get("/-/pool")[2]))

        # The status endpoints take no pool connection: checkouts stay where they were. Each count is read from
        # snapshots every worker took after the requests before it (they publish about once a second).
        before = server.pool_view(fresh_since=time.monotonic())["total"]["default"]["checkouts"]
        for _ in range(10):
            assert server.get("/")[0] == 200
            assert server.get("/-/pool?db=1")[0] == 200
        assert wait_until(lambda: "connections" in (json.loads(server.get("/-/pool?db=1")[2])["server"] or {}), 30)
        asked = time.monotonic()
        server.pool_view(fresh_since=asked)
        watched = json.loads(server.get("/-/pool?db=1")[2])
        on_server = connections_of(site_db, workers)  # the pools' connections, and the page's counter

        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: len(server.worker_pids()) == WORKERS and victim not in server.worker_pids(), 30)
        replaced = server.worker_pids()
        assert wait_until(lambda: {w["pid"] for w in json.loads(server.get("/-/pool")[2])["workers"]} == replaced, 30)
    finally:
        server.stop()
    print(f"\nfirst /metrics scrape: connects {metric(first_scrape, 'mysql_pool_connects_total'):.0f}, idle "
          f"{metric(first_scrape, 'mysql_pool_idle'):.0f}; /-/pool answered by {sorted({a['pid'] for a in answers})}; "
          f"server count {watched['server']['connections']}; the workers hold (app, monitors) {on_server}")
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
    assert on_server == (WORKERS, 1)


def test_status_page_stays_live_and_exact_while_a_load_saturates_the_pool(site_db: PrivateMariaDB,
                                                                          tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    server = Gunicorn(site_db).start()
    workers = server.worker_pids()
    seen: dict[str, int] = {"max_count": -1, "saturated": 0, "full_and_watched": 0}
    try:
        with chromium() as driver:
            driver.get(f"{server.base}/")
            wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#worker-rows tr")) == WORKERS,
                     "a row per worker")
            wait_for(lambda: text_of(driver, "server-count").isdigit(), "the server's connection count")
            assert text_of(driver, "budget") == str(BUDGET)
            assert text_of(driver, "reload-budget") == str(2 * BUDGET)
            # 60 users without think time on 2 x 5 connections: every slot busy, requests queued.
            load = subprocess.Popen(
                [str(Path(sys.executable).parent / "locust"), "-f", "loadtest/", "--headless", "--host",
                 server.base, "-u", "60", "-r", "60", "-t", "8s", "SpikeUser"],
                cwd=ROOT, stdout=(tmp_path / "locust.log").open("w"), stderr=subprocess.STDOUT,
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
                # On the server at one moment: the pools' connections all open, the page's counter and the
                # gate's connection beside them.
                if connections_of(site_db, workers | {load.pid}) == (BUDGET, 2):
                    seen["full_and_watched"] = 1
                time.sleep(0.2)
            load.wait(120)
            output = (tmp_path / "locust.log").read_text()
            desktop_width = driver.execute_script("return window.innerWidth")
            driver.set_window_size(390, 844)  # a phone
            wait_for(lambda: driver.execute_script("return window.innerWidth") < desktop_width, "the narrower page")
            phone_overflow = driver.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            driver.save_screenshot(str(tmp_path / "status-phone.png"))
    finally:
        server.stop()
    gate = re.search(r"db connections: peak (\d+), .*; budget (\d+) = .*: (within budget|OVER BUDGET)", output)
    print(f"\npage: saturated seen {bool(seen['saturated'])}, highest server count shown {seen['max_count']}; "
          f"pools full with both monitors beside them seen {bool(seen['full_and_watched'])}; "
          f"gate: {gate.group(0) if gate else output[-1500:]}; screenshots in {tmp_path}")
    assert seen["saturated"], "the page never showed every connection in use with requests waiting"
    # The page counted the pools' connections, never its own counter nor the gate's monitor...
    assert seen["max_count"] == BUDGET
    # ...which were on the server at the same time as the pools' 10.
    assert seen["full_and_watched"]
    assert gate and gate.group(3) == "within budget" and int(gate.group(1)) == BUDGET, output[-3000:]
    assert phone_overflow <= 0, "the page scrolls sideways on a phone"
