"""Where PyMySQL's own suite gets its tests (issue 28): the pinned commit, from the bundle beside the project, else
PyMySQL's repository; a suite that cannot get them is skipped with the reason, or fails the run under CI=true.
No server and no PyMySQL test run here: scripts/conformance-pymysql is the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.pymysql_suite import BUNDLE, PYMYSQL_COMMIT, pymysql_repository
from harness.tools import ROOT


def suite(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", "PYMYSQL_GIT")}
    return subprocess.run(
        [sys.executable, "conformance/pymysql_suite.py", "--bundle", str(tmp_path / "no.bundle"),
         "--upstream", (tmp_path / "no-upstream").as_uri(), "--clone-dir", str(tmp_path / "clone"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**environ, "PYTHONPATH": str(ROOT), **env})


def test_without_the_bundle_or_pymysqls_repository_the_suite_is_skipped_saying_why(tmp_path: Path) -> None:
    out = suite(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PyMySQL's own suite: SKIPPED" in out.stdout
    assert f"no bundle at {tmp_path / 'no.bundle'}" in out.stdout and "no-upstream failed" in out.stdout, out.stdout


def test_under_ci_a_suite_that_cannot_get_its_tests_fails_the_run(tmp_path: Path) -> None:
    out = suite(tmp_path, CI="true")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "FAILED: PyMySQL's own suite cannot run" in out.stdout and "SKIPPED" not in out.stdout, out.stdout


def test_a_given_clone_without_the_pinned_commit_is_refused_by_name(tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    subprocess.run(["git", "-C", str(other), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "not PyMySQL"], check=True)
    out = suite(tmp_path, PYMYSQL_GIT=str(other))
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"PYMYSQL_GIT={other} holds no commit {PYMYSQL_COMMIT}" in out.stderr, out.stderr


def test_the_tests_come_from_the_bundle_at_the_pinned_commit(tmp_path: Path) -> None:
    if not BUNDLE.exists():
        pytest.skip(f"no bundle at {BUNDLE} (a user's machine: the suite clones PyMySQL's repository instead)")
    clone, origin = pymysql_repository(None, tmp_path / "clone", BUNDLE, (tmp_path / "no-upstream").as_uri())
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], check=True, text=True,
                          capture_output=True).stdout.strip()
    assert head == PYMYSQL_COMMIT
    assert str(BUNDLE) in origin
    assert (clone / "pymysql" / "tests" / "base.py").exists()
