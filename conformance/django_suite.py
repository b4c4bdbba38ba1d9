"""Django's own test suite, database-facing modules, on the stock MySQL backend and on pool.django, compared per test.

    python -m conformance.django_suite --python .venv/bin/python [--python .venv-django6/bin/python]

For each Python (so each installed Django version): the tests come from that version's sdist (cached, git-ignored,
under .cache/conformance/), then runtests.py runs once on `django.db.backends.mysql` (PyMySQL as MySQLdb, the same
driver the engine uses) and once per engine backend of `ENGINE: "pool.django"` (each reset mode, and `transaction`:
lease="transaction"), all on one private MariaDB. A test that passes on stock and fails, errors or does not run on
the engine fails the job (exit 1) unless conformance/django_allowlist.txt names it with a reason. A run the server
crashed is retried once and never blamed on the engine; a run that cannot be judged (the server crashed twice, the
stock run broke) exits 2.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "conformance"
ALLOWLIST = Path(__file__).resolve().parent / "django_allowlist.txt"

# The engine's backends: each reset mode under lease="request", and "transaction": reset="tracked" under
# lease="transaction", where the engine's connection takes a pool connection per statement or transaction.
BACKENDS = ("stock", "full", "tracked", "rollback", "transaction")
ENGINE_BACKENDS = BACKENDS[1:]

# The list: what talks to the database through the backend's connection, cursor and transaction code.
REQUIRED_MODULES = [
    "backends", "transactions", "select_for_update", "basic", "queries", "model_fields", "db_functions",
    "aggregation", "expressions", "update", "delete", "get_or_create", "bulk_create", "migrations", "schema",
    "introspection", "inspectdb", "test_utils", "timezones", "fixtures", "serializers",
]
# More connection, transaction and session paths: raw cursors, on_commit hooks, save paths, multi-db, sessions in the
# database, async ORM wrappers, the database cache (see db_cache_labels).
EXTRA_MODULES = [
    "raw_query", "custom_lookups", "model_regress", "force_insert_update", "save_delete_hooks", "signals", "db_utils",
    "transaction_hooks", "delete_regress", "aggregation_regress", "expressions_window", "lookup", "multiple_database",
    "sessions_tests", "async", "prefetch_related", "select_related", "custom_pk", "db_typecasts", "null_queries",
    "distinct_on_fields", "model_inheritance", "ordering", "update_only_fields",
]
# Run apart from the rest, in a runtests.py of their own: a TransactionTestCase flushes every table of the test
# database after each test, and these DDL-heavy modules are mostly TransactionTestCases, slowed down by the other
# modules' hundreds of tables (measured: the whole set 122 s in one runtests.py, 57 s in these two).
DDL_MODULES = {"migrations", "schema", "introspection", "inspectdb", "backends", "transactions"}

# What the runner names a failed setUpClass & co. (django_runner._test_id): stands for the tests it kept from running.
_CLASS_LEVEL = (".setUpClass", ".tearDownClass", ".setUpModule", ".tearDownModule")

GOOD = {"pass", "xfail"}
BAD = {"fail", "error", "xpass"}
# Worst first: a test recorded more than once (subtests) takes its worst outcome.
_RANK = {"error": 0, "fail": 1, "xpass": 2, "pass": 3, "xfail": 4, "skip": 5}


# -- the private server ----------------------------------------------------------------------------------------------


class Server:
    """One private MariaDB for every run: started once, restarted only after it died."""

    def __init__(self) -> None:
        sys.path.insert(0, str(REPO))
        from harness.mariadb import APP_PASSWORD, APP_USER, ROOT_PASSWORD, PrivateMariaDB

        self.user, self.password, self._root_password = APP_USER, APP_PASSWORD, ROOT_PASSWORD
        # tmpfs when there is one: the schema and migrations tests are mostly DDL, each one fsyncs on disk.
        shm = Path("/dev/shm")
        parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        self.basedir = Path(tempfile.mkdtemp(prefix="conformance-mariadb-", dir=parent))
        # Its own temporary folder, not the shared /tmp: a temporary table's file once vanished there under a test
        # (Errcode 2 deleting "/tmp/#sql-temptable-...MAI"), likely another process's clean-up. One shared
        # tablespace: creating and dropping a table is then no file of its own (-15 % on the DDL modules).
        (self.basedir / "tmp").mkdir()
        args = [f"--tmpdir={self.basedir / 'tmp'}", "--innodb-file-per-table=0",
                *os.environ.get("CONFORMANCE_SERVER_ARGS", "").split()]
        self.db = PrivateMariaDB(basedir=self.basedir, extra_args=args)
        self.notes: list[str] = []

    def start(self) -> None:
        self.db.start()
        self._load_time_zones()

    def _load_time_zones(self) -> None:
        # Without the server's time zone tables the suite's CONVERT_TZ tests fail on every backend alike.
        tzinfo = shutil.which("mariadb-tzinfo-to-sql") or shutil.which("mysql_tzinfo_to_sql")
        client = shutil.which("mariadb") or shutil.which("mysql")
        if not tzinfo or not client or not Path("/usr/share/zoneinfo").is_dir():
            self.notes.append("time zone tables not loaded (no mariadb-tzinfo-to-sql, client or zoneinfo)")
            return
        sql = subprocess.run([tzinfo, "/usr/share/zoneinfo"], capture_output=True, check=True).stdout
        env = {**os.environ, "MYSQL_PWD": self._root_password}
        subprocess.run([client, "--no-defaults", f"--socket={self.db.socket_path}", "-uroot", "mysql"], input=sql,
                       env=env, capture_output=True, check=True)

    @property
    def port(self) -> int:
        return self.db.port

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.db.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, AssertionError, IndexError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def alive(self) -> bool:
        return self.db.process is not None and self.db.process.poll() is None

    def death_note(self) -> str:
        code = self.db.process.returncode if self.db.process is not None else None
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with {code}"
        log = self.db.log_path.read_text(errors="replace") if self.db.log_path.exists() else ""
        # "261201 22:51:43 [ERROR] /usr/sbin/mariadbd got signal 11 ;": the words after the stamp.
        said = [re.sub(r"^[\d\s:-]*(\[\w+\]\s*)?", "", line).strip() for line in log.splitlines()
                if "got signal" in line or "Assertion" in line]
        return f"mariadbd {how}" + (f"; its log: {said[-1]}" if said else "")

    def restart(self) -> None:
        self.db.ensure_running()

    def destroy(self) -> None:
        self.db.stop()
        shutil.rmtree(self.basedir, ignore_errors=True)


# -- Django's tests --------------------------------------------------------------------------------------------------


def django_version(python: str) -> tuple[str, str]:
    out = subprocess.run(
        [python, "-c", "import django, platform; print(django.get_version(), platform.python_version())"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    return out[0], out[1]


def django_tests(python: str, version: str) -> Path:
    """The tests/ folder of Django `version`'s sdist, downloaded and unpacked once into the cache."""
    target = CACHE / f"django-{version}"
    found = sorted(target.glob("*/tests/runtests.py"))
    if found and (target / ".unpacked").exists():
        return found[0].parent
    sdists = CACHE / "django-sdist"
    sdists.mkdir(parents=True, exist_ok=True)
    archives = [p for p in sdists.glob("*.tar.gz") if p.name.lower() == f"django-{version}.tar.gz"]
    if not archives:
        subprocess.run([python, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
                        f"Django=={version}", "-d", str(sdists)], check=True)
        archives = [p for p in sdists.glob("*.tar.gz") if p.name.lower() == f"django-{version}.tar.gz"]
    if not archives:
        raise SystemExit(f"pip download gave no sdist for Django {version} in {sdists}")
    # Unpacked beside the target and renamed into place, so an interrupted unpack is never taken for a cached one.
    shutil.rmtree(target, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(prefix=f"django-{version}-", dir=CACHE))
    with tarfile.open(archives[0]) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(partial, filter="data")
        else:  # Python before 3.11.4; the archive is PyPI's own sdist
            archive.extractall(partial)
    (partial / ".unpacked").touch()
    partial.rename(target)
    found = sorted(target.glob("*/tests/runtests.py"))
    if not found:
        raise SystemExit(f"no tests/runtests.py in {archives[0]}")
    return found[0].parent


