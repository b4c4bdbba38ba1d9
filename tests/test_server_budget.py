"""The server budget (issue 29) in gunicorn: four aliases on one server, 2 gevent workers, size 10 each and
server_size 10. Under 200 users, most of them on one alias, the server never counts more than 2 x 10 app connections,
nothing fails but bounded-wait 503s, and the aliases with few users are not starved by the busy one."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from harness.mariadb import APP_USER, PrivateMariaDB
from harness.tools import ROOT, Gunicorn, wait_until
from tests.budget_settings import TENANTS

pytestmark = pytest.mark.slow

WORKERS, SIZE, SERVER_SIZE = 2, 10, 10


class Sampler:
    """The app user's connections on the server, every 50 ms, from a root session."""

    def __init__(self, db: PrivateMariaDB, interval: float = 0.05) -> None:
        self.db, self.interval = db, interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.db.admin() as conn, conn.cursor() as cur:
            while not self._stop.is_set():
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", (APP_USER,))
                self.samples.append(int(cur.fetchone()[0]))
                self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture(scope="module")
def tenant_server() -> Iterator[PrivateMariaDB]:
    # A server of its own: its connection count must be this site's alone.
    db = PrivateMariaDB().start()
    for tenant in TENANTS:
        db.query(f"CREATE DATABASE IF NOT EXISTS {tenant}")
    yield db
    db.destroy()


def http_load(base: str, clients: int, paths: list[str], seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.httpload", base, "--clients", str(clients), "--requests", "100000",
         "--paths", ",".join(paths), "--deadline", str(seconds), "--keepalive-share", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def verdict(process: subprocess.Popen[str]) -> dict[str, Any]:
    import json

    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err[-2000:]
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def test_four_aliases_share_one_budget_per_worker_and_the_quiet_ones_are_not_starved(
        tenant_server: PrivateMariaDB) -> None:
    site = Gunicorn(tenant_server, DJANGO_SETTINGS_MODULE="tests.budget_settings", WEB_WORKERS=str(WORKERS),
                    POOL_SIZE=str(SIZE), POOL_SERVER_SIZE=str(SERVER_SIZE), POOL_TIMEOUT="10").start()
    try:
        for alias in ("default", *TENANTS):
            status, _, body = site.get(f"/alias/{alias}/")
            assert status == 200, body
        assert "server budget for app@127.0.0.1:" in site.log() and "(server_size), shared with" in site.log()
        with Sampler(tenant_server) as sampler:
            busy = http_load(site.base, 185, ["/alias/default/"], seconds=8)
            quiet = http_load(site.base, 15, [f"/alias/{t}/" for t in TENANTS], seconds=8)
            busy_result, quiet_result = verdict(busy), verdict(quiet)
        print("busy:", {k: busy_result[k] for k in ("ok", "statuses", "errors", "rps", "p99_ms")})
        print("quiet:", {k: quiet_result[k] for k in ("ok", "statuses", "errors", "rps", "p99_ms")})
        print(f"server: peak {max(sampler.samples)} app connections in {len(sampler.samples)} samples")
        assert len(sampler.samples) > 50
        assert max(sampler.samples) <= WORKERS * SERVER_SIZE, sampler.samples
        for result in (busy_result, quiet_result):
            assert not result["errors"], result["errors"]
            assert set(result["statuses"]) <= {"200", "503"}, result["statuses"]
            assert result["ok"] > 0
        assert quiet_result["ok"] > 100  # the quiet aliases were served throughout, not only after the burst
        assert quiet_result["p99_ms"] <= 2 * busy_result["p99_ms"], (quiet_result, busy_result)
        view = site.pool_view()
        print("servers:", view["servers"])
        (server,) = view["servers"]
        assert server["server_size"] == WORKERS * SERVER_SIZE and server["workers"] == WORKERS
        assert set(server["pools"]) == {"default", *TENANTS}
        assert view["budget"]["connections"] == WORKERS * SERVER_SIZE
    finally:
        site.stop()
    assert wait_until(lambda: tenant_server.app_connection_count() == 0, timeout=30)
