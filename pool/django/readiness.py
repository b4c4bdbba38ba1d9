"""Readiness for Kubernetes and load balancers, apart from liveness: should this worker be sent requests now?

    # urls.py
    from pool.django.readiness import readyz
    urlpatterns += [path("readyz", readyz)]

200 while every pool of this worker can serve; 503 with the reasons once a pool has been unable to for several readings
in a row: its database does not answer (the pool's fail-fast state, with since when), or it is stuck (every connection
in use, callers waiting, and none has got a connection for POOL_READY_STUCK_AFTER seconds, by default the pool's
timeout). A busy pool that moves is ready whatever its queue: under a load spike every replica sees the same queue, and
taking them all out of rotation at once would turn the spike into an outage. The answer turns after 3 readings at least
a second apart (`pool.core.READINGS`), both ways, so that one reading never takes a worker out nor brings it back.

It takes no pool connection and sends nothing to the server: a saturated pool, or a dead database, must not make the
probe itself hang. Liveness (is the process alive at all) is another endpoint, one that stays 200 through a database
outage, so that Kubernetes does not restart workers that can do nothing about it.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from django.db import connections
from django.http import HttpRequest, JsonResponse

from ..core import Readiness, all_pools
from . import kit_setting

RETRY_AFTER_SECONDS = 1


def check(stuck_after: float | None = None) -> tuple[bool, list[Readiness]]:
    """Every pool of this process, each read once: (all ready, each pool's readiness). ``stuck_after`` defaults to
    settings.POOL_READY_STUCK_AFTER, else each pool's timeout."""
    bound = kit_setting("ready_stuck_after") if stuck_after is None else stuck_after
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
    # The pid: a pod's workers share its port, and each answers for its own pools.
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "pid": os.getpid(),
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
