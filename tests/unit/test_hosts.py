"""Host lists (pool.hosts): one strict parser wherever a list is written, and the order a connect tries the hosts in.
No server: a bad list must fail where the budget or the gate reads it, before any connect."""

from __future__ import annotations

import pytest

from harness.tools import run_script
from pool import ConfigError, budget
from pool.hosts import Host, HostBackoff, HostList
from tests.unit.fakes import FakeClock


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
def test_a_bad_host_list_in_host_is_a_config_error(host: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HostList.parse(host)
    message = str(caught.value)
    assert message.startswith("HOST ") and says in message
    assert "db1:3307,db2,[::1]:3308" in message, "the message shows the shape to write"


@pytest.mark.parametrize("port", [99999, -1, "abc", "33o6"])
def test_a_bad_port_is_a_config_error_naming_port(port: object) -> None:
    with pytest.raises(ConfigError, match=r"^PORT is not a number from 1 to 65535"):
        HostList.from_connect_kwargs({"host": "db1", "port": port})


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


def test_the_budget_takes_the_list_strictly_too() -> None:
    with pytest.raises(ConfigError, match=r"^HOST has a port"):
        budget.check_each({"host": "127.0.0.1:1,db2:abc"}, workers=1, pool_size=1, timeout=0.1)
    with pytest.raises(ConfigError, match=r"^DATABASE_URL has a port"):
        budget.main(["--database-url", "mysql://app:pw@127.0.0.1:1,db2:abc/app", "--workers", "1", "--pool-size", "1"])


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
