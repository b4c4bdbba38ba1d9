"""The Django engine under lease="transaction" against what the stock MySQL backend answers, on a real server: the
differences Django's own suite found (scripts/conformance-django, backend `transaction`), one test each. Every script
runs once on `django.db.backends.mysql` (PyMySQL as MySQLdb) and once on the engine, and the two must agree."""

from __future__ import annotations

import textwrap
from typing import Any

import pymysql
import pytest

from harness.mariadb import PrivateMariaDB
from harness.tools import run_script

# Settings for one engine: "stock" (Django's own backend, the oracle) or "lease" (pool.django, lease="transaction").
SETUP = """
    import json, os, django
    from django.conf import settings
    from deploy.settings import database_from_url
    db = database_from_url(os.environ["DATABASE_URL"])
    db["ATOMIC_REQUESTS"] = False
    if os.environ["KIT_ENGINE"] == "stock":
        from pool.pymysql_driver import install_as_mysqldb
        install_as_mysqldb()
        db["ENGINE"] = "django.db.backends.mysql"
    else:
        db["OPTIONS"]["pool"] = {"lease": "transaction", "size": 2}
    settings.configure(DATABASES={"default": db}, INSTALLED_APPS=[], USE_TZ=True)
    django.setup()
    from django.db import connection, DatabaseError
"""


def on_both(db: PrivateMariaDB, body: str) -> tuple[Any, Any]:
    """The JSON `body` prints, run on the stock backend and on the engine under lease="transaction"."""
    code = textwrap.dedent(SETUP) + textwrap.dedent(body)
    env = {"DATABASE_URL": db.app_url()}
    return run_script(code, env={**env, "KIT_ENGINE": "stock"}), run_script(code, env={**env, "KIT_ENGINE": "lease"})


def test_a_connect_refused_by_the_server_leaves_no_connection_behind(site_db: PrivateMariaDB) -> None:
    # Django's test_unicode_password: a connect with a wrong password fails, and once the password is put back the
    # next query connects anew. The engine's connection object used to be made without a connection, so the failure
    # came after Django had kept it, and every later query went to the pool of the wrong password.
    stock, lease = on_both(site_db, """
        password = connection.settings_dict["PASSWORD"]
        connection.settings_dict["PASSWORD"] = "not-the-password"
        try:
            connection.ensure_connection()
            refused = None
        except DatabaseError as exc:
            refused = exc.args[0] if isinstance(exc.args[0], int) else str(exc)
        kept = connection.connection is not None
        connection.settings_dict["PASSWORD"] = password
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                after = cursor.fetchone()[0]
        except DatabaseError as exc:
            after = str(exc)
        print(json.dumps({"refused": refused is not None, "kept": kept, "after": after}))
    """)
    assert stock == {"refused": True, "kept": False, "after": 1}
    assert lease == stock


def test_a_closed_connection_is_not_usable(site_db: PrivateMariaDB) -> None:
    # Django's test_is_usable_after_database_disconnects: between statements the engine's connection object holds no
    # pool connection, and its ping used to answer for nothing even once closed.
    stock, lease = on_both(site_db, """
        with connection.cursor():
            pass
        connection._close()  # as if the server had closed it
        usable = connection.is_usable()
        try:
            connection.close()
        except Exception:  # noqa: BLE001 - "Already closed" on the stock backend, as Django's test allows
            pass
        print(json.dumps({"usable": usable}))
    """)
    # Django's test expects False, and so answers stock with PyMySQL 1.2; PyMySQL 1.1's ping() reconnects a closed
    # connection by default, so stock answers True there (the engine never reconnects: the pool lends connections).
    assert stock == {"usable": False} or pymysql.VERSION < (1, 2)
    assert lease == {"usable": False}


@pytest.mark.parametrize("inside_atomic", [False, True])
def test_init_connection_state_called_again_sends_what_django_sends(site_db: PrivateMariaDB,
                                                                    inside_atomic: bool) -> None:
    # Django's test_auto_is_null_auto_config: on a connection in use, init_connection_state() sends the session
    # set-up again (the isolation level), as Django's own backend does; the engine sent it only at connect.
    stock, lease = on_both(site_db, f"""
        from django.db import transaction
        connection.ensure_connection()
        connection.force_debug_cursor = True
        if {inside_atomic!r}:
            with transaction.atomic():
                connection.init_connection_state()
        else:
            connection.init_connection_state()
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@session.tx_isolation")
            level = cursor.fetchone()[0]
        print(json.dumps({{"sent": [q["sql"] for q in connection.queries if q["sql"].startswith("SET")],
                          "level": level}}))
    """)
    assert stock["sent"] == ["SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"], stock
    assert lease == stock


def test_the_connect_lease_is_the_first_statements(site_db: PrivateMariaDB) -> None:
    # The connect takes its pool connection at once (for the error above) and the first statement runs on it: one
    # checkout for a one-query unit of work, and nothing held once the statement is done. (The first unit of work
    # also asks the server's version, once per pool.)
    out = run_script(textwrap.dedent(SETUP) + textwrap.dedent("""
        from pool.django.base import pools
        checkouts = []
        for _ in range(2):
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            stats = pools()["default"].stats()
            checkouts.append((stats["checkouts"], stats["in_use"]))
            connection.close()
        print(json.dumps({"second": [checkouts[1][0] - checkouts[0][0], checkouts[1][1]]}))
    """), env={"DATABASE_URL": site_db.app_url(), "KIT_ENGINE": "lease"})
    assert out == {"second": [1, 0]}
