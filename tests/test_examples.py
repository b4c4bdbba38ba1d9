"""The core pool beyond Django: a plain WSGI app and peewee, through the wait_timeout story of seeds 000 and 001."""

from __future__ import annotations

from typing import Any
from wsgiref.util import setup_testing_defaults

import peewee
import pymysql
import pytest

from harness.mariadb import PrivateMariaDB
from harness.tools import wait_until
from pool import ConnectionPool, PoolConfig


def until_closed_by_the_server(db: PrivateMariaDB, sessions: set[int]) -> None:
    """Idle until the server closed these sessions (wait_timeout): not a guessed pause past it."""
    assert sessions, "no session to wait for"
    assert wait_until(lambda: not sessions & set(db.app_thread_ids()), timeout=30), "the server kept them"


def call_wsgi(app: Any, path: str) -> tuple[str, bytes]:
    environ: dict[str, Any] = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, h: status.append(s)))
    return status[0], body


def test_wsgi_example_survives_wait_timeout(site_db: PrivateMariaDB, db: PrivateMariaDB,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    db.set_global("wait_timeout", 2)
    monkeypatch.setenv("DATABASE_URL", site_db.app_url())
    from examples import wsgi_app

    wsgi_app._pool = None
    before = set(db.app_thread_ids())
    assert call_wsgi(wsgi_app.application, "/3")[0] == "200 OK"
    until_closed_by_the_server(db, set(db.app_thread_ids()) - before)
    statuses = [call_wsgi(wsgi_app.application, f"/{i}")[0] for i in range(1, 11)]
    assert statuses == ["200 OK"] * 10
    assert wsgi_app.get_pool().stats()["discarded"] + wsgi_app.get_pool().stats()["recycled"] >= 1
    wsgi_app.get_pool().close()


class Product(peewee.Model):
    name = peewee.CharField()
    stock = peewee.IntegerField()

    class Meta:
        table_name = "shop_product"


def test_a_persistent_connection_fails_after_wait_timeout_as_in_the_seeds(site_db: PrivateMariaDB,
                                                                           db: PrivateMariaDB) -> None:
    """The problem, reproduced with a connection kept open across idle time (seed 001's app; seed 000's peewee pool
    did the same until peewee took to pinging on every checkout): proof that the tests here would notice it."""
    db.set_global("wait_timeout", 2)
    kwargs = site_db.app_connect_kwargs()
    persistent = peewee.MySQLDatabase(kwargs.pop("database"), **kwargs)
    with Product.bind_ctx(persistent):
        persistent.connect()
        Product.get_by_id(1)
        until_closed_by_the_server(db, {persistent.connection().thread_id()})
        with pytest.raises(peewee.OperationalError):
            Product.get_by_id(1)
        persistent.close()


def test_peewee_on_the_kit_pool_survives_wait_timeout(site_db: PrivateMariaDB, db: PrivateMariaDB) -> None:
    from examples.peewee_pool import PooledMySQLDatabase

    db.set_global("wait_timeout", 2)
    pool = ConnectionPool(site_db.app_connect_kwargs(), PoolConfig(size=2))
    database = PooledMySQLDatabase(pool)
    before = set(db.app_thread_ids())
    with Product.bind_ctx(database):
        with database.connection_context():
            assert Product.get_by_id(1).name == "product 001"
        until_closed_by_the_server(db, set(db.app_thread_ids()) - before)
        for i in range(1, 6):
            with database.connection_context():
                assert Product.get_by_id(i).stock > 0
    assert pool.stats()["in_use"] == 0
    assert pool.stats()["discarded"] + pool.stats()["recycled"] >= 1
    with pytest.raises(pymysql.err.ProgrammingError):
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT * FROM no_such_table")  # errors still reach the caller; only dead sockets are hidden
    pool.close()
