"""PoolMiddleware: put it first in MIDDLEWARE.

- It gives the request's connections back to the pool as soon as the response is built, before the server writes it
  to the client: Django itself would only return them at `request_finished`, after the write, and under gevent that
  write yields to the hub, so other requests would wait for a connection this one no longer uses. Streaming responses
  keep theirs (their iterators may still query).
- A full pool is an overload, not a bug: PoolTimeout and TooManyWaiters become 503 with Retry-After instead of a 500;
  so does DatabaseUnavailable (the database is not answering: the pool fails fast instead of every request waiting).
- It reads the request body before the view runs (POOL_READ_BODY_FIRST, on by default): with ATOMIC_REQUESTS the
  view's transaction, and so a connection, starts before the view reads the body, and a client that sends its body
  slowly (or stalls) would hold that connection for as long as it likes. Under gevent the read is bounded by
  POOL_BODY_TIMEOUT seconds (default 30); a client slower than that gets 408 and the connection to it is closed.
- It says on every response how long the request queued for pool connections: `Server-Timing: pool;dur=<ms>`, the
  sum of the waits the pool measured for this request's own checkouts (greenlets the view spawns are not the
  request's), so a browser's network panel shows the pool's share of a slow page. POOL_SERVER_TIMING = False turns it
  off.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse

from ..core import ConnectionPool, subscribe_pools
from ..errors import DatabaseUnavailable, PoolExhausted
from . import kit_setting

RETRY_AFTER_SECONDS = 1


def pool_exhaustion(exc: BaseException | None) -> PoolExhausted | DatabaseUnavailable | None:
    """The pool error behind `exc` (Django wraps driver errors in its own OperationalError), if there is one."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (PoolExhausted, DatabaseUnavailable)):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


class _BodyTimeout(Exception):
    pass


def _has_body(request: HttpRequest) -> bool:
    length = request.META.get("CONTENT_LENGTH") or ""
    return (length.isdigit() and int(length) > 0) or "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "")


def _read_body(request: HttpRequest) -> None:
    """Receive the whole body now. Multipart goes through Django's parser, which spools large files to disk; anything
    else is read into memory, within DATA_UPLOAD_MAX_MEMORY_SIZE (Django refuses larger bodies before reading)."""
    if request.content_type == "multipart/form-data":
        request.POST  # noqa: B018 - parses the stream, files included
    else:
        request.body  # noqa: B018 - reads and keeps the stream


def _deadline(seconds: float) -> Any:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        import gevent

        return gevent.Timeout(seconds, _BodyTimeout)
    # Threads cannot be interrupted; the server's own socket timeout bounds the read there.
    import contextlib

    return contextlib.nullcontext()


# The current request's seconds so far, queued for connections and holding them, or None outside a request. A context
# variable is per greenlet under gevent (and per thread otherwise): a request's own leases only.
_request_timing: ContextVar[list[float] | None] = ContextVar("pool_request_timing", default=None)
_timing_subscribed = False


def _add_to_request_wait(seconds: float, granted: bool) -> None:
    timing = _request_timing.get()
    if timing is not None:
        timing[0] += seconds


def _add_to_request_held(seconds: float) -> None:
    timing = _request_timing.get()
    if timing is not None:
        timing[1] += seconds


def _time_leases(pool: ConnectionPool) -> None:
    pool.wait_observers.append(_add_to_request_wait)
    pool.use_observers.append(_add_to_request_held)


def _subscribe_request_timing() -> None:
    global _timing_subscribed
    if not _timing_subscribed:  # once per process: every middleware instance shares the observers
        _timing_subscribed = True
        subscribe_pools(_time_leases)


class PoolMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.read_body_first: bool = kit_setting("read_body_first")
        self.body_timeout: float = kit_setting("body_timeout")
        self.server_timing: bool = kit_setting("server_timing")
        if self.server_timing:
            _subscribe_request_timing()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not self.server_timing:
            return self._respond(request)
        spent = [0.0, 0.0]
        token = _request_timing.set(spent)
        try:
            response = self._respond(request)
        finally:
            _request_timing.reset(token)
        # What the lease mode changes shows in the second: under lease="transaction" only the statements count.
        timing = f"pool;dur={spent[0] * 1000.0:.3f}, db-held;dur={spent[1] * 1000.0:.3f}"
        earlier = response.get("Server-Timing")
        response["Server-Timing"] = f"{earlier}, {timing}" if earlier else timing
        return response

    def _respond(self, request: HttpRequest) -> HttpResponse:
        if self.read_body_first and _has_body(request):
            try:
                with _deadline(self.body_timeout):
                    _read_body(request)
            except _BodyTimeout:
                response = JsonResponse({"error": f"request body not received within {self.body_timeout:g}s"},
                                        status=408)
                response["Connection"] = "close"  # the rest of the body may still arrive: the stream is unusable
                return response
        response = self.get_response(request)
        if not response.streaming:
            for wrapper in connections.all(initialized_only=True):
                # Only pooled connections: closing another backend's would defeat its CONN_MAX_AGE.
                if getattr(wrapper, "pool_holds_connection", False) and not wrapper.in_atomic_block:
                    wrapper.close()
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        cause = pool_exhaustion(exception)
        if cause is None:
            return None
        if isinstance(cause, DatabaseUnavailable):
            body = "database not answering, retry shortly"
            retry = max(RETRY_AFTER_SECONDS, math.ceil(cause.retry_after))
        else:
            body, retry = "database busy, retry shortly", RETRY_AFTER_SECONDS
        response = JsonResponse({"error": body, "reason": type(cause).__name__}, status=503)
        response["Retry-After"] = str(retry)
        return response