def available_modules(tests: Path, wanted: list[str]) -> tuple[list[str], list[str]]:
    present = [m for m in wanted if (tests / m.split(".")[0]).is_dir()]
    return present, [m for m in wanted if m not in present]


def db_cache_labels(tests: Path) -> list[str]:
    """The database cache's own tests: DBCacheTests' methods (its cursors, culling, createcachetable) and
    CreateCacheTableForDBCacheTests. Not the 170 generic cache tests it inherits: 13 s of their 19 s is sleeping on
    expiry, and the rest repeat what the database cache's own tests and the ORM modules cover."""
    source = tests / "cache" / "tests.py"
    if not source.exists():
        return []
    tree = ast.parse(source.read_text(encoding="utf-8"))
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    labels = []
    if "DBCacheTests" in classes:
        labels = [f"cache.tests.DBCacheTests.{f.name}" for f in classes["DBCacheTests"].body
                  if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")]
    if "CreateCacheTableForDBCacheTests" in classes:
        labels.append("cache.tests.CreateCacheTableForDBCacheTests")
    return labels


def module_groups(labels: list[str]) -> list[list[str]]:
    ddl = [m for m in labels if m.split(".")[0] in DDL_MODULES]
    rest = [m for m in labels if m.split(".")[0] not in DDL_MODULES]
    return [group for group in (ddl, rest) if group]


# -- one run ---------------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    outcome: str
    detail: str = ""


@dataclass
class Run:
    backend: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the suite's processes: with the server's and the wall time, where the time went
    server_cpu_seconds: float = 0.0
    complete: bool = False
    returncode: int | None = None
    server_died: str = ""  # why, when the server died during the run
    timed_out: bool = False
    retried: str = ""  # why the first attempt was thrown away
    log: Path | None = None

    def counts(self) -> Counter[str]:
        return Counter(o.outcome for o in self.outcomes.values())


def read_results(path: Path) -> tuple[dict[str, Outcome], int]:
    """The outcomes by test id, and how many runtests.py runs reached their end."""
    outcomes: dict[str, Outcome] = {}
    ends = 0
    if not path.exists():
        return outcomes, ends
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the last line of a killed run may be cut
            continue
        if record.get("end"):
            ends += 1
            continue
        if "phase" in record:
            continue
        new = Outcome(record["outcome"], record.get("detail", ""))
        old = outcomes.get(record["id"])
        if old is None or _RANK[new.outcome] < _RANK[old.outcome]:
            outcomes[record["id"]] = new
    return outcomes, ends


def run_once(python: str, tests: Path, modules: list[str], backend: str, server: Server, out: Path, parallel: int,
             timeout: float) -> Run:
    results, log = out / f"{backend}.jsonl", out / f"{backend}.log"
    results.unlink(missing_ok=True)
    # Only what the suite needs: a caller's DATABASE_URL or POOL_* must not change the run.
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOL_") and k not in {"DATABASE_URL",
                                                                                         "DJANGO_SETTINGS_MODULE"}}
    env.update({
        "PYTHONPATH": str(REPO),
        "CONFORMANCE_BACKEND": backend,
        "CONFORMANCE_PORT": str(server.port),
        "CONFORMANCE_USER": server.user,
        "CONFORMANCE_PASSWORD": server.password,
        "CONFORMANCE_RESULTS": str(results),
    })
    run = Run(backend, log=log)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu_before = server.cpu_seconds()
    started = time.monotonic()
    groups = module_groups(modules)
    returncodes = []
    with open(log, "wb") as log_file:
        for group in groups:
            cmd = [python, "runtests.py", "--settings=conformance.django_settings", f"--parallel={parallel}",
                   "--noinput", *group]
            log_file.write(f"$ {' '.join(cmd)}\n".encode())
            log_file.flush()
            proc = subprocess.Popen(cmd, cwd=tests, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            while proc.poll() is None:
                if not server.alive():
                    # Everything after this point would fail for the server's reason: stop now, retry elsewhere.
                    run.server_died = server.death_note()
                    break
                if time.monotonic() - started > timeout:
                    run.timed_out = True
                    break
                time.sleep(0.5)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            returncodes.append(proc.wait())
            if run.server_died or run.timed_out:
                break
    run.seconds = time.monotonic() - started
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.cpu_seconds = cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    run.server_cpu_seconds = server.cpu_seconds() - server_cpu_before
    if not run.server_died and not server.alive():
        run.server_died = server.death_note()
    run.outcomes, ends = read_results(results)
    run.complete = ends == len(groups)
    # runtests.py exits 1 when a test failed; the one furthest from 0 tells most.
    run.returncode = max(returncodes, default=None, key=abs)
    return run


def run_backend(python: str, tests: Path, modules: list[str], backend: str, server: Server, out: Path, parallel: int,
                timeout: float) -> Run:
    run = run_once(python, tests, modules, backend, server, out, parallel, timeout)
    if run.server_died:
        why = f"{run.server_died} after {run.seconds:.0f} s"
        print(f"    the server died during the {backend} run ({why}); restarting it and running {backend} again",
              flush=True)
        try:
            server.restart()
        except Exception as exc:  # noqa: BLE001 - reported as the run's verdict, never as the engine's failure
            run.server_died += f"; it did not come back: {exc}"
            return run
        run = run_once(python, tests, modules, backend, server, out, parallel, timeout)
        run.retried = why
        if run.server_died:
            try:
                server.restart()  # for the runs after this one
            except Exception as exc:  # noqa: BLE001
                run.server_died += f"; it did not come back: {exc}"
    return run


# -- the allowlist ---------------------------------------------------------------------------------------------------


@dataclass
class AllowEntry:
    test_id: str
    backends: frozenset[str]
    reason: str


class AllowlistError(Exception):
    """A malformed allowlist line: the job cannot say what is allowed."""


def read_allowlist(path: Path) -> list[AllowEntry]:
    """Lines `<test id>[@mode,mode] <reason>`; without @, every engine backend (the three reset modes and
    transaction). '#' starts a comment line."""
    entries: list[AllowEntry] = []
    if not path.exists():
        return entries
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) < 2 or not parts[1].strip():
            raise AllowlistError(f"{path}:{number}: {parts[0]!r} has no reason; each entry is '<test id> <reason>'")
        test_id, _, modes = parts[0].partition("@")
        backends = frozenset(modes.split(",")) if modes else frozenset(ENGINE_BACKENDS)
        if not backends <= set(ENGINE_BACKENDS):
            raise AllowlistError(f"{path}:{number}: unknown mode in {parts[0]!r}; modes are "
                                 f"{', '.join(ENGINE_BACKENDS)}")
        entries.append(AllowEntry(test_id, backends, parts[1].strip()))
    return entries


