"""locust -f loadtest/ against the kit served by gunicorn: the budget gate passes, fails when it should, and counts
what the server counts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pymysql
import pytest

from harness.mariadb import APP_USER, PrivateMariaDB
from harness.tools import ROOT, Gunicorn

pytestmark = pytest.mark.slow


def locust(server: Gunicorn, db: PrivateMariaDB, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "locust"), "-f", "loadtest/", "--headless", "--host", server.base, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": db.app_url(), "WEB_WORKERS": "2",
             "POOL_SIZE": "5", **env},
    )


@pytest.fixture
def served(site_db: PrivateMariaDB):  # type: ignore[no-untyped-def]
    server = Gunicorn(site_db).start()
    yield server
    server.stop()


def test_headless_run_within_budget_exits_zero_with_a_verdict(served: Gunicorn, site_db: PrivateMariaDB,
                                                             tmp_path: Path) -> None:
    result = locust(served, site_db, "-u", "60", "-r", "60", "-t", "6s", "--csv", str(tmp_path / "run"),
                    "--html", str(tmp_path / "run.html"), "Reader", "Writer", "ReportUser", "NewConnectionReader")
    output = result.stdout + result.stderr
    print(output[-600:])
    assert result.returncode == 0, output[-3000:]
    assert "budget 10 = 1 host(s) x 2 workers x pool 5: within budget" in output
    summary = (tmp_path / "run_db_connections_summary.csv").read_text().splitlines()
    peak = int(summary[1].split(",")[0])
    assert 0 < peak <= 10
    assert "Database connections" in (tmp_path / "run.html").read_text()


def test_budget_below_the_real_count_fails_the_run(served: Gunicorn, site_db: PrivateMariaDB) -> None:
    # Locust reads the budget from gunicorn.conf.py with its own environment: POOL_SIZE=1 says the budget is 2,
    # while the server runs pools of 5.
    result = locust(served, site_db, "-u", "40", "-r", "40", "-t", "4s", "ReportUser", POOL_SIZE="1")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "OVER BUDGET" in output and "budget 2 = 1 host(s) x 2 workers x pool 1" in output


def test_gate_counts_what_the_server_counts(site_db: PrivateMariaDB) -> None:
    # The gate's own counting function (importing the gate itself would import locust, which monkey-patches).
    from pool.budget import count_app_connections

    held = [pymysql.connect(**site_db.app_connect_kwargs()) for _ in range(7)]
    monitor = pymysql.connect(**site_db.app_connect_kwargs())  # logs in as the app, as the gate may
    try:
        with monitor.cursor() as cur:
            counted = count_app_connections(cur, APP_USER)
        server_view = site_db.app_connection_count()  # root's view: the 7 plus the monitor itself
    finally:
        for conn in held + [monitor]:
            conn.close()
    assert counted == 7
    assert server_view == 8


def test_gate_runs_on_the_master_in_distributed_mode(served: Gunicorn, site_db: PrivateMariaDB) -> None:
    # --processes forks locust workers after importing the files: they send load, the master alone counts.
    result = locust(served, site_db, "--processes", "2", "-u", "40", "-r", "40", "-t", "6s", "Reader", "ReportUser")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert output.count("budget 10 = 1 host(s) x 2 workers x pool 5: within budget") >= 1


def test_gate_works_with_the_web_ui(served: Gunicorn, site_db: PrivateMariaDB) -> None:
    import json
    import threading
    import time
    import urllib.request

    from harness.mariadb import free_port

    port = free_port()
    seen: dict[str, object] = {}

    def poll_web_ui() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "runs" not in seen:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/db-connections", timeout=2) as response:
                    data = json.loads(response.read())
                if data.get("now") is not None:
                    seen.update(data)
            except OSError:
                pass
            time.sleep(0.5)

    poller = threading.Thread(target=poll_web_ui)
    poller.start()
    # Not headless: the web UI serves while --autostart runs the test and --autoquit ends it.
    result = subprocess.run(
        [str(Path(sys.executable).parent / "locust"), "-f", "loadtest/", "--host", served.base, "--web-host",
         "127.0.0.1", "--web-port", str(port), "--autostart", "--autoquit", "2", "-u", "30", "-r", "30", "-t", "6s",
         "ReportUser"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": site_db.app_url(), "WEB_WORKERS": "2",
             "POOL_SIZE": "5"},
    )
    poller.join()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "within budget" in output
    assert isinstance(seen.get("now"), int) and 0 < seen["now"] <= 10, seen
