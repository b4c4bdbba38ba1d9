"""Host lists (pool.hosts): one strict parser wherever a list is written, and the order a connect tries the hosts in.
No server: a bad list must fail where the pool, the engine, the budget or the gate is built, before any connect."""

from __future__ import annotations

import pytest

from harness.tools import run_script
from pool import ConfigError, ConnectionPool, PoolConfig, budget
from pool.hosts import Host, HostBackoff, HostList
from pool.pymysql_driver import PyMySQLDriver
from tests.unit.fakes import FakeClock


def driver_for(**connect_kwargs: object) -> PyMySQLDriver:
    return PyMySQLDriver.for_config(connect_kwargs, PoolConfig())


def test_django_host_takes_lists_bracketed_and_bare_ipv6_and_spaces() -> None:
    assert list(HostList.parse(" db1:3307 , db2,[::1]:3308,[::2],::3", 3310)) == [
        ("db1", 3307), ("db2", 3310), ("::1", 3308), ("::2", 3310), ("::3", 3310)]
    assert HostList.parse("db1,[::1]:3308").format() == "db1:3306,[::1]:3308"
    assert Host("::1", 3307).label == "[::1]:3307"


@pytest.mark.parametrize(("host", "says"), [
    ("db1:abc", "has a port that is not a number from 1 to 65535"),
    ("db1:0", "has a port that is not a number from 1 to 65535"),
    ("db1:65536", "has a port that is not a number from 1 to 65535"),
    ("db1:3307,db2:33o6", "has a port that is not a number from 1 to 65535"),
    ("[::1]:x", "has a port that is not a number from 1 to 65535"),
    ("db1:3307:3308", "more than one ':'"),
    ("[::1", "without its closing ']'"),
    ("[::1]3307", "not a :port"),
    ("db1,,db2", "empty host"),
])
def test_a_bad_host_list_in_host_is_a_config_error_when_the_pool_is_built(host: str, says: str) -> None:
    for build in (lambda: driver_for(host=host), lambda: ConnectionPool({"host": host}, maintenance_interval=None)):
        with pytest.raises(ConfigError) as caught:
            build()
        message = str(caught.value)
        assert message.startswith("HOST ") and says in message
        assert "db1:3307,db2,[::1]:3308" in message, "the message shows the shape to write"


@pytest.mark.parametrize("port", [99999, -1, "abc", "33o6"])
def test_a_bad_port_is_a_config_error_naming_port(port: object) -> None:
    with pytest.raises(ConfigError, match=r"^PORT is not a number from 1 to 65535"):
        driver_for(host="db1", port=port)


def test_the_driver_connects_to_the_parsed_host_and_port() -> None:
    # A single host with its port (Django's HOST="db1:3307") reaches PyMySQL as host and port, not as one string.
    driver = driver_for(host="db1:3307", user="app", database="shop")
    assert driver.hosts == HostList([Host("db1", 3307)])
    assert driver.target == "app@db1:3307/shop"
    assert driver_for(port="3310").hosts == HostList([Host("localhost", 3310)])
    assert driver_for(host="db1:3307,db2", port=0, unix_socket="/run/mysqld.sock").hosts == HostList(
        [Host("db1", 3307)])


def test_a_failed_host_is_skipped_for_a_back_off_that_doubles_up_to_the_cap() -> None:
    clock = FakeClock()
    db1, db2 = hosts = HostList.parse("db1,db2")
    backoff = HostBackoff(hosts, clock)
    assert backoff.order() == [db1, db2]
    assert backoff.failed(db1) == (1, 1.0)
    assert backoff.order() == [db2]
    clock.advance(1.0)
    assert backoff.order() == [db1, db2]
    assert [backoff.failed(db1)[1] for _ in range(5)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.failed(db2)
    assert backoff.order() == [db2], "all backing off: the one whose back-off ends first"
    assert backoff.answered(db1) and not backoff.answered(db1)
    assert backoff.failures == {db2: 1}


def test_the_budget_takes_the_list_strictly_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"^HOST has a port"):
        budget.check_each({"host": "127.0.0.1:1,db2:abc"}, workers=1, pool_size=1, timeout=0.1)
    with pytest.raises(SystemExit) as exited:  # the CLI: one line, no traceback
        budget.main(["--database-url", "mysql://app:pw@127.0.0.1:1,db2:abc/app", "--workers", "1", "--pool-size", "1"])
    assert exited.value.code == 2
    assert "error: DATABASE_URL has a port" in capsys.readouterr().err


def test_the_django_engine_names_host_in_improperly_configured() -> None:
    out = run_script("""
        import json, django
        from django.conf import settings
        settings.configure(DATABASES={"default": {"ENGINE": "pool.django", "NAME": "x", "HOST": "db1:abc"}})
        django.setup()
        from django.core.exceptions import ImproperlyConfigured
        from django.db import connection
        try:
            connection.ensure_connection()
        except ImproperlyConfigured as exc:
            print(json.dumps({"improperly_configured": str(exc)}))
    """)
    assert out["improperly_configured"].startswith(
        "DATABASES['default']: HOST has a port that is not a number from 1 to 65535")


def test_a_host_that_failed_thousands_of_times_backs_off_for_the_cap() -> None:
    db1, db2 = hosts = HostList.parse("db1,db2")
    backoff = HostBackoff(hosts, FakeClock())
    assert [backoff.failed(db1)[1] for _ in range(1100)][-1] == 10.0
    assert backoff.order() == [db2]
