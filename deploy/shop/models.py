from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=100, unique=True)
    price_cents = models.PositiveIntegerField()
    stock = models.PositiveIntegerField(default=0)

    def as_dict(self) -> dict[str, object]:
        return {"id": self.pk, "name": self.name, "price_cents": self.price_cents, "stock": self.stock}


class Order(models.Model):
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="orders")
    quantity = models.PositiveIntegerField()
    created = models.DateTimeField(auto_now_add=True)
