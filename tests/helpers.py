"""Test helpers: a server-side connection monitor, subprocess scripts, polling."""

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

from deploy.privatedb import APP_USER, PrivateMariaDB

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
