"""The APM instrumentation people already run, on the pool's connections.

opentelemetry-instrumentation-pymysql (on by `PyMySQLInstrumentor().instrument()`, or by `opentelemetry-instrument`)
wraps `pymysql.connect` and traces the cursors of the connections it returns. The driver builds its own connection
class instead of calling `pymysql.connect`, so without this none of the kit's queries would reach those traces.
`open_connection` is how the driver builds every connection: while the instrumentation is on, it hands the new
connection to the instrumentation's own wrapper of `pymysql.connect` (so the options given to `instrument()`, the
tracer provider and sqlcommenter included, apply), and the connection's cursors are then traced as PyMySQL's own
would be. The pool's own statements (resets, the catalogue, pings) use no cursor and stay out of the traces.

Decided per connection, at its connect: connections opened before `instrument()` are traced from their replacement on
(at the latest after max_lifetime). Nothing is imported, and nothing costs anything, while the instrumentation is not
imported.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, TypeVar

_INSTRUMENTATION = "opentelemetry.instrumentation.pymysql"

ConnectionT = TypeVar("ConnectionT")


def open_connection(connection_class: type[ConnectionT], **kwargs: Any) -> ConnectionT:
    """A new `connection_class` (the driver's, handed in: this module imports none of the driver), traced while the
    instrumentation is on."""
    integration = _tracing() if _INSTRUMENTATION in sys.modules else None
    if integration is None:
        return connection_class(**kwargs)
    conn: Any = _traced_class(connection_class)(**kwargs)  # type: ignore[arg-type]  # classes are hashable
    conn._pool_db_integration = integration(conn)
    return conn  # type: ignore[no-any-return]


def _tracing() -> Any:
    """A function that gives the instrumentation's view of a new connection, or None while it is off."""
    import pymysql
    from opentelemetry.instrumentation.pymysql import PyMySQLInstrumentor

    if not PyMySQLInstrumentor().is_instrumented_by_opentelemetry:
        return None
    # The instrumentation's wrapper of pymysql.connect (a wrapt FunctionWrapper), called as pymysql.connect would call
    # it but around a connection already made: it returns its traced proxy, built with the options of instrument().
    wrapper = getattr(pymysql.connect, "_self_wrapper", None)

    def integration(conn: Any) -> Any:
        if wrapper is not None:
            proxy = wrapper(lambda *args, **kwargs: conn, None, (), {})
        else:  # wrapped some other way: the instrumentation's public call, with its defaults
            instrumentor: Any = PyMySQLInstrumentor  # unannotated
            proxy = instrumentor.instrument_connection(conn)
        return proxy._self_db_api_integration

    return integration


@functools.cache
def _traced_class(base: type[Any]) -> type[Any]:
    from opentelemetry.instrumentation.dbapi import get_traced_cursor_proxy

    class TracedPooledConnection(base):  # type: ignore[misc]
        """A pooled connection whose cursors the instrumentation traces (as it traces those of pymysql.connect)."""

        _pool_db_integration: Any = None

        def cursor(self, cursor: Any = None) -> Any:
            return get_traced_cursor_proxy(super().cursor(cursor), self._pool_db_integration)

    return TracedPooledConnection
