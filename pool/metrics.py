"""Prometheus export of the pools' statistics, aggregated across gunicorn workers.

prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before prometheus_client is imported) keeps each
worker's values in files that a scrape of any worker adds up. Each worker copies its pools' counters and gauges there
at most once a second, and once more just before it answers a scrape; waits and uses go into histograms as they
happen, from the pools' observers, except the waits of 0 (checkouts that found a slot free), which the pool only
counts and each copy adds to the wait histogram, so that the histogram holds every checkout and the checkout path pays
no observer call for them.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from . import stats as S
from .background import start_background
from .conf import prometheus_dir
from .core import ConnectionPool, all_pools, subscribe_pools
from .stats import process_buckets, wait_buckets

PREFIX = "mysql_pool"

# A gauge's `combine` as prometheus_client's multiprocess mode: live workers only, so a dead one drops out.
_MULTIPROCESS_MODES: dict[S.Combine, Literal["livemax", "livesum"]] = {
    "sum": "livesum", "max": "livemax", "cap": "livemax",
}


def metric_name(stat: str) -> str:
    """The Prometheus name of a statistic of `pool.stats.TABLE` (counters get prometheus_client's `_total`)."""
    return f"{PREFIX}_{stat}"


class PoolMetrics:
    def __init__(self) -> None:
        # Every gauge and counter of the stats table, so /metrics cannot leave one out.
        self.gauges = {s.name: Gauge(metric_name(s.name), s.help, ["pool"],
                                     multiprocess_mode=_MULTIPROCESS_MODES[s.combine])
                       for s in S.TABLE if s.kind == "gauge"}
        self.counters = {s.name: Counter(metric_name(s.name), s.help, ["pool"]) for s in S.TABLE if s.kind == "counter"}
        self.wait_seconds = Histogram(f"{PREFIX}_wait_seconds", WAIT_HELP, ["pool", "outcome"],
                                      buckets=wait_buckets())
        self.use_seconds = Histogram(f"{PREFIX}_use_seconds", USE_HELP, ["pool"], buckets=process_buckets())
        self._last: dict[int, dict[str, float]] = {}
        self._zero_waits: dict[int, float] = {}  # per pool, its immediate checkouts already in wait_seconds
        self._lock = threading.Lock()
        self._next_sync = 0.0

    def sync(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_sync:
            return
        self._next_sync = now + 1.0
        with self._lock:
            for pool in all_pools():
                current = pool.stats()
                last = self._last.setdefault(id(pool), {})
                for name, gauge in self.gauges.items():
                    gauge.labels(pool.name).set(current[name])
                for name, counter in self.counters.items():
                    series = counter.labels(pool.name)  # exists from the first sync, at 0, so alerts can rate() it
                    delta = current[name] - last.get(name, 0)
                    if delta > 0:
                        series.inc(delta)
                    last[name] = current[name]
                granted = self.wait_seconds.labels(pool.name, "granted")  # both outcomes, from the first sync
                self.wait_seconds.labels(pool.name, "timeout")
                self.use_seconds.labels(pool.name)
                # prometheus_client has no observe-n-times: a loop, here, off the checkout path.
                for _ in range(int(current[S.IMMEDIATE] - self._zero_waits.get(id(pool), 0))):
                    granted.observe(0.0)
                self._zero_waits[id(pool)] = current[S.IMMEDIATE]


WAIT_HELP = ("time each caller waited for a slot: 0 for one that found a slot free, the time queued for the others; "
             "one sample per caller that got a slot or gave up waiting (max_waiting's refusals add none)")
USE_HELP = "time a connection was held by its caller, checkout to return"

_metrics: PoolMetrics | None = None
_metrics_pid = 0
_subscribed = False


def metrics() -> PoolMetrics:
    """This process's exporter (rebuilt after fork: a child starts from its own, empty pools), with the histograms'
    observers on every pool of the process."""
    global _subscribed
    if not _subscribed:
        # Once per process tree (a forked child inherits the subscription): the observers look the exporter up at
        # each event, so after a fork they feed the child's.
        _subscribed = True
        subscribe_pools(_watch)
    return _exporter()


def _exporter() -> PoolMetrics:
    global _metrics, _metrics_pid
    if _metrics is None or _metrics_pid != os.getpid():
        _metrics, _metrics_pid = PoolMetrics(), os.getpid()
    return _metrics


def _watch(pool: ConnectionPool) -> None:
    """The histograms' observers on one pool (bench/checkout.py measures them on one pool and not the others)."""
    name = pool.name

    def waited(seconds: float, granted: bool) -> None:
        _exporter().wait_seconds.labels(name, "granted" if granted else "timeout").observe(seconds)

    def used(seconds: float) -> None:
        _exporter().use_seconds.labels(name).observe(seconds)

    pool.wait_observers.append(waited)
    pool.use_observers.append(used)


def render() -> tuple[bytes, str]:
    """Sync this worker, then the Prometheus text of every worker's values (or this process's, without
    PROMETHEUS_MULTIPROC_DIR)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY

    metrics().sync(force=True)
    if prometheus_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """From the arbiter's child_exit: fold a dead worker's live gauges out of the totals."""
    if prometheus_dir():
        multiprocess.mark_process_dead(pid)


def start_background_sync(interval: float = 1.0) -> Any:
    """Keep this worker's values fresh even when it serves no request (a gevent greenlet, or a daemon thread)."""
    def loop() -> None:
        while True:
            metrics().sync(force=True)
            time.sleep(interval)

    return start_background(loop, "pool-metrics")


def doc_table() -> str:
    """The Markdown table of every exported metric, for docs/observability.md (generated from the stats table)."""
    rows = ["| metric | type | meaning |", "|---|---|---|"]
    for stat in S.TABLE:
        if stat.kind == "gauge":
            combined = "max" if _MULTIPROCESS_MODES[stat.combine] == "livemax" else "sum"
            rows.append(f"| `{metric_name(stat.name)}` | gauge ({combined} over workers) | {stat.help} |")
        elif stat.kind == "counter":
            rows.append(f"| `{metric_name(stat.name)}_total` | counter | {stat.help} |")
    rows.append(f'| `{PREFIX}_wait_seconds{{outcome="granted"\\|"timeout"}}` | histogram | {WAIT_HELP} |')
    rows.append(f"| `{PREFIX}_use_seconds` | histogram | {USE_HELP} |")
    return "\n".join(rows)
