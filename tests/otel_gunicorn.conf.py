"""The kit's gunicorn.conf.py with POOL_OTEL=1 (set by the test), and in each worker the OpenTelemetry SDK with
in-memory readers whose readings the worker writes to KIT_OTEL_DIR/otel-<pid>.json (tests/otel_worker.py)."""

import os
import runpy

_conf = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gunicorn.conf.py"))
globals().update({name: value for name, value in _conf.items() if not name.startswith("__")})


def post_worker_init(worker):
    # Before the pool's hook: its warm start opens the first connections, which the SDK must already see.
    from tests.otel_worker import start

    start()
    _conf["post_worker_init"](worker)
