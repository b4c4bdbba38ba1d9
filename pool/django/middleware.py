"""A full pool is an overload, not a bug: answer 503 with Retry-After instead of a 500."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from ..errors import PoolTimeout, TooManyWaiters

RETRY_AFTER_SECONDS = 1


def pool_exhaustion(exc: BaseException | None) -> PoolTimeout | TooManyWaiters | None:
    """The pool error behind `exc` (Django wraps driver errors in its own OperationalError), if there is one."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (PoolTimeout, TooManyWaiters)):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


class PoolUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        cause = pool_exhaustion(exception)
        if cause is None:
            return None
        response = JsonResponse({"error": "database busy, retry shortly", "reason": type(cause).__name__}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
