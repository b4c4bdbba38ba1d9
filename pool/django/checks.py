"""System checks for databases on the pooled engine (`manage.py check`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

ENGINE = "pool.django"


@checks.register(checks.Tags.database)
def check_pooled_databases(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from .base import pool_config_for

    messages: list[checks.CheckMessage] = []
    for alias, db in settings.DATABASES.items():
        if db.get("ENGINE") != ENGINE:
            continue
        try:
            pool_config_for(db, alias)
        except ImproperlyConfigured as exc:
            messages.append(checks.Error(str(exc), hint="Fix the pool setting named above.", id="pool.E001", obj=alias))
        if db.get("CONN_MAX_AGE", 0) != 0:
            messages.append(checks.Warning(
                f"DATABASES[{alias!r}]['CONN_MAX_AGE'] is {db['CONN_MAX_AGE']!r}, but the pooled engine returns "
                f"connections to the pool at the end of each request whatever it says.",
                hint="Set CONN_MAX_AGE to 0; tune the pool's max_lifetime and idle_timeout instead.",
                id="pool.W001", obj=alias,
            ))
        if db.get("CONN_HEALTH_CHECKS"):
            messages.append(checks.Warning(
                f"DATABASES[{alias!r}]['CONN_HEALTH_CHECKS'] is on: the pool already checks a connection before "
                f"lending it (free socket check, ping after ping_after seconds idle).",
                hint="Remove CONN_HEALTH_CHECKS; it can only add round trips.",
                id="pool.W002", obj=alias,
            ))
    return messages


@checks.register(checks.Tags.compatibility)
def check_retired_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from ..settings import RETIRED_SETTINGS

    return [checks.Warning(f"settings.{name} is set, but it no longer does anything.", hint=hint, id="pool.W003")
            for name, hint in RETIRED_SETTINGS.items() if hasattr(settings, name)]
