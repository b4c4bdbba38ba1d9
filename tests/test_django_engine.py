"""The Django engine on a real server: round trips, transactions, test databases, pool settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from harness.mariadb import ROOT_PASSWORD, PrivateMariaDB
from harness.tools import ROOT, run_script


def manage(db: PrivateMariaDB, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "DATABASE_URL": db.app_url(), "PYTHONPATH": str(ROOT), **(env or {})},
    )


def statements_per_request(db: PrivateMariaDB, variant: str, path: str = "/select1/") -> dict[str, Any]:
    from bench.statements import run_variant

    # ping_after is raised so that no connection idles long enough to earn a COM_PING: every round trip counted
    # is then either the view's or the pool's reset, and any other would be overhead.
    return run_variant(variant, db.app_url(), db.socket_path, ROOT_PASSWORD, path, requests=100,
                       extra_env={"POOL_PING_AFTER": "60"})


def test_steady_state_requests_send_only_the_apps_statement(site_db: PrivateMariaDB) -> None:
    # rollback mode: nothing but the view's own SELECT 1, on a connection that stays open.
    result = statements_per_request(site_db, "kit-rollback")
    assert result["failures"] == 0
    assert result["statements"] == 1.0
    assert result["round_trips"] == 1.0
    assert result["connects"] == 0.0


def test_tracked_reset_sends_nothing_after_a_request_that_changed_nothing(site_db: PrivateMariaDB) -> None:
    # tracked mode: the full reset's isolation, but no round trip when the server reported no change (and
    # tests/test_isolation.py shows every kind of change is still reset).
    result = statements_per_request(site_db, "kit-tracked")
    assert result["failures"] == 0
    assert result["statements"] == 1.0
    assert result["round_trips"] == 1.0
    assert result["connects"] == 0.0


def test_full_reset_adds_one_pipelined_round_trip(site_db: PrivateMariaDB) -> None:
    # full mode: + COM_RESET_CONNECTION and the isolation level, sent together after the response.
    result = statements_per_request(site_db, "kit-full")
    assert result["failures"] == 0
    assert result["statements"] == 3.0
    assert result["round_trips"] == 2.0
    assert result["connects"] == 0.0


def test_django_test_runner_creates_and_destroys_its_database(site_db: PrivateMariaDB) -> None:
    result = manage(site_db, "test", "deploy.shop", "--noinput", "-v1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stderr
    databases = {row[0] for row in site_db.query("SHOW DATABASES")}
    assert "test_app" not in databases


ATOMIC_CLOSE_SCRIPT = """
    import json, os, django
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "deploy.settings")
    django.setup()
    from django.db import connection, transaction, InterfaceError
    from deploy.shop.models import Product
    from pool.django.base import pools

    start = Product.objects.get(pk=5).stock
    outcome = "no error"
    try:
        with transaction.atomic():
            Product.objects.filter(pk=5).update(stock=0)
            connection.close()  # e.g. an error handler closing the connection mid-transaction
            try:
                Product.objects.get(pk=5)
            except InterfaceError as exc:
                outcome = "refused: " + str(exc)
    except Exception as exc:
        outcome += " / then " + type(exc).__name__
    after = Product.objects.get(pk=5).stock
    print(json.dumps({"start": start, "after": after, "outcome": outcome, "stats": pools()["default"].stats()}))
"""


def test_no_silent_reconnect_inside_a_transaction(site_db: PrivateMariaDB) -> None:
    out = run_script(ATOMIC_CLOSE_SCRIPT, env={"DATABASE_URL": site_db.app_url()})
    assert out["outcome"].startswith("refused"), out
    assert out["after"] == out["start"], "the update made before the close must have been rolled back"
    assert out["stats"]["in_use"] == 1  # the query after the atomic block took a connection again


POOL_SETTINGS_SCRIPT = """
    import json, os, django
    from django.conf import settings
    from deploy.settings import database_from_url
    db = database_from_url(os.environ["DATABASE_URL"])
    db["OPTIONS"]["pool"] = json.loads(os.environ["KIT_POOL_OPTIONS"])
    db["CONN_MAX_AGE"] = int(os.environ.get("KIT_MAX_AGE", "0"))
    db["CONN_HEALTH_CHECKS"] = os.environ.get("KIT_HEALTH_CHECKS") == "1"
    settings.configure(DATABASES={"default": db}, INSTALLED_APPS=["pool.django.apps.PoolAppConfig"], USE_TZ=True)
    django.setup()
    from django.core import checks
    from pool.conf import configure_pool
    if os.environ.get("KIT_CONF"):  # what gunicorn.conf.py's configure_pool(...) would hand the workers
        configure_pool(**json.loads(os.environ["KIT_CONF"]))
    from django.core.exceptions import ImproperlyConfigured
    try:
        found = [m.id for m in checks.run_checks(tags=[checks.Tags.database])]
    except ImproperlyConfigured as exc:
        # Django 6 runs its own MySQL checks, which query the server through the engine: a bad pool setting then
        # stops them with the engine's ImproperlyConfigured (it names the setting) before pool.E001 is reached.
        print(json.dumps({"checks": [], "improperly_configured": str(exc)}))
        raise SystemExit(0)
    result = {"checks": found}
    if not any(c.startswith("pool.E") for c in found):
        from django.db import connection
        from pool.django.base import pools
        connection.ensure_connection()
        result["size"] = pools()["default"].config.size
        result["timeout"] = pools()["default"].config.timeout
    print(json.dumps(result))
