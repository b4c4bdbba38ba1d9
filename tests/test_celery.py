"""Celery on the pool (issue 14): real Celery workers (gevent, eventlet, threads and prefork pools) on a private Redis
broker the test starts, against the private MariaDB, with the demo's models (tests/celery_app.py). With pool.celery
installed, a finished or failed task's connection goes back at once; without it (and without Celery's own Django
fixup), finished greenlets keep theirs until the pool reclaims them from the dead."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.mariadb import APP_USER, PrivateMariaDB, free_port
from harness.tools import ROOT, ConnectionMonitor, stop_gracefully, wait_until

pytestmark = pytest.mark.slow

POOL = 3


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free loopback port, nothing kept on disk; never the machine's own Redis."""
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        assert wait_until(lambda: _pings(client), timeout=20), "redis-server did not start"
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


class Worker:
    """`celery -A tests.celery_app worker` in a subprocess (its own session), stopped with a warm shutdown at the end
    and killed, with its children, if that takes too long."""

    def __init__(self, db: PrivateMariaDB, broker_url: str, log_dir: Path, pool: str, concurrency: int,
                 **env: str) -> None:
        self.log_path = log_dir / f"celery-{pool}.log"  # under pytest's tmp_path: kept for the last few runs only
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": db.app_url(), "KIT_BROKER_URL": broker_url,
                    "KIT_POOL_SIZE": str(POOL), "KIT_CELERY_INSTALL": "1", "KIT_CELERY_DJANGO_FIXUP": "0", **env}
        # `python -m celery` patches for -P gevent/eventlet before anything is imported, as the `celery` script does.
        self.args = [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "-P", pool,
                     "-c", str(concurrency), "--without-heartbeat", "--without-gossip", "--without-mingle",
                     "-l", "INFO", "-n", f"kit-{pool}-{os.getpid()}@localhost"]
        self.process: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    def __enter__(self) -> Worker:
        with self.log_path.open("wb") as log:
            process = self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=log,
                                                      stderr=subprocess.STDOUT, start_new_session=True)
        try:
            assert wait_until(lambda: "ready." in self.log() or process.poll() is not None, timeout=60), self.log()
            assert process.poll() is None, self.log()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        # SIGTERM is celery's warm shutdown: finish what runs, then the shutdown signals.
        self.exit_code = stop_gracefully(self.process, timeout=20)
        try:  # prefork children left behind by a killed main process
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def client(broker_url: str) -> Any:
    """Sends tasks by name: the test process never imports the app (it would set up Django here)."""
    from celery import Celery

    return Celery("kit-test-client", broker=broker_url, backend=broker_url)


def run_tasks(broker_url: str, count: int, failing: int = 0, within: float = 45) -> tuple[list[Any], list[Any], float]:
    """`count` tasks that read a product and `failing` that read one and raise, all sent at once; their results, all
    within `within` seconds (one deadline for the batch, not one per result)."""
    sender = client(broker_url)
    started = time.monotonic()
    sent = [sender.send_task("tests.celery_app.stock_of", args=[i % 100 + 1]) for i in range(count)]
    sent_failing = [sender.send_task("tests.celery_app.fails_after_a_query", args=[i + 1]) for i in range(failing)]

    def left() -> float:
        return max(0.1, started + within - time.monotonic())

    values = [result.get(timeout=left()) for result in sent]
    errors = [result.get(timeout=left(), propagate=False) for result in sent_failing]
    return values, errors, time.monotonic() - started


def worker_figures(broker_url: str) -> dict[str, Any]:
    return client(broker_url).send_task("tests.celery_app.pool_figures").get(timeout=30)


def settled_figures(broker_url: str, in_use: int = 0, within: float = 10) -> dict[str, Any]:
    """The worker's pool figures once `in_use` connections are checked out, or the last ones read after `within`
    seconds. Celery stores a task's result before its task_postrun signal gives the connection back, so a client can
    read every result while the last connection is still on its way back: figures read at once are a race."""
    deadline = time.monotonic() + within
    while True:
        figures = worker_figures(broker_url)
        if figures["in_use"] == in_use or time.monotonic() > deadline:
            return figures
        time.sleep(0.05)


