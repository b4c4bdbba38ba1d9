"""Helpers for tests and benchmarks: a server-side connection monitor, a real gunicorn, subprocess scripts, polling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from harness.mariadb import APP_USER, PrivateMariaDB

ROOT = Path(__file__).resolve().parent.parent


class ConnectionMonitor:
    """Polls the server's process list and keeps the peak number of the app user's connections."""

    def __init__(self, db: PrivateMariaDB, user: str = APP_USER, interval: float = 0.01) -> None:
        self.db, self.user, self.interval = db, user, interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.db.admin() as conn, conn.cursor() as cur:
            while not self._stop.is_set():
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", (self.user,))
                self.peak = max(self.peak, int(cur.fetchone()[0]))
                self.samples += 1
                self._stop.wait(self.interval)

    def __enter__(self) -> ConnectionMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def run_script(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    """Run `code` in a fresh interpreter (for monkey-patching and fork) and return the JSON it prints last."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"script failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"script printed no JSON:\n{result.stdout}\n{result.stderr}"
    return json.loads(lines[-1])


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def app_connections_by_pid(db: PrivateMariaDB, user: str = APP_USER) -> dict[int, int]:
    """The app user's server connections, grouped by the client pid PyMySQL announced (needs performance_schema)."""
    rows = db.query(
        "SELECT a.ATTR_VALUE, COUNT(*) FROM performance_schema.session_connect_attrs a "
        "JOIN information_schema.PROCESSLIST p ON p.ID = a.PROCESSLIST_ID "
        "WHERE a.ATTR_NAME = '_pid' AND p.USER = %s GROUP BY a.ATTR_VALUE",
        (user,),
    )
    return {int(pid): int(count) for pid, count in rows}


class Gunicorn:
    """A real `gunicorn -c <conf>` with gevent workers on a free loopback port, for one test."""

    def __init__(self, db: PrivateMariaDB, conf: str = "gunicorn.conf.py", **env: str) -> None:
        from harness.mariadb import free_port

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(f"/tmp/kit-gunicorn-{self.port}.log")
        self.env = {
            **os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": db.app_url(), "BIND": f"127.0.0.1:{self.port}",
            "ACCESS_LOG": "", "WEB_WORKERS": "2", "POOL_SIZE": "5",
            "PROMETHEUS_MULTIPROC_DIR": f"/tmp/kit-prometheus-{self.port}", **env,
        }
        self.conf = conf
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> Gunicorn:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", self.conf], cwd=ROOT, env=self.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        if wait and not wait_until(self.ready, timeout=60):
            self.stop()
            raise AssertionError(f"gunicorn did not become ready:\n{self.log()}")
        return self

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
        try:
            return self.get("/healthz")[0] == 200
        except OSError:
            return False

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def worker_pids(self) -> set[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return {int(pid) for pid in children}

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def load(self, clients: int = 200, requests: int = 10, paths: str = "/products/", deadline: float = 120,
             keepalive_share: float = 0.5, think: float = 0.0) -> dict[str, Any]:
        """Run harness.httpload against this server in a subprocess and return its JSON verdict."""
        out = subprocess.run(
            [sys.executable, "-m", "harness.httpload", self.base, "--clients", str(clients), "--requests", str(requests),
             "--paths", paths, "--deadline", str(deadline), "--keepalive-share", str(keepalive_share),
             "--think", str(think)],
            cwd=ROOT, capture_output=True, text=True, timeout=deadline + 60, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    def load_in_background(self, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
        """Start `load` in a thread; the dict is filled with its verdict when the thread ends."""
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(self.load(**kwargs)))
        thread.start()
        return thread, result

    def pool_stats_of_every_worker(self, tries: int = 60) -> dict[int, dict[str, Any]]:
        """/-/pool from each worker (requests land on workers at random, so ask until every pid answered)."""
        found: dict[int, dict[str, Any]] = {}
        workers = self.worker_pids()
        for _ in range(tries):
            stats = json.loads(self.get("/-/pool")[2])
            found[stats["pid"]] = stats
            if workers <= set(found):
                break
        return found

    def stop(self, timeout: float = 40) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(15)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            return self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def scalar(conn: Any, sql: str) -> Any:
    """The first column of the first row of `sql` on `conn` (None without rows)."""
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
        return row[0] if row else None

