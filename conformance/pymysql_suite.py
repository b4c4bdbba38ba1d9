"""PyMySQL's own test suite on the kit's connection (issue 17): does `PooledConnection` still behave as PyMySQL's
`Connection` does, on the oldest and the newest supported PyMySQL?

For each PyMySQL version (the newest, installed in .venv; the oldest, pyproject's lower bound, in a throwaway venv
under .cache/conformance/pymysql/) PyMySQL's suite runs three ways, each against a private MariaDB started for
it:

- plain:    PyMySQL as it is;
- subclass: every connection the tests open is a `PooledConnection` built from the test's own arguments;
- driver:   every connection is built by `PyMySQLDriver` with the pool's defaults (autocommit on, utf8mb4, timeouts,
            session tracking as reset="tracked" asks for it) and its set-up round trip.

A test that passes plain must pass the other two ways. A regression not in conformance/pymysql_allowlist.txt fails
the job (exit 1). Nothing of PyMySQL is kept in the repository: its clone, the test trees, venvs and results live in
.cache/conformance/pymysql/ (git-ignored).

Where the tests come from (PyMySQL's sdists ship none since 1.1): PyMySQL's git repository at PYMYSQL_COMMIT, the
commit the recorded results come from, for every version tested. The repository is --pymysql-git or $PYMYSQL_GIT when
given; else a clone in the cache, made from ../shared/thirdparty/pymysql.bundle beside the project, or, where that is
absent (a user's machine), from PyMySQL's public repository. When neither can be cloned the suite is skipped, saying
why (exit 0), or with CI=true fails (exit 2): a suite that cannot run is no gate.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

from harness.mariadb import ROOT_PASSWORD, PrivateMariaDB

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
# Beside the other conformance jobs' folders, never in them.
CACHE = ROOT / ".cache" / "conformance" / "pymysql"
ALLOWLIST = HERE / "pymysql_allowlist.txt"
WAYS = ("plain", "subclass", "driver")
PASSING = ("passed", "xpassed")


@dataclass
class Version:
    version: str
    python: Path
    # Extra sys.path entries for the test run (PyNaCl for the ed25519 test, outside the project's venv).
    extra_path: list[Path] = field(default_factory=list)


def log(message: str) -> None:
    print(message, flush=True)


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, capture_output=True)


def oldest_supported() -> str:
    found = re.search(r'"PyMySQL>=([0-9.]+)', (ROOT / "pyproject.toml").read_text())
    if not found:
        raise SystemExit("pymysql_suite: no PyMySQL lower bound in pyproject.toml")
    return found.group(1)


def _pip_quiet(python: Path, *args: str) -> None:
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
                            check=False, text=True, capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"pymysql_suite: pip install {' '.join(args)} failed:\n{result.stderr[-2000:]}")


def newest_version() -> Version:
    python = ROOT / ".venv" / "bin" / "python"
    version = run([str(python), "-c", "import pymysql; print(pymysql.VERSION_STRING)"]).stdout.strip()
    tag = run([str(python), "-c", "import sys; print(f'py{sys.version_info[0]}{sys.version_info[1]}')"]).stdout.strip()
    # PyMySQL's CI installs PyNaCl (ed25519 auth); put it beside .venv rather than into it.
    extras = CACHE / f"extras-{tag}"
    if not (extras / "nacl").is_dir():
        log(f"installing PyNaCl into {extras.relative_to(ROOT)} (PyMySQL's ed25519 test needs it)")
        _pip_quiet(python, "--target", str(extras), "PyNaCl")
    return Version(version, python, [extras])


def oldest_version(version: str) -> Version:
    venv = CACHE / f"venv-pymysql-{version}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists():
        log(f"creating {venv.relative_to(ROOT)} (PyMySQL {version}, pytest, PyNaCl)")
        shutil.rmtree(venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(venv)])
        _pip_quiet(python, "pytest>=8", f"PyMySQL=={version}", "PyNaCl")
        stamp.touch()
    return Version(version, python)


# -- PyMySQL's tests ------------------------------------------------------------------------------------------------

# PyMySQL's sdists ship no tests since 1.1 (only a MySQL 8 auth test hard-wired to port 3306), so they come from its git
# repository, at this commit for every version tested: the figures in README's Compatibility section were recorded on
# it, and a new upstream commit changes the verdict only through a change to this line. It is the main branch of
# ../shared/thirdparty/pymysql.bundle (VERSION 1.2.0, Aug 2026).
PYMYSQL_COMMIT = "0305ab344f2026aaa17b405684a521b092a650bd"
# Beside the project's folder on developer machines and CI (machines that reach no git host); absent on a user's.
BUNDLE = ROOT.parent / "shared" / "thirdparty" / "pymysql.bundle"
UPSTREAM = "https://github.com/PyMySQL/PyMySQL.git"
CLONE_TIMEOUT = 300.0


class Unavailable(Exception):
    """PyMySQL's tests cannot be had on this machine; the message says what was tried."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _git(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    # Never a prompt for credentials: a clone that cannot go ahead alone must fail, not wait.
    return subprocess.run(["git", *args], check=False, text=True, capture_output=True, timeout=timeout,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})