"""


def pool_settings(db: PrivateMariaDB, options: dict[str, Any], **env: str) -> dict[str, Any]:
    return run_script(POOL_SETTINGS_SCRIPT, env={"DATABASE_URL": db.app_url(), "KIT_POOL_OPTIONS": json.dumps(options),
                                                 **env})


def test_pool_settings_come_from_options_and_the_conf_overrides_them(site_db: PrivateMariaDB) -> None:
    assert pool_settings(site_db, {"size": 4, "timeout": 3}) == {"checks": [], "size": 4, "timeout": 3.0}
    out = pool_settings(site_db, {"size": 4, "timeout": 3}, KIT_CONF=json.dumps({"size": 6}))
    assert (out["size"], out["timeout"]) == (6, 3.0)


def test_pool_settings_layers_in_order_options_then_the_conf_then_the_environment(site_db: PrivateMariaDB) -> None:
    out = pool_settings(site_db, {"size": 4, "timeout": 3}, KIT_CONF=json.dumps({"size": 6, "timeout": 5}),
                        POOL_TIMEOUT="2")
    assert (out["size"], out["timeout"]) == (6, 2.0)


@pytest.mark.parametrize(("options", "extra", "check_id"), [
    ({"size": 0}, {}, "pool.E001"),
    ({"sise": 3}, {}, "pool.E001"),
    ({}, {"KIT_MAX_AGE": "60"}, "pool.W001"),
    ({}, {"KIT_HEALTH_CHECKS": "1"}, "pool.W002"),
])
def test_system_checks_name_bad_settings(site_db: PrivateMariaDB, options: dict[str, Any], extra: dict[str, str],
                                         check_id: str) -> None:
    out = pool_settings(site_db, options, **extra)
    if "improperly_configured" in out:  # Django 6: see the script
        assert check_id == "pool.E001"
        assert "['OPTIONS']['pool']" in out["improperly_configured"] and next(iter(options)) in \
            out["improperly_configured"]
    else:
        assert check_id in out["checks"]


def test_a_retired_setting_is_a_check_warning_saying_what_replaced_it() -> None:
    out = run_script("""
        import json, django
        from django.conf import settings
        settings.configure(POOL_READY_MAX_WAITING=20, INSTALLED_APPS=["pool.django.apps.PoolAppConfig"])
        django.setup()
        from django.core import checks
        print(json.dumps({"found": [[m.id, m.msg, m.hint] for m in checks.run_checks()]}))
    """)["found"]
    assert len(out) == 1 and out[0][0] == "pool.W003" and "POOL_READY_MAX_WAITING" in out[0][1]
    assert "POOL_READY_STUCK_AFTER" in out[0][2]


def test_pymysql_errors_stay_catchable_after_the_engine_loads() -> None:
    out = run_script("""
        import json, os, django
        from django.conf import settings
        settings.configure(DATABASES={"default": {"ENGINE": "pool.django", "NAME": "x", "HOST": "127.0.0.1",
                                                  "PORT": "1"}})
        django.setup()
        from django.db import connections
        import pymysql
        connections["default"]  # loads the backend, which imports MySQLdb.converters
        try:
            pymysql.connect(host="127.0.0.1", port=1, connect_timeout=1)
        except pymysql.err.OperationalError:
            caught = True
        else:
            caught = False
        print(json.dumps({"caught": caught}))
    """)
    assert out["caught"], "pymysql.err must still name the classes PyMySQL raises"


def test_each_alias_gets_its_own_pool(site_db: PrivateMariaDB) -> None:
    out = run_script("""
        import json, os, django
        from django.conf import settings
        from deploy.settings import database_from_url
        primary = database_from_url(os.environ["DATABASE_URL"])
        reports = {**database_from_url(os.environ["DATABASE_URL"]), "OPTIONS": {"pool": {"size": 2}}}
        settings.configure(DATABASES={"default": primary, "reports": reports}, USE_TZ=True,
                           INSTALLED_APPS=["pool.django.apps.PoolAppConfig"])
        django.setup()
        from django.db import connections
        from pool.django.base import pools
        ids = {}
        for alias in ("default", "reports"):
            with connections[alias].cursor() as cur:
                cur.execute("SELECT CONNECTION_ID()")
                ids[alias] = cur.fetchone()[0]
        stats = {alias: pool.stats() for alias, pool in pools().items()}
        for alias in ("default", "reports"):
            connections[alias].close()
        after = {alias: pool.stats()["in_use"] for alias, pool in pools().items()}
        print(json.dumps({"ids": ids, "stats": stats, "after": after}))
    """, env={"DATABASE_URL": site_db.app_url()})
    assert out["ids"]["default"] != out["ids"]["reports"]
    assert out["stats"]["default"]["size"] == 10 and out["stats"]["reports"]["size"] == 2
    assert out["stats"]["default"]["in_use"] == 1 and out["stats"]["reports"]["in_use"] == 1
    assert out["after"] == {"default": 0, "reports": 0}
