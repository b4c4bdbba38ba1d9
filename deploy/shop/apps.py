from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "deploy.shop"
    label = "shop"