def allowed(entries: list[AllowEntry], test_id: str, backend: str) -> AllowEntry | None:
    return next((e for e in entries if e.test_id == test_id and backend in e.backends), None)


# -- comparison and report -------------------------------------------------------------------------------------------


_FRAME = re.compile(r'^  File "(.+)", line (\d+), in (.+)$')


def first_lines(detail: str, tests: Path, width: int = 150) -> list[str]:
    """The exception's own line(s) and where it was raised: what a reader needs to see the failure."""
    lines = detail.rstrip().splitlines()
    # unittest's own frames (assertEqual's internals) say nothing of the failure.
    frames = [i for i, line in enumerate(lines) if _FRAME.match(line) and "/unittest/" not in line]
    if not frames:
        return [line[:width] for line in lines[:2]]
    last = frames[-1]
    # After the last frame: source lines (indented), then the exception, possibly over several lines.
    exception = [line for line in lines[last + 1:] if not line.startswith("  ")][:2]
    match = _FRAME.match(lines[last])
    assert match is not None
    where = match.group(1)
    for root in (str(tests) + "/", str(tests.parent) + "/", str(REPO) + "/"):
        where = where.removeprefix(root)
    # Parallel workers' subtest ids carry their message sentinel's repr, "[<object object at 0x...>]".
    prefix = [re.sub(r" \[<object object at 0x[0-9a-f]+>\]", "", lines[0])[:width]] if lines[0].startswith("subtest ") \
        else []
    return prefix + [line[:width] for line in exception] + [f"at {where}:{match.group(2)} in {match.group(3)}"]


