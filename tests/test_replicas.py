"""A primary and a read replica (issue 13): reads routed to the replica, writes and read-your-writes to the primary,
each server within its own budget. Two private servers with GTID replication, the kit served by real gunicorn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from harness.mariadb import APP_USER, PrivateMariaDB
from harness.tools import ROOT, ConnectionMonitor, Gunicorn, wait_until

pytestmark = pytest.mark.slow

WORKERS, POOL = 2, 4


@pytest.fixture(scope="module")
def primary_and_replica() -> Iterator[tuple[PrivateMariaDB, PrivateMariaDB]]:
    primary = PrivateMariaDB(max_connections=100, extra_args=["--log-bin=binlog", "--server-id=1",
                                                               "--binlog-format=ROW"]).start()
    replica = PrivateMariaDB(max_connections=100, extra_args=["--server-id=2", "--read-only=ON"]).start()
    try:
        primary.query("CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl-secret-pw'")
        primary.query("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'")
        # Both servers made the app's account and database themselves: replicate from here on.
        position = primary.query("SELECT @@GLOBAL.gtid_binlog_pos")[0][0]
        replica.query("SET GLOBAL gtid_slave_pos = %s", (position,))
        replica.query(f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary.port}, MASTER_USER='repl', "
                      "MASTER_PASSWORD='repl-secret-pw', MASTER_USE_GTID=slave_pos")
        replica.query("START SLAVE")
        # The app may only read on the replica: a write routed there would fail, not pass unnoticed (the account
        # has ALL, SUPER included, which read_only lets through).
        for host in ("127.0.0.1", "localhost"):
            replica.query(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{APP_USER}'@'{host}'")
            replica.query(f"GRANT SELECT ON app.* TO '{APP_USER}'@'{host}'")
        migrated = subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, capture_output=True,
                                  text=True, timeout=300,
                                  env={**os.environ, "DATABASE_URL": primary.app_url(), "PYTHONPATH": str(ROOT)})
        assert migrated.returncode == 0, migrated.stderr
        assert wait_until(lambda: _replicated(primary, replica), timeout=60), "the replica did not catch up"
        yield primary, replica
    finally:
        replica.destroy()
        primary.destroy()


def _replicated(primary: PrivateMariaDB, replica: PrivateMariaDB) -> bool:
    try:
        return replica.query("SELECT COUNT(*) FROM app.shop_product")[0][0] == \
            primary.query("SELECT COUNT(*) FROM app.shop_product")[0][0] > 0
    except Exception:  # noqa: BLE001 - the table may not exist on the replica yet
        return False


def _statements(db: PrivateMariaDB) -> dict[str, int]:
    rows = db.query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_select', 'Com_insert', 'Com_update')")
    return {name: int(value) for name, value in rows}


def _orders(port: int, count: int, outcomes: list[int]) -> None:
    import http.client
    import random

    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("POST", "/orders/", body=json.dumps({"product_id": random.randint(1, 100), "quantity": 1}),
                         headers={"Content-Type": "application/json"})
            outcomes.append(conn.getresponse().status)
        finally:
            conn.close()


def test_reads_go_to_the_replica_writes_to_the_primary_each_within_its_budget(
        primary_and_replica: tuple[PrivateMariaDB, PrivateMariaDB]) -> None:
    primary, replica = primary_and_replica
    server = Gunicorn(primary, REPLICA_DATABASE_URL=replica.app_url(), WEB_WORKERS=str(WORKERS),
                      POOL_SIZE=str(POOL)).start()
    before = {"primary": _statements(primary), "replica": _statements(replica)}
    outcomes: list[int] = []
    try:
        with ConnectionMonitor(primary, APP_USER) as on_primary, ConnectionMonitor(replica, APP_USER) as on_replica:
            writers = [threading.Thread(target=_orders, args=(server.port, 20, outcomes)) for _ in range(5)]
            for writer in writers:
                writer.start()
            reads = server.load(clients=100, requests=10, paths="/products/,/products/1/")
            for writer in writers:
                writer.join(120)
        log = server.log()
    finally:
        server.stop()
    after = {"primary": _statements(primary), "replica": _statements(replica)}
    delta = {db: {k: after[db][k] - before[db][k] for k in after[db]} for db in after}
    print(f"\nprimary: peak {on_primary.peak} app connections, {delta['primary']}; replica: peak {on_replica.peak}, "
          f"{delta['replica']}; {reads['ok']} reads ok, {outcomes.count(201)} orders placed")
    assert reads["failed"] == 0, reads
    assert all(status in (201, 409) for status in outcomes), outcomes
    assert delta["replica"]["Com_select"] >= 1000, "reads must be served by the replica"
    # The app may not write on the replica at all, so every order answered 201 was written on the primary.
    assert outcomes.count(201) > 0 and delta["primary"]["Com_insert"] >= outcomes.count(201)
    # Each server has its own pools: workers x size apiece, whatever the other one does.
    assert 0 < on_primary.peak <= WORKERS * POOL and 0 < on_replica.peak <= WORKERS * POOL
    assert "Traceback" not in log


READ_YOUR_WRITES_SCRIPT = """
    import json, os, django
    os.environ["DJANGO_SETTINGS_MODULE"] = "deploy.settings"
    django.setup()
    from django.db import connection, connections
    from deploy.shop.models import Product
    from pool.django import returning_connections
    from pool.django.routing import forget_writes

    def where(queryset):
        return queryset.db

    with returning_connections():
        forget_writes()
        first_read = where(Product.objects.all())
        Product.objects.filter(pk=1).update(stock=500)
        after_write = where(Product.objects.all())
        seen = Product.objects.get(pk=1).stock
    forget_writes()
    with returning_connections():
        fresh_unit = where(Product.objects.all())
    print(json.dumps({"first_read": first_read, "after_write": after_write, "seen": seen, "fresh_unit": fresh_unit}))
