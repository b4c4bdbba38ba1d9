"""Two views for the session isolation tests: one leaves every kind of session state behind, one looks for it."""

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path


@transaction.non_atomic_requests
def dirty(request: HttpRequest) -> JsonResponse:
    """?what=lock leaves a table locked; otherwise every other kind of session state, and an open transaction
    (separately, because starting a transaction releases table locks)."""
    with connection.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        conn_id = cur.fetchone()[0]
        if request.GET.get("what") == "lock":
            cur.execute("LOCK TABLES shop_product READ")
            return JsonResponse({"connection_id": conn_id})
        cur.execute("SET @secret = 'card 4111-1111'")
        cur.execute("CREATE TEMPORARY TABLE scratch (note VARCHAR(20))")
        cur.execute("SELECT GET_LOCK('kit-isolation', 0)")
        cur.execute("SET SESSION sql_mode = 'ANSI_QUOTES'")
        cur.execute("SET SESSION time_zone = '+05:00'")
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        cur.execute("START TRANSACTION")
        cur.execute("INSERT INTO shop_order (product_id, quantity, created) VALUES (1, 999, NOW())")
    return JsonResponse({"connection_id": conn_id})


@transaction.non_atomic_requests
def inspect(request: HttpRequest) -> JsonResponse:
    seen: dict[str, object] = {}
    with connection.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID(), @secret, IS_USED_LOCK('kit-isolation') = CONNECTION_ID(), "
                    "@@SESSION.sql_mode, @@SESSION.time_zone, @@SESSION.tx_isolation, @@in_transaction")
        (seen["connection_id"], seen["user_variable"], seen["holds_lock"], seen["sql_mode"], seen["time_zone"],
         seen["isolation"], seen["in_transaction"]) = cur.fetchone()
        try:
            cur.execute("SELECT COUNT(*) FROM scratch")
            seen["temporary_table"] = True
        except Exception:  # noqa: BLE001 - absent is what we hope for
            seen["temporary_table"] = False
        try:
            cur.execute("UPDATE shop_product SET stock = stock WHERE id = 1")  # refused under a READ table lock
            seen["table_locked"] = False
        except Exception:  # noqa: BLE001
            seen["table_locked"] = True
        cur.execute("SELECT COUNT(*) FROM shop_order WHERE quantity = 999")
        seen["uncommitted_rows_visible"] = cur.fetchone()[0]
    return JsonResponse(seen)


urlpatterns = [path("dirty/", dirty), path("inspect/", inspect)]
