"""lease="transaction" (issue 27): a connection is lent per statement outside a transaction and for the whole of a
transaction inside one, and kept longer where the next statement could depend on the session (docs/lease.md). Each
pinning rule answers as Django's stock backend does, and stops doing so when the rules are switched off; real
applications' patterns hold no slot beyond their statements; a transaction that waits on its own children says so.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.mariadb import PrivateMariaDB
from harness.tools import run_script
from tests.lease_urls import CASES

pytestmark = pytest.mark.slow

SITE = """
    from gevent import monkey; monkey.patch_all()
    import json, os, gevent, django
    os.environ["DJANGO_SETTINGS_MODULE"] = "deploy.settings"
    if os.environ.get("KIT_DISABLE_PINS"):
        # Only "in step" left: what the rules below it keep is exactly what this test must see go wrong.
        import pool.pymysql_driver as driver
        driver.PooledConnection.pool_may_release = lambda self, policy: not (self._pool_pending or
                                                                               self._pool_interrupted)
        done = driver.LeasingConnection._done
        def done_ignoring_cursors(self):
            cursors, self._cursors = self._cursors, 0
            done(self)
            self._cursors = cursors
        driver.LeasingConnection._done = done_ignoring_cursors
    from django.conf import settings
    django.setup()
    settings.ROOT_URLCONF = "tests.lease_urls"
    from django.core.handlers.wsgi import WSGIHandler
    from tests.wsgi import body_of, get as wsgi_get
    app = WSGIHandler()

    def get(path, query="", read_slowly=0.0):
        status, body = wsgi_get(app, path + ("?" + query if query else ""), read_slowly)
        return status, body_of(body)

    def in_use():
        from pool.django.base import pools
        return sum(p.stats()["in_use"] for p in pools().values())

    def stats():
        from pool.django.base import pools
        return pools()["default"].stats() if "default" in pools() else {}
"""

PIN_SCRIPT = SITE + """
    out = {}
    for case in os.environ["KIT_CASES"].split(","):
        status, body = gevent.spawn(get, "/pin/", "case=" + case).get()
        out[case] = body["answer"] if status.startswith("200") else status
    print(json.dumps(out))
"""

ALL_CASES = [*CASES, "atomic", "open_cursor"]


@pytest.fixture
def lease_tables(site_db: PrivateMariaDB) -> PrivateMariaDB:
    site_db.query("CREATE TABLE IF NOT EXISTS app.kit_noise (id INT AUTO_INCREMENT PRIMARY KEY, n INT)")
    site_db.query("CREATE TABLE IF NOT EXISTS app.kit_rows (n INT)")
    site_db.query("DELETE FROM app.kit_rows")
    site_db.query("INSERT INTO app.kit_rows VALUES (1), (2), (3)")
    site_db.query("CREATE TABLE IF NOT EXISTS app.kit_handled (n INT)")
    site_db.query("DELETE FROM app.kit_handled")
    site_db.query("INSERT INTO app.kit_handled VALUES (11)")
    return site_db


def pin_answers(db: PrivateMariaDB, **env: str) -> dict[str, Any]:
    return run_script(PIN_SCRIPT, env={"DATABASE_URL": db.app_url(), "KIT_CASES": ",".join(ALL_CASES),
                                       "POOL_SIZE": "2", **env})


def test_every_pinning_rule_answers_as_the_stock_backend_does(lease_tables: PrivateMariaDB) -> None:
    stock = pin_answers(lease_tables, KIT_BASELINE="stock")
    kit = pin_answers(lease_tables, POOL_LEASE="transaction")
    assert kit == stock, {case: (stock[case], kit[case]) for case in ALL_CASES if stock[case] != kit[case]}
    # The cases are not vacuous: stock's answers are the session's own.
    assert stock["user_variable"] == "mine" and stock["row_count"] == 3 and stock["found_rows"] == 30
    assert stock["open_cursor"] is True and stock["atomic"] == 1 and stock["last_insert_id"] == 1
    assert stock["handler"] == 11 and stock["table_lock"].startswith("error") and stock["raw_transaction"] == 1


def test_without_the_pinning_rules_every_case_answers_differently(lease_tables: PrivateMariaDB) -> None:
    stock = pin_answers(lease_tables, KIT_BASELINE="stock")
    unpinned = pin_answers(lease_tables, POOL_LEASE="transaction", KIT_DISABLE_PINS="1")
    same = sorted(case for case in ALL_CASES if unpinned[case] == stock[case])
    # Each rule is what makes its case answer as stock: with the rules off, the next statement lands on a connection
    # another greenlet used meanwhile, or on a session the return reset.
    assert same == [], {case: (stock[case], unpinned[case]) for case in same}


PATTERNS_SCRIPT = SITE + """
    out = {}
    # 1. A request_finished receiver that queries: its statement's connection goes back with the statement.
    status, _ = gevent.spawn(get, "/after-response/").get()
    out["after_response"] = {"status": status, "in_use": in_use(), "stats": stats()}
    # 2. Four requests fanning out to four greenlets each, on a pool of 2, outside a transaction: all complete.
    requests = [gevent.spawn(get, "/fanout/") for _ in range(4)]
    gevent.joinall(requests, timeout=60)
    out["fanout"] = {"answers": [r.value for r in requests if r.successful()], "in_use": in_use(),
                     "stats": stats()}
    # 3. A download streamed after one query, read slowly: the pool's one connection serves others meanwhile.
    streaming = gevent.spawn(get, "/download/", "chunks=20", 0.05)
    gevent.sleep(0.2)
    during = in_use()
    others = [gevent.spawn(get, "/fanout/") for _ in range(3)]
    gevent.joinall(others, timeout=30)
    out["download"] = {"in_use_while_streaming": during,
                       "others_done_before_the_download": not streaming.ready() and all(o.ready() for o in others),
                       "others": [o.value[0] for o in others if o.successful()]}
    streaming.join(30)
    out["download"]["status"] = streaming.value[0]
    print(json.dumps(out))
