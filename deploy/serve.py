"""When no DATABASE_URL is given, the demo serves from a private MariaDB under ./run/ (started with gunicorn, stopped
with it, data kept between runs). Called from gunicorn.conf.py's hooks, in the arbiter: no Django imports here."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from harness.mariadb import PrivateMariaDB

ROOT = Path(__file__).resolve().parent.parent
_private: PrivateMariaDB | None = None


def ensure_database(log: logging.Logger) -> str:
    """Return the DATABASE_URL to serve from, starting and migrating the private server if none is configured."""
    global _private
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    port = int(os.environ.get("KIT_PRIVATE_DB_PORT", "0"))
    _private = PrivateMariaDB(basedir=ROOT / "run" / "mariadb", port=port).start()
    url = _private.app_url()
    os.environ["DATABASE_URL"] = url  # the workers inherit it
    log.info("no DATABASE_URL: started a private MariaDB on 127.0.0.1:%d (data in run/mariadb)", _private.port)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"], check=True, cwd=ROOT)
    return url


def stop_private_database() -> None:
    if _private is not None:
        _private.stop()
