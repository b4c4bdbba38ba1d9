"""The kit's gunicorn.conf.py with preload_app on, and an arbiter that uses its own connection on SIGHUP."""

import os
import runpy

_conf = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gunicorn.conf.py"))
globals().update({name: value for name, value in _conf.items() if not name.startswith("__")})

preload_app = True
wsgi_app = "tests.preload_wsgi:application"


def on_reload(server):
    # Runs in the arbiter: its connection must still be the same live session, untouched by the workers.
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID()")
            outcome = f"after {cursor.fetchone()[0]} ok"
    except Exception as exc:  # noqa: BLE001 - the report says what went wrong
        outcome = f"after error {type(exc).__name__}: {exc}"
    with open(os.environ["KIT_PRELOAD_REPORT"], "a") as report:
        report.write(outcome + f" pid {os.getpid()}\n")