@dataclass
class Regression:
    test_id: str
    backend: str
    outcome: str
    detail: str
    allow: AllowEntry | None
    not_run: int = 0  # tests of the class that never ran because of this class-level error


def regressions(stock: Run, engine: Run, entries: list[AllowEntry]) -> list[Regression]:
    found: list[Regression] = []
    holders = {tid: o for tid, o in engine.outcomes.items()
               if tid.endswith(_CLASS_LEVEL) and tid not in stock.outcomes and o.outcome in BAD}
    not_run: Counter[str] = Counter()
    for test_id, base in stock.outcomes.items():
        if base.outcome not in GOOD:
            continue
        got = engine.outcomes.get(test_id)
        if got is None:
            # A failed setUpClass/setUpModule is recorded as "<class>.setUpClass": its tests are that one failure.
            holder = next((h for h in holders if test_id.startswith(h.rsplit(".", 1)[0] + ".")), None)
            if holder is not None:
                not_run[holder] += 1
                continue
            why = "did not run on the engine" + ("" if engine.complete else " (the run did not finish)")
            found.append(Regression(test_id, engine.backend, "not run", why, allowed(entries, test_id,
                                                                                      engine.backend)))
        elif got.outcome in BAD:
            found.append(Regression(test_id, engine.backend, got.outcome, got.detail,
                                    allowed(entries, test_id, engine.backend)))
    for holder, outcome in holders.items():
        found.append(Regression(holder, engine.backend, outcome.outcome, outcome.detail,
                                allowed(entries, holder, engine.backend), not_run[holder]))
    return found


