"""The satisfaction survey goes through a task: the ``ticket.resolved`` subscriber only
enqueues it (no ticket lock, no message written in the outbox relay's transaction), the
task writes one survey however often it is delivered, and Messenger and Instagram, like
WhatsApp, get none (and no agent reply either) outside Meta's 24-hour window. HTTP mocked
with responses."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses
from celery.exceptions import Retry
from django.db import OperationalError
from django.utils import timezone

from channels_app.services.csat_survey import SURVEY_METADATA_KEY
from channels_app.tasks import csat_survey_send_task
from channels_app.tests.conftest import make_account
from support.db import DATABASE_GONE
from support.delivery.models import Delivery
from support.models import OutboxEvent
from support.services import outbox_relay
from tickets.models import Message, Ticket
from tickets.services import message_add, ticket_update

pytestmark = pytest.mark.django_db

WA_URL = "https://graph.facebook.com/v21.0/106540352242922/messages"
MESSENGER_URL = "https://graph.facebook.com/v21.0/me/messages"
INSTAGRAM_URL = "https://graph.facebook.com/v21.0/17841405822304914/messages"


def surveys(ticket: Ticket) -> list[Message]:
    return list(
        Message.objects.filter(ticket=ticket, metadata__has_key=SURVEY_METADATA_KEY).order_by("pk")
    )


def ticket_on(channel: str, post_fixture: Any) -> Ticket:
    post_fixture(make_account(channel), "text_message")
    return Ticket.objects.get()


def last_wrote(ticket: Ticket, hours: float) -> None:
    Message.objects.filter(ticket=ticket, direction="inbound").update(
        created_at=timezone.now() - timedelta(hours=hours)
    )


@responses.activate
def test_the_relay_only_enqueues_the_survey_task(
    post_fixture: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """In the relay's transaction nothing about the survey is read or written: the task
    is started once the batch commits, and it writes and sends the survey."""
    ticket = ticket_on("whatsapp", post_fixture)
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SURVEY-T1"}]})
    ticket_update(ticket=ticket, status="resolved", actor=agent)  # the event waits
    with (
        mock.patch("channels_app.services.csat_survey.csat_survey_send") as service,
        django_capture_on_commit_callbacks(execute=False) as after_commit,
    ):
        assert outbox_relay() >= 1
        service.assert_not_called()  # not in the relay's transaction
    assert surveys(ticket) == []
    assert OutboxEvent.objects.get(event_type="ticket.resolved").delivered_at is not None
    enqueued = [c for c in after_commit if c.__qualname__.startswith("subscriber_task_enqueue")]
    assert enqueued  # the survey task (and the other subscribers' tasks)
    with django_capture_on_commit_callbacks(execute=True):
        for callback in after_commit:
            callback()
    (survey,) = surveys(ticket)
    assert survey.channel_message_id == "wamid.SURVEY-T1"
    assert len(responses.calls) == 1


@responses.activate
def test_the_task_delivered_twice_sends_one_survey(
    post_fixture: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ticket = ticket_on("whatsapp", post_fixture)
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SURVEY-T2"}]})
    with django_capture_on_commit_callbacks(execute=True):
        ticket_update(ticket=ticket, status="resolved", actor=agent)
    (first,) = surveys(ticket)
    resolved_at = OutboxEvent.objects.get(event_type="ticket.resolved").payload["resolved_at"]
    # at-least-once (acks_late): the same task again, after the first one's work is done
    with django_capture_on_commit_callbacks(execute=True):
        assert csat_survey_send_task.delay(ticket.pk, resolved_at).get() == first.pk
        assert csat_survey_send_task.delay(ticket.pk, resolved_at).get() == first.pk
    assert surveys(ticket) == [first]
    assert Delivery.objects.count() == 1
    assert len(responses.calls) == 1


def test_the_task_retries_the_database_going_away_a_bounded_number_of_times() -> None:
    """The project's database-gone retry (``support.db.DATABASE_GONE_RETRY``: backoff with
    jitter up to a minute), at most 3 times; then Celery raises and logs the failure."""
    assert csat_survey_send_task.autoretry_for == DATABASE_GONE
    assert (csat_survey_send_task.max_retries, csat_survey_send_task.acks_late) == (3, True)
    assert csat_survey_send_task.retry_backoff_max == 60
    gone = OperationalError("gone")
    with (
        mock.patch("channels_app.tasks.csat_survey_send", side_effect=gone),
        mock.patch.object(csat_survey_send_task, "retry", side_effect=Retry()) as retry,
    ):
        csat_survey_send_task.push_request(id="t", retries=0)  # type: ignore[call-arg]
        try:
            with pytest.raises(Retry):
                csat_survey_send_task.run(1, "2026-12-06T18:00:00+00:00")
        finally:
            csat_survey_send_task.pop_request()
    (call,) = retry.call_args_list
    assert call.kwargs["exc"] is gone
    assert 0 <= call.kwargs["countdown"] <= 60


@responses.activate
@pytest.mark.parametrize(
    ("channel", "url"), [("messenger", MESSENGER_URL), ("instagram", INSTAGRAM_URL)]
)
def test_messenger_and_instagram_survey_only_within_24_hours(
    channel: str,
    url: str,
    post_fixture: Any,
    agent: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Meta takes a free-form message (Messenger's ``RESPONSE``) only within 24 hours of
    the customer's last message: later, a survey could only fail, so none is written."""
    ticket = ticket_on(channel, post_fixture)
    last_wrote(ticket, 25)
    with (
        caplog.at_level(logging.INFO, logger="channels_app.services.csat_survey"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        ticket_update(ticket=ticket, status="resolved", actor=agent)
    assert surveys(ticket) == []
    assert Delivery.objects.count() == 0
    assert len(responses.calls) == 0
    label = {"messenger": "Messenger", "instagram": "Instagram"}[channel]
    assert (
        f"No satisfaction survey for {ticket.number}: {label} takes no free-form message now"
    ) in caplog.text

    # within the window it is sent
    responses.post(url, json={"recipient_id": "x", "message_id": "m_SURVEY"})
    with django_capture_on_commit_callbacks(execute=True):
        ticket_update(ticket=ticket, status="open", actor=agent)
    last_wrote(ticket, 23)
    with django_capture_on_commit_callbacks(execute=True):
        ticket_update(ticket=ticket, status="resolved", actor=agent)
    (survey,) = surveys(ticket)
    assert (survey.channel, survey.delivery_status) == (channel, "sent")
    assert len(responses.calls) == 1
    if channel == "messenger":
        assert json.loads(responses.calls[0].request.body or b"")["messaging_type"] == "RESPONSE"


@responses.activate
@pytest.mark.parametrize("channel", ["messenger", "instagram"])
def test_an_agents_reply_outside_the_24_hour_window_is_refused_with_a_clear_error(
    channel: str, post_fixture: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """As on WhatsApp: no request Meta could only refuse; the reply fails with why."""
    ticket = ticket_on(channel, post_fixture)
    last_wrote(ticket, 25)
    with django_capture_on_commit_callbacks(execute=True):
        message = message_add(ticket=ticket, body="Here you are", author_user=agent)
    assert len(responses.calls) == 0
    message.refresh_from_db()
    assert (message.delivery_status, message.delivery_error_code) == (
        "failed",
        f"{channel}_window_closed",
    )
    assert message.delivery_error == (
        "Not sent: the customer last wrote more than 24 hours ago, outside Meta's messaging "
        "window. A reply can go out once the customer writes again."
    )
    assert Delivery.objects.get().status == "dead"