def _has_commit(git: Path, commit: str) -> bool:
    return git.is_dir() and _git("-C", str(git), "cat-file", "-e", f"{commit}^{{commit}}").returncode == 0


def pymysql_repository(given: Path | None, clone: Path, bundle: Path = BUNDLE,
                       upstream: str = UPSTREAM) -> tuple[Path, str]:
    """A git repository of PyMySQL holding PYMYSQL_COMMIT, and where it came from: `given` (PYMYSQL_GIT), else
    `clone` (made from `bundle`, else from `upstream`, with PYMYSQL_COMMIT checked out). Raises Unavailable when
    neither source gives one; a `given` repository without the commit is a set-up error (SystemExit)."""
    if given is not None:
        if not _has_commit(given, PYMYSQL_COMMIT):
            raise SystemExit(f"pymysql_suite: PYMYSQL_GIT={given} holds no commit {PYMYSQL_COMMIT} (the one the "
                             f"results are recorded on): fetch PyMySQL's main into it, or unset PYMYSQL_GIT")
        return given, f"{given} (PYMYSQL_GIT)"
    if not _has_commit(clone, PYMYSQL_COMMIT):
        tried = []
        sources = [str(bundle)] if bundle.exists() else []
        if not sources:
            tried.append(f"no bundle at {bundle}")
        for source in [*sources, upstream]:
            shutil.rmtree(clone, ignore_errors=True)
            clone.parent.mkdir(parents=True, exist_ok=True)
            log(f"cloning PyMySQL's repository from {source}")
            try:
                result = _git("clone", "-q", "-b", "main", source, str(clone), timeout=CLONE_TIMEOUT)
                # git's first line names the cause; the advice after it is generic.
                why = (result.stderr.strip().splitlines() or [f"git exit {result.returncode}"])[0]
            except subprocess.TimeoutExpired:
                result, why = None, f"no answer in {CLONE_TIMEOUT:.0f} s"
            if result is not None and result.returncode == 0 and _has_commit(clone, PYMYSQL_COMMIT):
                break
            if result is not None and result.returncode == 0:
                why = f"its main holds no commit {PYMYSQL_COMMIT}"
            tried.append(f"cloning {source} failed: {why}")
            shutil.rmtree(clone, ignore_errors=True)
        else:
            raise Unavailable("; ".join(tried))
    checkout = _git("-C", str(clone), "checkout", "-q", "--detach", PYMYSQL_COMMIT)
    if checkout.returncode != 0:
        raise SystemExit(f"pymysql_suite: cannot check out {PYMYSQL_COMMIT} in {clone}: {checkout.stderr.strip()}")
    origin = _git("-C", str(clone), "remote", "get-url", "origin").stdout.strip()
    return clone, f"a clone of {origin or 'PyMySQL'} in {_shown(clone)}"


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def unpack_tests(git: Path, commit: str) -> Path:
    """A folder with PyMySQL's `pymysql/tests` (and its `ci/` set-up SQL) at `commit`, in the cache."""
    tree = CACHE / f"tests-{commit[:12]}"
    source_note = tree / "SOURCE"
    if source_note.exists() and (tree / "pymysql" / "tests" / "base.py").exists():
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive_bytes = subprocess.run(["git", "-C", str(git), "archive", commit, "pymysql/tests", "ci"],
                                   check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive_bytes, check=True)
    # pytest names the test modules pymysql.tests.* only if pymysql/ looks like a package; the plugin has imported the
    # installed PyMySQL before, so this file is never executed (and refuses to be).
    (tree / "pymysql" / "__init__.py").write_text(
        'raise ImportError("conformance tree: only pymysql/tests belongs here; the installed PyMySQL is tested")\n')
    (tree / "pytest.ini").write_text("[pytest]\n")
    source_note.write_text(f"commit {commit}\n")
    return tree


