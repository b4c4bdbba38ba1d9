"""A Celery app for tests/test_celery.py: the demo's models, the kit's pool, a private Redis broker (KIT_BROKER_URL).
KIT_CELERY_INSTALL=1 connects pool.celery; KIT_POOL_SIZE sets the pool; KIT_PARENT_CONNECTION_FILE makes the parent
open a connection before it forks its children, and write that session's id there."""

from __future__ import annotations

import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "deploy.settings")
from pool.settings import set_process_overrides  # noqa: E402

set_process_overrides({"size": int(os.environ.get("KIT_POOL_SIZE", "3")), "timeout": 30, "min_idle": 0})
django.setup()

from celery import Celery  # noqa: E402

# Celery's own Django fixup (on when DJANGO_SETTINGS_MODULE is set as the app is made) closes connections after each
# task; KIT_CELERY_DJANGO_FIXUP=0 turns it off, as for an app made before Django's settings are known.
_fixups = [] if os.environ.get("KIT_CELERY_DJANGO_FIXUP") == "0" else None
app = Celery("kit-tests", broker=os.environ["KIT_BROKER_URL"], backend=os.environ["KIT_BROKER_URL"], fixups=_fixups)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True, task_acks_late=False,
                worker_prefetch_multiplier=4)

if os.environ.get("KIT_CELERY_INSTALL") == "1":
    from pool.celery import install

    install()

if os.environ.get("KIT_PARENT_CONNECTION_FILE"):
    from django.db import connection

    with connection.cursor() as cursor:  # checked out in the parent, kept across the fork
        cursor.execute("SELECT CONNECTION_ID()")
        with open(os.environ["KIT_PARENT_CONNECTION_FILE"], "w") as handle:
            handle.write(str(cursor.fetchone()[0]))


@app.task
def stock_of(product_id: int) -> int:
    from deploy.shop.models import Product

    stock = Product.objects.filter(pk=product_id).values_list("stock", flat=True).first() or 0
    time.sleep(0.02)  # some work after the query, holding nothing
    return int(stock)


@app.task
def pool_figures() -> dict[str, object]:
    from pool.django.base import pools

    pool = pools().get("default")
    return {"pid": os.getpid(), **(pool.stats() if pool else {})}
