from django.apps import AppConfig


class PoolAppConfig(AppConfig):
    """Add "pool.django.apps.PoolAppConfig" to INSTALLED_APPS for the pool's system checks."""

    name = "pool.django"
    label = "pool_django"
    verbose_name = "MySQL connection pool"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the checks
