"""What PyMySQL and Django's own suites caught on the kit's connection class, each pinned by a test of our own.

Every test here failed on the code before its fix (main 1fcccb2): the bulk INSERT's bytearray, the server status a
result set carries, a multi-statement init_command, TLS files rotated on disk, and a per-wrapper isolation level.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pymysql
import pytest
from pymysql.constants import CLIENT

from harness.mariadb import PrivateMariaDB
from harness.tools import run_script, scalar
from pool import ConnectionPool, PoolConfig
from pool import stats as S
from pool.abc import ResetMode
from pool.pymysql_driver import PooledConnection, TLSContexts

RESET_MODES = ["full", "tracked", "rollback"]


@pytest.fixture
def pairs_table(db: PrivateMariaDB) -> str:
    db.query("CREATE TABLE IF NOT EXISTS app.pairs (a INT, b INT)")
    db.query("DELETE FROM app.pairs")
    return "app.pairs"


@pytest.mark.parametrize("reset", RESET_MODES)
def test_executemany_bulk_insert_goes_through_and_keeps_the_connection(
    connect_kwargs: dict[str, Any], pairs_table: str, reset: str
) -> None:
    # PyMySQL turns executemany of INSERT ... VALUES into one statement built as a bytearray.
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, reset=ResetMode(reset)))
    with pool.connection() as conn:
        first = scalar(conn, "SELECT CONNECTION_ID()")
        with conn.cursor() as cur:
            assert cur.executemany(f"INSERT INTO {pairs_table} (a, b) VALUES (%s, %s)", [(1, 1), (2, 4), (3, 9)]) == 3
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {pairs_table} (a, b) VALUES (%(a)s, %(b)s)", [{"a": 4, "b": 16}])
    with pool.connection() as conn:
        assert scalar(conn, f"SELECT SUM(b) FROM {pairs_table}") == 30
        assert scalar(conn, "SELECT CONNECTION_ID()") == first, "the connection must not be dropped as 'in use'"
    assert pool.stats()[S.ABORTED_IN_USE] == 0


def test_a_use_sent_as_a_bytearray_is_undone_by_the_reset(connect_kwargs: dict[str, Any], pairs_table: str) -> None:
    # The bytes-like statement is inspected like any other: a USE sent as bytes re-selects the database on reset.
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, reset=ResetMode.FULL))
    with pool.connection() as conn:
        conn.query(bytearray(b"USE information_schema"))
    with pool.connection() as conn:
        assert scalar(conn, "SELECT DATABASE()") == connect_kwargs["database"]


@pytest.mark.parametrize("reset", RESET_MODES)
def test_a_transaction_opened_by_a_result_set_is_rolled_back_not_committed(
    connect_kwargs: dict[str, Any], pairs_table: str, reset: str
) -> None:
    # MariaDB answers INSERT ... RETURNING with a result set; PyMySQL read the server status only from OK packets, so
    # the open transaction looked closed and SET autocommit=1 committed it.
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, reset=ResetMode(reset)))
    lease = pool.acquire()
    conn = lease.connection
    conn.autocommit(False)
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {pairs_table} (a, b) VALUES (7, 49) RETURNING a")
        assert cur.fetchall() == ((7,),)
    assert conn.server_status & 1, "the result set's EOF packet says a transaction is open"
    pool.release(lease)  # left without commit or rollback
    with pool.connection() as conn:
        assert scalar(conn, f"SELECT COUNT(*) FROM {pairs_table}") == 0
        assert conn.get_autocommit()


@pytest.mark.parametrize("reset", RESET_MODES)
def test_a_begin_then_select_only_checkout_leaves_no_transaction_open(
    connect_kwargs: dict[str, Any], pairs_table: str, reset: str
) -> None:
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, reset=ResetMode(reset)))
    with pool.connection() as conn:
        conn.begin()
        scalar(conn, f"SELECT COUNT(*) FROM {pairs_table} FOR UPDATE")
    with pool.connection() as conn:
        assert not conn.server_status & 1
        assert scalar(conn, "SELECT @@in_transaction") == 0


def test_a_result_set_updates_the_server_status(connect_kwargs: dict[str, Any], pairs_table: str) -> None:
    conn = PooledConnection(**connect_kwargs)
    try:
        conn.autocommit(False)
        status_after_set = conn.server_status
        with conn.cursor() as cur:
            # Reading a table starts the transaction (autocommit off): only the result set's EOF says so.
            cur.execute(f"SELECT COUNT(*) FROM {pairs_table}")
        assert not status_after_set & 1
        assert conn.server_status & 1
        conn.rollback()
        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(f"SELECT a FROM {pairs_table} UNION SELECT 1 UNION SELECT 2")
            rows = cur.fetchall()  # unbuffered: the closing EOF arrives after execute() returned
        assert len(rows) == 2 and conn.server_status & 1
        conn.rollback()
        assert not conn.server_status & 1
    finally:
        conn.close()


@pytest.mark.parametrize("reset", RESET_MODES)
def test_a_multi_statement_init_command_keeps_the_protocol_in_step(connect_kwargs: dict[str, Any], reset: str) -> None:
    kwargs = {**connect_kwargs, "init_command": 'SELECT "bar"; SET @from_init = "baz"',
              "client_flag": CLIENT.MULTI_STATEMENTS}
    pool = ConnectionPool(kwargs, PoolConfig(size=1, reset=ResetMode(reset)))
    for _ in range(3):  # the first checkout after connect, then after each reset (where the set-up is replayed)
        with pool.connection() as conn:
            assert scalar(conn, "SELECT @from_init") == "baz"
            assert scalar(conn, "SELECT 42") == 42
            if reset != "rollback":  # rollback mode leaves session state alone by design
                with conn.cursor() as cur:
                    cur.execute("SET @from_init = 'changed'")
    assert pool.stats()[S.DISCARDED] == 0


def _make_ca(folder: Path, name: str) -> Path:
    # A self-signed CA certificate, what a rotation replaces.
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert


def _ca_subjects(ctx: Any) -> list[str]:
    return [dict(item[0] for item in cert["subject"])["commonName"] for cert in ctx.get_ca_certs()]


def test_tls_contexts_are_shared_until_a_file_changes_on_disk(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(_make_ca(tmp_path, "first-ca").read_bytes())
    contexts = TLSContexts()
    ssl_options = {"ca": str(ca), "check_hostname": False}

    def context_of_a_new_connection() -> Any:
        conn = PooledConnection(host="127.0.0.1", defer_connect=True, ssl=dict(ssl_options), pool_tls_contexts=contexts)
        return conn.ctx  # type: ignore[attr-defined]  # set by PyMySQL's __init__; types-PyMySQL does not declare it

    first = context_of_a_new_connection()
    assert context_of_a_new_connection() is first, "one context per configuration, not one per connect"
    assert _ca_subjects(first) == ["first-ca"]

    rotated = _make_ca(tmp_path, "second-ca")
    os.replace(rotated, ca)  # how certificate rotation tools swap a file
    after_rotation = context_of_a_new_connection()
    assert after_rotation is not first
    assert _ca_subjects(after_rotation) == ["second-ca"]
    assert context_of_a_new_connection() is after_rotation


def test_a_connection_made_without_a_driver_builds_its_own_tls_context(tmp_path: Path) -> None:
    # PyMySQL's behaviour, as its own tests expect: only the pool's driver shares contexts.
    ssl_options = {"ca": str(_make_ca(tmp_path, "ca")), "check_hostname": False}
    a = PooledConnection(host="127.0.0.1", defer_connect=True, ssl=dict(ssl_options))
    b = PooledConnection(host="127.0.0.1", defer_connect=True, ssl=dict(ssl_options))
    assert a.ctx is not b.ctx  # type: ignore[attr-defined]  # as above: PyMySQL's, undeclared in its stubs


ISOLATION_SCRIPT = """
    import json, os
    import django
    from django.conf import settings
    from deploy.settings import database_from_url
    db = database_from_url(os.environ["DATABASE_URL"])
    db["OPTIONS"]["pool"] = {"size": 2, "reset": os.environ["KIT_RESET"]}
    settings.configure(DATABASES={"default": db}, USE_TZ=True)
    django.setup()
    from django.db import connection

    def level(conn):
        with conn.cursor() as cur:
            cur.execute("SELECT @@SESSION.tx_isolation")
            return cur.fetchone()[0]

    result = {"default_before": level(connection)}
    copy = connection.copy()
    copy.settings_dict["OPTIONS"]["isolation_level"] = "serializable"
    result["copy"] = level(copy)
    copy.close()
    connection.close()
    result["default_after"] = level(connection)
    connection.close()
    import pool
    result["in_use"] = sum(p.stats()["in_use"] for p in pool.all_pools())
    print(json.dumps(result))
