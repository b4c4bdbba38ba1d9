"""The four layers every pool's settings go through (pool.settings.resolve_config), each winning over the one before,
and the creation log naming the layer that set each value."""

from __future__ import annotations

import logging

import pytest

from pool import ConnectionPool, PoolConfig, resolve_config
from pool.errors import ConfigError
from pool.settings import CONF_ENV, conf_environment, deployment_setting

from .fakes import FakeDriver

OPTIONS = "DATABASES['default']['OPTIONS']['pool']"


def code_layer(**values: object) -> PoolConfig:
    return PoolConfig.from_mapping(values, source=OPTIONS)


def test_each_layer_wins_over_the_one_before() -> None:
    assert resolve_config(None, {}) == PoolConfig()

    code = code_layer(size=4, timeout=3, min_idle=0)
    assert (resolve_config(code, {}).size, resolve_config(code, {}).setting_source("size")) == \
        (4, f"{OPTIONS}['size']")

    with_conf = conf_environment({"size": 6, "min_idle": 2})
    config = resolve_config(code, with_conf)
    assert (config.size, config.min_idle, config.timeout) == (6, 2, 3.0)
    assert config.setting_source("size") == "configure_pool(size=...) in gunicorn.conf.py"
    assert config.setting_source("timeout") == f"{OPTIONS}['timeout']"

    config = resolve_config(code, {**with_conf, "POOL_SIZE": "7"})
    assert (config.size, config.min_idle, config.timeout) == (7, 2, 3.0)
    assert config.setting_source("size") == "POOL_SIZE"


def test_resolving_twice_changes_nothing() -> None:
    environ = {**conf_environment({"size": 6}), "POOL_TIMEOUT": "2"}
    once = resolve_config(code_layer(size=4, idle_timeout=30), environ)
    again = resolve_config(once, environ)
    assert again == once and again.sources == once.sources


def test_a_plain_pool_given_no_config_gets_the_conf_and_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    for name, value in conf_environment({"size": 3, "warm_start": True}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POOL_TIMEOUT", "2.5")
    with caplog.at_level(logging.INFO, logger="pool"):
        pool = ConnectionPool(driver=FakeDriver(), maintenance_interval=None)
    try:
        assert (pool.config.size, pool.config.warm_start, pool.config.timeout) == (3, True, 2.5)
        created = next(r.getMessage() for r in caplog.records if "created for" in r.getMessage())
        assert "size=3 (configure_pool(size=...) in gunicorn.conf.py)" in created
        assert "timeout=2.5 (POOL_TIMEOUT)" in created
        assert "min_idle=1," in created  # a default names no layer
    finally:
        pool.close()


def test_a_pool_given_code_settings_names_them_in_its_creation_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pool"):
        pool = ConnectionPool(config=code_layer(size=2), driver=FakeDriver(), maintenance_interval=None)
    pool.close()
    assert any(f"size=2 ({OPTIONS}['size'])" in r.getMessage() for r in caplog.records)


def test_a_code_size_above_what_the_budget_check_counted_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pool.settings"):
        resolve_config(code_layer(size=40), conf_environment({"warm_start": True}))
    assert any("size=40 comes from" in r.getMessage() and "counted size=10" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pool.settings"):
        resolve_config(code_layer(size=40), {})  # no conf, no budget check: nothing to warn of
        resolve_config(code_layer(size=4), conf_environment({}))  # smaller than counted: fits
    assert not caplog.records


def test_a_code_server_size_above_what_the_budget_check_counted_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pool.settings"):
        resolve_config(code_layer(size=10, server_size=30), conf_environment({}))
    assert any("server_size=30 comes from" in r.getMessage() and "counted 10 per worker" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pool.settings"):
        resolve_config(code_layer(size=10, server_size=30), conf_environment({"server_size": 40}))  # counted 40
        resolve_config(code_layer(size=10, server_size=8), conf_environment({}))  # below what was counted
    assert not caplog.records


def test_bad_values_in_each_layer_name_where_they_were_written() -> None:
    with pytest.raises(ConfigError, match=r"configure_pool\(\) in gunicorn.conf.py\['size'\]"):
        conf_environment({"size": 0})
    with pytest.raises(ConfigError, match="unknown pool setting"):
        conf_environment({"sise": 3})
    with pytest.raises(ConfigError, match=f"{CONF_ENV}='not json' is not JSON"):
        resolve_config(None, {CONF_ENV: "not json"})
    with pytest.raises(ConfigError, match="POOL_SIZE='ten'"):
        resolve_config(code_layer(size=3), {"POOL_SIZE": "ten"})


def test_deployment_settings_come_from_the_environment_parsed_by_the_table() -> None:
    assert deployment_setting("budget_reserve", {}) == 10
    assert deployment_setting("budget_reserve", {"POOL_BUDGET_RESERVE": "25"}) == 25
    assert deployment_setting("budget_strict", {"POOL_BUDGET_STRICT": "yes"}) is True
    assert deployment_setting("stats_dir", {"POOL_STATS_DIR": "/srv/Stats"}) == "/srv/Stats"  # a path keeps its case
    with pytest.raises(ConfigError, match=r"POOL_BUDGET_RESERVE='-1' is too small"):
        deployment_setting("budget_reserve", {"POOL_BUDGET_RESERVE": "-1"})
