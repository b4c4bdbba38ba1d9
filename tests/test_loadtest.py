"""locust -f loadtest/ against the kit served by gunicorn: the budget gate passes, fails when it should, counts what
the server counts, finds the database of a kit that scripts/serve started, and the default mix needs no class names."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from harness.mariadb import APP_DATABASE, APP_USER, PrivateMariaDB, free_port
from harness.tools import ROOT, Gunicorn, run_script, stop_gracefully, wait_until

pytestmark = pytest.mark.slow
LOCUST = str(Path(sys.executable).parent / "locust")
NewcomerKit = tuple[str, Path, subprocess.Popen[bytes]]  # (base URL, run dir, deploy/serve.py's process)


def locust(host: str, *args: str, database_url: str | None, **env: str) -> subprocess.CompletedProcess[str]:
    """A headless locust run as a user types it; DATABASE_URL only when given."""
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if database_url:
        environ["DATABASE_URL"] = database_url
    return subprocess.run(
        [LOCUST, "-f", "loadtest/", "--headless", "--host", host, *args], cwd=ROOT, capture_output=True, text=True,
        timeout=180, env={**environ, "PYTHONPATH": str(ROOT), **env},
    )


@pytest.fixture
def served(site_db: PrivateMariaDB) -> Iterator[Gunicorn]:
    server = Gunicorn(site_db).start()  # 2 workers x pool 5
    yield server
    server.stop()


def test_headless_run_within_budget_exits_zero_with_a_verdict(served: Gunicorn, site_db: PrivateMariaDB,
                                                             tmp_path: Path) -> None:
    result = locust(served.base, "-u", "60", "-r", "60", "-t", "6s", "--csv", str(tmp_path / "run"),
                    "--html", str(tmp_path / "run.html"), "Reader", "Writer", "ReportUser", "NewConnectionReader",
                    database_url=site_db.app_url(), WEB_WORKERS="2", POOL_SIZE="5")
    output = result.stdout + result.stderr
    print(output[-600:])
    assert result.returncode == 0, output[-3000:]
    assert "budget 10 = 1 host(s) x 2 workers x pool 5: within budget" in output
    summary = (tmp_path / "run_db_connections_summary.csv").read_text().splitlines()
    peak = int(summary[1].split(",")[0])
    assert 0 < peak <= 10
    # One alias here, so its database holds the server's peak, against what one alias may hold.
    assert f"db connections to database {APP_DATABASE}: peak {peak} (the server's {peak}); each alias up to 10 = 2 " \
           f"workers x pool 5" in output, output[-3000:]
    databases = (tmp_path / "run_db_connections_databases.csv").read_text().splitlines()
    assert databases == ["database,peak,server_peak,alias_bound", f"{APP_DATABASE},{peak},{peak},10"]
    html = (tmp_path / "run.html").read_text()
    assert "Database connections" in html and f"database {APP_DATABASE}</td>" in html


def test_the_gate_counts_server_size_and_reports_each_database(tmp_path: Path) -> None:
    # The gate's arithmetic and files without a run (importing the gate imports locust: a fresh interpreter).
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("from pool.settings import PoolConfig\nworkers = 2\npool = PoolConfig(size=5, server_size=6)\n")
    out = run_script(f"""
        import json, sys
        sys.path.insert(0, "loadtest")
        import _budget
        budget, workers, size, server_size = _budget.read_budget({str(conf)!r}, 2)
        verdict = _budget.Verdict(budget, workers, size, 2, server_size=server_size, samples=[(0.0, 20), (0.25, 22)],
                                  host_peaks={{"10.0.0.5": 11, "10.0.0.6": 13}},
                                  db_peaks={{"tenant_a": 21, "tenant_b": 4}})
        _budget._Gate._write_csv({str(tmp_path / "run")!r}, verdict)
        print(json.dumps({{"budget": budget, "summary": verdict.summary(), "hosts": verdict.host_summaries(),
                           "databases": verdict.database_summaries(), "over": verdict.over}}))
    """)
    assert out["budget"] == 24 and out["over"]  # the total fits; a host over its share fails the run
    assert out["summary"].endswith("budget 24 = 2 host(s) x 2 workers x server_size 6: within budget")
    assert "db connections from app host 10.0.0.6: peak 13; share 12 = 2 workers x server_size 6: OVER ITS SHARE" \
           in out["hosts"]
    assert out["databases"] == [
        "db connections to database tenant_a: peak 21 (the server's 22); each alias up to 20 = 2 host(s) x 2 workers "
        "x pool 5; above one alias's bound: several aliases use this database, or connections come from outside the "
        "pool",
        "db connections to database tenant_b: peak 4 (the server's 22); each alias up to 20 = 2 host(s) x 2 workers "
        "x pool 5",
    ]
    assert (tmp_path / "run_db_connections_summary.csv").read_text().splitlines()[1].endswith(",over,6")
    assert (tmp_path / "run_db_connections_databases.csv").read_text().splitlines()[1:] == [
        "tenant_a,21,22,20", "tenant_b,4,22,20"]


def test_budget_below_the_real_count_fails_the_run(served: Gunicorn, site_db: PrivateMariaDB) -> None:
    # Locust reads the budget from gunicorn.conf.py with its own environment: POOL_SIZE=1 says the budget is 2,
    # while the server runs pools of 5.
    result = locust(served.base, "-u", "40", "-r", "40", "-t", "4s", "ReportUser", database_url=site_db.app_url(),
                    WEB_WORKERS="2", POOL_SIZE="1")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "OVER BUDGET" in output and "budget 2 = 1 host(s) x 2 workers x pool 1" in output


def test_gate_counts_what_the_server_counts_and_leaves_monitors_out(site_db: PrivateMariaDB) -> None:
    # The gate's own counting functions (importing the gate itself would import locust, which monkey-patches).
    from pool.budget import connect_monitor, count_app_connections

    # The counts are of every app session: those of the gunicorn the previous test stopped must have left (a session
    # quits on the server a moment after its client process has gone).
    assert wait_until(lambda: site_db.app_connection_count() == 0, timeout=30)
    held = [pymysql.connect(**site_db.app_connect_kwargs()) for _ in range(7)]
    status_page_counter = connect_monitor(site_db.app_connect_kwargs())  # another monitor, as the status page's
    gate = connect_monitor(site_db.app_connect_kwargs())  # logs in as the app, as the gate does
    try:
        with gate.cursor() as cur:
            counted = count_app_connections(cur, APP_USER)
        server_view = site_db.app_connection_count()  # root's view: the 7 and both monitors
    finally:
        for conn in held + [status_page_counter, gate]:
            conn.close()
    assert counted == 7
    assert server_view == 9


def test_gate_runs_on_the_master_in_distributed_mode(served: Gunicorn, site_db: PrivateMariaDB) -> None:
    # --processes forks locust workers after importing the files: they send load, the master alone counts.
    result = locust(served.base, "--processes", "2", "-u", "40", "-r", "40", "-t", "6s", "Reader", "ReportUser",
                    database_url=site_db.app_url(), WEB_WORKERS="2", POOL_SIZE="5")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert output.count("budget 10 = 1 host(s) x 2 workers x pool 5: within budget") >= 1


def test_without_a_database_to_count_the_load_runs_and_only_required_fails(served: Gunicorn,
                                                                           tmp_path: Path) -> None:
    nowhere = str(tmp_path / "no-run-dir")  # no kit started by scripts/serve there
    relaxed = locust(served.base, "-u", "5", "-r", "5", "-t", "2s", "Reader", database_url=None, KIT_RUN_DIR=nowhere)
    required = locust(served.base, "-u", "5", "-r", "5", "-t", "2s", "Reader", "--budget-required",
                      database_url=None, KIT_RUN_DIR=nowhere)
    for result in (relaxed, required):
        output = result.stdout + result.stderr
        assert "Traceback" not in output, output[-3000:]
        said = [line for line in output.splitlines() if line.startswith("budget gate: cannot count")]
        assert len(said) == 1 and "Set DATABASE_URL" in said[0], output[-3000:]
        served_requests = re.findall(r"Aggregated\s+(\d+)\s+\d+\(", output)  # locust's last stats table
        assert served_requests and int(served_requests[-1]) > 0, "the load must run uncounted"
    assert relaxed.returncode == 0, relaxed.stdout[-3000:]
    assert required.returncode == 1
    assert "FAILED: --budget-required, and the gate could not count" in required.stdout


# -- the newcomer's path: scripts/serve with no DATABASE_URL, then locust with no class names and no DATABASE_URL ----


@pytest.fixture(scope="module")
def newcomer_kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NewcomerKit]:
    """What scripts/serve runs (deploy/serve.py), with its private MariaDB and run/ in a temporary folder."""
    run_dir = tmp_path_factory.mktemp("run")
    port = free_port()
    log = (run_dir / "serve.log").open("wb")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "POOL_", "WEB_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.serve"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**environ, "KIT_RUN_DIR": str(run_dir), "BIND": f"127.0.0.1:{port}", "ACCESS_LOG": "",
             "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "prometheus")},
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        import urllib.request

        assert process.poll() is None, (run_dir / "serve.log").read_text()
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        assert wait_until(ready, timeout=120, interval=0.5), (run_dir / "serve.log").read_text()
        yield base, run_dir, process
    finally:
        stop_gracefully(process)


def test_newcomer_path_counts_the_private_database_and_ends_with_the_verdict(newcomer_kit: NewcomerKit) -> None:
    base, run_dir, _ = newcomer_kit
    state = run_dir / "serve.json"
    assert state.stat().st_mode & 0o777 == 0o600, "the state file holds a password: its owner's only"
    # The README's command, shortened in time; the conf's defaults: 2 workers x pool 10.
    result = locust(base, "-u", "200", "-r", "100", "-t", "8s", database_url=None, KIT_RUN_DIR=str(run_dir))
    output = result.stdout + result.stderr
    print(output[-1500:])
    assert result.returncode == 0, output[-3000:]
    assert f"(the private MariaDB scripts/serve started for 127.0.0.1:{base.rsplit(':', 1)[1]}; from {state})" in output
    verdict = re.search(r"db connections: peak (\d+), .*; budget 20 = 1 host\(s\) x 2 workers x pool 10: within budget",
                        output)
    assert verdict and 0 < int(verdict.group(1)) <= 20, output[-3000:]
    spawned = re.search(r"All users spawned: (\{.*?\})", output)
    assert spawned, output[-3000:]
    assert set(json.loads(spawned.group(1))) == {"Reader", "NewConnectionReader", "Writer", "ReportUser"}


def test_newcomer_path_with_a_budget_below_the_peak_fails(newcomer_kit: NewcomerKit) -> None:
    base, run_dir, _ = newcomer_kit
    # POOL_SIZE=1 for locust only: its budget says 2 while the kit runs 2 x 10.
    result = locust(base, "-u", "100", "-r", "100", "-t", "4s", database_url=None, KIT_RUN_DIR=str(run_dir),
                    POOL_SIZE="1")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "budget 2 = 1 host(s) x 2 workers x pool 1: OVER BUDGET" in output, output[-3000:]
    assert "FAILED: the app's database connections went over budget" in output


def test_serve_stops_its_private_database_and_forgets_it(newcomer_kit: NewcomerKit) -> None:
    base, run_dir, process = newcomer_kit
    socket = run_dir / "mariadb" / "mysqld.sock"
    assert socket.exists()
    assert stop_gracefully(process) == 0
    assert not (run_dir / "serve.json").exists()
    assert wait_until(lambda: not socket.exists(), timeout=30), "mariadbd is still running"
