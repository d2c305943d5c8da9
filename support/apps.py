from __future__ import annotations

from django.apps import AppConfig


class SupportConfig(AppConfig):
    name = "support"
    verbose_name = "Platform"
    default_auto_field = "django.db.models.BigAutoField"
