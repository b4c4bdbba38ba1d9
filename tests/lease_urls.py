"""Views for the lease tests (tests/test_lease.py): each pinning rule's case, answered the same on Django's stock
backend and on the kit under lease="transaction"; and three patterns of real applications that hold connections
where they should not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gevent
from django.core.signals import request_finished
from django.db import connection, connections, transaction
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import path

# (statements that leave something behind, each in a cursor of its own, closed; the probe that reads it, in a new
# cursor, after another greenlet has used the pool). {lastrowid} is the last set-up statement's cursor.lastrowid.
CASES: dict[str, tuple[list[str], str]] = {
    "user_variable": (["SET @kit_v = 'mine'"], "SELECT @kit_v"),
    "temporary_table": (["CREATE TEMPORARY TABLE kit_tmp (n INT)", "INSERT INTO kit_tmp VALUES (7)"],
                        "SELECT SUM(n) FROM kit_tmp"),
    "named_lock": (["SELECT GET_LOCK('kit-lease', 0)"], "SELECT IS_USED_LOCK('kit-lease') = CONNECTION_ID()"),
    "session_variable": (["SET SESSION time_zone = '+05:00'"], "SELECT @@session.time_zone"),
    "prepared_statement": (["PREPARE kit_stmt FROM 'SELECT 42'"], "EXECUTE kit_stmt"),
    "current_database": (["USE information_schema"], "SELECT DATABASE()"),
    "table_lock": (["LOCK TABLES shop_product READ"], "SELECT COUNT(*) FROM kit_rows"),
    "handler": (["HANDLER kit_handled OPEN"], "HANDLER kit_handled READ FIRST"),
    "raw_transaction": (["BEGIN", "INSERT INTO kit_noise (n) VALUES (99)"], "SELECT @@in_transaction"),
    "last_insert_id": (["INSERT INTO kit_noise (n) VALUES (5)"], "SELECT LAST_INSERT_ID() = {lastrowid}"),
    "row_count": (["UPDATE kit_rows SET n = n + 1"], "SELECT ROW_COUNT()"),
    "found_rows": (["SELECT SQL_CALC_FOUND_ROWS seq FROM seq_1_to_30 LIMIT 2"], "SELECT FOUND_ROWS()"),
    "warnings": (["SELECT CAST('12abc' AS SIGNED)"], "SELECT @@warning_count"),
}
# What another greenlet does meanwhile on its own connection: it changes every value a case's probe could read.
NOISE = ["INSERT INTO kit_noise (n) VALUES (1)", "SELECT SQL_CALC_FOUND_ROWS seq FROM seq_1_to_50 LIMIT 1",
         "SELECT CONNECTION_ID()"]


def _one(sql: str) -> tuple[Any, int | None]:
    with connection.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone() if cur.description else None
        return (row[0] if row else None), cur.lastrowid


def _noise() -> None:
    for sql in NOISE:
        _one(sql)
    connection.close()


def _answer(sql: str) -> Any:
    try:
        value = _one(sql)[0]
    except Exception as exc:  # noqa: BLE001 - an error is an answer too, to compare with stock's
        return f"error {getattr(exc, 'args', [''])[0]}"
    return value if isinstance(value, (int, type(None))) else str(value)


@transaction.non_atomic_requests
def pin(request: HttpRequest) -> JsonResponse:
    case = request.GET["case"]
    answer: Any
    if case == "atomic":
        with transaction.atomic():
            _one("INSERT INTO kit_noise (n) VALUES (98)")
            gevent.spawn(_noise).join()
            answer = _answer("SELECT COUNT(*) FROM kit_noise WHERE n = 98")
            transaction.set_rollback(True)
        return JsonResponse({"answer": answer})
    if case == "open_cursor":
        kept = connection.cursor()
        kept.execute("SELECT CONNECTION_ID()")
        first = kept.fetchone()[0]
        _one("SELECT 1")  # another cursor, closed: the kept one still holds the connection
        gevent.spawn(_noise).join()
        try:
            kept.execute("SELECT CONNECTION_ID()")  # the cursor the view kept still works, on its own session
            answer = kept.fetchone()[0] == first
        except Exception as exc:  # noqa: BLE001
            answer = f"error {type(exc).__name__}"
        kept.close()
        return JsonResponse({"answer": answer})
    setup, probe = CASES[case]
    lastrowid = None
    for sql in setup:
        lastrowid = _one(sql)[1]
    gevent.spawn(_noise).join()
    answer = _answer(probe.format(lastrowid=lastrowid))
    if case == "raw_transaction":
        _one("ROLLBACK")
    return JsonResponse({"answer": answer})


# -- patterns of real applications -------------------------------------------------------------------------------------

def _log_request(sender: Any, **kwargs: Any) -> None:
    with connection.cursor() as cur:  # after the response: an audit line, a metric, a cache warm-up
        cur.execute("SELECT 1")
    # No close: stock Django closes the connection at the next request_finished (or never, under CONN_MAX_AGE).


@transaction.non_atomic_requests
def after_response(request: HttpRequest) -> JsonResponse:
    request_finished.connect(_log_request, dispatch_uid="kit-lease-after-response")
    return JsonResponse({"ok": True})


def _stock_of(product_id: int, results: dict[int, int]) -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT stock FROM shop_product WHERE id = %s", [product_id])
        results[product_id] = cur.fetchone()[0]
    # No returning_connections, no close: the greenlet just ends.


@transaction.non_atomic_requests
def fanout(request: HttpRequest) -> JsonResponse:
    results: dict[int, int] = {}
    _one("SELECT 1")
    gevent.joinall([gevent.spawn(_stock_of, n, results) for n in range(1, 5)], raise_error=True)
    return JsonResponse({"found": len(results)})


def fanout_in_transaction(request: HttpRequest) -> JsonResponse:
    """Under ATOMIC_REQUESTS: the view's transaction holds its connection while its children query."""
    errors: list[str] = []

    def child(product_id: int) -> None:
        try:
            _stock_of(product_id, {})
        except Exception as exc:  # noqa: BLE001 - the error's text is what the test reads
            errors.append(str(exc))
        finally:
            connections.close_all()

    _one("SELECT 1")
    gevent.joinall([gevent.spawn(child, n) for n in range(1, 3)])
    return JsonResponse({"errors": errors})


@transaction.non_atomic_requests
def download(request: HttpRequest) -> StreamingHttpResponse:
    count = _one("SELECT COUNT(*) FROM shop_product")[0]

    def body() -> Iterator[bytes]:
        for n in range(int(request.GET.get("chunks", "20"))):
            gevent.sleep(0.05)  # a slow client, or a large file read bit by bit
            yield f"{n} of {count}\n".encode()

    return StreamingHttpResponse(body(), content_type="text/plain")


urlpatterns = [
    path("pin/", pin),
    path("after-response/", after_response),
    path("fanout/", fanout),
    path("fanout-in-transaction/", fanout_in_transaction),
    path("download/", download),
]
