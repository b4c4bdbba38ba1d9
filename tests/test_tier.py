"""Many app hosts on one server (issue 20): three gunicorns, each connecting from its own loopback address
(`?bind_address=` in DATABASE_URL), loaded through locust's distributed mode with the gate on the master; a fourth
host refused by the tier-aware start-up check; one host drained with SIGTERM while the others serve.

    .venv/bin/python -m pytest tests/test_tier.py -s
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.mariadb import APP_USER, PrivateMariaDB, free_port
from harness.tools import ROOT, Gunicorn, wait_until
from pool.budget import MONITOR_DATABASE, client_address

pytestmark = pytest.mark.slow
LOCUST = str(Path(sys.executable).parent / "locust")

ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]  # the tier's three hosts
FOURTH = "127.0.0.5"
WORKERS, SIZE = 2, 3
SHARE = WORKERS * SIZE  # what one host may hold; the gate's per-host bound
RESERVE = 10
# Room for three hosts at their full share with a reload's overlap (3 x 12 + 10 = 46); a fourth would need 58.
ROOM_FOR_THREE = 3 * SHARE * 2 + RESERVE
GRACEFUL = 15
USERS = 60  # 30 per locust worker, each pinning users 0, 1, 2, ... to hosts 1, 2, 3, ...: 20 users per host
RUN_SECONDS = 30


def by_address(db: PrivateMariaDB) -> dict[str, int]:
    """The app user's connections by client address, as root sees them (monitors left out)."""
    rows = db.query("SELECT HOST FROM information_schema.PROCESSLIST WHERE USER = %s AND COALESCE(DB, '') <> %s",
                    (APP_USER, MONITOR_DATABASE))
    counts: dict[str, int] = {}
    for (host,) in rows:
        counts[client_address(host)] = counts.get(client_address(host), 0) + 1
    return counts


def app_host(db: PrivateMariaDB, address: str, **env: str) -> Gunicorn:
    return Gunicorn(db, DATABASE_URL=f"{db.app_url()}?bind_address={address}", WEB_WORKERS=str(WORKERS),
                    POOL_SIZE=str(SIZE), POOL_BUDGET_RESERVE=str(RESERVE), GRACEFUL_TIMEOUT=str(GRACEFUL), **env)


@pytest.fixture
def tier(site_db: PrivateMariaDB, db: PrivateMariaDB) -> Iterator[list[Gunicorn]]:
    """Three app hosts on a server with room for three; the db fixture puts max_connections back."""
    # Every session left from earlier tests would be one more host in the tier (from 127.0.0.1).
    assert wait_until(lambda: db.app_connection_count() == 0, timeout=30), by_address(db)
    db.set_global("max_connections", ROOM_FOR_THREE)
    # The first in strict mode, for TTIN: alone when it starts, it fits.
    hosts = [app_host(site_db, address, **({"POOL_BUDGET_STRICT": "1"} if not i else {}))
             for i, address in enumerate(ADDRESSES)]
    try:
        # Two at once, then the third, whose start-up check must see the first two.
        for host in hosts[:2]:
            host.start(wait=False)
        for host in hosts[:2]:
            assert wait_until(host.ready, timeout=90), host.log()
        assert wait_until(lambda: all(by_address(db).get(a) for a in ADDRESSES[:2]), timeout=30), by_address(db)
        hosts[2].start()
        yield hosts
    finally:
        for host in hosts:
            host.stop()
        # The next test's start-up check must not find this tier still on the server.
        assert wait_until(lambda: not set(by_address(db)) & {*ADDRESSES, FOURTH}, timeout=30), by_address(db)


