"""A connection aborted while a statement runs on it: the server would run the statement to its end and keep the
session, for nobody, one over the cap. The pool ends that session from the same slot (issue 22)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.mariadb import PrivateMariaDB
from harness.tools import ConnectionMonitor, run_script

pytestmark = pytest.mark.slow

ABANDON_SCRIPT = """
    from gevent import monkey; monkey.patch_all()
    import json, os, time, gevent, pymysql
    from pool import ConnectionPool, PoolConfig

    kwargs = json.loads(os.environ["KIT_CONNECT_KWARGS"])
    watcher = pymysql.connect(unix_socket=os.environ["KIT_SOCKET"], user="root", password=os.environ["KIT_ROOT_PW"],
                              autocommit=True)

    def sleeping(thread_id):
        with watcher.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                        "WHERE ID = %s AND INFO LIKE 'SELECT SLEEP%%'", (thread_id,))
            return cur.fetchone()[0] == 1

    def until(condition, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            gevent.sleep(0.005)
        return True

    def scenario(how):
        pool = ConnectionPool(kwargs, PoolConfig(size=1, timeout=10), name=how)
        ids, outcome = {}, {}

        def long_query(conn):
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT SLEEP(5)")
                outcome["query"] = "finished"
            except BaseException as exc:
                outcome["query"] = type(exc).__name__
                raise

        def owner():
            with pool.connection() as conn:
                ids["id"] = conn.thread_id()
                if how == "killed_by_timeout":  # the request's own deadline cuts the query short
                    with gevent.Timeout(0.3):
                        long_query(conn)
                else:  # the block ends while a greenlet it spawned still runs the query
                    ids["reader"] = gevent.spawn(long_query, conn)
                    assert until(lambda: sleeping(ids["id"]))

        try:
            gevent.spawn(owner).get()
        except gevent.Timeout:
            pass
        aborted_at = time.monotonic()
        ended = until(lambda: not sleeping(ids["id"]), timeout=10)
        ended_after = time.monotonic() - aborted_at
        if "reader" in ids:
            ids["reader"].join(10)
        with pool.connection() as conn:  # the slot works; on the connection that ended the old session
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        stats = pool.stats()
        pool.close()
        return {"ended": ended, "ended_after_s": ended_after, "query": outcome.get("query"),
                "sessions_ended": stats["sessions_ended"], "connects": stats["connects"]}

    print(json.dumps({how: scenario(how) for how in ("released_while_running", "killed_by_timeout")}))
"""


def test_an_abandoned_statement_ends_on_the_server_and_the_cap_holds(db: PrivateMariaDB,
                                                                     connect_kwargs: dict[str, Any]) -> None:
    from harness.mariadb import ROOT_PASSWORD

    with ConnectionMonitor(db, interval=0.002) as monitor:
        out = run_script(ABANDON_SCRIPT, env={"KIT_CONNECT_KWARGS": json.dumps(connect_kwargs),
                                              "KIT_SOCKET": db.socket_path, "KIT_ROOT_PW": ROOT_PASSWORD})
    for how, result in out.items():
        # Before: the SLEEP(5) ran to its end (5 s) beside the new borrower's session.
        assert result["ended"] and result["ended_after_s"] < 1.0, (how, result)
        assert result["sessions_ended"] == 1, (how, result)
        assert result["connects"] == 2, (how, result)  # the replacement, opened in the freed slot
    assert out["released_while_running"]["query"] == "OperationalError"
    assert out["killed_by_timeout"]["query"] == "Timeout"
    # size=1: the old session and its replacement overlap for the replacement's connect and one KILL round trip.
    assert monitor.peak <= 2, monitor.peak
    assert db.app_connection_count() == 0
