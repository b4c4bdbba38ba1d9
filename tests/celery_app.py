"""A Celery app for tests/test_celery.py: the demo's models, the kit's pool, a private Redis broker (KIT_BROKER_URL).
KIT_CELERY_INSTALL=1 connects pool.celery; KIT_POOL_SIZE and KIT_POOL_TIMEOUT set the pool; KIT_CELERY_DJANGO_FIXUP=0
turns Celery's own Django fixup off; KIT_PARENT_CONNECTION_FILE makes the worker's main process check out a connection
through Django before it forks its children, write that session's id there, and at shutdown use the same connection
again and add the id it then reports."""

from __future__ import annotations

import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "deploy.settings")
# The environment's layer of pool settings, for this process and the children it forks.
os.environ.update(POOL_SIZE=os.environ.get("KIT_POOL_SIZE", "3"), POOL_MIN_IDLE="0",
                  POOL_TIMEOUT=os.environ.get("KIT_POOL_TIMEOUT", "30"))
django.setup()

from celery import Celery  # noqa: E402

# Celery's own Django fixup (on when DJANGO_SETTINGS_MODULE is set as the app is made) closes connections after each
# task; KIT_CELERY_DJANGO_FIXUP=0 turns it off, as for an app made before Django's settings are known.
_fixups: list[str] | None = [] if os.environ.get("KIT_CELERY_DJANGO_FIXUP") == "0" else None
app = Celery("kit-tests", broker=os.environ["KIT_BROKER_URL"], backend=os.environ["KIT_BROKER_URL"], fixups=_fixups)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True, task_acks_late=False,
                worker_prefetch_multiplier=4)

if os.environ.get("KIT_PARENT_CONNECTION_FILE"):
    from celery import signals
    from django.db import connection

    def _session_id() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID()")
            return int(cursor.fetchone()[0])

    with open(os.environ["KIT_PARENT_CONNECTION_FILE"], "w") as handle:
        handle.write(f"{_session_id()}\n")  # checked out in the parent, kept across the fork

    def _parent_uses_it_again(**_: object) -> None:
        # worker_shutdown runs in the main process only; connected before install() so that it runs before the drain.
        with open(os.environ["KIT_PARENT_CONNECTION_FILE"], "a") as handle:
            handle.write(f"{_session_id()}\n")

    signals.worker_shutdown.connect(_parent_uses_it_again, weak=False)

if os.environ.get("KIT_CELERY_INSTALL") == "1":
    from pool.celery import install

    install()


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


@app.task
def fails_after_a_query(product_id: int) -> None:
    """The failure path: the task's connection is checked out when it raises."""
    from deploy.shop.models import Product

    Product.objects.filter(pk=product_id).exists()
    raise LookupError(f"task failed on purpose after reading product {product_id}")


@app.task
def session_of_task() -> dict[str, int]:
    """Which process ran the task and which server session it used; slow enough that both prefork children get one."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        session = int(cursor.fetchone()[0])
    time.sleep(0.2)
    return {"pid": os.getpid(), "session": session}
