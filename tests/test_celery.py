"""Celery on the pool (issue 14): real Celery workers (gevent and prefork pools) on a private Redis broker the test
starts, against the private MariaDB. With pool.celery installed, a finished task's connection goes back at once;
without it, finished greenlets keep theirs until the pool reclaims them from the dead."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.mariadb import APP_USER, PrivateMariaDB, free_port
from harness.tools import ROOT, ConnectionMonitor, wait_until

pytestmark = pytest.mark.slow

POOL = 3


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    """A private redis-server on a free loopback port, nothing kept on disk; never the machine's own Redis."""
    folder = tempfile.mkdtemp(prefix="kit-redis-")
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", folder], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        assert wait_until(lambda: _pings(client), timeout=20), "redis-server did not start"
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


class Worker:
    """`celery -A tests.celery_app worker` in a subprocess, stopped (and killed if need be) at the end."""

    def __init__(self, db: PrivateMariaDB, broker_url: str, pool: str, concurrency: int, **env: str) -> None:
        self.log_path = Path(tempfile.mkstemp(prefix="kit-celery-", suffix=".log")[1])
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": db.app_url(), "KIT_BROKER_URL": broker_url,
                    "KIT_POOL_SIZE": str(POOL), **env}
        self.args = [str(Path(sys.executable).parent / "celery"), "-A", "tests.celery_app", "worker", "-P", pool,
                     "-c", str(concurrency), "--without-heartbeat", "--without-gossip", "--without-mingle",
                     "-l", "INFO", "-n", f"kit-{pool}-{os.getpid()}@localhost"]
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Worker:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        assert wait_until(lambda: "ready." in self.log() or self.process.poll() is not None, timeout=60), self.log()
        assert self.process.poll() is None, self.log()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)  # warm shutdown: finish what runs, then exit
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def client(broker_url: str) -> Any:
    """Sends tasks by name: the test process never imports the app (it would set up Django here)."""
    from celery import Celery

    return Celery("kit-test-client", broker=broker_url, backend=broker_url)


def run_tasks(broker_url: str, count: int) -> tuple[list[int], float]:
    sender = client(broker_url)
    started = time.monotonic()
    results = [sender.send_task("tests.celery_app.stock_of", args=[i % 100 + 1]) for i in range(count)]
    values = [result.get(timeout=120) for result in results]
    return values, time.monotonic() - started


def worker_figures(broker_url: str) -> dict[str, Any]:
    return client(broker_url).send_task("tests.celery_app.pool_figures").get(timeout=30)


@pytest.mark.parametrize(("installed", "celery_fixup"), [(True, False), (False, False), (False, True)])
def test_gevent_pool_returns_each_tasks_connection(site_db: PrivateMariaDB, broker: str, installed: bool,
                                                  celery_fixup: bool) -> None:
    count = 30 if not (installed or celery_fixup) else 200
    with Worker(site_db, broker, "gevent", 50, KIT_CELERY_INSTALL="1" if installed else "0",
                KIT_CELERY_DJANGO_FIXUP="1" if celery_fixup else "0") as worker, \
            ConnectionMonitor(site_db, APP_USER) as monitor:
        values, seconds = run_tasks(broker, count)
        figures = worker_figures(broker)
        log = worker.log()
    print(f"\ngevent pool, 50 greenlets, pool {POOL}, pool.celery {'installed' if installed else 'not installed'}, "
          f"Celery's Django fixup {'on' if celery_fixup else 'off'}: "
          f"{count} tasks in {seconds:.1f}s, peak {monitor.peak} server connections, reclaimed from dead task "
          f"greenlets: {figures.get('reclaimed')}")
    assert len(values) == count and all(isinstance(v, int) for v in values)
    assert 0 < monitor.peak <= POOL
    if installed or celery_fixup:
        # pool.celery, or Celery's own fixup through the engine's close: each connection back as its task ends.
        assert figures["reclaimed"] == 0 and figures["in_use"] == 0
        assert "owner died" not in log
    else:
        # What the integration prevents: every finished task left its connection behind for the pool to reclaim.
        assert figures["reclaimed"] >= count - POOL
        assert "owner died" in log


def test_prefork_children_never_quit_the_parents_connection(site_db: PrivateMariaDB, broker: str,
                                                           tmp_path: Path) -> None:
    marker = tmp_path / "parent-connection"
    with Worker(site_db, broker, "prefork", 2, KIT_CELERY_INSTALL="1", KIT_PARENT_CONNECTION_FILE=str(marker)):
        values, _ = run_tasks(broker, 40)
        pids = {worker_figures(broker)["pid"] for _ in range(10)}
        parent_session = int(marker.read_text())
        still_there = site_db.query("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s",
                                    (parent_session,))[0][0]
    print(f"\nprefork, 2 children: 40 tasks ok in {len(pids)} child processes; the parent's session "
          f"{'survived' if still_there else 'was closed'}")
    assert len(values) == 40
    assert still_there == 1, "a child closed the parent's session (COM_QUIT across fork)"
