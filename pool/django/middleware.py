"""PoolMiddleware: put it first in MIDDLEWARE.

- It gives the request's connections back to the pool as soon as the response is built, before the server writes it
  to the client: Django itself would only return them at `request_finished`, after the write, and under gevent that
  write yields to the hub, so other requests would wait for a connection this one no longer uses. Streaming responses
  keep theirs (their iterators may still query).
- A full pool is an overload, not a bug: PoolTimeout and TooManyWaiters become 503 with Retry-After instead of a 500.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse

from ..errors import PoolExhausted

RETRY_AFTER_SECONDS = 1


def pool_exhaustion(exc: BaseException | None) -> PoolExhausted | None:
    """The pool error behind `exc` (Django wraps driver errors in its own OperationalError), if there is one."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, PoolExhausted):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


class PoolMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not response.streaming:
            for wrapper in connections.all(initialized_only=True):
                # Only pooled connections: closing another backend's would defeat its CONN_MAX_AGE.
                if getattr(wrapper, "_pool_lease", None) is not None and not wrapper.in_atomic_block:
                    wrapper.close()
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        cause = pool_exhaustion(exception)
        if cause is None:
            return None
        response = JsonResponse({"error": "database busy, retry shortly", "reason": type(cause).__name__}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
