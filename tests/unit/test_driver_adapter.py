"""PyMySQLDriver as built, without a server: what it takes from the pool's settings."""

from __future__ import annotations

from pymysql.constants import CLIENT

from pool import PoolConfig
from pool.abc import ResetMode
from pool.pymysql_driver import PyMySQLDriver
from pool.settings import RESET_MODES


def test_the_reset_modes_are_the_settings_choices() -> None:
    assert tuple(ResetMode) == RESET_MODES


def test_session_tracking_is_asked_for_only_by_reset_tracked() -> None:
    for mode in ResetMode:
        driver = PyMySQLDriver.for_config({"host": "db1", "database": "shop"}, PoolConfig(reset=mode))
        tracked = mode is ResetMode.TRACKED
        assert driver.session.track_state is tracked
        assert bool(driver.connect_kwargs.get("client_flag", 0) & CLIENT.SESSION_TRACK) is tracked
        assert driver.session.database == "shop" and "'shop'" in driver.session.catalogue_query


def test_init_command_and_sql_mode_become_the_session_set_up_a_full_reset_replays() -> None:
    driver = PyMySQLDriver.for_config({"sql_mode": "ANSI", "init_command": "SET @a = 1"}, PoolConfig(),
                                      session_init=["SET @b = 2"])
    assert driver.session.session_init == ("SET sql_mode='ANSI'", "SET @a = 1", "SET @b = 2")
    assert "sql_mode" not in driver.connect_kwargs and "init_command" not in driver.connect_kwargs
