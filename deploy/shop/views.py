"""A small shop: reads, a transactional write, a DB-bound report, fan-out work in greenlets, and operator endpoints."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from pool import workerstats
from pool.django import returning_connections
from pool.django.base import pools

from .models import Order, Product


@require_GET
@transaction.non_atomic_requests
def product_list(request: HttpRequest) -> JsonResponse:
    products = [p.as_dict() for p in Product.objects.order_by("id")[:20]]
    return JsonResponse({"products": products})


@require_GET
@transaction.non_atomic_requests
def product_detail(request: HttpRequest, product_id: int) -> JsonResponse:
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        return JsonResponse({"error": "no such product"}, status=404)
    return JsonResponse(product.as_dict())


class OutOfStock(Exception):
    pass


@csrf_exempt
@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    """Runs inside ATOMIC_REQUESTS' transaction: the stock check and the order commit together or not at all."""
    try:
        body = json.loads(request.body or b"{}")
        product_id, quantity = int(body["product_id"]), int(body.get("quantity", 1))
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": "send {\"product_id\": N, \"quantity\": M}"}, status=400)
    product = Product.objects.select_for_update().filter(pk=product_id).first()
    if product is None:
        return JsonResponse({"error": "no such product"}, status=404)
    if product.stock < quantity:
        transaction.set_rollback(True)
        return JsonResponse({"error": "out of stock", "stock": product.stock}, status=409)
    product.stock -= quantity
    product.save(update_fields=["stock"])
    order = Order.objects.create(product=product, quantity=quantity)
    if body.get("fail_after_write"):
        # For tests: an error after the writes must leave no trace (ATOMIC_REQUESTS rolls back).
        raise RuntimeError("failing after the write, as asked")
    return JsonResponse({"order": order.pk, "stock": product.stock}, status=201)


@require_GET
@transaction.non_atomic_requests
def slow_report(request: HttpRequest) -> JsonResponse:
    """A DB-bound view: the query holds its connection for about 20 ms on the server (?seconds= to change, at most 5).
    ?scan=N makes the server scan N rows instead (MariaDB's sequence engine): unlike an interrupted SLEEP(), which
    just returns, an interrupted scan fails with error 1317, which is what KILL QUERY tests need."""
    with connection.cursor() as cursor:
        if "scan" in request.GET:
            rows = max(1, min(int(request.GET["scan"]), 5_000_000_000))
            # rows is an int: safe to inline; no params, so no %-escaping
            cursor.execute(f"SELECT SUM(seq) FROM seq_1_to_{rows} WHERE seq % 7 = 3")
            return JsonResponse({"sum": int(cursor.fetchone()[0] or 0)})
        seconds = min(float(request.GET.get("seconds", "0.02")), 5.0)
        cursor.execute("SELECT COUNT(*), SLEEP(%s) FROM shop_order", [seconds])
        orders, _ = cursor.fetchone()
    return JsonResponse({"orders": orders})


@require_GET
@transaction.non_atomic_requests
def select_one(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return JsonResponse({"ok": True})


@transaction.non_atomic_requests
def mixed(request: HttpRequest) -> JsonResponse:
    """A view that waits on something besides the database between two queries: an HTTP API, a cache, a queue (here
    50 ms of sleep, cooperative under gevent; ?wait= to change, at most 5 s). Under lease="request" the connection is
    held through the wait; under lease="transaction" only through each SELECT (bench/compare.py)."""
    import time

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    time.sleep(min(float(request.GET.get("wait", "0.05")), 5.0))
    with connection.cursor() as cursor:
        cursor.execute("SELECT 2")
        cursor.fetchone()
    return JsonResponse({"ok": True})


@require_GET
def write_one(request: HttpRequest) -> JsonResponse:
    """One UPDATE in ATOMIC_REQUESTS' transaction: Django sends SET autocommit=0 before it, COMMIT and SET
    autocommit=1 after it; the pool should send nothing more (bench/statements.py, bench/compare.py). ?id= picks the
    product (1 by default), so that a load spreads its row locks."""
    Product.objects.filter(pk=int(request.GET.get("id", "1"))).update(stock=F("stock"))
    return JsonResponse({"ok": True})


def _spawn(func: Callable[..., Any], *args: Any) -> Any:
    """A greenlet under gevent, a thread otherwise: the view works in both kinds of worker."""
    try:
        from gevent import monkey

        if monkey.is_module_patched("threading"):
            import gevent

            return gevent.spawn(func, *args)
    except ImportError:
        pass
    import threading

    thread = threading.Thread(target=func, args=args)
    thread.start()
    return thread


@require_GET
@transaction.non_atomic_requests
def fanout(request: HttpRequest) -> JsonResponse:
    """ORM work in greenlets the view spawns itself: each says when its unit of work ends (returning_connections).
    ?leak=1 shows the mistake this prevents: the greenlets end still holding their connections, and the pool has to
    reclaim them from their dead owners."""
    count = max(1, min(int(request.GET.get("n", "4")), 20))
    results: dict[int, int] = {}

    def stock_of(product_id: int) -> None:
        results[product_id] = Product.objects.filter(pk=product_id).values_list("stock", flat=True).first() or 0

    work = stock_of if request.GET.get("leak") == "1" else returning_connections()(stock_of)
    workers = [_spawn(work, i) for i in range(1, count + 1)]
    for worker in workers:
        worker.join()
    return JsonResponse({"stock": results})


@transaction.non_atomic_requests
def healthz(request: HttpRequest) -> HttpResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy; the type says why
        return JsonResponse({"status": "unavailable", "error": type(exc).__name__}, status=503)
    return JsonResponse({"status": "ok"})


# Operator endpoints take no pool connection (non-atomic, no query): a saturated pool is when people look.


@require_GET
@transaction.non_atomic_requests
def pool_stats(request: HttpRequest) -> JsonResponse:
    """Every worker's pools (`workers`, each with its `pid`), their figures added up (`total`), the budget, and with
    `?db=1` the server's connection count for the app user (`server`, counted by one worker while someone asks).
    At the top level, as before: the answering worker's `pid`, its default pool's figures and its pools by alias."""
    by_alias = {alias: pool.stats() for alias, pool in pools().items()}
    everyone = workerstats.overview(workerstats.StatsDir.from_env(), watch=request.GET.get("db") == "1")
    return JsonResponse({"pid": os.getpid(), **by_alias.get("default", {}), "pools": by_alias, **everyone})


_STATUS_PAGE = Path(__file__).resolve().parent.parent / "static" / "status.html"


@require_GET
@transaction.non_atomic_requests
def status_page(request: HttpRequest) -> HttpResponse:
    """The status page: a static page that reads /-/pool?db=1 every second."""
    response = HttpResponse(_STATUS_PAGE.read_bytes(), content_type="text/html; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    return response


@transaction.non_atomic_requests  # a scrape must not hold a connection (ATOMIC_REQUESTS would open one)
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text for the pools of every worker (see pool.metrics)."""
    from pool.metrics import render

    body, content_type = render()
    return HttpResponse(body, content_type=content_type)
