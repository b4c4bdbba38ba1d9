"""Settings for Django's own runtests.py on the private MariaDB: the stock MySQL backend or the kit's engine.

    cd <django sdist>/tests && CONFORMANCE_BACKEND=stock|full|tracked|rollback|transaction CONFORMANCE_PORT=... \\
        python runtests.py --settings=conformance.django_settings --noinput <modules>

conformance/django_suite.py sets the environment. Everything else comes from the suite's own template
(tests/test_sqlite.py of the same Django version), so the settings move with each Django release.
"""

from __future__ import annotations

import os
from typing import Any

from pool.pymysql_driver import install_as_mysqldb

try:
    from test_sqlite import *  # type: ignore[import-not-found]  # noqa: F403 - runtests.py puts tests/ on sys.path
except ImportError:  # the template's settings, should a release move it
    SECRET_KEY = "django_tests_secret_key"
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    USE_TZ = False

# The stock run uses the very driver the engine installs, so a difference is the engine's, not PyMySQL's.
install_as_mysqldb()

BACKEND = os.environ.get("CONFORMANCE_BACKEND", "stock")
# The engine's pool settings per backend: a reset mode under lease="request", or the per-transaction lease (with the
# default reset, tracked: the lease needs the server's reports of session state anyway).
POOL_OPTIONS: dict[str, dict[str, str]] = {
    "full": {"reset": "full"},
    "tracked": {"reset": "tracked"},
    "rollback": {"reset": "rollback"},
    "transaction": {"reset": "tracked", "lease": "transaction"},
}
if BACKEND != "stock" and BACKEND not in POOL_OPTIONS:
    raise RuntimeError(f"CONFORMANCE_BACKEND={BACKEND!r}: expected stock, {', '.join(POOL_OPTIONS)}")


def _database(name: str) -> dict[str, Any]:
    # The private server has no TLS; PyMySQL 1.2 would build a TLS context for each connect anyway, 26 ms of CPU
    # (the stock backend reconnects for every TransactionTestCase test), on both backends alike.
    options: dict[str, Any] = {"charset": "utf8mb4", "ssl_disabled": True}
    if BACKEND != "stock":
        options["pool"] = dict(POOL_OPTIONS[BACKEND])
    return {
        "ENGINE": "django.db.backends.mysql" if BACKEND == "stock" else "pool.django",
        "NAME": name,
        "HOST": "127.0.0.1",
        "PORT": os.environ["CONFORMANCE_PORT"],
        "USER": os.environ.get("CONFORMANCE_USER", "app"),
        "PASSWORD": os.environ.get("CONFORMANCE_PASSWORD", ""),
        "OPTIONS": options,
        # The private server starts with --no-defaults, hence latin1 unless the test databases say otherwise.
        "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_general_ci"},
    }


# runtests.py needs both aliases; multi-database tests use "other".
DATABASES = {"default": _database("conformance_default"), "other": _database("conformance_other")}
TEST_RUNNER = "conformance.django_runner.RecordingRunner"
