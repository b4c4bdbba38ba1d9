"""gunicorn -c gunicorn.conf.py: the demo site on gevent workers, with the database pool tuned here.

Every value can be overridden from the environment (names in capitals beside each). This file runs in gunicorn's
arbiter before gevent patches anything: it imports no Django and no gevent.
"""

import os

from deploy.serve import ensure_database, stop_private_database
from pool import gunicorn as pool_hooks


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


# -- serving --------------------------------------------------------------------------------------------------------
wsgi_app = "deploy.wsgi:application"
bind = env("BIND", "127.0.0.1:8000")
worker_class = "gevent"
# One process per core: under gevent a worker is single-threaded, and its concurrency comes from greenlets.
workers = int(env("WEB_WORKERS", "2"))
# Greenlets per worker, i.e. requests in progress at once. Only pool_size of them can use the database at a time;
# the rest wait for a connection (up to POOL_TIMEOUT), which is what keeps the server's connection count bounded.
worker_connections = int(env("WORKER_CONNECTIONS", "1000"))
# Under gevent this is the worker's heartbeat, not a per-request limit: it fires only when CPU-bound code blocks the
# hub. The pool's wait (POOL_TIMEOUT) and the driver's read timeout bound a request instead.
timeout = int(env("WORKER_TIMEOUT", "30"))
# How long a SIGHUP reload or a shutdown lets requests in flight finish; old and new workers overlap this long.
graceful_timeout = int(env("GRACEFUL_TIMEOUT", "30"))
# Longer than nginx's upstream keepalive_timeout (60 s by default), so nginx, not gunicorn, closes idle connections
# and never sends a request on a socket gunicorn is closing.
keepalive = int(env("KEEPALIVE", "75"))
# Restart workers now and then to bound slow memory growth; the jitter keeps them from restarting together.
max_requests = int(env("MAX_REQUESTS", "20000"))
max_requests_jitter = int(env("MAX_REQUESTS_JITTER", "2000"))
# Keep False: loading Django in the arbiter would create its state before gevent patches the worker.
preload_app = env("PRELOAD_APP", "0") == "1"
accesslog = env("ACCESS_LOG", "-") or None
# gunicorn 27's control socket lives at one fixed path per user, so two servers on a host would fight over it; the kit
# does not use it. (Older gunicorns ignore this name.)
control_socket_disable = env("GUNICORN_CONTROL_SOCKET", "0") != "1"
loglevel = env("LOG_LEVEL", "info")

# -- the database pool: one per worker; workers x size is the most the app ever holds on the server --------------------
pool = pool_hooks.configure_pool(
    size=10,  # POOL_SIZE: connections per worker; what the DB work of worker_connections greenlets shares
    timeout=10.0,  # POOL_TIMEOUT: seconds a request waits for a connection before a 503 with Retry-After
    max_waiting=0,  # POOL_MAX_WAITING: cap on queued requests per worker (0: none); more get a 503 at once
    max_lifetime=None,  # POOL_MAX_LIFETIME: seconds; default half the server's wait_timeout (at most 1 h), jittered
    idle_timeout=600.0,  # POOL_IDLE_TIMEOUT: close connections idle this long, keeping min_idle
    min_idle=1,  # POOL_MIN_IDLE
    ping_after=1.0,  # POOL_PING_AFTER: ping before use only after this much idle time; a free check always runs
    reset="full",  # POOL_RESET: full (COM_RESET_CONNECTION, sessions never leak between requests) or rollback
    leak_threshold=60.0,  # POOL_LEAK_THRESHOLD: warn with the checkout's stack when a connection is held this long
    connect_timeout=5.0,  # POOL_CONNECT_TIMEOUT
    read_timeout=30.0,  # POOL_READ_TIMEOUT: a hung server holds a connection (and a request) no longer than this
    write_timeout=30.0,  # POOL_WRITE_TIMEOUT
)
# Start-up check of workers x size (x2 for a reload) + reserve against the server's max_connections.
budget_reserve = int(env("POOL_BUDGET_RESERVE", "10"))
budget_strict = env("POOL_BUDGET_STRICT", "0") == "1"  # 1: refuse to start when over budget, instead of warning
# Prometheus metrics of every worker's pool, added up at /metrics (prometheus_client's multiprocess mode); "" disables.
metrics_dir = env("PROMETHEUS_MULTIPROC_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "run", "prometheus"))


# -- hooks ------------------------------------------------------------------------------------------------------------
def on_starting(server):
    if metrics_dir:
        pool_hooks.prepare_metrics_dir(metrics_dir)
    url = ensure_database(server.log)
    pool_hooks.check_budget(server, pool, database_url=url, strict=budget_strict, reserve=budget_reserve)


def post_fork(server, worker):
    pool_hooks.post_fork(server, worker)


def post_worker_init(worker):
    pool_hooks.post_worker_init(worker)


def worker_exit(server, worker):
    pool_hooks.worker_exit(server, worker)


def child_exit(server, worker):
    pool_hooks.child_exit(server, worker)


def nworkers_changed(server, new_value, old_value):
    # TTIN/TTOU: the budget is checked again for the new number of workers.
    pool_hooks.nworkers_changed(server, new_value, old_value)


def on_exit(server):
    stop_private_database()
