"""The Django engine under lease="transaction" against what the stock MySQL backend answers, on a real server: the
differences Django's own suite found (scripts/conformance-django, backend `transaction`), one test each. Every script
runs once on `django.db.backends.mysql` (PyMySQL as MySQLdb) and once on the engine, and the two must agree."""

from __future__ import annotations

import textwrap
from typing import Any

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
    assert stock == {"usable": False}
    assert lease == stock