def locust_process(args: list[str], out: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([LOCUST, "-f", "loadtest/", *args], cwd=ROOT, env=env, stdout=out.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_tier_of_three_hosts_keeps_each_to_its_share_refuses_a_fourth_and_drains_one(
        tier: list[Gunicorn], site_db: PrivateMariaDB, tmp_path: Path) -> None:
    started = time.monotonic()
    bases = [host.base for host in tier]
    labels = [base.removeprefix("http://") for base in bases]
    third_log = tier[2].log()
    assert f"3 app host(s): this host {ADDRESSES[2]}: 0, {ADDRESSES[0]}: " in third_log, third_log
    assert "connection budget fits" in third_log, third_log
    third_tier = [line for line in third_log.splitlines() if "tier as the server lists it" in line]

    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env = {**environ, "PYTHONPATH": str(ROOT), "WEB_WORKERS": str(WORKERS), "POOL_SIZE": str(SIZE),
           "KIT_TIER_HOSTS": ",".join(bases)}
    port = free_port()
    prefix = str(tmp_path / "tier")
    master = locust_process(
        ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "--expect-workers", "2",
         "--expect-workers-max-wait", "60", "--headless", "-u", str(USERS), "-r", str(USERS), "-t", f"{RUN_SECONDS}s",
         "--host", bases[0], "--budget-hosts", "3", "--db-url", site_db.app_url(), "--budget-required",
         "--csv", prefix, "--exit-code-on-error", "0", "TierUser"], tmp_path / "master.log", env)
    workers = [locust_process(["--worker", "--master-host", "127.0.0.1", "--master-port", str(port), "TierUser"],
                              tmp_path / f"worker{i}.log", env) for i in (1, 2)]
    try:
        for host in tier:
            host.wait_for_checkouts(30, timeout=90)
        loaded_at = time.monotonic()

        # The status page of the first host: its own count against its budget, and the tier beside it.
        tier[0].get("/-/pool?db=1")

        def tier_on_status_page() -> dict[str, object] | None:
            server = json.loads(tier[0].get("/-/pool?db=1")[2])["server"] or {}
            return server if len(server.get("tier", {})) == 3 else None

        assert wait_until(tier_on_status_page, timeout=30), json.loads(tier[0].get("/-/pool?db=1")[2])["server"]
        status = tier_on_status_page()
        assert status is not None and status["host"] == ADDRESSES[0]

        # A fourth host, strict: the check names the three and their counts in one line, and it does not start.
        fourth = app_host(site_db, FOURTH, POOL_BUDGET_STRICT="1").start(wait=False)
        assert fourth.process is not None
        try:
            fourth_code = fourth.process.wait(60)
        finally:
            fourth.stop()  # only if the check let it start
        refusals = [line for line in fourth.log().splitlines() if "refusing to start" in line]
        # TTIN on the first host: a third worker would not fit beside the other two hosts; strict, so refused.
        tier[0].signal(signal.SIGTTIN)
        assert wait_until(lambda: "refused to grow from 2 to 3 workers" in tier[0].log(), timeout=30), tier[0].log()
        ttin = [line for line in tier[0].log().splitlines() if "refused to grow" in line]
        ttin_workers = len(tier[0].worker_pids())
        budget_cli = subprocess.run(
            [sys.executable, "-m", "pool", "budget", "--database-url", f"{site_db.app_url()}?bind_address={FOURTH}",
             "--workers", str(WORKERS), "--pool-size", str(SIZE), "--reserve", str(RESERVE)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

        # One host drained while the load runs: SIGTERM, as Kubernetes sends after preStop.
        victim = tier[2]
        drain_started = time.monotonic()
        victim.signal(signal.SIGTERM)
        drained = wait_until(lambda: not by_address(site_db).get(ADDRESSES[2]), timeout=GRACEFUL * 2, interval=0.1)
        drain_seconds = time.monotonic() - drain_started
        assert victim.process is not None
        victim_code = victim.process.wait(60)
        for host in tier[:2]:
            host.wait_for_checkouts(30, timeout=60)  # the others keep serving
        after_drain = by_address(site_db)

        master_code = master.wait(RUN_SECONDS + 90)
        for worker in workers:
            worker.wait(30)
    finally:
        for process in (master, *workers):
            stop(process)
    output = (tmp_path / "master.log").read_text(errors="replace")
    print(output[-2500:])

    with open(f"{prefix}_stats.csv") as handle:
        stats = [row for row in csv.DictReader(handle) if row["Name"] != "Aggregated"]
    requests = {label: sum(int(r["Request Count"]) for r in stats if r["Name"].startswith(label + " "))
                for label in labels}
    failed = {row["Name"]: int(row["Failure Count"]) for row in stats if int(row["Failure Count"])}
    refused = sum(n for name, n in failed.items() if name.endswith(" connect refused"))
    failed_requests = {name: n for name, n in failed.items() if not name.endswith(" connect refused")}
    with open(f"{prefix}_db_connections_hosts.csv") as handle:
        host_peaks = {row["app_host"]: int(row["peak"]) for row in csv.DictReader(handle)}
    with open(f"{prefix}_db_connections_summary.csv") as handle:
        total = next(csv.DictReader(handle))
    print(f"\ntier: per-host peaks {host_peaks} (share {SHARE} each); total peak {total['peak']} (budget "
          f"{3 * SHARE}); requests per host {requests}; failed {failed_requests or 0}, refused connects after the "
          f"drain {refused}; drain {drain_seconds:.1f}s (graceful_timeout {GRACEFUL}); after it {after_drain}; "
          f"status page of the first host: {status}; third host at start: {third_tier}; fourth host: {refusals}; "
          f"TTIN: {ttin}; whole test {time.monotonic() - started:.0f}s, {loaded_at - started:.0f}s to load")

    # The gate on the master: each host within its share, the total within the budget.
    assert master_code == 0, output[-3000:]
    assert f"budget {3 * SHARE} = 3 host(s) x {WORKERS} workers x pool {SIZE}: within budget" in output, output[-3000:]
    for address in ADDRESSES:
        assert f"db connections from app host {address}: peak " in output
        assert 0 < host_peaks[address] <= SHARE, host_peaks
    assert "OVER" not in output
    assert int(total["peak"]) <= 3 * SHARE

    # The fourth host: refused in one line naming the others and their counts.
    assert fourth_code != 0
    assert len(refusals) == 1, fourth.log()
    assert f"no room for this host ({FOURTH})" in refusals[0] and f"max_connections={ROOM_FOR_THREE}" in refusals[0]
    assert all(f"{address}: " in refusals[0] for address in ADDRESSES), refusals[0]
    assert "Booting worker" not in fourth.log()
    assert budget_cli.returncode == 1, budget_cli.stdout + budget_cli.stderr
    assert all(address in budget_cli.stdout for address in ADDRESSES), budget_cli.stdout
    assert f"no room for this host ({FOURTH})" in budget_cli.stdout
    # TTIN: the same check, the tier read again.
    assert len(ttin) == 1 and f"no room for this host ({ADDRESSES[0]})" in ttin[0], ttin
    assert all(f"{address}: " in ttin[0] for address in ADDRESSES[1:]), ttin
    assert ttin_workers == WORKERS

    # The drain: its connections gone within graceful_timeout, the others served on, nothing failed elsewhere.
    assert drained and drain_seconds <= GRACEFUL, (drain_seconds, after_drain)
    assert victim_code == 0
    assert all(after_drain.get(address) for address in ADDRESSES[:2]), after_drain
    assert all(requests[label] > 0 for label in labels), requests
    assert all(name.startswith(labels[2] + " ") for name in failed), failed
    # At most the requests its users had in flight: one each (each user moves on after its host stopped).
    assert sum(failed_requests.values()) <= USERS // 3, failed_requests


def test_the_gate_fails_a_host_over_its_share_though_the_total_fits(site_db: PrivateMariaDB, db: PrivateMariaDB,
                                                                    tmp_path: Path) -> None:
    # locust reads a share of 1 worker x pool 2 and a budget of 3 hosts (6); the first host runs a pool of 4.
    assert wait_until(lambda: db.app_connection_count() == 0, timeout=30), by_address(db)
    big = Gunicorn(site_db, DATABASE_URL=f"{site_db.app_url()}?bind_address={ADDRESSES[0]}", WEB_WORKERS="1",
                   POOL_SIZE="4")
    small = Gunicorn(site_db, DATABASE_URL=f"{site_db.app_url()}?bind_address={ADDRESSES[1]}", WEB_WORKERS="1",
                     POOL_SIZE="2")
    try:
        for host in (big, small):
            host.start(wait=False)
        for host in (big, small):
            assert wait_until(host.ready, timeout=90), host.log()
        environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        result = subprocess.run(
            [LOCUST, "-f", "loadtest/", "--headless", "-u", "40", "-r", "40", "-t", "8s", "--host", big.base,
             "--tier-hosts", f"{big.base},{small.base}", "--budget-hosts", "3", "--db-url", site_db.app_url(),
             "--csv", str(tmp_path / "over"), "TierUser"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**environ, "PYTHONPATH": str(ROOT), "WEB_WORKERS": "1", "POOL_SIZE": "2"})
    finally:
        for host in (big, small):
            host.stop()
    output = result.stdout + result.stderr
    print(output[-1200:])
    assert result.returncode == 1, output[-3000:]
    assert "budget 6 = 3 host(s) x 1 workers x pool 2: within budget" in output, output[-3000:]
    assert f"db connections from app host {ADDRESSES[0]}: peak " in output
    assert "OVER ITS SHARE" in output
    assert f"FAILED: app host {ADDRESSES[0]} went over its share" in output, output[-3000:]
    assert f"{ADDRESSES[1]}: peak " in output and "FAILED: the app's database connections went over" not in output
