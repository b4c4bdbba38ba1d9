"""The demo app, plus a database connection opened in gunicorn's arbiter while the app is preloaded."""

import os

from django.db import connection

from deploy.wsgi import application  # noqa: F401 - what gunicorn serves

with connection.cursor() as cursor:
    cursor.execute("SELECT CONNECTION_ID()")
    ARBITER_CONNECTION_ID = cursor.fetchone()[0]
with open(os.environ["KIT_PRELOAD_REPORT"], "a") as report:
    report.write(f"opened {ARBITER_CONNECTION_ID} pid {os.getpid()}\n")
