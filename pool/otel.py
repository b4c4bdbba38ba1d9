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
  sample for each checkout that queued for a slot (granted or timed out); one that found a free slot waited for
  nothing and records none, so the histogram is empty while the pool is not saturated.

Under gunicorn each worker is a process with its own pools and its own SDK: each reports its own values under its own
resource (`process.pid`, `service.instance.id`), and the backend adds them up per pool name, as a Prometheus scrape of
`/metrics` does across workers.

Spans, when a tracer provider is set: `pool.wait` for a caller that queued or was refused (attribute `pool.outcome` =
`granted` | `timeout` | `rejected` | `unavailable`; an error status unless granted), and `pool.connect` for each
connection opened (an error status with the exception when it fails). They are children of the span current in the
caller (the request's, with a web framework's instrumentation), recorded when the event ends, with its start and end.
"""

from __future__ import annotations

import sys
import time
import weakref
from collections.abc import Iterable
from typing import Any

from . import stats as S
from .core import ConnectionPool, subscribe_pools
from .stats import process_buckets

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"
OUTCOME = "pool.outcome"
SCOPE = "django-gevent-mysql-pool"

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

        def gauge(read: Any) -> Any:
            def callback(options: CallbackOptions) -> Iterable[Observation]:
                return [Observation(value, {POOL_NAME: pool.name, **extra})
                        for pool in list(_instrumented) for value, extra in read(pool)]
            return callback

        meter.create_observable_up_down_counter(
            "db.client.connection.count", [gauge(lambda p: [(_in(p, S.IDLE), {STATE: "idle"}),
                                                            (_in(p, S.IN_USE), {STATE: "used"})])],
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
            explicit_bucket_boundaries_advisory=buckets)
        self.use_time = meter.create_histogram(
            "db.client.connection.use_time", unit="s",
            description="The time between borrowing a connection and returning it to the pool.",
            explicit_bucket_boundaries_advisory=buckets)

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
