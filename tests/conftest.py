"""Fixtures: a private mariadbd per test session, owned by the tests and freely abused by them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import tools
from harness.mariadb import PrivateMariaDB
from harness.tools import ROOT
from pool import close_all

# Pool settings in the developer's shell would reach every pool the tests build (they are the top layer of
# pool.settings.resolve_config): the tests set their own, explicitly.
for _name in [name for name in os.environ if name.startswith("POOL_")]:
    del os.environ[_name]


@pytest.fixture(autouse=True)
def _gunicorn_files_under_pytest_tmp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A test's gunicorn logs and metrics files go under pytest's temporary directory, named after the test (kept for
    the last few runs, never shared with another run), made only when the test starts a gunicorn."""
    name = re.sub(r"\W", "_", request.node.name)[:40]

    def workdir() -> Path:
        return tmp_path_factory.mktemp(f"{name}-gunicorn")

    monkeypatch.setattr(tools, "workdir_factory", workdir)


@pytest.fixture(scope="session")
def server() -> Iterator[PrivateMariaDB]:
    # performance_schema lets tests trace a server connection to the worker pid that opened it.
    db = PrivateMariaDB(max_connections=300, extra_args=["--performance-schema=ON"]).start()
    try:
        yield db
    finally:
        db.destroy()


@pytest.fixture
def db(server: PrivateMariaDB) -> Iterator[PrivateMariaDB]:
    """The session's server, put back as it was after a test that changed globals or stopped it."""
    yield server
    # Pools the test built in this process go first: their maintenance loops would reconnect to fill min_idle after
    # the kills below, and a later test that counts the app's sessions on the server would find them.
    close_all()
    server.thaw()
    server.ensure_running()
    server.set_global("wait_timeout", 28800)
    server.set_global("max_connections", server.max_connections)
    for thread_id in server.app_thread_ids():
        try:
            server.kill(thread_id)
        except Exception:  # noqa: BLE001 - it may have gone by itself meanwhile
            pass


@pytest.fixture(scope="session")
def site_db(server: PrivateMariaDB) -> PrivateMariaDB:
    """The session's server with the demo site's tables and data."""
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "DATABASE_URL": server.app_url(), "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    return server


@pytest.fixture
def connect_kwargs(db: PrivateMariaDB) -> dict[str, Any]:
    return {**db.app_connect_kwargs()}
