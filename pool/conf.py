"""What gunicorn.conf.py reads: the pool's settings for the deployment, and environment readers that stop the start
with one line naming a bad variable (a bare int() would end in a traceback).

Runs in gunicorn's arbiter before any patching: nothing here imports Django or gevent.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .errors import ConfigError
from .settings import PoolConfig, Setting, conf_environment, deployment_setting, resolve_config

# prometheus_client's multiprocess mode is on while this names a directory (it reads the same variable itself).
PROMETHEUS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prometheus_dir() -> str:
    """The folder of every worker's Prometheus files, or "" when metrics are per process (the one place the kit reads
    the variable)."""
    return os.environ.get(PROMETHEUS_DIR_ENV, "")


def configure_pool(**settings: Any) -> PoolConfig:
    """The deployment's pool settings, in gunicorn.conf.py: `pool = configure_pool(warm_start=True)`.

    They are the third of the four layers every pool resolves (pool.settings): over the code's (Django's
    OPTIONS["pool"], `ConnectionPool(config=...)`), under `POOL_<NAME>` from the environment. This is the one step
    that hands them on: they go into the environment variable POOL_CONF, which every pool of the arbiter and of the
    workers it forks reads when it is built. Returns what a pool with no settings of its own gets, for the conf's
    budget check.
    """
    try:
        os.environ.update(conf_environment(settings))
        return resolve_config()
    except ConfigError as exc:
        sys.exit(f"gunicorn.conf.py: {exc}")


def env_setting(name: str) -> Any:
    """A deployment setting of the table (`pool.settings.DEPLOYMENT_SETTINGS`) from its POOL_<NAME>, or its
    default."""
    try:
        return deployment_setting(name)
    except ConfigError as exc:
        sys.exit(str(exc))


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_flag(name: str, default: bool = False) -> bool:
    value: bool = _read(Setting(name, bool, default, "a yes/no value; use 1 or 0"), name)
    return value


def env_int(name: str, default: int, minimum: int = 0) -> int:
    value: int = _read(Setting(name, int, default, f"a whole number of at least {minimum}; fix it, or unset it for "
                               f"the default {default}", minimum=minimum), name)
    return value


def _read(setting: Setting, variable: str) -> Any:
    raw = os.environ.get(variable, "")
    if raw.strip() == "":
        return setting.default
    try:
        return setting.parse(raw, variable)
    except ConfigError as exc:
        sys.exit(str(exc))
