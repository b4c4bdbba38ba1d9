"""pytest plugin for PyMySQL's own test suite: which connection class the tests get, and a record of every outcome.

Loaded by conformance/pymysql_suite.py as `-p pymysql_plugin` (conformance/ on PYTHONPATH), so it is imported before
PyMySQL's test modules, some of which connect at import time (test_connection.py's TestAuthentication class body).
Configured by environment variables, because the suite runs in another interpreter (the oldest PyMySQL's venv):

- PYMYSQL_CONFORMANCE_WAY: `plain` (PyMySQL untouched), `subclass` (every connection a `PooledConnection` built from
  the test's own arguments) or `driver` (built by `PyMySQLDriver`, with the kit's defaults, as a pool would build it).
- PYMYSQL_CONFORMANCE_TREE: the folder holding `pymysql/tests` (PyMySQL's tests, unpacked into the cache).
- PYMYSQL_CONFORMANCE_VERSION: the PyMySQL version the tests were taken for; anything else installed is refused.
- PYMYSQL_CONFORMANCE_RESULTS: where to write the outcomes (JSON).
- PYMYSQL_CONFORMANCE_TEST_TIMEOUT: seconds one test may take before it is failed (a hung read must not hang the run).
- PYMYSQL_CONFORMANCE_DRIVER_AUTOCOMMIT=off: the driver way with PyMySQL's autocommit default instead of the kit's,
  to tell failures caused by that documented choice from the others.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Generator
from pathlib import Path
from types import FrameType
from typing import Any

import pymysql
import pymysql.connections
import pytest

WAY = os.environ.get("PYMYSQL_CONFORMANCE_WAY", "plain")
TREE = Path(os.environ["PYMYSQL_CONFORMANCE_TREE"]).resolve()
VERSION = os.environ["PYMYSQL_CONFORMANCE_VERSION"]
RESULTS = Path(os.environ["PYMYSQL_CONFORMANCE_RESULTS"])
TEST_TIMEOUT = int(os.environ.get("PYMYSQL_CONFORMANCE_TEST_TIMEOUT", "120"))

# The tests must exercise the installed PyMySQL, never a copy of its sources that happens to be on the path.
if pymysql.VERSION_STRING != VERSION or TREE in Path(pymysql.__file__).resolve().parents:
    raise RuntimeError(f"expected the installed PyMySQL {VERSION}, "
                       f"found {pymysql.VERSION_STRING} at {pymysql.__file__}")
# PyMySQL's tests import themselves as `pymysql.tests`: graft the unpacked folder onto the installed package.
pymysql.__path__.append(str(TREE / "pymysql"))

_ORIGINAL = pymysql.connections.Connection


def _install(factory: Any, cls: type) -> None:
    """Make every way a test can open a connection build `factory`'s kind (pymysql/__init__.py binds all four names
    to connections.Connection)."""
    setattr(pymysql.connections, "Connection", cls)  # noqa: B010 - mypy refuses assigning to a class name
    pymysql.Connection = pymysql.Connect = pymysql.connect = factory


if WAY == "subclass":
    from pool.pymysql_driver import PooledConnection

    _install(PooledConnection, PooledConnection)
elif WAY == "driver":
    from pool.pymysql_driver import PooledConnection, PyMySQLDriver
    from pool.settings import PoolConfig

    # The pool's own defaults, with reset="tracked" so the driver asks for session tracking as that mode does.
    _CONFIG = PoolConfig(reset="tracked")
    _AUTOCOMMIT_OFF = os.environ.get("PYMYSQL_CONFORMANCE_DRIVER_AUTOCOMMIT") == "off"

    def _driver_connect(*args: Any, **kwargs: Any) -> PooledConnection:
        if args:  # PyMySQL's Connection takes keywords only; keep its error
            return PooledConnection(*args, **kwargs)
        if _AUTOCOMMIT_OFF:
            kwargs.setdefault("autocommit", False)
        driver = PyMySQLDriver.for_config(kwargs, _CONFIG)
        if kwargs.get("defer_connect"):
            # The driver never hands out an unconnected connection; the closest is its arguments (the kit's
            # defaults), with init_command and sql_mode left to PyMySQL since no driver.connect() will send them.
            deferred = dict(driver.connect_kwargs)
            for name in ("init_command", "sql_mode"):
                if name in kwargs:
                    deferred[name] = kwargs[name]
            return PooledConnection(**deferred)
        return driver.connect()

    _install(_driver_connect, PooledConnection)
elif WAY != "plain":
    raise RuntimeError(f"unknown PYMYSQL_CONFORMANCE_WAY {WAY!r}")


class _TestTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _TestTimeout(f"the test took longer than {TEST_TIMEOUT} s (stopped by the conformance job)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


_outcomes: dict[str, dict[str, str]] = {}
_collect_errors: dict[str, str] = {}


def _first_line(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        return str(longrepr[2]).strip().splitlines()[0] if str(longrepr[2]).strip() else ""
    crash = getattr(longrepr, "reprcrash", None)
    message = getattr(crash, "message", None) if crash is not None else None
    text = str(message if message else longrepr or "").strip()
    return text.splitlines()[0][:300] if text else ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # One outcome per test: a failing setup or teardown is an error (as pytest counts it), else the call's outcome.
    entry = _outcomes.setdefault(report.nodeid, {"outcome": "passed", "message": ""})
    if report.when == "call":
        if report.failed:
            entry.update(outcome="failed", message=_first_line(report))
        elif report.skipped:
            xfail = hasattr(report, "wasxfail")
            entry.update(outcome="xfailed" if xfail else "skipped", message=_first_line(report))
        elif hasattr(report, "wasxfail"):
            entry.update(outcome="xpassed")
    elif report.failed:
        if entry["outcome"] != "error":
            entry.update(outcome="error", message=f"{report.when}: {_first_line(report)}")
    elif report.skipped and report.when == "setup":
        entry.update(outcome="skipped", message=_first_line(report))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _collect_errors[report.nodeid] = _first_line(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "way": WAY,
        "pymysql": pymysql.VERSION_STRING,
        "connection_class": f"{pymysql.connections.Connection.__module__}.{pymysql.connections.Connection.__name__}",
        "original_class": f"{_ORIGINAL.__module__}.{_ORIGINAL.__name__}",
        "exitstatus": int(exitstatus),
        "tests": _outcomes,
        "collect_errors": _collect_errors,
    }
    RESULTS.write_text(json.dumps(data, indent=1, sort_keys=True))