"""


@pytest.mark.parametrize("reset", RESET_MODES)
def test_a_wrapper_with_its_own_isolation_level_gets_sessions_with_it(db: PrivateMariaDB, reset: str) -> None:
    result = run_script(ISOLATION_SCRIPT, env={"DATABASE_URL": db.app_url(), "KIT_RESET": reset})
    assert result == {"default_before": "READ-COMMITTED", "copy": "SERIALIZABLE", "default_after": "READ-COMMITTED",
                      "in_use": 0}


@pytest.mark.parametrize("reset", RESET_MODES)
def test_a_borrower_sees_no_counters_of_the_pools_queries_or_of_the_previous_borrower(
    db: PrivateMariaDB, connect_kwargs: dict[str, Any], reset: str
) -> None:
    # Found by PyMySQL's own suite: the driver's catalogue query on the first tracked connection answered
    # affected_rows() and insert_id() for the first caller; then one borrower's counters reached the next.
    db.query("CREATE TABLE IF NOT EXISTS app.serials (id INT PRIMARY KEY AUTO_INCREMENT, note VARCHAR(10))")
    pool = ConnectionPool(connect_kwargs, PoolConfig(size=1, reset=ResetMode(reset)))
    with pool.connection() as conn:
        assert (conn.insert_id(), conn.affected_rows()) == (0, 0)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO app.serials (note) VALUES ('a'), ('b')")
        assert conn.insert_id() > 0 and conn.affected_rows() == 2
    with pool.connection() as conn:
        assert (conn.insert_id(), conn.affected_rows()) == (0, 0)
        assert conn._pool_cursors == [], "no cursor of the pool's own among the checkout's"
