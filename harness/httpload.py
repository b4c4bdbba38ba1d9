"""A bounded HTTP load for tests: N clients, each sending M requests, some over keep-alive, some with a new
connection per request (as nginx without upstream keepalive does). Prints one JSON line. Loopback only.

    python -m harness.httpload http://127.0.0.1:PORT --clients 200 --requests 10 --paths /products/,/report/slow/
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--paths", default="/products/")
    parser.add_argument("--keepalive-share", type=float, default=0.5)
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds; stop sending after this")
    parser.add_argument("--think", type=float, default=0.0, help="seconds each client waits between requests")
    args = parser.parse_args()
    base = urlsplit(args.base)
    assert base.hostname in ("127.0.0.1", "localhost"), "load goes to loopback only"
    paths = args.paths.split(",")
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    failures_at: list[tuple[float, str]] = []  # (seconds since start, status or error), for fault timelines
    failed_ms: list[float] = []  # how long each answered failure (status >= 300) took
    ok_at: list[float] = []  # seconds since start of each success, for recovery timelines
    t0 = time.monotonic()
    wall_start = time.time()  # lets a test line failures up with faults it injected at known wall-clock times
    stop_at = t0 + args.deadline

    def client(index: int) -> None:
        keepalive = index < args.clients * args.keepalive_share
        conn: http.client.HTTPConnection | None = None
        for i in range(args.requests):
            if time.monotonic() > stop_at:
                return
            path = paths[(index + i) % len(paths)]
            for attempt in (1, 2):
                fresh = conn is None
                if conn is None:
                    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=60)
                started = time.monotonic()
                try:
                    conn.request("GET", path, headers={} if keepalive else {"Connection": "close"})
                    response = conn.getresponse()
                    response.read()
                except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine) as exc:
                    conn.close()
                    conn = None
                    # A reused keep-alive connection that the server closed meanwhile (worker restart) is retried
                    # once, as every HTTP client does; an error on a fresh connection is a failure.
                    if fresh or attempt == 2:
                        errors[type(exc).__name__] += 1
                        failures_at.append((round(time.monotonic() - t0, 3), type(exc).__name__))
                        break
                    continue
                except Exception as exc:  # noqa: BLE001 - counted, never hidden
                    errors[type(exc).__name__] += 1
                    failures_at.append((round(time.monotonic() - t0, 3), type(exc).__name__))
                    conn.close()
                    conn = None
                    break
                latencies.append(time.monotonic() - started)
                statuses[str(response.status)] += 1
                if response.status >= 300:
                    failures_at.append((round(time.monotonic() - t0, 3), str(response.status)))
                    failed_ms.append(round((time.monotonic() - started) * 1000, 1))
                else:
                    ok_at.append(round(time.monotonic() - t0, 3))
                if not keepalive or response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
                break
            if args.think:
                gevent.sleep(args.think)
        if conn is not None:
            conn.close()

    started = time.monotonic()
    gevent.joinall([gevent.spawn(client, i) for i in range(args.clients)])
    elapsed = time.monotonic() - started
    latencies.sort()
    ok = sum(n for status, n in statuses.items() if status.startswith("2"))
    print(json.dumps({
        "ok": ok,
        "statuses": dict(statuses),
        "errors": dict(errors),
        "failed": sum(statuses.values()) - ok + sum(errors.values()),
        "seconds": round(elapsed, 2),
        "rps": round(len(latencies) / elapsed, 1) if elapsed else 0,
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1) if latencies else None,
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "failures_at": failures_at,
        "failed_ms": failed_ms,
        "ok_at": ok_at,
        "wall_start": wall_start,
    }))


if __name__ == "__main__":
    main()
