"""gunicorn -c gunicorn.conf.py: a WSGI app on gevent workers with a bounded database pool in each worker.

Copy this file into your project as it is: it needs only the kit's `pool` package and the standard library. It sets
what the kit changes from gunicorn's defaults and from the pool's; every pool setting, its POOL_* environment variable
and its default is in docs/settings.md, the gunicorn side in docs/deploy.md. Every value here can be overridden from
the environment (names in capitals); a bad value stops the start with one line naming the variable.

It runs in gunicorn's arbiter before gevent patches anything: no Django and no gevent imports here.
"""

import os

from pool import gunicorn as pool_hooks
from pool import otel as pool_otel
from pool.conf import configure_pool, env_flag, env_int, env_setting, env_str

# -- serving --------------------------------------------------------------------------------------------------------
# The demo site; yours here, or on the command line: gunicorn -c gunicorn.conf.py myproject.wsgi
wsgi_app = "deploy.wsgi:application"
bind = env_str("BIND", "127.0.0.1:8000")
worker_class = "gevent"
# One process per core: under gevent a worker is single-threaded, and its concurrency comes from greenlets.
# WEB_CONCURRENCY is what gunicorn and hosting platforms use; WEB_WORKERS, the kit's own name, wins over it.
workers = env_int("WEB_WORKERS", env_int("WEB_CONCURRENCY", 2, minimum=1), minimum=1)
# Greenlets per worker, i.e. requests in progress at once. Only the pool's size of them can use the database at a
# time; the rest wait for a connection (up to POOL_TIMEOUT), which is what keeps the server's connection count bounded.
worker_connections = env_int("WORKER_CONNECTIONS", 1000, minimum=1)
# Under gevent this is the worker's heartbeat, not a per-request limit: it fires only when CPU-bound code blocks the
# hub. The pool's wait (POOL_TIMEOUT) and the driver's read timeout bound a request instead.
timeout = env_int("WORKER_TIMEOUT", 30, minimum=1)
# How long a SIGHUP reload or a shutdown lets requests in flight finish; old and new workers overlap this long.
graceful_timeout = env_int("GRACEFUL_TIMEOUT", 30)
# Longer than nginx's upstream keepalive_timeout (60 s by default), so nginx, not gunicorn, closes idle connections
# and never sends a request on a socket gunicorn is closing.
keepalive = env_int("KEEPALIVE", 75)
# Restart workers now and then to bound slow memory growth; the jitter keeps them from restarting together.
max_requests = env_int("MAX_REQUESTS", 20000)
max_requests_jitter = env_int("MAX_REQUESTS_JITTER", 2000)
# Keep off: loading Django in the arbiter would create its state before gevent patches the worker.
preload_app = env_flag("PRELOAD_APP", False)
accesslog = env_str("ACCESS_LOG", "-") or None
# gunicorn 27's control socket lives at one fixed path per user, so two servers on a host would fight over it; the kit
# does not use it. (Older gunicorns ignore this name.)
control_socket_disable = not env_flag("GUNICORN_CONTROL_SOCKET", False)
loglevel = env_str("LOG_LEVEL", "info")

# -- the database pool: one per worker and alias; workers x size per alias is the most the app holds on the server ----
# Only what differs from the pool's defaults (docs/settings.md lists them all). These go over Django's
# OPTIONS["pool"] and under POOL_<NAME> from the environment, e.g. POOL_SIZE=20; configure_pool hands them to every
# worker's pools in the environment variable POOL_CONF. Warm start: each worker opens its connections before serving,
# so the first requests pay no connect and /metrics has every worker from the first scrape.
# configure_pool(lease="transaction") lends a connection per statement or transaction instead of per request: for
# views that wait on APIs, caches or slow clients between queries (docs/lease.md).
# Several aliases (tenants, isolation levels) on one server: server_size=N (POOL_SERVER_SIZE) bounds them together, N
# per worker, and the budget check counts workers x N (docs/deploy.md, several aliases or tenants on one server).
pool = configure_pool(warm_start=True)
# Start-up check of workers x size, or server_size when set (x2 for a reload) + reserve against max_connections.
budget_reserve = env_setting("budget_reserve")  # POOL_BUDGET_RESERVE
budget_strict = env_setting("budget_strict")  # POOL_BUDGET_STRICT=1: refuse to start when over budget, not warn
# Prometheus metrics of every worker's pool, added up at /metrics (prometheus_client's multiprocess mode); "" disables.
metrics_dir = env_str("PROMETHEUS_MULTIPROC_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "run",
                                                               "prometheus"))
# OpenTelemetry: the semantic conventions' pool metrics (db.client.connection.*) and spans for waits and connects,
# from every worker, through the SDK and exporter your app sets up (the kit's [otel] extra; docs/observability.md).
opentelemetry = pool_otel.instrument(enabled=env_setting("otel"))  # POOL_OTEL


# -- hooks ------------------------------------------------------------------------------------------------------------
def on_starting(server):
    pool_hooks.arbiter_keeps_no_idle(server)
    pool_hooks.share_stats(metrics_dir)
    pool_hooks.check_budget(server, pool, database_url=os.environ.get("DATABASE_URL"), strict=budget_strict,
                            reserve=budget_reserve)


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
