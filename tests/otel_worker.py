"""In a gunicorn worker (tests/otel_gunicorn.conf.py): the OpenTelemetry SDK with an in-memory metric reader and span
exporter, PyMySQL's instrumentation when KIT_OTEL_PYMYSQL=1, and every 0.2 s a JSON file of what they hold, beside the
worker's own pool figures read at the same moment."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def start() -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    resource = Resource.create({"service.name": "kit-test", "process.pid": os.getpid()})
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    if os.environ.get("KIT_OTEL_PYMYSQL") == "1":
        from opentelemetry.instrumentation.pymysql import PyMySQLInstrumentor

        PyMySQLInstrumentor().instrument()
    target = Path(os.environ["KIT_OTEL_DIR"]) / f"otel-{os.getpid()}.json"

    def dump() -> None:
        from pool import workerstats

        while True:
            time.sleep(0.2)
            figures = workerstats.this_process()  # first: the metrics below are read after it
            reading = {"at": time.monotonic(), "pools": figures["pools"], "metrics": _metrics(reader),
                       "spans": [_span(s) for s in spans.get_finished_spans()]}
            tmp = target.with_suffix(".tmp")
            tmp.write_text(json.dumps(reading))
            os.replace(tmp, target)

    import gevent

    gevent.spawn(dump)


def _metrics(reader: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else ():
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                points = []
                for point in metric.data.data_points:
                    entry: dict[str, Any] = {"attributes": dict(point.attributes)}
                    if hasattr(point, "bucket_counts"):
                        entry.update(count=point.count, sum=point.sum, bounds=list(point.explicit_bounds),
                                     buckets=list(point.bucket_counts))
                    else:
                        entry["value"] = point.value
                    points.append(entry)
                found[metric.name] = {"unit": metric.unit, "scope": scope.scope.name, "points": points}
    return found


def _span(span: Any) -> dict[str, Any]:
    return {"name": span.name, "attributes": dict(span.attributes or {}), "status": span.status.status_code.name,
            "start": span.start_time, "end": span.end_time,
            "parent": format(span.parent.span_id, "016x") if span.parent else None}
