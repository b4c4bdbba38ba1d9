"""Views for the in-step tests: one that lets a greenlet of its own use the request's connection while the request
uses it too (the misuse), and one that echoes a tag, so that a test sees whose answer each request got."""

import gevent
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path


@transaction.non_atomic_requests
def shares_its_connection(request: HttpRequest) -> JsonResponse:
    outcome: dict[str, object] = {}
    cursor = connection.cursor()  # handed to a greenlet of the view's own, as seed 002's RPC handlers do

    def helper() -> None:
        try:
            cursor.execute("SELECT %s, SLEEP(%s)", ("from-helper", 0.05))
            outcome["helper"] = cursor.fetchone()[0]
        except Exception as exc:  # noqa: BLE001 - what the misuser is told is the point of the test
            outcome["helper"] = f"{type(exc).__name__}: {exc}"

    with connection.cursor() as own:
        own.execute("SELECT CONNECTION_ID()")
        outcome["connection_id"] = own.fetchone()[0]
        started = gevent.spawn(helper)
        own.execute("SELECT %s, SLEEP(%s)", ("from-request", 0.2))
        outcome["request"] = own.fetchone()[0]
    started.join(10)
    return JsonResponse(outcome)


@transaction.non_atomic_requests
def echo(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cur:
        cur.execute("SELECT %s", (request.GET["tag"],))
        return JsonResponse({"answer": cur.fetchone()[0]})


urlpatterns = [path("shares/", shares_its_connection), path("echo/", echo)]
