"""Settings of the demo site the kit serves. The database comes from DATABASE_URL; the pool is tuned in
gunicorn.conf.py."""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from pool.dburl import parse_database_url
from pool.errors import ConfigError


def database_from_url(url: str) -> dict[str, object]:
    """mysql://user:password@host:port/name?option=value -> a DATABASES entry on the pooled engine."""
    try:
        kwargs = parse_database_url(url)
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
    return {
        "ENGINE": "pool.django",
        "NAME": kwargs["database"],
        "USER": kwargs["user"],
        "PASSWORD": kwargs["password"],
        "HOST": kwargs.get("unix_socket") or kwargs["host"],
        "PORT": str(kwargs.get("port", "")),
        # A write view runs in one transaction; read views opt out (shop.views) to spare BEGIN/COMMIT round trips.
        "ATOMIC_REQUESTS": True,
        # The pool returns the connection at the end of every request; a non-zero value here would only mislead.
        "CONN_MAX_AGE": 0,
        "OPTIONS": kwargs["options"],
        "TEST": {"CHARSET": "utf8mb4"},
    }


BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "pool.django.apps.PoolAppConfig",
    "deploy.shop",
]
MIDDLEWARE = [
    "pool.django.middleware.PoolMiddleware",
    "django.middleware.common.CommonMiddleware",
]
# PoolMiddleware reads request bodies before the view takes a connection; a client gets this long to send one.
POOL_BODY_TIMEOUT = float(os.environ.get("KIT_BODY_TIMEOUT", "30"))
# Server-Timing: pool;dur=<ms queued for connections> on every response (PoolMiddleware); KIT_SERVER_TIMING=0 drops it.
POOL_SERVER_TIMING = os.environ.get("KIT_SERVER_TIMING", "1") != "0"
# /readyz calls a pool stuck when no caller has got a connection for this many seconds while all are in use and callers
# wait; unset (KIT_READY_STUCK_AFTER empty), the pool's timeout. A long queue that moves is ready (docs/deploy.md).
POOL_READY_STUCK_AFTER = float(os.environ["KIT_READY_STUCK_AFTER"]) if os.environ.get("KIT_READY_STUCK_AFTER") else None
ROOT_URLCONF = "deploy.urls"
WSGI_APPLICATION = "deploy.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_url = os.environ.get("DATABASE_URL")
if not _url:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Serve with `scripts/serve` (it starts a private MariaDB), or export "
        "DATABASE_URL=mysql://user:password@127.0.0.1:3306/name"
    )
DATABASES = {"default": database_from_url(_url)}
# A read replica: reads go there, writes and reads after a write to the primary (pool.django.routing); its own pool,
# so its own budget. No ATOMIC_REQUESTS there: a request's transaction belongs on the primary.
if os.environ.get("REPLICA_DATABASE_URL"):
    DATABASES["replica"] = {**database_from_url(os.environ["REPLICA_DATABASE_URL"]), "ATOMIC_REQUESTS": False,
                            "TEST": {"MIRROR": "default"}}
    DATABASE_ROUTERS = ["pool.django.routing.PrimaryReplicaRouter"]

# Baselines for the benchmarks: the same site on Django's stock MySQL backend (KIT_BASELINE=stock, with
# KIT_CONN_MAX_AGE) or on django-db-connection-pool (KIT_BASELINE=dbcp, SQLAlchemy's QueuePool), so that every variant
# is measured on identical views. Both use PyMySQL as MySQLdb, like the kit.
_baseline = os.environ.get("KIT_BASELINE", "")
if _baseline in ("stock", "dbcp"):
    from pool.pymysql_driver import install_as_mysqldb

    install_as_mysqldb()
    INSTALLED_APPS.remove("pool.django.apps.PoolAppConfig")
    MIDDLEWARE.remove("pool.django.middleware.PoolMiddleware")
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("KIT_CONN_MAX_AGE", "0"))
    if _baseline == "stock":
        DATABASES["default"]["ENGINE"] = "django.db.backends.mysql"
    else:
        DATABASES["default"]["ENGINE"] = "dj_db_conn_pool.backends.mysql"
        # Same cap as the kit's pool, no overflow: a bounded pool, as its docs recommend for production.
        DATABASES["default"]["POOL_OPTIONS"] = {"POOL_SIZE": int(os.environ.get("POOL_SIZE", "10")), "MAX_OVERFLOW": 0}
elif _baseline == "late-release":
    # The kit without PoolMiddleware: connections go back at request_finished, after the response is written.
    MIDDLEWARE.remove("pool.django.middleware.PoolMiddleware")
elif _baseline:
    raise ImproperlyConfigured(f"KIT_BASELINE={_baseline!r}: use 'stock', 'dbcp', 'late-release' or leave it unset")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"pool": {"handlers": ["stderr"], "level": os.environ.get("POOL_LOG_LEVEL", "INFO"), "propagate": True}},
}
