"""The server budget (issue 29) in gunicorn: four aliases on one server, 2 gevent workers, size 10 each and
server_size 10. Under 200 users, most of them on one alias, the server never counts more than 2 x 10 app connections,
nothing fails but bounded-wait 503s, and the aliases with few users are not starved by the busy one."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from harness.mariadb import ROOT_PASSWORD, PrivateMariaDB
from harness.tools import (
    ConnectionMonitor,
    Gunicorn,
    http_load_verdict,
    run_script,
    start_http_load,
    wait_until,
)
from tests.browser import chromium, text_of, wait_for

pytestmark = pytest.mark.slow

WORKERS, SIZE, SERVER_SIZE = 2, 10, 10
TENANTS = ("tenant1", "tenant2", "tenant3")  # tests/budget_settings.py's


@pytest.fixture(scope="module")
def tenant_server() -> Iterator[PrivateMariaDB]:
    # A server of its own: its connection count must be this site's alone.
    db = PrivateMariaDB().start()
    for tenant in TENANTS:
        db.query(f"CREATE DATABASE IF NOT EXISTS {tenant}")
    yield db
    db.destroy()


IN_PROCESS = """
    from gevent import monkey; monkey.patch_all()
    import json, os, gevent, django, pymysql
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.budget_settings"
    django.setup()
    from django.conf import settings
    from django.db import connections
    from deploy.shop.models import Product
    from tests.budget_settings import TenantRouter
    from pool import ConnectionPool, PoolConfig
    from pool.core import server_budgets

    admin = pymysql.connect(**json.loads(os.environ["KIT_ADMIN_KWARGS"]))
    samples, running = [], [True]
    def sample():
        with admin.cursor() as cur:
            while running[0]:
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'")
                samples.append(cur.fetchone()[0])
                gevent.sleep(0.005)
    out = {}

    # The test runner's way: a test database for one alias (NAME renamed to test_tenant3, migrated), then using=.
    # Its CREATE and DROP DATABASE go over Django's connection without a database, which no pool holds: the count is
    # sampled in between.
    test_name = connections["tenant3"].creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    Product.objects.using("tenant3").filter(pk__gt=1).delete()  # the seeded rows, but one
    sampler = gevent.spawn(sample)

    def unit(i):
        alias = ("default", "tenant1", "tenant2", "tenant3")[i % 4]
        for _ in range(5):
            with connections[alias].cursor() as cur:
                cur.execute("SELECT DATABASE(), SLEEP(0.002)")
                database = cur.fetchone()[0]
        count = None
        if alias == "tenant3":
            count = Product.objects.using(alias).count()
            TenantRouter.current.tenant = alias  # DATABASE_ROUTERS: the same table, chosen by the router
            if Product.objects.count() != count:
                count = "the router chose another database"
        connections[alias].close()
        # A wrapper of its own, on the alias's pool (used after the alias's connection went back: holding both at
        # once, 40 greenlets would hold the whole budget, each waiting for its second connection).
        copy = connections[alias].copy()
        with copy.cursor() as cur:
            cur.execute("SELECT 1")
        copy.close()
        return alias, database, count

    units = [gevent.spawn(unit, i) for i in range(40)]
    gevent.joinall(units, timeout=120)
    out["django"] = {"answers": sorted({tuple(map(str, u.value)) for u in units if u.successful()}),
                     "failed": [repr(u.exception) for u in units if not u.successful()],
                     "budgets": [b.stats() for b in server_budgets()], "test_name": test_name}
    running[0] = False
    sampler.join(5)
    connections["tenant3"].creation.destroy_test_db(test_name, verbosity=0)
    connections.close_all()
    running[0] = True
    sampler = gevent.spawn(sample)

    # The plain pool: two databases of the same server, one budget.
    kwargs = json.loads(os.environ["KIT_APP_KWARGS"])
    plain = [ConnectionPool({**kwargs, "database": name}, PoolConfig(size=3), name=name)
             for name in ("app", "tenant1")]
    def use(pool):
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT SLEEP(0.005)")
    jobs = [gevent.spawn(use, plain[i % 2]) for i in range(40)]
    gevent.joinall(jobs, timeout=60)
    out["plain"] = {"ok": sum(j.successful() for j in jobs), "shared": plain[0]._budget is plain[1]._budget,
                    "budget": plain[0]._budget.stats()}
    running[0] = False
    sampler.join(5)
    out["peak"], out["samples"] = max(samples), len(samples)
    print(json.dumps(out))
