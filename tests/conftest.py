"""Fixtures: a private mariadbd per test session, owned by the tests and freely abused by them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from deploy.privatedb import PrivateMariaDB


@pytest.fixture(scope="session")
def server() -> Iterator[PrivateMariaDB]:
    db = PrivateMariaDB(max_connections=300).start()
    try:
        yield db
    finally:
        db.destroy()


@pytest.fixture
def db(server: PrivateMariaDB) -> Iterator[PrivateMariaDB]:
    """The session's server, put back as it was after a test that changed globals or stopped it."""
    yield server
    server.thaw()
    server.ensure_running()
    server.set_global("wait_timeout", 28800)
    server.set_global("max_connections", server.max_connections)
    for thread_id in server.app_thread_ids():
        try:
            server.kill(thread_id)
        except Exception:  # noqa: BLE001 - it may have gone by itself meanwhile
            pass


@pytest.fixture
def connect_kwargs(db: PrivateMariaDB) -> dict[str, Any]:
    return {**db.app_connect_kwargs()}
