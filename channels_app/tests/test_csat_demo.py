"""The demo data sends no satisfaction survey: its resolved tickets are back-dated in the
same transaction that resolves them, so the ``ticket.resolved`` event's time is not the
ticket's resolution any more, and the survey (one per resolution, read from the ticket
when the task runs) is not written. ``make run`` starts the workers on a freshly loaded
demo: a survey per demo ticket would be mail to made-up customers."""

from __future__ import annotations

from typing import Any

import pytest

from channels_app.services.csat_survey import SURVEY_METADATA_KEY
from support.models import OutboxEvent
from support.services import outbox_relay
from tickets import demo
from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db


def test_the_demo_load_sends_no_survey(
    monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    monkeypatch.setattr(demo, "DEMO_TICKETS", 24)
    demo.load_demo(password="demo-pass-for-tests", progress=lambda _: None)
    resolved = Ticket.objects.filter(tags__name="demo", status="resolved")
    assert resolved.exists()
    assert OutboxEvent.objects.filter(event_type="ticket.resolved").exists()
    with django_capture_on_commit_callbacks(execute=True):
        while outbox_relay():
            pass
    assert not OutboxEvent.objects.filter(event_type="ticket.resolved", delivered_at=None).exists()
    assert not Message.objects.filter(metadata__has_key=SURVEY_METADATA_KEY).exists()
