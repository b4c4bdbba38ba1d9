"""Statements and round trips per request, for the kit and for Django's stock backend, under gevent.

    .venv/bin/python -m bench.statements                 # all variants, private server, a table
    .venv/bin/python -m bench.statements --variant kit-full --json   # one variant (what the tests call)

Each variant runs in its own interpreter, monkey-patched like a gevent worker, and serves the demo site's views
through Django's WSGI handler with a new greenlet per request (as gunicorn's gevent worker does), 10 at a time.
After warm-up requests, it counts:
- statements: the server's `Questions` counter (every statement and COM_RESET_CONNECTION; not COM_PING),
- round trips: writes to the server's socket on the client (one per request/answer exchange, pings included;
  a pipelined reset is one), and
- connects: new server sessions (`Connections` counter).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

VARIANTS = {
    "stock CONN_MAX_AGE=0": {"KIT_BASELINE": "stock", "KIT_CONN_MAX_AGE": "0"},
    "stock CONN_MAX_AGE=60": {"KIT_BASELINE": "stock", "KIT_CONN_MAX_AGE": "60"},
    "kit-full": {"POOL_RESET": "full"},
    "kit-rollback": {"POOL_RESET": "rollback"},
    "kit-tracked": {"POOL_RESET": "tracked"},
    "kit-transaction": {"POOL_LEASE": "transaction"},
}


def measure(path: str, requests: int, warmup: int, concurrency: int) -> dict[str, float]:
    """Runs inside the patched child interpreter."""
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import gevent.pool
    import pymysql

    writes = 0
    admin: pymysql.connections.Connection | None = None
    original_write = pymysql.connections.Connection._write_bytes  # type: ignore[attr-defined]  # as below

    def counting_write(self: pymysql.connections.Connection, data: bytes) -> None:
        nonlocal writes
        if self is not admin:
            writes += 1
        original_write(self, data)

    pymysql.connections.Connection._write_bytes = counting_write  # type: ignore[attr-defined]  # private, not in types-PyMySQL

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "deploy.settings")
    # The environment's POOL_* settings reach the pool as every pool resolves its settings (pool.settings).
    django.setup()
    from wsgiref.util import setup_testing_defaults

    from django.core.handlers.wsgi import WSGIHandler

    app = WSGIHandler()
    failures = 0

    def one_request() -> None:
        nonlocal failures
        environ: dict[str, object] = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "HTTP_HOST": "127.0.0.1"}
        setup_testing_defaults(environ)
        status: list[str] = []
        result = app(environ, lambda s, h, exc_info=None: status.append(s))
        try:
            b"".join(result)
        finally:
            result.close()  # fires request_finished: the end of the request for Django, as a WSGI server does
        if not status[0].startswith("200"):
            failures += 1

    def run(n: int) -> None:
        group = gevent.pool.Pool(concurrency)
        for _ in range(n):
            group.spawn(one_request)
        group.join(raise_error=True)

    admin = pymysql.connect(unix_socket=os.environ["KIT_ADMIN_SOCKET"], user="root",
                            password=os.environ["KIT_ADMIN_PASSWORD"], autocommit=True, ssl_disabled=True)

    def counters() -> tuple[int, int]:
        with admin.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Connections')")
            values = dict(cur.fetchall())
        return int(values["Questions"]), int(values["Connections"])

    run(warmup)
    gevent.sleep(0.2)
    q0, c0 = counters()
    w0 = writes
    run(requests)
    q1, c1 = counters()
    return {
        "statements": (q1 - q0 - 1) / requests,  # minus the SHOW STATUS that read the counters
        "round_trips": (writes - w0) / requests,
        "connects": (c1 - c0) / requests,
        "failures": failures,
    }


def run_variant(name: str, db_url: str, admin_socket: str, admin_password: str, path: str, requests: int,
                extra_env: dict[str, str] | None = None) -> dict[str, float]:
    env = {**os.environ, **VARIANTS[name], "DATABASE_URL": db_url, "KIT_ADMIN_SOCKET": admin_socket,
           "KIT_ADMIN_PASSWORD": admin_password, **(extra_env or {})}
    code = (f"import json; from bench.statements import measure; "
            f"print(json.dumps(measure({path!r}, {requests}, warmup=30, concurrency=10)))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), action="append")
    parser.add_argument("--path", default="/select1/")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from harness.mariadb import ROOT_PASSWORD, PrivateMariaDB

    db = PrivateMariaDB().start()
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], check=True,
                       env={**os.environ, "DATABASE_URL": db.app_url()},
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        results = {name: run_variant(name, db.app_url(), db.socket_path, ROOT_PASSWORD, args.path, args.requests)
                   for name in (args.variant or VARIANTS)}
    finally:
        db.destroy()
    if args.json:
        print(json.dumps(results))
        return
    print(f"view {args.path}, {args.requests} requests, a new greenlet each, 10 concurrent")
    print(f"{'variant':24} {'statements/req':>15} {'round trips/req':>16} {'connects/req':>13} {'failures':>9}")
    for name, r in results.items():
        print(f"{name:24} {r['statements']:15.2f} {r['round_trips']:16.2f} {r['connects']:13.2f} {r['failures']:9d}")


if __name__ == "__main__":
    main()
