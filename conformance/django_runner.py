"""A DiscoverRunner that records every test's outcome, one JSON line each, for a per-test comparison.

Runs inside Django's own runtests.py (as settings.TEST_RUNNER). Lines are appended and flushed as tests finish, so a
run cut short (the server crashed, a hang was killed) still tells what ran; a final "end" line marks a complete run.
The file is CONFORMANCE_RESULTS from the environment.
"""

from __future__ import annotations

import json
import os
import re
import time
import traceback
import unittest
from typing import Any

from django.test.runner import DiscoverRunner, ParallelTestSuite, RemoteTestResult, RemoteTestRunner

# unittest reports a failed setUpClass/setUpModule as a pseudo-test described "setUpClass (module.Class)".
_HOLDER = re.compile(r"^(\w+) \((.+)\)$")
_DETAIL_CHARS = 4000
_STARTED = time.monotonic()


def _test_id(test: unittest.TestCase) -> str:
    test_id = test.id()
    match = _HOLDER.match(test_id)
    # One token, so the allowlist's "id reason" lines need no quoting.
    return f"{match.group(2)}.{match.group(1)}" if match else test_id


def _write(record: dict[str, Any]) -> None:
    # Opened per record: nothing is lost when the process dies, and no file is left open for ResourceWarning.
    with open(os.environ["CONFORMANCE_RESULTS"], "a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")


class RemoteError(Exception):
    """A parallel worker's error as its formatted traceback: tracebacks pickle only with tblib, and text is enough."""


class RemoteFailure(RemoteError, AssertionError):
    """A worker's failed assertion (an AssertionError still, so failures and errors stay apart)."""


def _format(err: Any) -> str:
    return "".join(traceback.format_exception(err[0], err[1], err[2]))


def _is_failure(test: unittest.TestCase, err: Any) -> bool:
    # unittest's stand-in for a failed setUpClass has failureException None.
    failure = getattr(test, "failureException", None)
    return isinstance(failure, type) and issubclass(err[0], failure)


class _TextRemoteResult(RemoteTestResult):
    def _as_text(self, test: unittest.TestCase, err: Any) -> Any:
        carrier = RemoteFailure if _is_failure(test, err) else RemoteError
        return carrier, carrier(_format(err)), None

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, self._as_text(test, err))

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, self._as_text(test, err))

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: Any) -> None:
        super().addSubTest(test, subtest, None if err is None else self._as_text(test, err))


class _TextRemoteRunner(RemoteTestRunner):
    resultclass = _TextRemoteResult


class _TextParallelSuite(ParallelTestSuite):
    runner_class = _TextRemoteRunner


class RecordingResult(unittest.TextTestResult):
    """TextTestResult that also writes {"id", "outcome", "detail"} per test (and per failed subtest)."""

    def _record(self, test: unittest.TestCase, outcome: str, detail: str = "") -> None:
        # "t": when it ended, seconds into the run, for where the time goes.
        record: dict[str, Any] = {"id": _test_id(test), "outcome": outcome, "t": round(time.monotonic() - _STARTED, 3)}
        if detail:
            # The end of a traceback holds the exception; keep that when trimming.
            record["detail"] = detail[-_DETAIL_CHARS:]
        _write(record)

    def _trace(self, err: Any) -> str:
        if isinstance(err[1], RemoteError):
            return str(err[1])
        try:
            return _format(err)
        except Exception as exc:  # noqa: BLE001 - the record matters more than the formatting
            return f"{err[0]!r}: {err[1]!r} (traceback not formatted: {exc!r})"

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._record(test, "pass")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, "fail", self._trace(err))

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self._record(test, "error", self._trace(err))

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, "skip", reason)

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, "xfail")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "xpass")

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            # A failed subtest fails its test (unittest then never calls addSuccess for it).
            outcome = "fail" if _is_failure(test, err) else "error"
            self._record(test, outcome, f"subtest {subtest.id()}:\n{self._trace(err)}")


class RecordingRunner(DiscoverRunner):
    """DiscoverRunner whose result records each outcome; the run's end is recorded too."""

    parallel_test_suite = _TextParallelSuite

    def get_resultclass(self) -> type[unittest.TextTestResult] | None:
        return RecordingResult

    def setup_databases(self, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return super().setup_databases(**kwargs)
        finally:
            _write({"phase": "setup_databases", "seconds": round(time.monotonic() - started, 3)})

    def run_suite(self, suite: unittest.TestSuite, **kwargs: Any) -> unittest.TestResult:
        started = time.monotonic()
        result: unittest.TestResult = super().run_suite(suite, **kwargs)
        _write({"end": True, "tests_run": result.testsRun, "seconds": time.monotonic() - started})
        return result
