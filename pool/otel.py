"""OpenTelemetry for the pools: the semantic conventions' database client connection pool metrics, and spans for the
wait for a connection and for the connect. Needs the `otel` extra (opentelemetry-api); the SDK, its exporter and its
readers are the application's to set up, as for the rest of its telemetry.

    from pool import otel
    otel.instrument()          # every pool of the process, those built later too; or POOL_OTEL=1 with gunicorn.conf.py

Metrics (names and units of the semantic conventions, each with `db.client.connection.pool.name`):

- `db.client.connection.count` {connection}, `db.client.connection.state` = `idle` | `used`; `.idle.max`, `.idle.min`,
  `.max` {connection}; `.pending_requests` {request}; `.timeouts` {timeout}: read from the pools at each collection,
  nothing on the hot path.
- `db.client.connection.create_time`, `.wait_time`, `.use_time`: histograms in seconds, recorded from the pools'
  observers as connects, waits and returns happen, with buckets from 1 ms to the pool timeout. `wait_time` has a
  sample for every caller that got a slot or gave up waiting, as the conventions define it (the time to obtain a
  connection, for every request): the time queued, or 0 for a checkout that found a slot free (in a bucket of its
  own, bound 0). The pools only count those (an observer call per checkout would cost more than the checkout); their
  zeros are recorded at each collection, before the SDK reads the histograms, and every second in between.

Under gunicorn each worker is a process with its own pools and its own SDK: each reports its own values under its own
resource (`process.pid`, `service.instance.id`), and the backend adds them up per pool name, as a Prometheus scrape of
`/metrics` does across workers.

Spans, when a tracer provider is set: `pool.wait` for a caller that queued or was refused (attribute `pool.outcome` =
`granted` | `timeout` | `rejected` | `unavailable`; an error status unless granted), and `pool.connect` for each
connection opened (an error status with the exception when it fails). They are children of the span current in the
caller (the request's, with a web framework's instrumentation), recorded when the event ends, with its start and end.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from . import stats as S
from .background import start_background
from .core import ConnectionPool, subscribe_pools
from .stats import process_buckets, wait_buckets

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"
OUTCOME = "pool.outcome"
SCOPE = "django-gevent-mysql-pool"
# How often the waits of 0 are recorded between collections: an exporter collects once a minute by default, and a
# minute of checkouts recorded at once would hold the worker's hub for as long as it takes (~10 µs a sample).
ZERO_WAIT_INTERVAL = 1.0

log = logging.getLogger("pool.otel")

_instrumented: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()
_instruments: _Instruments | None = None


def _require_api() -> Any:
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        raise ImportError("pool.otel needs opentelemetry-api: pip install 'django-gevent-mysql-pool[otel]'") from None
    return metrics, trace


class _Instruments:
    def __init__(self, meter_provider: Any = None, tracer_provider: Any = None) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation

        metrics, trace = _require_api()
        meter = metrics.get_meter(SCOPE, meter_provider=meter_provider)
        self.tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        buckets = list(process_buckets())
        self._zero_waits: weakref.WeakKeyDictionary[ConnectionPool, float] = weakref.WeakKeyDictionary()
        self._zero_waits_lock = threading.Lock()
        self._zero_waits_pid = 0

        def gauge(read: Any) -> Callable[[CallbackOptions], Iterable[Observation]]:
            def callback(options: CallbackOptions) -> Iterable[Observation]:
                return [Observation(value, {POOL_NAME: pool.name, **extra})
                        for pool in list(_instrumented) for value, extra in read(pool)]
            return callback

        connection_count = gauge(lambda p: [(_in(p, S.IDLE), {STATE: "idle"}), (_in(p, S.IN_USE), {STATE: "used"})])

        def count_after_zero_waits(options: CallbackOptions) -> Iterable[Observation]:
            # The SDK runs every callback of a collection before it reads the histograms: the zeros recorded here are
            # in this collection's wait_time.
            self.record_zero_waits()
            return connection_count(options)

        meter.create_observable_up_down_counter(
            "db.client.connection.count", [count_after_zero_waits],
            unit="{connection}", description="The number of connections that are currently in state described by "
                                             "the state attribute.")
        meter.create_observable_up_down_counter(
            "db.client.connection.idle.max", [gauge(lambda p: [(p.config.size, {})])], unit="{connection}",
            description="The maximum number of idle open connections allowed.")
        meter.create_observable_up_down_counter(
            "db.client.connection.idle.min", [gauge(lambda p: [(p.config.min_idle, {})])], unit="{connection}",
            description="The minimum number of idle open connections allowed.")
        meter.create_observable_up_down_counter(
            "db.client.connection.max", [gauge(lambda p: [(p.config.size, {})])], unit="{connection}",
            description="The maximum number of open connections allowed.")
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests", [gauge(lambda p: [(_in(p, S.WAITING), {})])], unit="{request}",
            description="The number of current pending requests for an open connection.")
        meter.create_observable_counter(
            "db.client.connection.timeouts", [gauge(lambda p: [(_in(p, S.TIMEOUTS), {})])], unit="{timeout}",
            description="The number of connection timeouts that have occurred trying to obtain a connection from "
                        "the pool.")
        self.create_time = meter.create_histogram(
            "db.client.connection.create_time", unit="s", description="The time it took to create a new connection.",
            explicit_bucket_boundaries_advisory=buckets)
        self.wait_time = meter.create_histogram(
            "db.client.connection.wait_time", unit="s",
            description="The time it took to obtain an open connection from the pool.",
            explicit_bucket_boundaries_advisory=list(wait_buckets()))
        self.use_time = meter.create_histogram(
            "db.client.connection.use_time", unit="s",
            description="The time between borrowing a connection and returning it to the pool.",
            explicit_bucket_boundaries_advisory=buckets)

    def record_zero_waits(self) -> None:
        """A wait_time of 0 for each checkout that found a slot free since the last call (the pools count them rather
        than call an observer). The first call in a process starts a loop that calls it every ZERO_WAIT_INTERVAL."""
        with self._zero_waits_lock:
            if self._zero_waits_pid != os.getpid():  # a forked child: its pools count from 0 again
                self._zero_waits_pid = os.getpid()
                self._zero_waits.clear()
                start_background(self._record_zero_waits_forever, "pool-otel-zero-waits")
            for pool in list(_instrumented):
                immediate = _in(pool, S.IMMEDIATE)
                attributes = {POOL_NAME: pool.name}
                for _ in range(int(immediate - self._zero_waits.get(pool, 0.0))):
                    self.wait_time.record(0.0, attributes)
                self._zero_waits[pool] = immediate

    def _record_zero_waits_forever(self) -> None:
        pid = os.getpid()
        while os.getpid() == pid:  # a fork copies a sleeping greenlet into the child: only this process runs it
            time.sleep(ZERO_WAIT_INTERVAL)
            try:
                self.record_zero_waits()
            except Exception:  # the loop must outlive one bad round (an SDK error); the next one retries
                log.exception("pool.otel: recording the waits of 0 failed; retrying in %gs", ZERO_WAIT_INTERVAL)

    def observe(self, pool: ConnectionPool) -> None:
        from opentelemetry.trace import Status, StatusCode

        attributes = {POOL_NAME: pool.name}  # one dict per pool, not one per event
        tracer, wait_time, use_time, create_time = self.tracer, self.wait_time, self.use_time, self.create_time

        def span(name: str, seconds: float, outcome: str | None, error: BaseException | None = None) -> None:
            end = time.time_ns()
            started = tracer.start_span(name, start_time=end - int(seconds * 1e9),
                                        attributes={**attributes, OUTCOME: outcome} if outcome else attributes)
            if error is not None:
                started.record_exception(error)
            if error is not None or outcome not in (None, "granted"):
                started.set_status(Status(StatusCode.ERROR, outcome or type(error).__name__))
            started.end(end_time=end)

        def waited(seconds: float, granted: bool) -> None:
            wait_time.record(seconds, attributes)
            span("pool.wait", seconds, "granted" if granted else "timeout")

        def refused(outcome: str) -> None:
            span("pool.wait", 0.0, outcome)

        def connected(seconds: float, error: BaseException | None) -> None:
            if error is None:
                create_time.record(seconds, attributes)
            span("pool.connect", seconds, None, error)

        def used(seconds: float) -> None:
            use_time.record(seconds, attributes)

        pool.wait_observers.append(waited)
        pool.refusal_observers.append(refused)
        pool.connect_observers.append(connected)
        pool.use_observers.append(used)


def _in(pool: ConnectionPool, stat: str) -> float:
    return float(pool.stats()[stat])


def instrument(*, enabled: bool = True, meter_provider: Any = None, tracer_provider: Any = None) -> bool:
    """Register the instruments and spans for every pool of this process, now and built later (idempotent). The
    global meter and tracer providers by default: they may be set after this call (in each gunicorn worker, after the
    conf turned this on in the arbiter), as the OpenTelemetry API forwards to the provider set later. Returns
    ``enabled``, so that gunicorn.conf.py can say ``opentelemetry = otel.instrument(enabled=env_flag(...))``."""
    global _instruments
    if not enabled:
        return False
    try:
        _require_api()
    except ImportError as exc:
        if "gunicorn" in sys.modules:
            sys.exit(f"POOL_OTEL=1: {exc}")
        raise
    if _instruments is None:
        _instruments = _Instruments(meter_provider, tracer_provider)
        subscribe_pools(instrument_pool)
    return True


def instrument_pool(pool: ConnectionPool) -> None:
    """Instrument one pool (what `instrument` does for each): for code that wants some pools observed and not others,
    such as bench/checkout.py measuring what the instruments cost."""
    global _instruments
    if pool in _instrumented:
        return
    if _instruments is None:
        _instruments = _Instruments()
    _instrumented.add(pool)
    _instruments.observe(pool)
