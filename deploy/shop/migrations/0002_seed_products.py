from typing import Any

from django.db import migrations


def seed(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("shop", "Product")
    # Into the database being migrated (a tenant's, a test database), not into `default`.
    Product.objects.using(schema_editor.connection.alias).bulk_create(
        Product(name=f"product {i:03d}", price_cents=100 + i, stock=1_000_000) for i in range(1, 101)
    )


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
