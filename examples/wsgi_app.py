"""The pool without Django: a plain WSGI app (what a Flask view does, without Flask).

    DATABASE_URL=mysql://app:pw@127.0.0.1:3306/app gunicorn -k gevent examples.wsgi_app:application

One pool per process; each request borrows a connection for the block that needs it. Connections the server closed
(wait_timeout, restart) are replaced before use, so neither 2006 nor 2013 reaches the app (seed 001's problem).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from pool import ConnectionPool, PoolConfig, PoolTimeout
from pool.dburl import connect_kwargs_from_url

_pool: ConnectionPool | None = None


def get_pool() -> ConnectionPool:
    # Built on first use, in the worker: nothing connects at import.
    global _pool
    if _pool is None:
        _pool = ConnectionPool(connect_kwargs_from_url(os.environ["DATABASE_URL"]), PoolConfig(size=5), name="wsgi")
    return _pool


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    product_id = int(environ.get("PATH_INFO", "/1").strip("/") or 1)
    try:
        with get_pool().connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT name, stock FROM shop_product WHERE id = %s", (product_id,))
            row = cur.fetchone()
    except PoolTimeout:
        start_response("503 Service Unavailable", [("Content-Type", "application/json"), ("Retry-After", "1")])
        return [b'{"error": "database busy"}']
    if row is None:
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": "no such product"}']
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"name": row[0], "stock": row[1]}).encode()]
