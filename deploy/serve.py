"""scripts/serve: migrate, then run gunicorn with gunicorn.conf.py in this process.

Without DATABASE_URL the demo serves from a private MariaDB under run/ (started here, stopped when gunicorn exits, data
kept between runs), and writes run/serve.json (readable by its owner only) with that database's URL and the address
served, so that `locust -f loadtest/` on this machine finds where to count without being told. Only the demo uses
this: gunicorn.conf.py knows nothing of it.

    python -m deploy.serve [gunicorn options]      (KIT_RUN_DIR moves run/, KIT_PRIVATE_DB_PORT fixes the port)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE_FILE = "serve.json"


def run_dir() -> Path:
    return Path(os.environ.get("KIT_RUN_DIR") or ROOT / "run")


def migrate() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"], cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"serve: migrating the database failed (exit {result.returncode}); see the error above")


def write_state(path: Path, database_url: str, binds: list[str]) -> None:
    """What the locust gate needs to count: the database URL (with its password, hence 0600) and what is served."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file may have had other bits
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"database_url": database_url, "bind": binds, "pid": os.getpid()}, handle)


def main(argv: list[str]) -> None:
    from pool.conf import env_int

    # gunicorn turns WEB_CONCURRENCY into a number as it is imported, with a traceback for a bad value: check it first.
    env_int("WEB_CONCURRENCY", 1, minimum=1)
    from gunicorn.app.wsgiapp import WSGIApplication

    sys.argv = ["gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), *argv]
    # Reads the conf and the command line now, so the address served is known before the database starts.
    app = WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog="scripts/serve")
    if os.environ.get("DATABASE_URL"):
        migrate()
        app.run()
        return

    from harness.mariadb import PrivateMariaDB, PrivateServerError

    folder = run_dir()
    port = os.environ.get("KIT_PRIVATE_DB_PORT", "0")
    if not port.isdigit():
        sys.exit(f"KIT_PRIVATE_DB_PORT={port!r} is not a port number; unset it to pick a free port")
    try:
        database = PrivateMariaDB(basedir=folder / "mariadb", port=int(port)).start()
    except PrivateServerError as exc:
        sys.exit(f"serve: the private MariaDB did not start: {exc}")
    owner, state = os.getpid(), folder / STATE_FILE
    try:
        os.environ["DATABASE_URL"] = database.app_url()  # the workers inherit it
        migrate()
        write_state(state, database.app_url(), list(app.cfg.bind))
        print(f"serve: no DATABASE_URL, so serving from a private MariaDB on 127.0.0.1:{database.port} (data in "
              f"{folder / 'mariadb'}; its URL is in {state} for locust)", file=sys.stderr, flush=True)
        app.run()
    finally:
        # gunicorn's workers are forks of this process and unwind through here too when they exit.
        if os.getpid() == owner:
            state.unlink(missing_ok=True)
            database.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