"""


def test_receivers_fanouts_and_downloads_hold_no_slot_beyond_their_statements(lease_tables: PrivateMariaDB) -> None:
    out = run_script(PATTERNS_SCRIPT, env={"DATABASE_URL": lease_tables.app_url(), "POOL_LEASE": "transaction",
                                           "POOL_SIZE": "2", "POOL_TIMEOUT": "10"})
    after = out["after_response"]
    assert after["status"].startswith("200") and after["in_use"] == 0, after
    fanout = out["fanout"]
    assert [status for status, _ in fanout["answers"]] == ["200 OK"] * 4, fanout
    assert all(body["found"] == 4 for _, body in fanout["answers"]), fanout
    assert fanout["in_use"] == 0 and fanout["stats"]["timeouts"] == 0 and fanout["stats"]["reclaimed"] == 0, fanout
    download = out["download"]
    assert download["in_use_while_streaming"] == 0, download
    assert download["others_done_before_the_download"] and download["others"] == ["200 OK"] * 3, download
    assert download["status"].startswith("200"), download


FANOUT_IN_TRANSACTION_SCRIPT = SITE + """
    status, body = gevent.spawn(get, "/fanout-in-transaction/").get()
    print(json.dumps({"status": status, "body": body, "stats": stats()}))
"""


def test_a_transaction_waiting_on_its_own_querying_greenlets_is_told_why(lease_tables: PrivateMariaDB) -> None:
    out = run_script(FANOUT_IN_TRANSACTION_SCRIPT, env={
        "DATABASE_URL": lease_tables.app_url(), "POOL_LEASE": "transaction", "POOL_SIZE": "1", "POOL_TIMEOUT": "1"})
    assert out["status"].startswith("200"), out
    errors = out["body"]["errors"]
    assert len(errors) == 2, out
    for error in errors:
        assert "spawned this one holds a connection" in error and "outside the transaction" in error, error


MIX_SCRIPT = SITE + """
    import random, pymysql
    from django.db import connection, transaction
    from pool.django import returning_connections
    from deploy.shop.models import Product

    rng = random.Random(27)
    watcher = pymysql.connect(**json.loads(os.environ["KIT_CONNECT_KWARGS"]))
    peak, peak_held, wrong, counts = [0], [0], [], {}
    committed, killed_units = [], []

    watching = [True]

    def watch():
        while watching[0]:
            with watcher.cursor() as cur:
                # Every session; and those that are not a killed greenlet's abandoned statement, which lives on the
                # server from the abort until the KILL sent from its slot (two kills at once: two such sessions).
                cur.execute("SELECT COUNT(*), SUM(COMMAND <> 'Killed' AND COALESCE(INFO, '') NOT LIKE %s) "
                            "FROM information_schema.PROCESSLIST WHERE USER = 'app'", ["%-sleeping%"])
                every, held = cur.fetchone()
                peak[0] = max(peak[0], every)
                peak_held[0] = max(peak_held[0], int(held or 0))
            gevent.sleep(0.02)

    def tagged(tag, delay=0):
        with connection.cursor() as cur:
            cur.execute("SELECT %s, SLEEP(%s)", [tag, delay])
            got = cur.fetchone()[0]
        if got != tag:
            wrong.append((tag, got))

    def ledger(unit):
        with connection.cursor() as cur:
            cur.execute("INSERT INTO kit_ledger (unit, conn) VALUES (%s, CONNECTION_ID())", [unit])

    def unit_of_work(n):
        kind = rng.choice(["atomic", "atomic", "atomic_rolled_back", "raw", "iterator", "sscursor", "last_insert_id",
                           "killed"])
        counts[kind] = counts.get(kind, 0) + 1
        unit = "u%d" % n
        if kind == "atomic":
            with transaction.atomic():
                ledger(unit)
                tagged(unit + "-a", rng.choice([0, 0.01]))
                gevent.sleep(rng.uniform(0, 0.02))
                ledger(unit)
                with transaction.atomic():  # a savepoint
                    ledger(unit)
            committed.append(unit)
        elif kind == "atomic_rolled_back":
            try:
                with transaction.atomic():
                    ledger(unit)
                    gevent.sleep(rng.uniform(0, 0.02))
                    ledger(unit)
                    raise ValueError("roll back")
            except ValueError:
                pass
        elif kind == "raw":
            with connection.cursor() as cur:
                for i in range(3):
                    cur.execute("SELECT %s", ["%s-%d" % (unit, i)])
                    if cur.fetchone()[0] != "%s-%d" % (unit, i):
                        wrong.append(unit)
                    gevent.sleep(0)
        elif kind == "iterator":
            seen = 0
            for product in Product.objects.order_by("id").iterator(chunk_size=7):
                seen += 1
                if seen % 10 == 0:
                    tagged(unit + "-between", 0)  # another statement while the iterator's cursor is open
                    gevent.sleep(0)
            if seen != 100:
                wrong.append((unit, "iterator saw", seen))
        elif kind == "sscursor":
            connection.ensure_connection()
            cur = connection.connection.cursor(pymysql.cursors.SSCursor)
            cur.execute("SELECT %s, seq FROM seq_1_to_200", [unit])
            for i, row in enumerate(cur):
                if row[0] != unit:
                    wrong.append((unit, row[0]))
                if i == 50:
                    gevent.sleep(0.005)
            cur.close()
        elif kind == "last_insert_id":
            with connection.cursor() as cur:
                cur.execute("INSERT INTO kit_noise (n) VALUES (7)")
                mine = cur.lastrowid
            with connection.cursor() as cur:
                cur.execute("SELECT LAST_INSERT_ID()")
                if cur.fetchone()[0] != mine:
                    wrong.append((unit, "LAST_INSERT_ID"))
        tagged(unit + "-last", 0)
        connection.close()

    def killed(n):
        unit = "k%d" % n
        killed_units.append(unit)
        with transaction.atomic():
            ledger(unit)
            tagged(unit + "-sleeping", 0.5)  # killed here, mid-statement, inside the transaction
            ledger(unit)

    poller = gevent.spawn(watch)
    greenlets = []
    for n in range(200):
        if rng.random() < 0.1:
            g = gevent.spawn(killed, n)
            gevent.spawn_later(rng.uniform(0.05, 0.3), g.kill)
        else:
            g = gevent.spawn(unit_of_work, n)
        greenlets.append(g)
    gevent.joinall(greenlets, timeout=300)
    failures = [repr(g.exception) for g in greenlets
                if g.exception is not None and not isinstance(g.exception, gevent.GreenletExit)]
    gevent.sleep(2.5)  # the maintenance loop takes back what killed greenlets held
    watching[0] = False
    poller.join(10)  # not killed: a kill mid-query would close the watcher's connection under the ledger's read
    with watcher.cursor() as cur:
        cur.execute("SELECT unit, COUNT(*), COUNT(DISTINCT conn) FROM kit_ledger GROUP BY unit")
        rows = {unit: (n, conns) for unit, n, conns in cur.fetchall()}
    print(json.dumps({"peak": peak[0], "peak_held": peak_held[0], "wrong": wrong[:10], "failures": failures[:10],
                      "counts": counts, "committed": committed, "killed": killed_units, "rows": rows,
                      "stats": stats()}))
