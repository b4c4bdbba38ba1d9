"""Users of the demo shop. With no class named, `locust -f loadtest/` runs the default mix: Reader, NewConnectionReader,
Writer and ReportUser in the proportions of their weights. The others are `opt_in`: name them to run them, e.g.
`locust -f loadtest/ SpikeUser --host http://127.0.0.1:8000` (see _mix.py).

Keep-alive users reuse one HTTP connection; the NewConnection* users send `Connection: close`, so each request is a
new TCP connection and a new greenlet in gunicorn (nginx without upstream keep-alive behaves like this).
"""

from __future__ import annotations

import random
from typing import Any

import _budget  # noqa: F401 - the connection budget gate, shared by every scenario
import _mix  # noqa: F401 - the default mix when no class is named
from locust import FastHttpUser, between, constant, task

PRODUCTS = 100
CLOSE = {"Connection": "close"}


def _ok_or_busy(response: Any) -> None:
    """A 503 with Retry-After is the pool's deliberate answer to overload: counted as a failure, but named."""
    if response.status_code == 503:
        response.failure(f"503 pool busy (Retry-After {response.headers.get('Retry-After')})")


class Reader(FastHttpUser):
    """Browses: product list and product pages, over keep-alive."""

    weight = 5
    wait_time = between(0.05, 0.2)

    @task(3)
    def detail(self) -> None:
        self.client.get(f"/products/{random.randint(1, PRODUCTS)}/", name="/products/[id]/")

    @task(1)
    def listing(self) -> None:
        self.client.get("/products/")


class NewConnectionReader(Reader):
    """Reader with a new HTTP connection per request."""

    weight = 1

    @task(3)
    def detail(self) -> None:
        self.client.get(f"/products/{random.randint(1, PRODUCTS)}/", name="/products/[id]/", headers=CLOSE)

    @task(1)
    def listing(self) -> None:
        self.client.get("/products/", headers=CLOSE)


class Writer(FastHttpUser):
    """Places orders: SELECT ... FOR UPDATE, UPDATE and INSERT in one transaction (ATOMIC_REQUESTS)."""

    weight = 2
    wait_time = between(0.1, 0.5)

    @task
    def order(self) -> None:
        payload = {"product_id": random.randint(1, PRODUCTS), "quantity": 1}
        with self.client.post("/orders/", json=payload, catch_response=True) as response:
            if response.status_code == 409:
                response.success()  # out of stock is an answer, not an error
            _ok_or_busy(response)


class ReportUser(FastHttpUser):
    """Runs the DB-bound report: each request holds a connection ~20 ms on the server."""

    weight = 2
    wait_time = between(0.1, 0.3)

    @task
    def report(self) -> None:
        self.client.get("/report/slow/")


class SpikeUser(FastHttpUser):
    """No think time on the DB-bound report: run far more of them than the pool can serve at once, e.g.
    `-u 600 -r 600`. Requests must wait or get 503 + Retry-After; the server must never answer 1040."""

    opt_in = True
    wait_time = constant(0)

    @task
    def report(self) -> None:
        with self.client.get("/report/slow/", catch_response=True) as response:
            _ok_or_busy(response)


class SlowReportBench(FastHttpUser):
    """Benchmark user: closed loop on the 20 ms report, keep-alive."""

    opt_in = True
    wait_time = constant(0)

    @task
    def report(self) -> None:
        self.client.get("/report/slow/")


class MixedBench(FastHttpUser):
    """Benchmark user: closed loop on a view that runs SELECT 1, waits 50 ms on something else, runs SELECT 2."""

    opt_in = True
    wait_time = constant(0)

    @task
    def mixed(self) -> None:
        self.client.get("/mixed/")


class WriteOneBench(FastHttpUser):
    """Benchmark user: closed loop on a one-UPDATE view in ATOMIC_REQUESTS' transaction, over 100 products (row locks
    spread), keep-alive."""

    opt_in = True
    wait_time = constant(0)

    @task
    def write_one(self) -> None:
        self.client.get(f"/write1/?id={random.randint(1, 100)}", name="/write1/")


class SelectOneBench(FastHttpUser):
    """Benchmark user: closed loop on the SELECT 1 view, keep-alive."""

    opt_in = True
    wait_time = constant(0)

    @task
    def select_one(self) -> None:
        self.client.get("/select1/")


class SelectOneNewConnectionBench(FastHttpUser):
    """Benchmark user: closed loop on the SELECT 1 view, a new HTTP connection per request."""

    opt_in = True
    wait_time = constant(0)

    @task
    def select_one(self) -> None:
        self.client.get("/select1/", headers=CLOSE)
