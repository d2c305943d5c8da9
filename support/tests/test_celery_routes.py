"""The realtime queue's routes name real tasks (a renamed task would silently fall back to
the default queue, behind enrichment work)."""

from __future__ import annotations

from django.conf import settings

from support.celery import app


def test_every_realtime_route_names_a_registered_task() -> None:
    app.loader.import_default_modules()
    routed = set(settings.CELERY_TASK_ROUTES)
    assert routed, "no task routes configured"
    missing = sorted(name for name in routed if name not in app.tasks)
    assert missing == []
    assert {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()} == {"realtime"}
    assert "channels_app.tasks.inbound_events_drain_task" in routed
    assert "support.tasks.outbox_relay_task" in routed
    # SLA pages are not queued behind routing or knowledge-base work
    assert {"alerts.tasks.sla_event_handle_task", "alerts.tasks.sla_alerts_resolve_task"} <= routed