def tests_version(git: Path, commit: str) -> str:
    """PyMySQL's VERSION_STRING at `commit` (the tests' own version, which the installed one may differ from)."""
    found = re.search(r'VERSION_STRING = "([0-9.]+)"', run(["git", "-C", str(git), "show",
                                                            f"{commit}:pymysql/__init__.py"]).stdout)
    return found.group(1) if found else "?"


# -- the server -----------------------------------------------------------------------------------------------------


def _run_sql_file(server: PrivateMariaDB, path: Path) -> None:
    # As PyMySQL's CI does with `mysql --comments < file`: statement by statement, executable comments included. A
    # comment for the other server (MySQL's /*!80001 ...*/ on MariaDB) leaves an empty query, which the client skips.
    if not path.exists():
        return
    conn = pymysql.connect(unix_socket=server.socket_path, user="root", password=ROOT_PASSWORD, autocommit=True,
                           ssl_disabled=True)
    try:
        with conn.cursor() as cur:
            for statement in re.split(r";[ \t]*$", path.read_text(), flags=re.MULTILINE):
                if not statement.strip():
                    continue
                try:
                    cur.execute(statement)
                except pymysql.err.ProgrammingError as exc:
                    if exc.args[0] != 1065:  # ER_EMPTY_QUERY
                        raise
    finally:
        conn.close()


def start_server(tree: Path) -> tuple[PrivateMariaDB, list[dict[str, object]]]:
    """A private server set up as PyMySQL's CI sets up its container, and the databases.json its tests read."""
    server = PrivateMariaDB().start()
    try:
        server.query("SET GLOBAL local_infile = ON")
        init = tree / "ci" / "docker-entrypoint-initdb.d"
        for name in ("init.sql", "mysql.sql", "mariadb.sql"):
            _run_sql_file(server, init / name)
    except BaseException:
        server.destroy()  # a set-up that fails must not leave the server running
        raise
    # ci/docker.json with our port and socket. root@127.0.0.1 without a password is what mariadb-install-db creates,
    # as in PyMySQL's CI container.
    databases: list[dict[str, object]] = [
        {"host": "127.0.0.1", "port": server.port, "user": "root", "password": "", "database": "test1",
         "use_unicode": True, "local_infile": True},
        {"host": "127.0.0.1", "port": server.port, "user": "test2", "password": "some password", "database": "test2"},
        {"host": "localhost", "port": server.port, "user": "test2", "password": "some password", "database": "test2",
         "unix_socket": server.socket_path},
    ]
    return server, databases


# -- running and comparing ------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    way: str
    version: str
    seconds: float
    tests: dict[str, dict[str, str]]
    collect_errors: dict[str, str]
    exitstatus: int
    connection_class: str

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.tests.values() if t["outcome"] == outcome)


