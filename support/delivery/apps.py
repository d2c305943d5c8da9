from __future__ import annotations

from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    """The outbound delivery engine (``support.delivery``): shared infrastructure, it
    imports no feature app; feature apps register their target kinds in ``ready()``."""

    name = "support.delivery"
    label = "delivery"
    verbose_name = "Outbound deliveries"
    default_auto_field = "django.db.models.BigAutoField"
