"""gunicorn.conf.py is the file users copy: alone in an empty folder, with the kit installed and DATABASE_URL set, it
serves a project's app with the pool it tunes; its environment variables fail in one line naming them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from harness.mariadb import PrivateMariaDB, free_port
from harness.tools import ROOT, app_connections_by_pid, wait_until

GUNICORN = str(Path(sys.executable).parent / "gunicorn")

# A one-file Django project on the kit's engine, as a user's would be; nothing of this repository but the package.
APP = textwrap.dedent('''
    import os

    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.http import JsonResponse
    from django.urls import path

    from pool.dburl import parse_database_url

    url = parse_database_url(os.environ["DATABASE_URL"])
    settings.configure(
        ROOT_URLCONF=__name__, ALLOWED_HOSTS=["127.0.0.1"], SECRET_KEY="only-a-test",
        INSTALLED_APPS=["pool.django.apps.PoolAppConfig"], MIDDLEWARE=["pool.django.middleware.PoolMiddleware"],
        DATABASES={"default": {"ENGINE": "pool.django", "NAME": url["database"], "USER": url["user"],
                               "PASSWORD": url["password"], "HOST": url["host"], "PORT": str(url["port"]),
                               "CONN_MAX_AGE": 0}},
    )


    def hello(request):
        from django.db import connection
        from pool.django.base import pools

        with connection.cursor() as cursor:
            cursor.execute("SELECT 41 + 1")
            answer = cursor.fetchone()[0]
        return JsonResponse({"answer": answer, "pool": pools()["default"].stats()})


    urlpatterns = [path("", hello)]
    application = get_wsgi_application()
''')


def environment(**extra: str) -> dict[str, str]:
    """The caller's environment without this repository on the path nor any of the conf's variables."""
    names = ("PYTHONPATH", "DATABASE_URL", "WEB_", "POOL_", "WORKER_", "PROMETHEUS_", "BIND", "KIT_")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(names)}, **extra}


@pytest.mark.slow
def test_the_conf_alone_serves_a_project_app_with_the_pool_it_tunes(site_db: PrivateMariaDB, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "gunicorn.conf.py", project / "gunicorn.conf.py")
    (project / "app.py").write_text(APP)
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        [GUNICORN, "-c", "gunicorn.conf.py", "app:application"], cwd=project, stdout=log, stderr=subprocess.STDOUT,
        env=environment(DATABASE_URL=site_db.app_url(), BIND=f"127.0.0.1:{port}", POOL_SIZE="3",
                        WEB_CONCURRENCY="3"),
        start_new_session=True,
    )
    try:
        # Warm start (the conf's one change to the pool's defaults): each worker connects before any request.
        def warmed_workers() -> set[int]:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            return {int(pid) for pid in children} & set(app_connections_by_pid(site_db))

        warmed = wait_until(lambda: len(warmed_workers()) == 3, timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            body = json.loads(response.read())
    finally:
        process.terminate()
        process.wait(60)
    output = (tmp_path / "gunicorn.log").read_text()
    print(f"\n{body}")
    assert warmed, output
    assert body["answer"] == 42
    assert body["pool"]["size"] == 3  # POOL_SIZE, read by the conf, reached the worker's pool
    assert output.count("Booting worker") == 3  # WEB_CONCURRENCY, the hosting platforms' name
    assert (project / "run" / "prometheus").is_dir()  # the conf's metrics directory, beside the copied conf


@pytest.mark.parametrize("name, value", [
    ("WEB_WORKERS", "two"), ("WEB_CONCURRENCY", "0"), ("WORKER_CONNECTIONS", "lots"), ("PRELOAD_APP", "maybe"),
    ("POOL_SIZE", "ten"), ("POOL_BUDGET_RESERVE", "-1"),
])
def test_a_bad_environment_value_stops_gunicorn_in_one_line_naming_it(name: str, value: str, tmp_path: Path) -> None:
    shutil.copy(ROOT / "gunicorn.conf.py", tmp_path / "gunicorn.conf.py")
    result = subprocess.run([GUNICORN, "-c", "gunicorn.conf.py", "app:application"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env=environment(**{name: value}))
    said = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert "Traceback" not in said and len(said.splitlines()) == 1, said
    assert name in said and repr(value) in said, said


def test_web_workers_wins_over_web_concurrency(tmp_path: Path) -> None:
    read = "import runpy; print(runpy.run_path('gunicorn.conf.py')['workers'])"
    shutil.copy(ROOT / "gunicorn.conf.py", tmp_path / "gunicorn.conf.py")

    def workers(**env: str) -> int:
        out = subprocess.run([sys.executable, "-c", read], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                             env=environment(**env))
        assert out.returncode == 0, out.stderr
        return int(out.stdout)

    assert workers() == 2
    assert workers(WEB_CONCURRENCY="4") == 4
    assert workers(WEB_CONCURRENCY="4", WEB_WORKERS="3") == 3