def run_way(v: Version, tree: Path, way: str, results_dir: Path, timeout: float, pytest_args: list[str],
            kit: Path, label: str = "", extra_env: dict[str, str] | None = None) -> Outcome:
    server, databases = start_server(tree)
    started = time.monotonic()
    try:
        (tree / "pymysql" / "tests" / "databases.json").write_text(json.dumps(databases, indent=1))
        name = f"{v.version}-{label or way}"
        results = results_dir / f"{name}.json"
        results.unlink(missing_ok=True)
        env = dict(os.environ)
        env.update(
            PYMYSQL_CONFORMANCE_WAY=way,
            PYMYSQL_CONFORMANCE_TREE=str(tree),
            PYMYSQL_CONFORMANCE_VERSION=v.version,
            PYMYSQL_CONFORMANCE_RESULTS=str(results),
            PYTHONPATH=os.pathsep.join([str(HERE), str(kit), *map(str, v.extra_path)]),
            PYTHONDONTWRITEBYTECODE="1",
            **(extra_env or {}),
        )
        env.pop("PYTEST_ADDOPTS", None)
        cmd = [str(v.python), "-m", "pytest", "-c", str(tree / "pytest.ini"), "--rootdir", str(tree),
               "-p", "pymysql_plugin", "-p", "no:cacheprovider", "-q", "-rN", "--tb=short", "-W", "ignore",
               *pytest_args, str(tree / "pymysql" / "tests")]
        log_path = results_dir / f"{name}.log"
        with log_path.open("w") as out:
            try:
                subprocess.run(cmd, check=False, cwd=results_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
                               timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"  {name}: pytest still running after {timeout:.0f} s: stopped (results so far are lost)")
        if not results.exists():
            tail = log_path.read_text(errors="replace")[-3000:]
            raise SystemExit(f"pymysql_suite: PyMySQL {v.version} {label or way}: no results written; "
                             f"pytest said:\n{tail}")
        data = json.loads(results.read_text())
    finally:
        seconds = time.monotonic() - started
        server.destroy()
    return Outcome(way, v.version, seconds, data["tests"], data["collect_errors"], data["exitstatus"],
                   data["connection_class"])