def sessions_aborted_since(db: PrivateMariaDB, before: int) -> int:
    """Server sessions that ended without COM_QUIT (a process exiting with its connections open) since `before`, once
    the worker's sessions are gone."""
    assert wait_until(lambda: db.app_connection_count() == 0, timeout=10)
    return db.status("Aborted_clients") - before


def _eventlet_param() -> Any:
    missing = importlib.util.find_spec("eventlet") is None
    return pytest.param("eventlet", 50, marks=pytest.mark.skipif(missing, reason="eventlet is not installed"))


@pytest.mark.parametrize(("pool", "concurrency"), [("gevent", 50), _eventlet_param(), ("threads", 10)])
def test_each_tasks_connection_goes_back_when_it_ends(site_db: PrivateMariaDB, broker: str, tmp_path: Path,
                                                      pool: str, concurrency: int) -> None:
    aborted_before = site_db.status("Aborted_clients")
    with Worker(site_db, broker, tmp_path, pool, concurrency) as worker, \
            ConnectionMonitor(site_db, APP_USER) as monitor:
        values, errors, seconds = run_tasks(broker, 200, failing=20)
        figures = settled_figures(broker)
    log = worker.log()
    aborted = sessions_aborted_since(site_db, aborted_before)
    print(f"\n{pool} pool, concurrency {concurrency}, pool {POOL}, pool.celery installed: 200 tasks + 20 failing in "
          f"{seconds:.1f}s, peak {monitor.peak} server connections, in use after {figures['in_use']}, reclaimed "
          f"{figures['reclaimed']}, timeouts {figures['timeouts']}, sessions ended without COM_QUIT at exit {aborted}")
    assert len(values) == 200 and all(isinstance(v, int) for v in values)
    assert len(errors) == 20 and all(isinstance(e, LookupError) for e in errors), errors[:3]
    assert 0 < monitor.peak <= POOL
    # Successes and failures alike gave their connection back as they ended: none was left for the pool to reclaim
    # from a dead greenlet, no task waited out the pool's timeout, nothing is held now (settled_figures waited at
    # most 10 s for the last one to arrive; a connection kept by a task would still be counted here).
    assert (figures["reclaimed"], figures["timeouts"], figures["in_use"]) == (0, 0, 0)
    assert "owner died" not in log
    assert worker.exit_code == 0, log[-3000:]
    assert aborted == 0, "the drain at shutdown should end every session with COM_QUIT"


@pytest.mark.parametrize("celery_fixup", [False, True], ids=["nothing", "celery-django-fixup"])
def test_without_install(site_db: PrivateMariaDB, broker: str, tmp_path: Path, celery_fixup: bool) -> None:
    """Nothing returns a finished task's connection: each stays with its dead greenlet until the pool's maintenance
    reclaims it (a warning with the checkout's stack), and the other tasks queue behind them; 30 tasks, as 200 would
    take a minute. Celery's own Django fixup, when it is active, returns them through the engine's close."""
    count = 200 if celery_fixup else 30
    aborted_before = site_db.status("Aborted_clients")
    with Worker(site_db, broker, tmp_path, "gevent", 50, KIT_CELERY_INSTALL="0",
                KIT_CELERY_DJANGO_FIXUP="1" if celery_fixup else "0") as worker, \
            ConnectionMonitor(site_db, APP_USER) as monitor:
        values, _, seconds = run_tasks(broker, count)
        # With Celery's fixup the last connection may still be on its way back (task_postrun); without anything, the
        # dead greenlets' connections stay out until reclaimed, so there is nothing to wait for.
        figures = settled_figures(broker) if celery_fixup else worker_figures(broker)
    log = worker.log()
    print(f"\ngevent pool, 50 greenlets, pool {POOL}, pool.celery not installed, Celery's Django fixup "
          f"{'on' if celery_fixup else 'off'}: {count} tasks in {seconds:.1f}s, peak {monitor.peak} server "
          f"connections, reclaimed from dead task greenlets: {figures['reclaimed']}, sessions ended without COM_QUIT "
          f"at exit {sessions_aborted_since(site_db, aborted_before)}")
    assert len(values) == count
    assert 0 < monitor.peak <= POOL  # the cap holds either way; what suffers is time
    if celery_fixup:
        assert figures["reclaimed"] == 0 and figures["in_use"] == 0
        assert "owner died" not in log
    else:
        assert figures["reclaimed"] >= count - POOL
        assert "owner died" in log


