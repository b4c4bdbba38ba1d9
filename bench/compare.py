"""The same load against the kit and its baselines, served by real gunicorn (2 gevent workers), driven by real locust.

    .venv/bin/pip install -e '.[test,bench]'
    .venv/bin/python -m bench.compare            # the full matrix (~10 minutes), writes docs/benchmarks-*.{json,png}
    .venv/bin/python -m bench.compare --quick    # one scenario, for a look

Requests/s is the number of requests gunicorn answered (its access log) over the run time; latencies come from locust.
Variants: Django's stock MySQL backend with CONN_MAX_AGE=0 and 60, django-db-connection-pool (SQLAlchemy QueuePool, size
10, no overflow), and the kit (pool 10, default settings). All use PyMySQL. Each run starts a fresh gunicorn on a
private MariaDB (max_connections=400, as in the issue), runs locust headless for --seconds, and reads: requests/s, p50
and p99, failures, the peak of the app's server connections (the budget gate's poller), new server connections
(`Connections`) and statements (`Questions`) per request. Load goes to 127.0.0.1 only and every run is time-bounded.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.mariadb import PrivateMariaDB
from harness.tools import Gunicorn

ROOT = Path(__file__).resolve().parent.parent
POOL_SIZE = 10
WORKERS = 2

VARIANTS: dict[str, dict[str, str]] = {
    "stock CONN_MAX_AGE=0": {"KIT_BASELINE": "stock", "KIT_CONN_MAX_AGE": "0"},
    "stock CONN_MAX_AGE=60": {"KIT_BASELINE": "stock", "KIT_CONN_MAX_AGE": "60"},
    "django-db-connection-pool": {"KIT_BASELINE": "dbcp"},
    "kit": {},  # the defaults: reset=tracked
    "kit, reset=full": {"POOL_RESET": "full"},
    "kit, reset=rollback": {"POOL_RESET": "rollback"},
    "kit, lease=transaction": {"POOL_LEASE": "transaction"},
    # Not in the default matrix (--variant to include it): what PoolMiddleware's early return is worth.
    "kit without PoolMiddleware": {"KIT_BASELINE": "late-release"},
}
DEFAULT_VARIANTS = [name for name in VARIANTS if name != "kit without PoolMiddleware"]

# (label, locust user class, users, TLS setting)
SCENARIOS: list[tuple[str, str, int, str]] = [
    ("DB-bound 20 ms, keep-alive, 200 users", "SlowReportBench", 200, "default"),
    ("SELECT 1, keep-alive, 200 users", "SelectOneBench", 200, "default"),
    ("SELECT 1, new connection per request, 200 users", "SelectOneNewConnectionBench", 200, "default"),
    ("DB-bound 20 ms, keep-alive, 500 users", "SlowReportBench", 500, "default"),
    ("SELECT 1, keep-alive, 200 users, TLS off", "SelectOneBench", 200, "off"),
    ("one UPDATE in ATOMIC_REQUESTS, keep-alive, 200 users", "WriteOneBench", 200, "default"),
    ("SELECT 1, 50 ms wait, SELECT 2, keep-alive, 200 users", "MixedBench", 200, "default"),
]


def server_counters(db: PrivateMariaDB) -> dict[str, int]:
    rows = db.query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Connections')")
    return {name: int(value) for name, value in rows}


def run_one(db: PrivateMariaDB, variant: str, user_class: str, users: int, tls: str, seconds: int,
            pool_size: int = POOL_SIZE) -> dict[str, Any]:
    url = db.app_url() + ("?ssl_disabled=1" if tls == "off" else "")
    out_dir = Path(tempfile.mkdtemp(prefix="kit-bench-"))
    access_log = out_dir / "access.log"
    env = {**VARIANTS[variant], "POOL_SIZE": str(pool_size), "WEB_WORKERS": str(WORKERS), "DATABASE_URL": url,
           "LOG_LEVEL": "warning", "POOL_LOG_LEVEL": "WARNING", "ACCESS_LOG": str(access_log)}
    server = Gunicorn(db, **env).start()
    try:
        server.load(clients=20, requests=5, paths="/select1/")  # warm: workers imported, pools or connections open
        time.sleep(1)
        served_before = _lines(access_log)
        before = server_counters(db)
        result = subprocess.run(
            [str(Path(sys.executable).parent / "locust"), "-f", "loadtest/", "--headless", "--host", server.base,
             "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--csv", str(out_dir / "run"), "--only-summary",
             user_class],
            cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        )
        after = server_counters(db)
        served = _lines(access_log) - served_before
        log = server.log()
    finally:
        server.stop()
    stats = _aggregated(out_dir / "run_stats.csv")
    gate = list(csv.DictReader((out_dir / "run_db_connections_summary.csv").open()))[0]
    # Requests are counted where they are served: locust's own count misses some that completed near the end of the
    # run (~15 % here), which would inflate every per-request figure.
    requests = max(served, 1)
    stats["rps"] = round(served / seconds, 1)
    polls = int(gate["samples"])  # the gate's own COUNT(*) queries, not the app's
    return {
        "variant": variant if pool_size == POOL_SIZE else f"{variant} (pool {pool_size})", "pool_size": pool_size,
        "user_class": user_class, "users": users, "tls": tls, "requests": served, **stats,
        "peak_connections": int(gate["peak"]),
        "connects_per_request": round((after["Connections"] - before["Connections"]) / requests, 3),
        "connects_total": after["Connections"] - before["Connections"],
        "statements_per_request": round((after["Questions"] - before["Questions"] - polls - 1) / requests, 2),
        "too_many_connections": log.count("1040"),
        "locust_exit": result.returncode,
    }


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _aggregated(path: Path) -> dict[str, Any]:
    for row in csv.DictReader(path.open()):
        if row["Name"] == "Aggregated":
            return {
                "locust_requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "rps": round(float(row["Requests/s"]), 1),
                "p50_ms": float(row["50%"]),
                "p99_ms": float(row["99%"]),
            }
    raise RuntimeError(f"no Aggregated row in {path}")


def write_chart(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys((r["user_class"], r["users"], r["tls"]) for r in results))
    labels = {key: label for label, *key_parts in SCENARIOS for key in [tuple(key_parts)]}
    fig, axes = plt.subplots(len(scenarios), 2, figsize=(12, 2.6 * len(scenarios)), squeeze=False)
    for row, key in enumerate(scenarios):
        runs = [r for r in results if (r["user_class"], r["users"], r["tls"]) == key]
        names = [r["variant"].replace("stock ", "stock\n").replace("django-db-connection-pool", "dj-db-conn-pool")
                 for r in runs]
        axes[row][0].barh(names, [r["rps"] for r in runs], color="#4878a8")
        axes[row][0].set_title(f"{labels.get(key, key)}: requests/s", fontsize=9)
        axes[row][1].barh(names, [r["peak_connections"] for r in runs], color="#c8743c")
        axes[row][1].axvline(POOL_SIZE * WORKERS, color="black", linestyle="--", linewidth=1)
        axes[row][1].set_title("peak server connections (dashed: pool x workers)", fontsize=9)
        for ax in axes[row]:
            ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| scenario | variant | req/s | p50 ms | p99 ms | failures | peak conns | connects | stmts/req | 1040s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    labels = {(cls, users, tls): label for label, cls, users, tls in SCENARIOS}
    for r in results:
        lines.append(
            f"| {labels[(r['user_class'], r['users'], r['tls'])]} | {r['variant']} | {r['rps']:.0f} "
            f"| {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['failures']} | {r['peak_connections']} "
            f"| {r['connects_total']} | {r['statements_per_request']:.2f} | {r['too_many_connections']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="only the first scenario")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-results"))
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS), help="only these (repeatable)")
    parser.add_argument("--scenario", action="append", type=int, help="only these scenario numbers, from 1")
    parser.add_argument("--append", action="store_true", help="add to the results already in --out.json")
    parser.add_argument("--pool-size", type=int, action="append",
                        help="run the kit's variants at these pool sizes too (repeatable; default: 10 only)")
    args = parser.parse_args()
    scenarios = SCENARIOS[:1] if args.quick else SCENARIOS
    if args.scenario:
        scenarios = [SCENARIOS[n - 1] for n in args.scenario]
    variants = args.variant or DEFAULT_VARIANTS
    db = PrivateMariaDB(max_connections=400).start()
    previous = Path(args.out + ".json")
    results: list[dict[str, Any]] = json.loads(previous.read_text()) if args.append and previous.exists() else []
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], check=True, cwd=ROOT,
                       env={**os.environ, "DATABASE_URL": db.app_url()})
        runs = [(variant, size) for variant in variants
                for size in (args.pool_size if args.pool_size and variant.startswith("kit") else [POOL_SIZE])]
        for label, user_class, users, tls in scenarios:
            for variant, size in runs:
                started = time.monotonic()
                results.append(run_one(db, variant, user_class, users, tls, args.seconds, size))
                r = results[-1]
                print(f"{label:50} {r['variant']:28} {r['rps']:7.1f} req/s p99 {r['p99_ms']:6.0f} ms "
                      f"fail {r['failures']:5d} peak {r['peak_connections']:4d} conns "
                      f"({time.monotonic() - started:.0f}s)", flush=True)
                Path(args.out + ".json").write_text(json.dumps(results, indent=1))
                time.sleep(2)  # let the server drop the last run's sessions
    finally:
        db.destroy()
    print(table(results))
    write_chart(results, Path(args.out + ".png"))


if __name__ == "__main__":
    main()