@dataclass
class VersionReport:
    django: str
    python: str
    modules: list[str]
    runs: dict[str, Run]
    found: list[Regression]
    inconclusive: list[str]


def describe(run: Run) -> str:
    notes = []
    if run.retried:
        notes.append(f"retried: first attempt lost to the server ({run.retried})")
    if run.server_died:
        notes.append(f"SERVER DIED: {run.server_died}")
    if run.timed_out:
        notes.append("TIMED OUT")
    elif not run.complete and not run.server_died:
        notes.append(f"did not finish (exit {run.returncode}); see {run.log}")
    return "; ".join(notes)


def print_report(report: VersionReport, tests: Path) -> None:
    modules = len({label.split(".")[0] for label in report.modules})
    print(f"\n== Django {report.django} (Python {report.python}), {modules} modules ==")
    header = f"{'backend':<10} {'tests':>6} {'pass':>6} {'fail':>5} {'error':>5} {'skip':>5} {'xfail':>5} {'time':>7}"
    print(header)
    for backend, run in report.runs.items():
        c = run.counts()
        print(f"{backend:<10} {len(run.outcomes):>6} {c['pass']:>6} {c['fail'] + c['xpass']:>5} {c['error']:>5} "
              f"{c['skip']:>5} {c['xfail']:>5} {run.seconds:>6.0f}s  {describe(run)}".rstrip())
    engine_seconds = sum(run.seconds for backend, run in report.runs.items() if backend != "stock")
    stock_seconds = report.runs["stock"].seconds if "stock" in report.runs else 0.0
    print(f"{'total':<10} {'':>6} {'':>6} {'':>5} {'':>5} {'':>5} {'':>5} {stock_seconds + engine_seconds:>6.0f}s  "
          f"(stock {stock_seconds:.0f} s, engine modes {engine_seconds:.0f} s)")
    stock = report.runs.get("stock")
    by_id: dict[str, list[Regression]] = {}
    for r in report.found:
        by_id.setdefault(r.test_id, []).append(r)
    print(f"\npasses on stock, fails on the engine: {len(by_id)} test(s)"
          + (f" ({sum(1 for r in report.found if r.allow is None)} failure(s) not allowlisted)" if by_id else ""))
    # A run that broke off leaves every later test "not run": count those, name a few.
    not_run = {tid for tid, regs in by_id.items() if all(r.outcome == "not run" for r in regs)}
    if len(not_run) > 20:
        print(f"  {len(not_run)} test(s) did not run on the engine, among them: " + ", ".join(sorted(not_run)[:10]))
        by_id = {tid: regs for tid, regs in by_id.items() if tid not in not_run}
    for test_id, regs in sorted(by_id.items()):
        modes = ", ".join(f"{r.backend}: {r.outcome}{' (allowlisted)' if r.allow else ''}" for r in regs)
        reasons = sorted({r.allow.reason for r in regs if r.allow})
        reason = "; ".join(reasons)
        tag = f"  [allowlisted: {reason[:97] + '...' if len(reason) > 100 else reason}]" if reasons else ""
        extra = f" ({regs[0].not_run} tests of it did not run)" if regs[0].not_run else ""
        print(f"  {test_id}  ({modes}){extra}{tag}")
        shown: set[tuple[str, ...]] = set()
        for r in regs:
            lines = tuple(first_lines(r.detail, tests))
            if lines in shown:
                continue
            shown.add(lines)
            label = f"{r.backend}: " if len(regs) > 1 and len({tuple(first_lines(x.detail, tests)) for x in regs}) > 1 \
                else ""
            for line in lines:
                print(f"      {label}{line}")
    if stock is not None:
        engines = [report.runs[b] for b in ENGINE_BACKENDS if b in report.runs]
        both = sorted(tid for tid, o in stock.outcomes.items() if o.outcome in BAD)
        print(f"\nfails on stock too (environmental, not gated): {len(both)} test(s)")
        for tid in both:
            got = "/".join(e.outcomes[tid].outcome if tid in e.outcomes else "-" for e in engines)
            print(f"  {tid}  (stock: {stock.outcomes[tid].outcome}; {'/'.join(e.backend for e in engines)}: {got})")
            for line in first_lines(stock.outcomes[tid].detail, tests):
                print(f"      {line}")
        skipped = {tid for tid, o in stock.outcomes.items() if o.outcome == "skip"}
        for e in engines:
            odd = sorted(tid for tid in skipped if tid in e.outcomes and e.outcomes[tid].outcome in BAD)
            fixed = sorted(tid for tid in both if tid in e.outcomes and e.outcomes[tid].outcome in GOOD)
            if odd:
                print(f"skipped on stock, fails on {e.backend} (a feature detected differently? not gated): "
                      + ", ".join(odd))
            if fixed:
                print(f"fails on stock, passes on {e.backend}: " + ", ".join(fixed))
    for why in report.inconclusive:
        print(f"INCONCLUSIVE: {why}")


