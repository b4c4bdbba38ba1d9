from django.urls import path

from deploy.shop import views
from pool.django.readiness import readyz

urlpatterns = [
    path("", views.status_page),
    path("products/", views.product_list),
    path("products/<int:product_id>/", views.product_detail),
    path("orders/", views.place_order),
    path("report/slow/", views.slow_report),
    path("select1/", views.select_one),
    path("write1/", views.write_one),
    path("mixed/", views.mixed),
    path("fanout/", views.fanout),
    path("healthz", views.healthz),
    path("readyz", readyz),
    path("-/pool", views.pool_stats),
    path("metrics", views.metrics),
]
