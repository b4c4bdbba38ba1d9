"""The demo site's own Django tests: `manage.py test deploy.shop` runs them on the pooled engine, creating and
destroying a test database as any user's project would."""

import json

from django.db import connection, connections
from django.test import TestCase, TransactionTestCase

from .models import Order, Product


class ShopTests(TestCase):
    def test_product_list_and_detail(self) -> None:
        self.assertEqual(len(self.client.get("/products/").json()["products"]), 20)
        self.assertEqual(self.client.get("/products/1/").json()["name"], "product 001")

    def test_order_decrements_stock(self) -> None:
        before = Product.objects.get(pk=2).stock
        response = self.client.post("/orders/", json.dumps({"product_id": 2, "quantity": 3}),
                                    content_type="application/json")
        self.assertEqual(response.status_code, 201)
        self.assertEqual(Product.objects.get(pk=2).stock, before - 3)

    def test_engine_is_the_pool(self) -> None:
        self.assertEqual(connection.vendor, "mysql")
        self.assertEqual(type(connections["default"]).__module__, "pool.django.base")


class AtomicRequestTests(TransactionTestCase):
    """Real transactions (no wrapping test transaction), so ATOMIC_REQUESTS' rollback is what is observed."""

    def test_error_after_write_leaves_no_trace(self) -> None:
        before = Product.objects.get(pk=3).stock
        self.client.raise_request_exception = False
        response = self.client.post("/orders/", json.dumps({"product_id": 3, "quantity": 1, "fail_after_write": True}),
                                    content_type="application/json")
        self.assertEqual(response.status_code, 500)
        self.assertEqual(Product.objects.get(pk=3).stock, before)
        self.assertEqual(Order.objects.count(), 0)
