"""WSGI entry point: gunicorn.conf.py points here."""

import os
import sys

from django.core.wsgi import get_wsgi_application

if not os.environ.get("DATABASE_URL"):
    # One line instead of Django's traceback from every worker; 4 is gunicorn's "app failed to load", on which the
    # arbiter stops rather than booting the same failure again.
    print("DATABASE_URL is not set: serve the demo with scripts/serve (it starts a private MariaDB), or export "
          "DATABASE_URL=mysql://user:password@127.0.0.1:3306/name", file=sys.stderr, flush=True)
    sys.exit(4)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "deploy.settings")
application = get_wsgi_application()
