"""Four aliases on one server, with and without a server budget (issue 29): what sharing costs and what it bounds.

    .venv/bin/python -m bench.server_budget              # ~2 minutes
    .venv/bin/python -m bench.server_budget --seconds 10

The site is the demo with three tenant aliases (tests/budget_settings.py), served by real gunicorn (2 gevent workers,
pool size 10 per alias), on a private MariaDB. Load (harness.httpload, loopback only, time-bounded): 185 keep-alive
clients on the `default` alias and 5 on each tenant, 200 in all, each request one `SELECT SLEEP(0.01)`. Printed per
variant: requests/s and p99 of the busy alias and of the quiet ones, the peak of the app's server connections (50 ms
samples), and the pools' connects, handovers and server-queue waits.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.mariadb import PrivateMariaDB
from harness.tools import ConnectionMonitor, Gunicorn, http_load_verdict, start_http_load

ROOT = Path(__file__).resolve().parent.parent
TENANTS = ("tenant1", "tenant2", "tenant3")
VARIANTS: dict[str, dict[str, str]] = {
    "no server budget (each alias size 10)": {},
    "server_size=20 per worker": {"POOL_SERVER_SIZE": "20"},
    "server_size=10 per worker": {"POOL_SERVER_SIZE": "10"},
}


def run(db: PrivateMariaDB, env: dict[str, str], seconds: float) -> dict[str, Any]:
    site = Gunicorn(db, DJANGO_SETTINGS_MODULE="tests.budget_settings", WEB_WORKERS="2", POOL_SIZE="10",
                    ACCESS_LOG="", **env).start()
    try:
        for alias in ("default", *TENANTS):
            site.get(f"/alias/{alias}/")
        with ConnectionMonitor(db, interval=0.05) as sampler:
            busy = start_http_load(site.base, 185, ["/alias/default/"], seconds)
            quiet = start_http_load(site.base, 15, [f"/alias/{t}/" for t in TENANTS], seconds)
            busy_result, quiet_result = http_load_verdict(busy), http_load_verdict(quiet)
        totals = site.pool_view()["total"]
    finally:
        site.stop()
    figures = {name: sum(t.get(name, 0) for t in totals.values())
               for name in ("checkouts", "connects", "handed_over", "server_waits", "timeouts")}
    return {"busy": busy_result, "quiet": quiet_result, "peak": sampler.peak, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    db = PrivateMariaDB(max_connections=400).start()
    try:
        for tenant in TENANTS:
            db.query(f"CREATE DATABASE IF NOT EXISTS {tenant}")
        rows = []
        for name, env in VARIANTS.items():
            out = run(db, env, args.seconds)
            rows.append((name, out))
            print(name, json.dumps({k: v for k, v in out.items() if k not in ("busy", "quiet")}), flush=True)
    finally:
        db.destroy()
    print()
    print("| variant | busy alias req/s | busy p99 ms | quiet aliases req/s | quiet p99 ms | non-2xx | peak server "
          "connections | connects | handovers | server-queue waits |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, out in rows:
        busy, quiet = out["busy"], out["quiet"]
        print(f"| {name} | {busy['rps']} | {busy['p99_ms']} | {quiet['rps']} | {quiet['p99_ms']} | "
              f"{busy['failed'] + quiet['failed']} | {out['peak']} | {out['connects']} | {out['handed_over']} | "
              f"{out['server_waits']} |")


if __name__ == "__main__":
    main()
