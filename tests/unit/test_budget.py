"""The connection budget's arithmetic and its reports, with server_size (issue 29). No server: the limits a check
would read are given (read_server_limits replaced), so every figure here is known in advance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.tools import ROOT
from pool import budget
from pool.budget import Budget, ConfSizes, Tier, read_gunicorn_conf
from tests.unit.fakes import RecordedLog

URL = "mysql://app:pw@127.0.0.1:3306/app"


def make(**overrides: Any) -> Budget:
    """2 workers x pool 10, x2 for a reload, reserve 10, against max_connections=100."""
    values: dict[str, Any] = {"hosts": 1, "workers": 2, "pool_size": 10, "reload_overlap": True, "reserve": 10,
                              "max_connections": 100, "max_user_connections": 0, "connected_now": 5}
    return Budget(**{**values, **overrides})


def rows(table: str) -> dict[str, str]:
    return {name.strip(): value for name, value in (line.rsplit("  ", 1) for line in table.splitlines())}


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The server every check here reads: max_connections 100, no per-user limit, 5 connected, no other host."""
    server = {"max_connections": 100}
    monkeypatch.setattr(budget, "read_server_limits",
                        lambda kwargs, timeout=5: (server["max_connections"], 0, 5, Tier("127.0.0.1")))
    return server


def test_without_server_size_each_alias_counts_its_size() -> None:
    one = make()
    assert (one.per_worker, one.share, one.app_peak, one.needed) == (10, 40, 40, 50)
    assert one.formula == "2 workers x pool 10 x 2 during a SIGHUP reload"  # as before issue 29
    three = make(aliases=3, hosts=2)
    assert (three.per_worker, three.share, three.app_peak) == (30, 120, 240)
    assert three.formula == "2 hosts x 2 workers x pool 10 x 3 aliases x 2 during a SIGHUP reload"
    table = rows(three.table())
    assert table["aliases per worker on the server"] == "3" and table["server_size"] == "none"
    assert table["per worker on the server"] == "30 (3 alias(es) x pool 10; no server_size)"
    assert table["each alias"] == "up to its size 10 of the server budget 30"


def test_server_size_caps_a_worker_whatever_the_number_of_aliases() -> None:
    capped = make(server_size=12, aliases=3, hosts=2)
    assert (capped.per_worker, capped.share, capped.app_peak, capped.needed) == (12, 48, 96, 106)
    assert capped.formula == "2 hosts x 2 workers x server_size 12 x 2 during a SIGHUP reload"
    table = rows(capped.table())
    assert "aliases per worker on the server" not in table  # server_size bounds them, however many
    assert table["per worker on the server"] == "12 (server_size, shared by its pools)"
    assert table["each alias"] == "up to its size 10 of the server budget 12"
    assert table["app peak"] == "96" and table["verdict"] == "OVER BUDGET"
    assert "up to the server budget 5 (its size 10 is more)" in make(server_size=5).table()


def test_problems_name_the_setting_that_caps_a_worker() -> None:
    tight = {"max_connections": 30, "max_user_connections": 20}
    [connections, user] = make(server_size=12, **tight).problems
    assert "(2 workers x server_size 12 x 2 during a SIGHUP reload)" in connections
    assert "Lower workers or POOL_SERVER_SIZE (server_size), or raise max_connections" in connections
    assert "Lower workers or POOL_SERVER_SIZE (server_size), or raise the user's limit" in user
    assert "POOL_SIZE" not in connections.replace("POOL_SERVER_SIZE", "")
    [connections, _] = make(**tight).problems
    assert "Lower workers or POOL_SIZE, or raise max_connections" in connections  # unchanged without server_size
    [connections, _] = make(aliases=3, **tight).problems
    assert "Lower workers or POOL_SIZE (or bound the 3 pools together with POOL_SERVER_SIZE)" in connections