"""


def test_a_read_after_a_write_in_the_same_unit_of_work_goes_to_the_primary(
        primary_and_replica: tuple[PrivateMariaDB, PrivateMariaDB]) -> None:
    from harness.tools import run_script

    primary, replica = primary_and_replica
    replica.query("STOP SLAVE")  # replication lag at its worst: the replica would never see the write
    try:
        out = run_script(READ_YOUR_WRITES_SCRIPT, env={"DATABASE_URL": primary.app_url(),
                                                       "REPLICA_DATABASE_URL": replica.app_url()})
    finally:
        replica.query("START SLAVE")
    assert out == {"first_read": "replica", "after_write": "default", "seen": 500, "fresh_unit": "replica"}, out


def test_the_gate_gives_a_verdict_for_each_server(primary_and_replica: tuple[PrivateMariaDB, PrivateMariaDB]) -> None:
    from pathlib import Path

    primary, replica = primary_and_replica
    server = Gunicorn(primary, REPLICA_DATABASE_URL=replica.app_url(), WEB_WORKERS=str(WORKERS),
                      POOL_SIZE=str(POOL)).start()
    try:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "locust"), "-f", "loadtest/", "--headless", "--host", server.base,
             "-u", "40", "-r", "40", "-t", "6s"],
            cwd=ROOT, capture_output=True, text=True, timeout=180,
            env={**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": primary.app_url(),
                 "REPLICA_DATABASE_URL": replica.app_url(), "WEB_WORKERS": str(WORKERS), "POOL_SIZE": str(POOL)})
    finally:
        server.stop()
    output = result.stdout + result.stderr
    verdicts = [line for line in output.splitlines() if line.startswith("db connections on ")]
    print("\n" + "\n".join(verdicts))
    assert result.returncode == 0, output[-3000:]
    assert len(verdicts) == 2, output[-3000:]
    assert any(f"127.0.0.1:{primary.port}: peak" in v for v in verdicts)
    assert any(f"127.0.0.1:{replica.port}: peak" in v for v in verdicts)
    assert all("within budget" in v and f"budget {WORKERS * POOL}" in v for v in verdicts)
