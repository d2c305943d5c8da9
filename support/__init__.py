"""Project package: settings, wiring and shared infrastructure (auth, events, errors)."""

from support.celery import app as celery_app

__all__ = ["celery_app"]