"""


def test_200_greenlets_never_split_a_transaction_nor_share_a_connection(lease_tables: PrivateMariaDB) -> None:
    lease_tables.query("CREATE TABLE IF NOT EXISTS app.kit_ledger (unit VARCHAR(10), conn BIGINT)")
    lease_tables.query("DELETE FROM app.kit_ledger")
    out = run_script(MIX_SCRIPT, timeout=600, env={
        "DATABASE_URL": lease_tables.app_url(), "POOL_LEASE": "transaction", "POOL_SIZE": "4", "POOL_TIMEOUT": "60",
        "KIT_CONNECT_KWARGS": json.dumps(lease_tables.app_connect_kwargs())})
    assert out["failures"] == [] and out["wrong"] == [], out
    rows = out["rows"]
    # Every committed transaction: all its rows, written on one server session; rolled back or killed: none.
    assert {unit: rows.get(unit) for unit in out["committed"]} == {unit: [3, 1] for unit in out["committed"]}, rows
    assert set(rows) == set(out["committed"]), sorted(set(rows) - set(out["committed"]))
    assert out["killed"] and all(counts > 0 for counts in out["counts"].values()), out["counts"]
    # The cap, beside the killed greenlets' abandoned statements until the KILL from their slot ends them; at most
    # one such session per slot (once a fresh-clone run saw 6 sessions: two kills at once).
    assert out["peak_held"] <= 4, out
    assert out["peak"] <= 8, out
    assert out["stats"]["in_use"] == 0, out["stats"]
