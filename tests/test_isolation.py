"""No request sees what an earlier request left on the same physical connection (the kit served by Django's WSGI
handler under gevent, a new greenlet per request, a pool of one so both requests share the connection)."""

from __future__ import annotations

from typing import Any

from harness.mariadb import PrivateMariaDB
from harness.tools import run_script

SCRIPT = """
    from gevent import monkey; monkey.patch_all()
    import json, os, sys, gevent, django
    os.environ["DJANGO_SETTINGS_MODULE"] = "deploy.settings"
    from django.conf import settings
    from pool.settings import set_process_overrides
    set_process_overrides({"size": 1, "reset": os.environ["KIT_RESET"]})
    django.setup()
    settings.ROOT_URLCONF = "tests.isolation_urls"
    from wsgiref.util import setup_testing_defaults
    from django.core.handlers.wsgi import WSGIHandler
    app = WSGIHandler()

    def get(path):
        environ = {"PATH_INFO": path.split("?")[0], "QUERY_STRING": path.partition("?")[2], "REQUEST_METHOD": "GET",
                   "HTTP_HOST": "127.0.0.1"}
        setup_testing_defaults(environ)
        status = []
        result = app(environ, lambda s, h, exc_info=None: status.append(s))
        try:
            body = b"".join(result)
        finally:
            result.close()
        assert status[0].startswith("200"), (status, body[:500])
        return json.loads(body)

    out = {}
    for mode in os.environ["KIT_CASES"].split(","):
        first = gevent.spawn(get, "/dirty/?what=" + mode).get()
        second = gevent.spawn(get, "/inspect/").get()
        out[mode] = {"first": first, "second": second}
    print(json.dumps(out))
"""


def run(db: PrivateMariaDB, reset: str, cases: str = "lock,state") -> dict[str, Any]:
    return run_script(SCRIPT, env={"DATABASE_URL": db.app_url(), "KIT_RESET": reset, "KIT_CASES": cases})


def test_full_reset_leaves_the_next_request_a_clean_session(site_db: PrivateMariaDB) -> None:
    out = run(site_db, "full")
    for mode, seen in out.items():
        first, second = seen["first"], seen["second"]
        print(f"\nfull reset, {mode}: the next request on connection {second['connection_id']} saw {second}")
        assert first["connection_id"] == second["connection_id"], "both requests must share the physical connection"
        assert second["user_variable"] is None
        assert not second["temporary_table"]
        assert not second["holds_lock"]
        assert "ANSI_QUOTES" not in second["sql_mode"]
        assert second["time_zone"] == "SYSTEM"
        assert second["isolation"] == "READ-COMMITTED"  # Django's level, replayed after the reset
        assert second["in_transaction"] == 0
        assert not second["table_locked"]
        assert second["uncommitted_rows_visible"] == 0


def test_rollback_mode_undoes_the_transaction_but_shows_why_full_is_the_default(site_db: PrivateMariaDB) -> None:
    # Only the state case: a table lock left by the first request breaks the second one outright in this mode.
    out = run(site_db, "rollback", cases="state")["state"]
    second = out["second"]
    assert out["first"]["connection_id"] == second["connection_id"]
    assert second["in_transaction"] == 0 and second["uncommitted_rows_visible"] == 0
    # What only the full reset clears: proof that the test above can see a leak.
    assert second["user_variable"] == "card 4111-1111"
    assert second["temporary_table"]
    assert second["isolation"] == "SERIALIZABLE"