def read_allowlist(path: Path) -> dict[tuple[str, str], str]:
    """`<way> <test id> <reason>` per line (way: subclass, driver or *); # starts a comment line."""
    entries: dict[tuple[str, str], str] = {}
    for number, line in enumerate(path.read_text().splitlines() if path.exists() else [], 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3 or parts[0] not in ("subclass", "driver", "*"):
            raise SystemExit(f"{path}:{number}: expected '<subclass|driver|*> <test id> <reason>', got {line!r}")
        entries[(parts[0], parts[1])] = parts[2]
    return entries


def _missing_reason(test_id: str, other: Outcome) -> str:
    module = test_id.split("::", 1)[0]
    for where, message in other.collect_errors.items():
        if module.startswith(where) or where.startswith(module):
            return f"not run: collecting {where} failed: {message}"
    return "not run"


@dataclass
class Finding:
    test_id: str
    outcome: str  # on the way compared with plain: failed, error, skipped, missing, ...
    message: str  # its first error line
    allowed: str = ""  # the allowlist's reason
    note: str = ""  # what the autocommit-off rerun of the driver way said


def compare(plain: Outcome, other: Outcome, allow: dict[tuple[str, str], str]) -> tuple[list[Finding], list[Finding]]:
    """(tests that pass plain and not on `other`, tests that fail both ways but with another first error line)."""
    lost: list[Finding] = []
    changed: list[Finding] = []
    for test_id, result in sorted(plain.tests.items()):
        theirs = other.tests.get(test_id)
        if result["outcome"] not in PASSING:
            # Not held to passing, but a different failure may hide a regression behind PyMySQL's own one.
            if (result["outcome"] in ("failed", "error") and theirs is not None
                    and theirs["outcome"] in ("failed", "error") and theirs["message"] != result["message"]):
                message = f"{theirs['message']}  (plain: {result['message']})"
                changed.append(Finding(test_id, theirs["outcome"], message))
            continue
        if theirs is not None and theirs["outcome"] in PASSING:
            continue
        outcome = theirs["outcome"] if theirs else "missing"
        message = theirs["message"] if theirs else _missing_reason(test_id, other)
        reason = allow.get((other.way, test_id)) or allow.get(("*", test_id)) or ""
        lost.append(Finding(test_id, outcome, message, allowed=reason))
    return lost, changed


def summary_line(o: Outcome) -> str:
    extra = "".join(f", {o.count(k)} {k}" for k in ("xfailed", "xpassed") if o.count(k))
    collect = f", {len(o.collect_errors)} collection errors" if o.collect_errors else ""
    return (f"{o.count('passed')} passed, {o.count('failed')} failed, {o.count('error')} errors, "
            f"{o.count('skipped')} skipped{extra}{collect} in {o.seconds:.1f} s")


def kit_fingerprint(kit: Path) -> str:
    path = kit / "pool" / "pymysql_driver.py"
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:12]
    git = subprocess.run(["git", "-C", str(kit), "rev-parse", "--short", "HEAD"], check=False, text=True,
                         capture_output=True)
    if git.returncode != 0:
        return f"{path} sha1 {digest}"
    diff = subprocess.run(["git", "-C", str(kit), "diff", "--quiet", "HEAD", "--", str(path)], check=False)
    dirty = diff.returncode != 0
    return f"{path} sha1 {digest} ({'uncommitted changes on ' if dirty else 'as in '}{git.stdout.strip()})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--versions", default="newest,oldest",
                        help="comma-separated: newest (PyMySQL in .venv), oldest (pyproject's lower bound)")
    parser.add_argument("--ways", default=",".join(WAYS), help="comma-separated subset of " + ", ".join(WAYS))
    parser.add_argument("--pymysql-git", type=Path, default=os.environ.get("PYMYSQL_GIT") or None,
                        help="a git repository of PyMySQL holding PYMYSQL_COMMIT ($PYMYSQL_GIT; default: clone one)")
    parser.add_argument("--bundle", type=Path, default=BUNDLE, help="the git bundle to clone PyMySQL from")
    parser.add_argument("--upstream", default=UPSTREAM, help="where to clone PyMySQL from without the bundle")
    parser.add_argument("--clone-dir", type=Path, default=CACHE / "repo", help="where the clone goes")
    parser.add_argument("--kit", type=Path, default=ROOT,
                        help="the kit whose pool/ is tested (default this checkout; e.g. a `git archive` of a commit)")
    parser.add_argument("--allowlist", type=Path, default=ALLOWLIST)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds one pytest run may take")
    parser.add_argument("--test-timeout", type=int, default=120, help="seconds one test may take")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest after --, e.g. -- -k nextset")
    args = parser.parse_args(argv)
    ways = [w for w in args.ways.split(",") if w]
    if not ways or any(w not in WAYS for w in ways):
        parser.error(f"--ways: choose from {', '.join(WAYS)}")
    if "plain" not in ways:
        ways.insert(0, "plain")  # the reference every other way is held to
    kit = args.kit.resolve()
    allow = read_allowlist(args.allowlist)
    os.environ["PYMYSQL_CONFORMANCE_TEST_TIMEOUT"] = str(args.test_timeout)

    started = time.monotonic()
    log(f"PyMySQL conformance of the kit's connection: {kit_fingerprint(kit)}")
    # The tests first: without them nothing else is worth installing or starting.
    try:
        git, origin = pymysql_repository(args.pymysql_git, args.clone_dir, args.bundle, args.upstream)
    except Unavailable as exc:
        if in_ci():
            log(f"FAILED: PyMySQL's own suite cannot run: {exc} (CI=true: a suite that cannot run fails the run)")
            return 2
        log(f"PyMySQL's own suite: SKIPPED, it cannot run on this machine: {exc}")
        return 0
    log(f"PyMySQL's tests: commit {PYMYSQL_COMMIT} (VERSION {tests_version(git, PYMYSQL_COMMIT)}; pinned in "
        f"conformance/pymysql_suite.py), from {origin}")
    tree = unpack_tests(git, PYMYSQL_COMMIT)
    CACHE.mkdir(parents=True, exist_ok=True)
    results_dir = CACHE / "results"
    results_dir.mkdir(exist_ok=True)
    versions: list[Version] = []
    for which in args.versions.split(","):
        if which == "newest":
            versions.append(newest_version())
        elif which == "oldest":
            versions.append(oldest_version(oldest_supported()))
        else:
            parser.error(f"--versions: unknown {which!r}")

    failed = False
    report: list[str] = []
    used_allowances: set[tuple[str, str]] = set()
    for v in versions:
        outcomes: dict[str, Outcome] = {}
        for way in ways:
            log(f"PyMySQL {v.version}, {way}: running")
            outcomes[way] = run_way(v, tree, way, results_dir, args.timeout, args.pytest_args, kit)
            log(f"PyMySQL {v.version}, {way}: {summary_line(outcomes[way])}  "
                f"[connections: {outcomes[way].connection_class}]")
        plain = outcomes["plain"]
        if not plain.tests or plain.count("passed") == 0:
            report.append(f"PyMySQL {v.version}: no test passed plain; nothing to compare")
            failed = True
            continue
        for way in ways[1:]:
            lost, changed = compare(plain, outcomes[way], allow)
            if way == "driver" and lost:
                # Which of them are only the kit's autocommit default? The whole suite again with autocommit off:
                # some failures depend on what earlier tests left behind (a process-wide cache), so not just these.
                log(f"PyMySQL {v.version}, driver with PyMySQL's autocommit default (off): running, to tell which of "
                    f"{len(lost)} failures are the kit's autocommit default")
                rerun = run_way(v, tree, way, results_dir, args.timeout, args.pytest_args, kit, "driver-autocommit-off",
                                {"PYMYSQL_CONFORMANCE_DRIVER_AUTOCOMMIT": "off"})
                log(f"PyMySQL {v.version}, driver, autocommit off: {summary_line(rerun)}")
                for finding in lost:
                    again = rerun.tests.get(finding.test_id, {}).get("outcome")
                    finding.note = ("passes with the driver's autocommit off" if again in PASSING
                                    else "fails with autocommit off too")
            for f in lost:
                if f.allowed.startswith("autocommit:") and not f.note.startswith("passes"):
                    f.message += "  [allowlisted as the kit's autocommit default, but it fails with autocommit off too]"
                    f.allowed = ""
            regressions = [f for f in lost if not f.allowed]
            report.append(f"PyMySQL {v.version}, {way}: {len(regressions)} regressions, {len(lost) - len(regressions)}"
                          f" allowed (of {sum(1 for t in plain.tests.values() if t['outcome'] in PASSING)} that pass "
                          f"plain)")
            for f in lost:
                used_allowances.update(k for k in ((way, f.test_id), ("*", f.test_id)) if k in allow)
                kind = "allowed   " if f.allowed else "REGRESSION"
                note = f" ({f.note})" if f.note else ""
                allowed = f"  [allowlist: {f.allowed}]" if f.allowed else ""
                report.append(f"  {kind} {f.test_id} [{f.outcome}]: {f.message}{note}{allowed}")
            for f in changed:
                report.append(f"  fails differently (fails plain too, not counted) {f.test_id} [{f.outcome}]: "
                              f"{f.message}")
            failed = failed or bool(regressions)
    for way, test_id in sorted(set(allow) - used_allowances):
        report.append(f"allowlist entry not needed in this run: {way} {test_id}")

    log("")
    for line in report:
        log(line)
    elapsed = time.monotonic() - started
    names = ", ".join(v.version for v in versions) + f"; tests of PyMySQL {PYMYSQL_COMMIT[:12]}"
    if failed:
        log(f"FAILED: PyMySQL's own suite regresses on the kit's connection (PyMySQL {names}; {elapsed:.0f} s)")
        return 1
    log(f"OK: every test that passes on plain PyMySQL passes on the kit's connection (PyMySQL {names}; "
        f"{elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit as exc:
        if isinstance(exc.code, str):  # could not set up (no tests, no venv): 2, not the regression verdict's 1
            print(exc.code, file=sys.stderr)
            sys.exit(2)
        raise
