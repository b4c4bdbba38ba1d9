"""One view per alias for tests/test_server_budget.py: a statement that takes a few milliseconds on that alias's
database, and which database answered."""

from __future__ import annotations

from django.db import connections, transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path

from deploy.urls import urlpatterns as site_urlpatterns


@transaction.non_atomic_requests
def on_alias(request: HttpRequest, alias: str) -> JsonResponse:
    with connections[alias].cursor() as cur:
        cur.execute("SELECT DATABASE(), SLEEP(0.01)")
        database = cur.fetchone()[0]
    return JsonResponse({"alias": alias, "database": database})


urlpatterns = [path("alias/<str:alias>/", on_alias), *site_urlpatterns]