def test_the_tier_counts_each_host_at_the_server_size_share() -> None:
    tier = Tier("10.0.0.5", {"10.0.0.6": 30, "10.0.0.7": 2})
    capped = make(server_size=6, tier=tier, max_connections=60)
    # this host 2 x 6 x 2 = 24; 10.0.0.6 holds more than that (30), 10.0.0.7 counts at 24; + reserve 10
    assert capped.tier_needed == 24 + 30 + 24 + 10
    [problem] = capped.problems
    assert "each at least at this host's share of 24 (2 workers x server_size 6 x 2 during a SIGHUP reload)" \
           in problem
    assert "lower workers or POOL_SERVER_SIZE (server_size), or keep the tier smaller" in problem
    # The share a host is held to leaves the host count out of its formula.
    assert "share of 40 (2 workers x pool 10 x 2" in make(hosts=3, tier=tier, max_connections=60).problems[1]


def test_the_conf_gives_server_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("from pool.settings import PoolConfig\nworkers = 3\npool = PoolConfig(size=4, server_size=6)\n")
    assert read_gunicorn_conf(str(conf)) == ConfSizes(3, 4, 6)
    # The kit's own conf, from the environment as gunicorn would see it (configure_pool sets POOL_CONF: restored).
    monkeypatch.setenv("POOL_CONF", "")  # recorded, so that the one configure_pool writes is undone
    monkeypatch.setenv("WEB_WORKERS", "3")
    assert read_gunicorn_conf(str(ROOT / "gunicorn.conf.py")) == ConfSizes(3, 10, None)
    monkeypatch.setenv("POOL_SERVER_SIZE", "12")
    assert read_gunicorn_conf(str(ROOT / "gunicorn.conf.py")) == ConfSizes(3, 10, 12)


def test_budget_command_takes_server_size_and_aliases(limits: dict[str, int], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--database-url", URL, "--workers", "2", "--pool-size", "10"]
    # 3 aliases of 10 each: 2 x 30 x 2 + 10 = 130 > 100
    assert budget.main([*args, "--aliases", "3"]) == 1
    table, _, problems = capsys.readouterr().out.partition("over budget:")
    assert rows(table)["needed"] == "130" and rows(table)["verdict"] == "OVER BUDGET"
    assert "or bound the 3 pools together with POOL_SERVER_SIZE" in problems
    # The same aliases within one server budget of 20: 2 x 20 x 2 + 10 = 90
    assert budget.main([*args, "--aliases", "3", "--server-size", "20"]) == 0
    capped = rows(capsys.readouterr().out)
    assert capped["server_size"] == "20" and capped["needed"] == "90" and capped["verdict"] == "fits"
    assert capped["each alias"] == "up to its size 10 of the server budget 20"
    # From a conf with server_size, which --server-size 0 takes away.
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("from pool.settings import PoolConfig\nworkers = 2\npool = PoolConfig(size=10, server_size=5)\n")
    assert budget.main(["--database-url", URL, "--conf", str(conf)]) == 0
    assert rows(capsys.readouterr().out)["app peak"] == "20"
    assert budget.main(["--database-url", URL, "--conf", str(conf), "--server-size", "0", "--aliases", "4"]) == 1
    assert rows(capsys.readouterr().out.split("over budget:")[0])["app peak"] == "160"
    with pytest.raises(SystemExit) as usage:
        budget.main([*args, "--aliases", "0"])
    assert usage.value.code == 2


def test_start_and_ttin_count_with_server_size_and_say_how(limits: dict[str, int]) -> None:
    log = RecordedLog()
    start = budget.check_at_start(log, URL, workers=2, pool_size=10, strict=True, reserve=10, server_size=20)
    assert start is not None and start.results[0].needed == 90
    assert ("info", "connection budget: per worker: server budget 20 (server_size) shared by its pools, each up to "
                    "size 10") in log.lines
    assert ("info", "connection budget fits: 90 needed (2 workers x server_size 20 x 2 during a SIGHUP reload + "
                    "reserve 10) of max_connections=100") in log.lines
    # TTIN to 3 workers: 3 x 20 x 2 + 10 = 130, refused in strict mode, naming server_size.
    problem = budget.check_growth(log, start, 3)
    assert problem is not None and "3 workers x server_size 20" in problem and "POOL_SERVER_SIZE" in problem

    plain = RecordedLog()
    budget.check_at_start(plain, URL, workers=2, pool_size=10, strict=False, reserve=10)
    assert ("info", "connection budget: per worker: pool size 10, counted as one pool per worker on the server; "
                    "several aliases or tenants to one server hold their size each: set server_size to bound them "
                    "together") in plain.lines
