"""Readiness for Kubernetes and load balancers, apart from liveness: can this worker serve database requests now?

    # urls.py
    from pool.django.readiness import readyz
    urlpatterns += [path("readyz", readyz)]

200 when every pool of this worker can serve; 503 with the reasons otherwise: the database does not answer (the pool's
fail-fast state, with since when), or a pool is saturated (more callers waiting than POOL_READY_MAX_WAITING, by
default the pool's size). It takes no pool connection and sends nothing to the server: a saturated pool, or a dead
database, must not make the probe itself hang. Liveness (is the process alive at all) is another endpoint, one that
stays 200 through a database outage, so that Kubernetes does not restart workers that can do nothing about it.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db import connections
from django.http import HttpRequest, JsonResponse

from ..core import Readiness, all_pools
from . import kit_setting

RETRY_AFTER_SECONDS = 1


def check(max_waiting: int | None = None) -> tuple[bool, list[Readiness]]:
    """Every pool of this process: (all ready, each pool's readiness). ``max_waiting`` defaults to
    settings.POOL_READY_MAX_WAITING, else each pool's size."""
    bound = kit_setting("ready_max_waiting") if max_waiting is None else max_waiting
    states = sorted((pool.readiness(bound) for pool in all_pools()), key=lambda state: state.pool)
    return all(state.ready for state in states), states


def _describe(state: Readiness) -> dict[str, Any]:
    described = state.as_dict()
    if state.unavailable_since is not None:
        described["unavailable_since"] = datetime.datetime.fromtimestamp(
            state.unavailable_since, datetime.UTC).isoformat(timespec="milliseconds")
    return described


def readyz(request: HttpRequest) -> JsonResponse:
    ready, states = check()
    body: dict[str, Any] = {"status": "ready" if ready else "not ready",
                            "pools": {state.pool: _describe(state) for state in states}}
    if not ready:
        body["reasons"] = [state.reason for state in states if not state.ready]
    response = JsonResponse(body, status=200 if ready else 503)
    response["Cache-Control"] = "no-store"
    if not ready:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


# ATOMIC_REQUESTS would open a transaction, and so take a connection, around the view: off for every database.
readyz._non_atomic_requests = set(connections)  # type: ignore[attr-defined]