def check_version(python: str, server: Server, backends: list[str], modules: list[str], db_cache: bool,
                  parallel: int, timeout: float, entries: list[AllowEntry]) -> tuple[VersionReport, Path]:
    version, py_version = django_version(python)
    tests = django_tests(python, version)
    present, missing = available_modules(tests, modules)
    if missing:
        print(f"Django {version}: no test module {', '.join(missing)} in this release; left out")
    if db_cache:
        present += db_cache_labels(tests)
    out = CACHE / "results" / f"django-{version}"
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Run] = {}
    inconclusive: list[str] = []
    for backend in backends:
        print(f"Django {version}, {backend}: {len({m.split('.')[0] for m in present})} modules ...", flush=True)
        run = run_backend(python, tests, present, backend, server, out, parallel, timeout)
        runs[backend] = run
        print(f"    {len(run.outcomes)} tests in {run.seconds:.0f} s (cpu: suite {run.cpu_seconds:.0f} s, server "
              f"{run.server_cpu_seconds:.0f} s) {describe(run)}".rstrip(), flush=True)
        if run.server_died:
            inconclusive.append(f"Django {version} {backend}: the server died in both attempts ({run.server_died}); "
                                f"its results are not compared, nor blamed on the engine")
    stock = runs.get("stock")
    found: list[Regression] = []
    if stock is None or stock.server_died or not stock.complete:
        inconclusive.append(f"Django {version}: no complete stock run to compare with (see {out}/stock.log)")
    else:
        for backend in ENGINE_BACKENDS:
            engine = runs.get(backend)
            if engine is not None and not engine.server_died:
                found.extend(regressions(stock, engine, entries))
    return VersionReport(version, py_version, present, runs, found, inconclusive), tests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--python", action="append", help="a venv's python (repeat for each Django version); "
                        "default: this one")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, from: " + ", ".join(BACKENDS))
    parser.add_argument("--modules", help="comma-separated test modules instead of the default set")
    # 2 on this 2-core machine: per run 50 s instead of 75 s, the same outcome for every test (measured over both
    # Django versions and all four backends); 3 was no faster and 4 slower, each worker's test database a clone.
    parser.add_argument("--parallel", type=int, default=2, help="runtests.py --parallel (default 2)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds one run may take (default 1200)")
    parser.add_argument("--allowlist", type=Path, default=ALLOWLIST)
    args = parser.parse_args(argv)

    backends = [b for b in args.backends.split(",") if b]
    if unknown := set(backends) - set(BACKENDS):
        parser.error(f"unknown backend(s) {', '.join(sorted(unknown))}")
    modules = args.modules.split(",") if args.modules else REQUIRED_MODULES + EXTRA_MODULES
    try:
        entries = read_allowlist(args.allowlist)
    except AllowlistError as exc:
        print(f"VERDICT: INCONCLUSIVE: {exc}", file=sys.stderr)
        return 2
    # Absolute, not resolved: runs start in Django's tests/ folder, and a venv's python is a symlink.
    pythons = [os.path.abspath(p) for p in args.python] if args.python else [sys.executable]

    parallel = args.parallel
    if parallel > 1 and not (shutil.which("mysqldump") and shutil.which("mysql")):
        print("note: no mysqldump and mysql clients, which Django clones test databases with: --parallel=1")
        parallel = 1
    started = time.monotonic()
    server = Server()
    reports: list[tuple[VersionReport, Path]] = []
    try:
        server.start()
        for note in server.notes:
            print(f"note: {note}")
        for python in pythons:
            reports.append(check_version(python, server, backends, modules, not args.modules, parallel, args.timeout,
                                         entries))
    finally:
        server.destroy()

    for report, tests in reports:
        print_report(report, tests)
    failing = [r for report, _ in reports for r in report.found if r.allow is None]
    inconclusive = [why for report, _ in reports for why in report.inconclusive]
    hit = {(r.test_id, r.backend) for report, _ in reports for r in report.found}
    ran = {backend for report, _ in reports for backend in report.runs}
    stale = [e for e in entries if e.backends & ran and not any((e.test_id, b) in hit for b in e.backends)]
    if stale:
        print("\nallowlisted but passing everywhere it applies (can go): " + ", ".join(e.test_id for e in stale))
    total = time.monotonic() - started
    versions = ", ".join(f"Django {report.django}" for report, _ in reports)
    if failing:
        tests_failing = len({r.test_id for r in failing})
        print(f"\nVERDICT: FAILED: {tests_failing} test(s) pass on stock and fail on the engine, not allowlisted "
              f"({versions}; {total:.0f} s)")
        return 1
    if inconclusive:
        print(f"\nVERDICT: INCONCLUSIVE: {len(inconclusive)} run(s) could not be judged, not the engine's fault as "
              f"far as is known ({versions}; {total:.0f} s)")
        return 2
    allowed_count = len({r.test_id for report, _ in reports for r in report.found})
    print("\nVERDICT: passed: no test that passes on stock fails on the engine"
          + (f", but {allowed_count} allowlisted" if allowed_count else "") + f" ({versions}; {total:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
