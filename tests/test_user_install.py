"""What a user does with the kit, with real parts and nothing of this repository's environment: build the sdist and the
wheel, `pip install` one into a fresh virtualenv (no extras), `django-admin startproject`, apply README's "Using it in
your project" snippet as README shows it today, copy gunicorn.conf.py as it is, migrate, create a superuser, serve on
gevent workers, log in to the admin, create an object through its form, then load the admin with 50 clients.

Issue 18: the repo's venv hid that gunicorn 27's gevent worker imports `packaging`, which gunicorn declares only under
its `gevent` extra; a plain install could not start a worker.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import pymysql
import pytest

from harness.mariadb import APP_USER, PrivateMariaDB, free_port
from harness.tools import ROOT, stop_gracefully, wait_until
from tests.browser import chromium, wait_for

pytestmark = pytest.mark.slow

WORKERS, POOL_SIZE = 2, 3
ADMIN, ADMIN_PASSWORD = "admin", "a-long-test-password-9"
CLIENTS, REQUESTS_EACH, LOAD_DEADLINE = 50, 10, 90.0
NOT_SHIPPED = ("tests/", "harness/", "deploy/", "bench/", "loadtest/", "conformance/", "examples/", "scripts/", "docs/")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel as a release builds them: `python -m build` makes the wheel from the sdist, so the wheel
    also proves the sdist holds everything the package needs."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], check=False,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,), (sdist,) = out.glob("*.whl"), out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_the_wheel_ships_the_package_its_types_and_license_and_nothing_else(artifacts: dict[str, Path]) -> None:
    with zipfile.ZipFile(artifacts["wheel"]) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        license_text = wheel.read(next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))).decode()
    assert "pool/py.typed" in names
    assert "pool/django/base.py" in names
    assert "MIT License" in license_text and "the django-gevent-mysql-pool authors" in license_text
    assert "License-Expression: MIT" in metadata
    assert "Requires-Dist: gunicorn[gevent]" in metadata, "gunicorn 27's gevent worker needs the extra's packaging"
    assert not [n for n in names if n.startswith(NOT_SHIPPED)]
    dist_info = next(n for n in names if n.endswith(".dist-info/RECORD")).split("/")[0]
    assert {n.split("/")[0] for n in names} == {"pool", dist_info}
    with tarfile.open(artifacts["sdist"]) as sdist:
        members = {m.name.split("/", 1)[-1] for m in sdist.getmembers()}
    assert {"LICENSE", "README.md", "pyproject.toml", "pool/py.typed"} <= members


def readme_snippet() -> str:
    """The python block under README's "Using it in your project", read now so that README and this test agree."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Using it in your project\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match and match.group(1).startswith("# settings.py"), "README's settings snippet moved or changed shape"
    return match.group(1)


def user_environment(venv: Path, **extra: str) -> dict[str, str]:
    """A shell with `venv` activated: none of this repository's venv, path or the conf's variables."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_", "DATABASE_URL", "WEB_", "POOL_", "WORKER_",
               "PROMETHEUS_", "BIND", "KIT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    ours = str(Path(sys.executable).parent)
    path = [str(venv / "bin"), *(p for p in env.get("PATH", "").split(os.pathsep) if p and p != ours)]
    return {**env, "PATH": os.pathsep.join(path), "VIRTUAL_ENV": str(venv), **extra}


def run(args: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float = 600) -> None:
    """`args`, its output appended to `log`; a failure shows the end of it."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(args)}\n")
        out.flush()
        code = subprocess.run(args, check=False, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout).returncode
    assert code == 0, f"{args[:3]} exited {code}:\n{log.read_text(errors='replace')[-4000:]}"


