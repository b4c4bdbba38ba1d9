"""PyMySQL's OpenTelemetry instrumentation on the kit's connections: with it on, the queries an application sends
through the pool (plain API and Django engine) are spans, as those of a pymysql.connect() connection are, with the
options given to instrument() (sqlcommenter here); the pool's own statements are not."""

from __future__ import annotations

import json

from harness.mariadb import PrivateMariaDB
from harness.tools import run_script

SCRIPT = """
import json, os
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
if os.environ["KIT_INSTRUMENT"] == "1":
    from opentelemetry.instrumentation.pymysql import PyMySQLInstrumentor
    PyMySQLInstrumentor().instrument(enable_commenter=True, enable_attribute_commenter=True)

import django
import pymysql
from pool import ConnectionPool, PoolConfig

kwargs = json.loads(os.environ["KIT_CONNECT_KWARGS"])
plain = pymysql.connect(**kwargs)
with plain.cursor() as cur:
    cur.execute("SELECT 'plain pymysql'")
plain.close()
pool = ConnectionPool(kwargs, PoolConfig(size=2, reset="full"))
for _ in range(2):
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT 'kit pool', %s", (1,))
        cur.fetchall()
os.environ["DJANGO_SETTINGS_MODULE"] = "deploy.settings"
django.setup()
from django.db import connection
with connection.cursor() as cur:
    cur.execute("SELECT 'kit django'")
connection.close()
statements = [str(s.attributes.get("db.statement") or s.attributes.get("db.query.text") or "")
              for s in exporter.get_finished_spans()]
print(json.dumps({"statements": statements, "names": [s.name for s in exporter.get_finished_spans()]}))
"""


def spans(db: PrivateMariaDB, instrument: bool) -> dict[str, list[str]]:
    return run_script(SCRIPT, env={"KIT_CONNECT_KWARGS": json.dumps(db.app_connect_kwargs()),
                                   "DATABASE_URL": db.app_url(), "KIT_INSTRUMENT": "1" if instrument else "0"})


def test_the_kits_queries_are_spans_with_pymysqls_instrumentation_on(site_db: PrivateMariaDB) -> None:
    on, off = spans(site_db, True), spans(site_db, False)
    print(f"\ninstrumentation on: {on['statements']}\noff: {off['statements']}")
    statements = on["statements"]
    assert any("'plain pymysql'" in s for s in statements), "the control: pymysql.connect's own connection"
    assert sum("'kit pool'" in s for s in statements) == 2, "both checkouts of the plain API"
    assert any("'kit django'" in s for s in statements), "the Django engine's query"
    assert all("traceparent" in s for s in statements), "instrument()'s sqlcommenter option applies to the kit's too"
    # Only what the application sent: no reset, catalogue, wait_timeout or version query of the pool or the engine's
    # set-up (Django's version check goes through a cursor, so it is an application query here, as with stock Django).
    pool_own = [s for s in statements if any(word in s for word in ("@@wait_timeout", "ROUTINES", "RESET", "DO 0"))]
    assert pool_own == []
    assert off["statements"] == []
