"""PyMySQLDriver as built, without a server: what it takes from the pool's settings."""

from __future__ import annotations

from pool.abc import ResetMode
from pool.settings import RESET_MODES


def test_the_reset_modes_are_the_settings_choices() -> None:
    assert tuple(ResetMode) == RESET_MODES
