"""Helpers for tests and benchmarks: a server-side connection monitor, a real gunicorn, subprocess scripts, polling."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.mariadb import APP_USER, PrivateMariaDB

ROOT = Path(__file__).resolve().parent.parent


class ConnectionMonitor:
    """Polls the server's process list and keeps the peak number of the app user's connections, and every count."""

    def __init__(self, db: PrivateMariaDB, user: str = APP_USER, interval: float = 0.01) -> None:
        self.db, self.user, self.interval = db, user, interval
        self.peak = 0
        self.samples = 0
        self.counts: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.db.admin() as conn, conn.cursor() as cur:
            while not self._stop.is_set():
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", (self.user,))
                (count,) = cur.fetchone() or (0,)
                self.peak = max(self.peak, int(count))
                self.counts.append(int(count))
                self.samples += 1
                self._stop.wait(self.interval)

    def __enter__(self) -> ConnectionMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def start_http_load(base: str, clients: int, paths: list[str], seconds: float) -> subprocess.Popen[str]:
    """harness.httpload in the background: `clients` keep-alive clients on `paths` until `seconds` have passed."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness.httpload", base, "--clients", str(clients), "--requests", "1000000",
         "--paths", ",".join(paths), "--deadline", str(seconds), "--keepalive-share", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def http_load_verdict(process: subprocess.Popen[str], timeout: float = 600) -> dict[str, Any]:
    """The JSON verdict of a `start_http_load`, once it has ended."""
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise AssertionError(f"the load failed ({process.returncode}): {err[-2000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


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


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is truthy or `timeout` seconds passed; whether it ended truthy."""
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


def stop_gracefully(process: subprocess.Popen[Any], timeout: float = 60) -> int:
    """The graceful stop a deployment sends: SIGTERM `process` (gunicorn's arbiter then drains its workers, celery
    shuts down warm) and wait up to `timeout` s for it to exit; past that, SIGKILL its process group, so no child
    outlives the test. `process` must have been started with start_new_session=True (its own group). Returns its
    exit code, at once if it had already exited."""
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def _fresh_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="kit-gunicorn-"))


# Where a Gunicorn keeps its log and metrics files unless told: tests/conftest.py points this at pytest's temporary
# directory for the running test (pytest keeps the last few runs); elsewhere, a fresh private temporary directory.
# Never a fixed path: two runs (or a port reused) must not share or inherit files.
workdir_factory: Callable[[], Path] = _fresh_workdir


class Gunicorn:
    """A real `gunicorn -c <conf>` with gevent workers on a free loopback port, for one test."""

    def __init__(self, db: PrivateMariaDB, conf: str = "gunicorn.conf.py", **env: str) -> None:
        from harness.mariadb import free_port

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir_factory()
        self.log_path = self.workdir / f"gunicorn-{self.port}.log"
        self.env = {
            **os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": db.app_url(), "BIND": f"127.0.0.1:{self.port}",
            "ACCESS_LOG": "", "WEB_WORKERS": "2", "POOL_SIZE": "5",
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / f"prometheus-{self.port}"), **env,
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
            [sys.executable, "-m", "harness.httpload", self.base, "--clients", str(clients),
             "--requests", str(requests), "--paths", paths, "--deadline", str(deadline),
             "--keepalive-share", str(keepalive_share), "--think", str(think)],
            cwd=ROOT, capture_output=True, text=True, timeout=deadline + 60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
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

    def pool_view(self, fresh_since: float | None = None, timeout: float = 30) -> dict[str, Any]:
        """/-/pool, once every worker's snapshot in it was taken after `fresh_since` (a time.monotonic() of this
        process: CLOCK_MONOTONIC is one clock for every process of the machine, as pool.workerstats relies on). The
        workers publish about once a second; this waits for that instead of sleeping past it."""
        deadline = time.monotonic() + timeout
        while True:
            asked = time.monotonic()
            view: dict[str, Any] = json.loads(self.get("/-/pool")[2])
            # A snapshot is age_s (rounded to 0.1) older than the answer, which came after `asked`.
            if fresh_since is None or all(asked - w["age_s"] - 0.05 > fresh_since for w in view["workers"]):
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"no snapshot of every worker newer than {asked - fresh_since:.1f}s ago: {view}")
            time.sleep(0.1)

    def wait_for_checkouts(self, count: int, timeout: float = 60) -> None:
        """Until the workers' pools have handed out `count` more connections than now: a load is being served."""
        def checkouts() -> float:
            return float(sum(t.get("checkouts", 0) for t in self.pool_view()["total"].values()))

        target = checkouts() + count
        assert wait_until(lambda: checkouts() >= target, timeout=timeout, interval=0.1), \
            f"the load was not served: fewer than {count} checkouts in {timeout:g}s"

    def accepted_connections(self, pid: int) -> int:
        """Established TCP connections on this server's port held by process `pid` (what it accepted and keeps)."""
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            match = re.fullmatch(r"socket:\[(\d+)\]", target)
            if match:
                inodes.add(match.group(1))
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == self.port and fields[3] == "01" and fields[9] in inodes:  # 01: ESTABLISHED
                    count += 1
        return count

    def stop(self, timeout: float = 40) -> int:
        return stop_gracefully(self.process, timeout) if self.process is not None else 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def scalar(conn: Any, sql: str) -> Any:
    """The first column of the first row of `sql` on `conn` (None without rows)."""
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
        return row[0] if row else None

