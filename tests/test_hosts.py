"""Host lists (issue 13): a DATABASE_URL naming several servers, tried in order, a failed one skipped for a back-off.
Against the private server, with a loopback port where nothing listens standing in for a dead node."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.mariadb import APP_DATABASE, APP_PASSWORD, APP_USER, PrivateMariaDB, free_port
from harness.tools import Gunicorn, run_script
from pool import ConnectionPool, PoolConfig
from pool.hosts import HostList
from pool.pymysql_driver import PyMySQLDriver

pytestmark = pytest.mark.slow


def test_host_lists_parse_as_django_and_database_url_write_them() -> None:
    assert list(HostList.parse("db1:3307,db2,[::1]:3308", 3306)) == [("db1", 3307), ("db2", 3306), ("::1", 3308)]
    assert list(HostList.parse("db1", 3310)) == [("db1", 3310)]


def test_the_pool_skips_a_dead_host_and_remembers_it(db: PrivateMariaDB, connect_kwargs: dict[str, Any]) -> None:
    dead = free_port()
    kwargs = {**connect_kwargs, "host": f"127.0.0.1:{dead},127.0.0.1:{db.port}"}
    kwargs.pop("port")
    pool = ConnectionPool(kwargs, PoolConfig(size=3))
    leases = [pool.acquire() for _ in range(3)]
    driver = pool._driver
    assert isinstance(driver, PyMySQLDriver)
    assert f"127.0.0.1:{dead},127.0.0.1:{db.port}" in pool.target
    for lease in leases:
        with lease.connection.cursor() as cur:
            cur.execute("SELECT 1")
        pool.release(lease)
    # The dead host was tried once, then skipped for its back-off by the next connects.
    assert driver.backoff.failures == {("127.0.0.1", dead): 1}
    pool.close()


def test_a_dead_host_before_a_live_one_serves_with_no_failed_request(site_db: PrivateMariaDB) -> None:
    dead = free_port()
    url = f"mysql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{dead},127.0.0.1:{site_db.port}/{APP_DATABASE}"
    server = Gunicorn(site_db, DATABASE_URL=url).start()
    try:
        result = server.load(clients=100, requests=10, paths="/products/,/report/slow/?seconds=0.02")
        stats = json.loads(server.get("/-/pool")[2])
        log = server.log()
    finally:
        server.stop()
    print(f"\ndead host first: {result['ok']} ok, {result['failed']} failed")
    assert result["failed"] == 0, result
    assert f"host 127.0.0.1:{dead} of DATABASE_URL does not answer at start" in log
    # Each worker tried the dead host once, then kept to the live one while its back-off lasted.
    assert log.count(f"host 127.0.0.1:{dead} failed") <= 2, log
    assert stats["connect_errors"] == 0


# The gate imports locust, which only the full suite's environment has (not the Django 6 subset's).
def test_the_gate_counts_each_host_of_a_list_and_names_a_bad_port() -> None:
    out = run_script("""
        import json, sys, types
        sys.path.insert(0, "loadtest")
        import _budget
        def find(url):
            found = _budget.find_databases(types.SimpleNamespace(db_url=url, app_user=None), None)
            return found if isinstance(found, str) else [label for *_, label in found]
        print(json.dumps({"list": find("mysql://app:pw@db1:3307,db2/app"),
                          "bad": find("mysql://app:pw@db1:3307,db2:abc/app")}))
    """)
    assert out["list"] == ["db1:3307", "db2:3306"]
    assert out["bad"].startswith("--db-url has a port that is not a number from 1 to 65535")