class ServerConnections:
    """The app user's connections as the server counts them (information_schema.PROCESSLIST), polled from a thread:
    the peak, and the longest time between two good samples, so a poller that stopped cannot pass for a low peak.

    Unlike harness.tools.ConnectionMonitor it survives a failed sample: every mariadbd that starts on this machine
    (other test runs start many) deletes all `#sql*` files in /tmp, where this server keeps the temporary table of an
    information_schema query, and that query then fails with "Error on delete of '/tmp/#sql-temptable-...'".
    """

    def __init__(self, db: PrivateMariaDB, interval: float = 0.01) -> None:
        self.db, self.interval = db, interval
        self.peak = self.samples = 0
        self.failures: list[str] = []
        self.longest_gap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                with self.db.admin() as conn, conn.cursor() as cur:
                    while not self._stop.is_set():
                        cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", (APP_USER,))
                        (count,) = cur.fetchone() or (0,)
                        now = time.monotonic()
                        self.peak, self.samples = max(self.peak, int(count)), self.samples + 1
                        self.longest_gap, last = max(self.longest_gap, now - last), now
                        self._stop.wait(self.interval)
            except pymysql.MySQLError as exc:
                self.failures.append(repr(exc))
                self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def fresh_database(db: PrivateMariaDB, name: str) -> str:
    """A database of its own for each variant (both create the same superuser), and the app user's URL to it."""
    db.query(f"DROP DATABASE IF EXISTS {name}")
    db.query(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    return db.app_url().rsplit("/", 1)[0] + "/" + name


@contextmanager
def gunicorn(venv: Path, project: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """The README's command: gunicorn -c gunicorn.conf.py mysite.wsgi, until its login page answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(venv / "bin" / "gunicorn"), "-c", "gunicorn.conf.py", "mysite.wsgi"], cwd=project, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
            env={**env, "BIND": f"127.0.0.1:{port}", "WEB_WORKERS": str(WORKERS), "POOL_SIZE": str(POOL_SIZE),
                 "ACCESS_LOG": ""},
        )

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{base}/admin/login/", timeout=10) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        assert wait_until(ready, timeout=90, interval=0.2), f"gunicorn never served:\n{log.read_text()}"
        yield base
    finally:
        stop_gracefully(process)


def log_in_and_add_group_in_chromium(base: str, group: str) -> str:
    """The admin's real login form and group form in headless Chromium; the session cookie it ends with."""
    from selenium.webdriver.common.by import By

    with chromium() as driver:
        driver.get(f"{base}/admin/login/?next=/admin/")
        driver.find_element(By.NAME, "username").send_keys(ADMIN)
        driver.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        wait_for(lambda: "Site administration" in driver.title, "the admin index after logging in", timeout=30)
        driver.get(f"{base}/admin/auth/group/add/")
        driver.find_element(By.NAME, "name").send_keys(group)
        driver.find_element(By.NAME, "_save").click()
        wait_for(lambda: driver.current_url.endswith("/admin/auth/group/") and group in driver.page_source,
                 "the group list with the new group", timeout=30)
        return str(driver.get_cookie("sessionid")["value"])


def log_in_and_add_group_over_http(base: str, group: str) -> str:
    """The same two forms posted as a browser posts them (CSRF cookie and token); the session cookie it ends with."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def post_form(path: str, fields: dict[str, str]) -> tuple[str, str]:
        with opener.open(f"{base}{path}", timeout=30) as page:
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode())
        assert token, f"no CSRF token on {path}"
        form = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token.group(1)}).encode()
        with opener.open(f"{base}{path}", data=form, timeout=30) as response:  # follows the redirect after success
            return response.geturl(), response.read().decode()

    url, body = post_form("/admin/login/?next=/admin/", {"username": ADMIN, "password": ADMIN_PASSWORD,
                                                          "next": "/admin/"})
    assert url.endswith("/admin/") and "Site administration" in body, "the login form did not log in"
    url, body = post_form("/admin/auth/group/add/", {"name": group, "_save": "Save"})
    assert url.endswith("/admin/auth/group/") and group in body, "the group form did not save"
    return next(c.value for c in jar if c.name == "sessionid" and c.value)


def load_admin(base: str, session: str, paths: list[str]) -> tuple[int, list[str]]:
    """CLIENTS threads, each on its own keep-alive connection with the session cookie, REQUESTS_EACH admin pages each,
    all within LOAD_DEADLINE seconds; anything but a 200 (a redirect to the login page included) is an error."""
    port = int(base.rsplit(":", 1)[1])
    deadline = time.monotonic() + LOAD_DEADLINE
    errors: list[str] = []
    done = [0]
    lock = threading.Lock()

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for n in range(REQUESTS_EACH):
                if time.monotonic() > deadline:
                    with lock:
                        errors.append(f"client {index}: past the {LOAD_DEADLINE:g}s deadline")
                    return
                path = paths[(index + n) % len(paths)]
                try:
                    conn.request("GET", path, headers={"Cookie": f"sessionid={session}"})
                    response = conn.getresponse()
                    response.read()
                    problem = None if response.status == 200 else f"{path}: HTTP {response.status}"
                except (OSError, http.client.HTTPException) as exc:
                    problem = f"{path}: {exc!r}"
                    conn.close()  # the next request opens a new connection
                with lock:
                    done[0] += 1
                    if problem:
                        errors.append(problem)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 35)  # a request in flight at the deadline may take 30 s
    return done[0], errors


@pytest.mark.parametrize("artifact", ["wheel", "sdist"])
def test_a_user_installs_the_kit_and_serves_a_new_django_project(
    artifact: str, artifacts: dict[str, Path], db: PrivateMariaDB, tmp_path: Path
) -> None:
    started = time.monotonic()
    log = tmp_path / "steps.log"
    venv, project = tmp_path / "venv", tmp_path / "project"
    database = f"user_install_{artifact}"
    database_url = fresh_database(db, database)
    env = user_environment(venv)
    # A fresh virtualenv, no extras, no site packages: only what the artifact declares gets installed (pip's cache is
    # reused, as on a user's machine).
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, env, log)
    run([str(venv / "bin" / "pip"), "install", str(artifacts[artifact])], tmp_path, env, log)
    installed = time.monotonic()

    project.mkdir()
    run([str(venv / "bin" / "django-admin"), "startproject", "mysite", str(project)], tmp_path, env, log)
    settings = project / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + "\n\n# -- README.md, Using it in your project\n" + readme_snippet())
    shutil.copy(ROOT / "gunicorn.conf.py", project / "gunicorn.conf.py")
    env = {**env, "DATABASE_URL": database_url}
    python = str(venv / "bin" / "python")
    run([python, "manage.py", "migrate", "-v0"], project, env, log)
    run([python, "manage.py", "createsuperuser", "--noinput", "--username", ADMIN, "--email", "admin@example.com"],
        project, {**env, "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD}, log)

    group = f"editors via the {artifact}"
    budget = WORKERS * POOL_SIZE
    # Watching from before the first worker connects (warm start) to after the last request.
    with ServerConnections(db) as monitor, gunicorn(venv, project, env, tmp_path / "gunicorn.log") as base:
        served = time.monotonic()
        if artifact == "wheel":
            session = log_in_and_add_group_in_chromium(base, group)
        else:
            # The wheel was built from this very sdist by `python -m build`, so the code is the same and the browser
            # and the load there cover it; what only this variant shows is that pip's own build of the sdist installs
            # a kit that serves, its login and forms included.
            session = log_in_and_add_group_over_http(base, group)
        rows = db.query(f"SELECT id FROM {database}.auth_group WHERE name = %s", (group,))
        assert len(rows) == 1, f"the admin's form did not store the group in {database}"
        group_id = rows[0][0]
        loaded, sent = time.monotonic(), 0
        errors: list[str] = []
        if artifact == "wheel":
            paths = ["/admin/", "/admin/auth/group/", f"/admin/auth/group/{group_id}/change/", "/admin/auth/user/",
                     "/admin/auth/user/1/change/"]
            sent, errors = load_admin(base, session, paths)
        load_took = time.monotonic() - loaded
    output = (tmp_path / "gunicorn.log").read_text(errors="replace")
    print(f"\n{artifact}: install {installed - started:.1f}s, project, migrate and serve {served - installed:.1f}s, "
          f"log in and add a group {loaded - served:.1f}s, {sent} requests in {load_took:.1f}s; server connections: "
          f"peak {monitor.peak} of {budget} over {monitor.samples} samples (longest gap {monitor.longest_gap:.2f}s, "
          f"{len(monitor.failures)} failed); {time.monotonic() - started:.1f}s in all")
    assert "Traceback" not in output, output[-4000:]
    assert output.count("Booting worker") == WORKERS, output[-4000:]
    assert WORKERS <= monitor.peak <= budget, f"peak {monitor.peak} server connections, budget {budget}"
    # The pool's connections live for minutes (warm start, idle_timeout 600 s): one over budget lasts far longer.
    assert monitor.longest_gap < 2.0, f"the count went unwatched for {monitor.longest_gap:.1f}s: {monitor.failures}"
    if artifact == "wheel":
        assert not errors, f"{len(errors)} of {sent} requests failed, e.g. {errors[:5]}"
        assert sent == CLIENTS * REQUESTS_EACH
