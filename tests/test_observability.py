"""Metrics across workers, the budget command, system checks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.mariadb import PrivateMariaDB
from harness.tools import ROOT, Gunicorn, run_script, wait_until


def metric(text: str, name: str) -> float:
    match = re.search(rf'^{name}{{pool="default"}} ([0-9.e+]+)$', text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


@pytest.mark.slow
def test_metrics_add_up_both_workers_and_forget_dead_ones(site_db: PrivateMariaDB) -> None:
    server = Gunicorn(site_db).start()
    try:
        # 50 ms queries from 40 clients on 2 x 5 connections: queueing is certain.
        result = server.load(clients=40, requests=5, paths="/report/slow/?seconds=0.05")
        # Each worker copies its counters about once a second (the one answering, at the scrape): until a scrape has
        # every request's checkout and nothing in use, some worker's copy is older than the load's end.
        scrape: dict[str, str] = {}

        def settled() -> bool:
            scrape["text"] = server.get("/metrics")[2].decode()
            return (metric(scrape["text"], "mysql_pool_checkouts_total") >= result["ok"]
                    and metric(scrape["text"], "mysql_pool_in_use") == 0)

        wait_until(settled, timeout=15, interval=0.2)
        text = scrape["text"]
        served_by = set(server.worker_pids())
        metrics_dir = Path(server.env["PROMETHEUS_MULTIPROC_DIR"])
        victim = next(iter(served_by))
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: len(server.worker_pids()) == 2 and victim not in server.worker_pids(), 30)

        def leftovers() -> list[str]:
            return [p.name for p in metrics_dir.iterdir() if "live" in p.name and str(victim) in p.name]

        wait_until(lambda: not leftovers(), timeout=10)  # the arbiter's child_exit removes them
        left = leftovers()
    finally:
        server.stop()
    checkouts = metric(text, "mysql_pool_checkouts_total")
    print(f"\n/metrics after {result['ok']} requests over 2 workers: checkouts_total {checkouts:.0f}, "
          f"in_use {metric(text, 'mysql_pool_in_use'):.0f}, size {metric(text, 'mysql_pool_size'):.0f}")
    assert result["failed"] == 0
    # every request took one connection; the start-up health checks add a few
    assert result["ok"] <= checkouts <= result["ok"] + 20
    assert metric(text, "mysql_pool_size") == 5
    assert metric(text, "mysql_pool_in_use") == 0
    assert metric(text, "mysql_pool_connects_total") <= 10
    waits = re.search(r'^mysql_pool_wait_seconds_count\{[^}]*outcome="granted"[^}]*\} ([0-9.e+]+)$', text, re.MULTILINE)
    assert waits and float(waits.group(1)) > 0, "40 clients on 2 x 5 connections must have queued"
    assert left == [], f"the dead worker's live gauges stayed: {left}"


def budget_command(db: PrivateMariaDB, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pool", "budget", "--database-url", db.app_url(), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_budget_command_arithmetic_and_exit_code(site_db: PrivateMariaDB, db: PrivateMariaDB) -> None:
    db.set_global("max_connections", 100)
    fits = budget_command(site_db, "--workers", "2", "--pool-size", "10")
    assert fits.returncode == 0, fits.stdout + fits.stderr
    assert re.search(r"needed\s+50\b", fits.stdout) and "fits" in fits.stdout
    over = budget_command(site_db, "--workers", "2", "--pool-size", "10", "--hosts", "3")
    print("\n" + over.stdout)
    assert over.returncode == 1
    assert re.search(r"app peak\s+120\b", over.stdout) and re.search(r"needed\s+130\b", over.stdout)
    assert "130 > the server's max_connections=100" in over.stdout
    from_conf = budget_command(site_db, "--conf", "gunicorn.conf.py")  # WEB_WORKERS / POOL_SIZE defaults: 2 x 10
    assert re.search(r"workers per host\s+2\b", from_conf.stdout) and re.search(r"pool size \(each alias\)\s+10\b",
                                                                                 from_conf.stdout)
    assert re.search(r"server_size\s+none\b", from_conf.stdout)


def test_budget_command_counts_aliases_or_server_size(site_db: PrivateMariaDB, db: PrivateMariaDB) -> None:
    db.set_global("max_connections", 100)
    # Three aliases to one server, each at its size: 2 workers x 3 x 10 x 2 + 10 = 130 > 100.
    aliases = budget_command(site_db, "--workers", "2", "--pool-size", "10", "--aliases", "3")
    assert aliases.returncode == 1, aliases.stdout + aliases.stderr
    assert re.search(r"needed\s+130\b", aliases.stdout)
    assert "bound the 3 pools together with POOL_SERVER_SIZE" in aliases.stdout
    # The same site with one budget per worker on the server, from the conf's environment: 2 x 20 x 2 + 10 = 90.
    capped = budget_command(site_db, "--conf", "gunicorn.conf.py", "--aliases", "3", POOL_SERVER_SIZE="20")
    print("\n" + capped.stdout)
    assert capped.returncode == 0, capped.stdout + capped.stderr
    assert re.search(r"server_size\s+20\b", capped.stdout) and re.search(r"needed\s+90\b", capped.stdout)
    assert "up to its size 10 of the server budget 20" in capped.stdout


def test_budget_command_reads_the_users_own_limit(site_db: PrivateMariaDB, db: PrivateMariaDB) -> None:
    db.query("ALTER USER 'app'@'127.0.0.1' WITH MAX_USER_CONNECTIONS 15")
    try:
        out = budget_command(site_db, "--workers", "2", "--pool-size", "10")
    finally:
        db.query("ALTER USER 'app'@'127.0.0.1' WITH MAX_USER_CONNECTIONS 0")
    assert out.returncode == 1
    assert "max_user_connections=15" in out.stdout


@pytest.mark.slow
def test_metrics_and_the_pool_view_carry_every_statistic_of_the_table(site_db: PrivateMariaDB) -> None:
    import json

    from pool import stats as S
    from pool.metrics import metric_name

    server = Gunicorn(site_db, WEB_WORKERS="1").start()
    try:
        assert server.get("/products/")[0] == 200
        text = server.get("/metrics")[2].decode()
        view = json.loads(server.get("/-/pool")[2])
    finally:
        server.stop()
    for stat in S.TABLE:
        assert stat.name in view, f"/-/pool lacks {stat.name}"
        if stat.kind == "gauge":
            metric(text, metric_name(stat.name))
        elif stat.kind == "counter":
            metric(text, metric_name(stat.name) + "_total")


ZERO_WAITS_SCRIPT = """
    import json, os, re
    from pool import ConnectionPool, PoolConfig
    from pool.metrics import render

    def wait_series(text):
        found = {}
        for name, labels, value in re.findall(r'^mysql_pool_(wait_seconds_count|wait_seconds_sum|checkouts_total)'
                                              r'\\{([^}]*)\\} (\\S+)$', text, re.MULTILINE):
            if 'pool="zero-waits"' in labels:
                found[name + ("/timeout" if 'outcome="timeout"' in labels else "")] = float(value)
        return found

    pool = ConnectionPool(json.loads(os.environ["KIT_CONNECT_KWARGS"]), PoolConfig(size=2), name="zero-waits")
    before = wait_series(render()[0].decode())
    for _ in range(30):
        pool.release(pool.acquire())
    after = wait_series(render()[0].decode())
    pool.close()
    print(json.dumps({"before": before, "after": after}))
"""


def test_the_wait_series_is_scraped_at_zero_before_any_checkout_and_counts_each_one(db: PrivateMariaDB) -> None:
    out = run_script(ZERO_WAITS_SCRIPT, env={"KIT_CONNECT_KWARGS": json.dumps(db.app_connect_kwargs())})
    print(f"\n/metrics before any checkout: {out['before']}; after 30 that never queued: {out['after']}")
    assert out["before"] == {"wait_seconds_count": 0, "wait_seconds_sum": 0, "wait_seconds_count/timeout": 0,
                             "wait_seconds_sum/timeout": 0, "checkouts_total": 0}
    assert out["after"]["wait_seconds_count"] == out["after"]["checkouts_total"] == 30
    assert out["after"]["wait_seconds_sum"] == 0 and out["after"]["wait_seconds_count/timeout"] == 0