"""


def test_django_aliases_routers_copies_test_databases_and_the_plain_pool_share_the_budget(
        tenant_server: PrivateMariaDB) -> None:
    admin = {"unix_socket": tenant_server.socket_path, "user": "root", "password": ROOT_PASSWORD}
    out = run_script(IN_PROCESS, env={"DATABASE_URL": tenant_server.app_url(), "POOL_SERVER_SIZE": "3",
                                      "POOL_SIZE": "3", "POOL_MIN_IDLE": "0",
                                      "KIT_ADMIN_KWARGS": json.dumps(admin),
                                      "KIT_APP_KWARGS": json.dumps(tenant_server.app_connect_kwargs())})
    print(json.dumps(out)[:2000])
    django = out["django"]
    assert django["failed"] == []
    assert django["answers"] == [["default", "app", "None"], ["tenant1", "tenant1", "None"],
                                 ["tenant2", "tenant2", "None"], ["tenant3", "test_tenant3", "1"]]
    (budget,) = [b for b in django["budgets"] if b["server"].startswith("app@127.0.0.1:")]
    # Every alias, the test database's pool and the copies' (the same pool as their alias's) count against one budget.
    assert budget["server_size"] == 3 and {"default", "tenant1", "tenant2", "tenant3"} <= set(budget["pools"])
    assert out["plain"] == {"ok": 40, "shared": True, "budget": out["plain"]["budget"]}
    # POOL_SERVER_SIZE=3 for every pool of the process: Django's four aliases, the test database's and the plain ones.
    assert out["plain"]["budget"]["server_size"] == 3 and {"app", "tenant1"} <= set(out["plain"]["budget"]["pools"])
    assert out["peak"] <= 3, out["peak"]
    assert out["samples"] > 20


def test_four_aliases_share_one_budget_per_worker_and_the_quiet_ones_are_not_starved(
        tenant_server: PrivateMariaDB) -> None:
    site = Gunicorn(tenant_server, DJANGO_SETTINGS_MODULE="tests.budget_settings", WEB_WORKERS=str(WORKERS),
                    POOL_SIZE=str(SIZE), POOL_SERVER_SIZE=str(SERVER_SIZE), POOL_TIMEOUT="10").start()
    try:
        for alias in ("default", *TENANTS):
            status, _, body = site.get(f"/alias/{alias}/")
            assert status == 200, body
        assert "server budget for app@127.0.0.1:" in site.log() and "(server_size), shared with" in site.log()
        with ConnectionMonitor(tenant_server, interval=0.05) as sampler:
            busy = start_http_load(site.base, 185, ["/alias/default/"], seconds=8)
            quiet = start_http_load(site.base, 15, [f"/alias/{t}/" for t in TENANTS], seconds=8)
            busy_result, quiet_result = http_load_verdict(busy), http_load_verdict(quiet)
        print("busy:", {k: busy_result[k] for k in ("ok", "statuses", "errors", "rps", "p99_ms")})
        print("quiet:", {k: quiet_result[k] for k in ("ok", "statuses", "errors", "rps", "p99_ms")})
        print(f"server: peak {max(sampler.counts)} app connections in {len(sampler.counts)} samples")
        assert len(sampler.counts) > 50
        assert max(sampler.counts) <= WORKERS * SERVER_SIZE, sampler.counts
        for result in (busy_result, quiet_result):
            assert not result["errors"], result["errors"]
            assert set(result["statuses"]) <= {"200", "503"}, result["statuses"]
            assert result["ok"] > 0
        assert quiet_result["ok"] > 100  # the quiet aliases were served throughout, not only after the burst
        assert quiet_result["p99_ms"] <= 2 * busy_result["p99_ms"], (quiet_result, busy_result)
        view = site.pool_view(fresh_since=time.monotonic())
        print("servers:", view["servers"])
        (server,) = view["servers"]
        assert server["server_size"] == WORKERS * SERVER_SIZE and server["workers"] == WORKERS
        assert server["waiting"] == 0 and server["open"] <= WORKERS * SERVER_SIZE, server
        totals = view["total"]
        print("handed over:", {name: t["handed_over"] for name, t in totals.items()},
              "server waits:", {name: t["server_waits"] for name, t in totals.items()})
        assert sum(t["server_waits"] for t in totals.values()) > 0  # the budget was used up, and shared
        assert set(server["pools"]) == {"default", *TENANTS}
        assert view["budget"]["connections"] == WORKERS * SERVER_SIZE
        # The status page, in a real browser: the budget is per server, and each alias's share is shown.
        with chromium() as driver:
            driver.get(f"{site.base}/")
            wait_for(lambda: text_of(driver, "budget") == str(WORKERS * SERVER_SIZE), "the per-server budget")
            formula = wait_for(lambda: text_of(driver, "budget-formula") if "tenant3" in text_of(
                driver, "budget-formula") else None, "each alias in the budget's formula")
            assert f"{WORKERS} workers × server budget {SERVER_SIZE} (server_size)" in formula, formula
            assert all(name in formula for name in ("default", *TENANTS)), formula
    finally:
        site.stop()
    assert wait_until(lambda: tenant_server.app_connection_count() == 0, timeout=30)
