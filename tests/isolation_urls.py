"""Two views for the session isolation tests: one leaves session state behind, one looks for it."""

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path

# One kind of session state each: the reset must clear it whether or not the server reports the change.
SINGLE_STATES: dict[str, list[str]] = {
    "user_variable": ["SET @secret = 'card 4111-1111'"],
    "user_variable_in_select": ["SELECT @secret := 'card 4111-1111'"],
    "user_variable_in_do": ["DO @secret := 'card 4111-1111'"],
    "user_variable_in_function": ["SELECT kit_var_fn()"],
    "user_variable_in_procedure": ["CALL kit_var_proc()"],
    "temporary_table": ["CREATE TEMPORARY TABLE scratch (note VARCHAR(20))"],
    "named_lock": ["SELECT GET_LOCK('kit-isolation', 0)"],
    "named_lock_in_function": ["SELECT kit_lock_fn()"],
    "named_lock_in_procedure": ["CALL kit_lock_proc()"],
    "sql_mode_in_function": ["SELECT kit_sql_mode_fn()"],
    "set_transaction_next_only": ["SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"],
    "session_isolation": ["SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"],
    "sql_mode": ["SET SESSION sql_mode = 'ANSI_QUOTES'"],
    "time_zone": ["SET SESSION time_zone = '+05:00'"],
    "prepared_statement": ["PREPARE kit_stmt FROM 'SELECT 1'"],
    "use_other_database": ["USE mysql"],
    "table_lock": ["LOCK TABLES shop_product READ"],
    "open_transaction": ["START TRANSACTION",
                         "INSERT INTO shop_order (product_id, quantity, created) VALUES (1, 999, NOW())"],
    "last_insert_id": ["SELECT LAST_INSERT_ID(4111)"],
    # Triggers fire inside a write: the statement names only the table.
    "user_variable_in_trigger": ["INSERT INTO kit_audited (note) VALUES ('written')"],
    "named_lock_in_trigger": ["UPDATE kit_locking SET n = n + 1"],
    # Routines that did not exist when the pool started: one made through the pool (seen at once), then called by
    # the next request; one made by another client (seen within the catalogue's refresh interval, OTHER_CLIENT_FIRST).
    "function_made_through_the_pool": [
        "CREATE FUNCTION kit_late_pool_fn() RETURNS INT RETURN GET_LOCK('kit-isolation', 0)"
    ],
    "named_lock_in_function_made_through_the_pool": ["SELECT kit_late_pool_fn()"],
    "named_lock_in_function_made_by_another_client": ["SELECT kit_late_other_fn()"],
}

# Run by a client of its own before the case, while the pool is already running (the test then waits out the
# catalogue's refresh interval, which it shortens).
OTHER_CLIENT_FIRST: dict[str, list[str]] = {
    "named_lock_in_function_made_by_another_client": [
        "CREATE FUNCTION kit_late_other_fn() RETURNS INT RETURN GET_LOCK('kit-isolation', 0)"],
}


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
        if request.GET.get("what") in SINGLE_STATES:
            for sql in SINGLE_STATES[request.GET["what"]]:
                cur.execute(sql)
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
                    "@@SESSION.sql_mode, @@SESSION.time_zone, @@SESSION.tx_isolation, @@in_transaction, DATABASE(), "
                    "LAST_INSERT_ID()")
        (seen["connection_id"], seen["user_variable"], seen["holds_lock"], seen["sql_mode"], seen["time_zone"],
         seen["isolation"], seen["in_transaction"], seen["database"], seen["last_insert_id"]) = cur.fetchone()
        try:
            cur.execute("EXECUTE kit_stmt")
            seen["prepared_statement"] = True
        except Exception:  # noqa: BLE001
            seen["prepared_statement"] = False
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
        # A one-shot SET TRANSACTION shows only in the next transaction's own isolation level.
        cur.execute("START TRANSACTION")
        cur.execute("SELECT COUNT(*) FROM shop_product")
        cur.execute("SELECT trx_isolation_level FROM information_schema.INNODB_TRX "
                    "WHERE trx_mysql_thread_id = CONNECTION_ID()")
        row = cur.fetchone()
        seen["next_transaction_isolation"] = row[0] if row else None
        cur.execute("ROLLBACK")
    return JsonResponse(seen)


urlpatterns = [path("dirty/", dirty), path("inspect/", inspect)]
