"""Checkout + return cost on a real connection, beside SQLAlchemy's QueuePool and a bare semaphore + deque.

    .venv/bin/python -m bench.checkout [--n 20000] [--repeat 5]

With the OpenTelemetry SDK installed (the test extra), the kit runs again with pool.otel's instruments on that pool
(an SDK MeterProvider with an in-memory reader, and a TracerProvider), and with the Prometheus histograms'
observers, beside the same pool without observers: what the instruments cost per checkout.

Starts a private mariadbd, so it needs no configured server. Each variant borrows and returns one already-open
connection N times in a loop, single-threaded; variants take turns within each of --repeat rounds and the best round
is printed (µs per cycle), with the number of
server round trips per cycle, counted on the client: each write to the server's socket is one request that waits
for its answer (the kit's pipelined reset sends its commands in one write, and is counted once). The server's
Questions counter misses COM_PING, so it cannot count these.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pymysql

from harness.mariadb import PrivateMariaDB
from pool import ConnectionPool, PoolConfig, close_all
from pool.abc import LeaseMode, ResetMode


def _floor(kwargs: dict[str, Any]) -> Callable[[], None]:
    sem = threading.BoundedSemaphore(10)
    idle = deque([pymysql.connect(**kwargs)])

    def cycle() -> None:
        sem.acquire()
        conn = idle.pop()
        idle.append(conn)
        sem.release()

    return cycle


def _queuepool(kwargs: dict[str, Any], safe: bool) -> Callable[[], None]:
    from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql
    from sqlalchemy.pool import QueuePool

    # The dialect is what carries the ping (COM_PING) and the ROLLBACK for the pool.
    # SQLAlchemy's creator type wants its DBAPI connection protocol, which PyMySQL's stubs do not declare.
    creator: Any = lambda: pymysql.connect(**kwargs)  # noqa: E731
    qp = QueuePool(creator, pool_size=10, max_overflow=0, pre_ping=safe,
                   reset_on_return="rollback" if safe else None, dialect=MySQLDialect_pymysql())

    def cycle() -> None:
        qp.connect().close()

    return cycle


def _kit(kwargs: dict[str, Any], reset: str, handles: bool = True, observers: str = "") -> Callable[[], None]:
    config = PoolConfig(size=10, reset=ResetMode(reset), ping_after=1.0)
    driver = None
    if not handles:
        # For comparison only: what the per-checkout handle (which makes a kept connection or cursor refuse use after
        # its return) costs. Never ship a pool without it.
        from pool.pymysql_driver import PyMySQLDriver

        class BareDriver(PyMySQLDriver):
            lend = staticmethod(lambda conn: conn)

            def revoke(self, conn: object, handle: object) -> None:
                pass

        driver = BareDriver.for_config(kwargs, config)
    kit = ConnectionPool(kwargs, config, driver=driver)
    if observers == "otel":
        from pool.otel import instrument_pool

        instrument_pool(kit)
    elif observers == "prometheus":
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # as under gunicorn: values in per-process files
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-prometheus-")
        from pool.metrics import _watch

        _watch(kit)

    def cycle() -> None:
        kit.release(kit.acquire())

    return cycle


def _per_statement(kwargs: dict[str, Any]) -> Callable[[], None]:
    """What lease="transaction" pays per statement outside a transaction, beside the statement itself: a lease taken
    (without the caller's stack), the driver's may_release, the return (tracked: nothing changed)."""
    from pool.core import Borrower

    kit = ConnectionPool(kwargs, PoolConfig(size=10, lease=LeaseMode.TRANSACTION, ping_after=1.0))
    borrower = Borrower(kit)

    def cycle() -> None:
        borrower.take()
        borrower.statement_done()

    return cycle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    db = PrivateMariaDB().start()
    try:
        kwargs = {**db.app_connect_kwargs(), "ssl_disabled": True, "autocommit": True}
        variants: list[tuple[str, Callable[[], None]]] = [
            ("floor: semaphore + deque", _floor(kwargs)),
            ("SQLAlchemy QueuePool, bare (no ping, no reset)", _queuepool(kwargs, safe=False)),
            ("SQLAlchemy QueuePool, pre_ping + rollback", _queuepool(kwargs, safe=True)),
            ("kit, reset=rollback", _kit(kwargs, "rollback")),
            ("kit, reset=full (COM_RESET_CONNECTION)", _kit(kwargs, "full")),
            ("kit, reset=tracked (nothing changed)", _kit(kwargs, "tracked")),
            ("kit, reset=rollback, no per-checkout handle", _kit(kwargs, "rollback", handles=False)),
            ("kit, lease=transaction: per-statement take + give back", _per_statement(kwargs)),
        ]
        if _otel_sdk():
            variants += [
                ("kit, reset=rollback, OpenTelemetry instruments on", _kit(kwargs, "rollback", observers="otel")),
                ("kit, reset=rollback, Prometheus histograms on", _kit(kwargs, "rollback", observers="prometheus")),
            ]
        for _, cycle in variants:
            cycle()  # open each connection outside the measurement
        # Round-robin: every repeat runs each variant once, so a noisy neighbour slows them all alike.
        best = {label: float("inf") for label, _ in variants}
        trips: dict[str, float] = {}
        for _ in range(args.repeat):
            for label, cycle in variants:
                before = _writes
                started = time.perf_counter()
                for _ in range(args.n):
                    cycle()
                best[label] = min(best[label], (time.perf_counter() - started) / args.n)
                trips[label] = (_writes - before) / args.n
        print(f"{'variant':50} {'µs/cycle':>9} {'round trips/cycle':>18}")
        for label, _ in variants:
            print(f"{label:50} {best[label] * 1e6:9.2f} {trips[label]:18.2f}")
    finally:
        close_all()  # before the server goes: their maintenance would otherwise try to reconnect and log it
        db.destroy()


def _otel_sdk() -> bool:
    """The SDK as global meter and tracer providers, before pool.otel builds its instruments (False without it)."""
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        print("OpenTelemetry SDK not installed: the instrumented variant is left out (pip install -e '.[test]')")
        return False
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    trace.set_tracer_provider(TracerProvider())
    return True


_writes = 0


def _count_writes() -> None:
    original = pymysql.connections.Connection._write_bytes  # type: ignore[attr-defined]  # as below

    def counting(self: pymysql.connections.Connection, data: bytes) -> None:
        global _writes
        _writes += 1
        original(self, data)

    pymysql.connections.Connection._write_bytes = counting  # type: ignore[attr-defined]  # private, not in types-PyMySQL


if __name__ == "__main__":
    _count_writes()
    main()