def test_threads_pool_without_install_runs_out_of_connections(site_db: PrivateMariaDB, broker: str,
                                                              tmp_path: Path) -> None:
    """In the threads pool the threads live on: without install() (or Celery's fixup) each keeps its connection after
    its task, nothing is reclaimed since no owner dies, and the threads beyond the pool's size wait out its timeout
    (1 s here) and fail."""
    with Worker(site_db, broker, tmp_path, "threads", 6, KIT_CELERY_INSTALL="0", KIT_POOL_TIMEOUT="1"):
        sender = client(broker)
        sent = [sender.send_task("tests.celery_app.stock_of", args=[i % 100 + 1]) for i in range(30)]
        deadline = time.monotonic() + 40
        outcomes = [result.get(timeout=max(0.1, deadline - time.monotonic()), propagate=False) for result in sent]
        figures = worker_figures(broker)
    timed_out = [o for o in outcomes if "had no free connection" in str(o)]
    print(f"\nthreads pool, 6 threads, pool {POOL}, pool.celery not installed: {len(outcomes) - len(timed_out)} of "
          f"{len(outcomes)} tasks succeeded, {len(timed_out)} failed waiting for a connection; in use after "
          f"{figures['in_use']}, reclaimed {figures['reclaimed']}")
    assert timed_out and figures["timeouts"] >= len(timed_out)
    assert figures["in_use"] == POOL and figures["reclaimed"] == 0


@pytest.mark.parametrize("celery_fixup", [False, True], ids=["install-only", "with-celery-django-fixup"])
def test_prefork_children_leave_the_parents_connection_alone(site_db: PrivateMariaDB, broker: str, tmp_path: Path,
                                                             celery_fixup: bool) -> None:
    """Django is set up in the main process, which checks out a connection before forking two children and keeps it.
    The children run tasks on sessions of their own; the parent's session survives them and still answers it."""
    marker = tmp_path / "parent-connection"
    aborted_before = site_db.status("Aborted_clients")
    with Worker(site_db, broker, tmp_path, "prefork", 2, KIT_PARENT_CONNECTION_FILE=str(marker),
                KIT_CELERY_DJANGO_FIXUP="1" if celery_fixup else "0") as worker, \
            ConnectionMonitor(site_db, APP_USER) as monitor:
        values, errors, _ = run_tasks(broker, 40, failing=4)
        sender = client(broker)
        sent = [sender.send_task("tests.celery_app.session_of_task") for _ in range(8)]
        deadline = time.monotonic() + 20
        sessions = [result.get(timeout=max(0.1, deadline - time.monotonic())) for result in sent]
    log = worker.log()
    aborted = sessions_aborted_since(site_db, aborted_before)
    parent_before, *parent_after = (int(line) for line in marker.read_text().split())
    children = {s["pid"] for s in sessions}
    print(f"\nprefork, 2 children, Celery's Django fixup {'on' if celery_fixup else 'off'}: 40 tasks + 4 failing, "
          f"session tasks ran in {len(children)} children on sessions {sorted({s['session'] for s in sessions})}; "
          f"parent's session {parent_before}, after the children: {parent_after}; peak {monitor.peak} connections; "
          f"sessions ended without COM_QUIT at exit {aborted}")
    assert len(values) == 40 and all(isinstance(v, int) for v in values), log[-3000:]
    assert len(errors) == 4 and all(isinstance(e, LookupError) for e in errors), errors
    assert len(children) == 2, sessions
    assert parent_before not in {s["session"] for s in sessions}, "a child used the parent's session"
    # At shutdown the parent used its connection again: the same session, not quit by a child.
    assert parent_after == [parent_before], log[-3000:]
    assert monitor.peak <= 1 + 2 * POOL
    assert worker.exit_code == 0, log[-3000:]
    # Children and parent drained their own pools at shutdown; no child's exit ended the parent's session.
    assert aborted == 0
