"""The satisfaction survey: a resolved ticket sends the customer one message with the
signed feedback link, on the ticket's own channel, through the outbound path every reply
takes (a ``channel_reply`` delivery, its attempts recorded). HTTP mocked with responses."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses
from django.conf import settings as django_settings
from django.core.cache import cache
from django.utils import timezone

from channels_app.adapters.webchat.adapter import session_issue
from channels_app.services.csat_survey import (
    SURVEY_LINK_PLACEHOLDER,
    SURVEY_METADATA_KEY,
    SWEEP_ON_SINCE_KEY,
    csat_survey_send,
    csat_surveys_sweep,
)
from channels_app.tests.conftest import counts, diff, make_account
from support.delivery.models import Attempt, Delivery
from support.models import OutboxEvent
from support.services import outbox_relay
from tickets.context.models import CsatFeedback
from tickets.models import Message, Ticket
from tickets.services import ticket_create, ticket_merge, ticket_update

pytestmark = pytest.mark.django_db

WA_URL = "https://graph.facebook.com/v21.0/106540352242922/messages"
SENDGRID = "https://api.sendgrid.com/v3/mail/send"
LINK = re.compile(r"(https?://\S+/feedback/[^\s\"<]+)")


@pytest.fixture
def wa_ticket(post_fixture: Any) -> Ticket:
    post_fixture(make_account("whatsapp"), "text_message")
    return Ticket.objects.get()


def resolve(ticket: Ticket, agent: Any, capture: Any) -> Ticket:
    """Resolve and run what is committed: the outbox relay, its subscribers, the sends."""
    with capture(execute=True):
        return ticket_update(ticket=ticket, status="resolved", actor=agent)


def surveys(ticket: Ticket) -> list[Message]:
    return list(
        Message.objects.filter(ticket=ticket, metadata__has_key=SURVEY_METADATA_KEY).order_by("pk")
    )


def wa_text(call: Any) -> str:
    return str(json.loads(call.request.body or b"")["text"]["body"])


@responses.activate
def test_resolving_sends_one_survey_on_the_tickets_channel_with_a_link_that_works(
    wa_ticket: Ticket, agent: Any, client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SURVEY-1"}]})
    before = counts()
    resolve(wa_ticket, agent, django_capture_on_commit_callbacks)
    # the status change's timeline entry and the survey; one delivery, one attempt
    assert diff(before, counts()) == {"messages": 2, "deliveries": 1, "attempts": 1}
    assert len(responses.calls) == 1
    sent = json.loads(responses.calls[0].request.body or b"")
    assert (sent["to"], sent["type"]) == ("16505551234", "text")
    text = wa_text(responses.calls[0])
    opening = f"How did we do with {wa_ticket.number}? Tap the link to rate our help: "
    assert text.startswith(opening)
    (link,) = LINK.findall(text)
    assert link.startswith(f"{django_settings.SITE_URL}/feedback/")

    (survey,) = surveys(wa_ticket)
    assert (survey.direction, survey.kind, survey.channel, survey.author_user) == (
        "outbound",
        "public",
        "whatsapp",
        None,
    )
    # stored (and shown to agents) without the link, which only the customer is sent
    assert (survey.body_text, survey.delivery_status, survey.channel_message_id) == (
        text.replace(link, SURVEY_LINK_PLACEHOLDER),
        "sent",
        "wamid.SURVEY-1",
    )
    delivery = Delivery.objects.get()
    assert (delivery.target_kind, delivery.idempotency_key, delivery.status) == (
        "channel_reply",
        f"message:{survey.pk}",
        "succeeded",
    )
    assert Attempt.objects.get(delivery=delivery).outcome == "success"

    # the customer's link opens the feedback page, which takes the answer
    path = link.removeprefix(django_settings.SITE_URL)
    assert client.get(path).status_code == 200
    answered = client.post(path, {"rating": "5", "comment": "Quick, thanks"})
    assert answered.status_code == 200
    feedback = CsatFeedback.objects.get()
    assert (feedback.ticket_id, feedback.rating) == (wa_ticket.pk, 5)

    # agents see it on the timeline, sent by the system to the customer
    client.force_login(agent)
    page = client.get(f"/tickets/{wa_ticket.number}/").content.decode()
    assert f"How did we do with {wa_ticket.number}?" in page
    assert 'System <span class="muted">to customer via WhatsApp</span>' in page


@responses.activate
def test_an_email_ticket_gets_the_survey_by_email_in_its_thread(
    post_fixture: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    account = make_account("email")
    post_fixture(account, "inbound_parse_new")
    ticket = Ticket.objects.get()
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-survey"})
    resolve(ticket, agent, django_capture_on_commit_callbacks)
    assert len(responses.calls) == 1
    sent = json.loads(responses.calls[0].request.body or b"")
    assert sent["personalizations"] == [{"to": [{"email": "jane.doe@example.org"}]}]
    assert sent["subject"] == f"Re: Order 1234 arrived broken [{ticket.number}]"
    assert sent["headers"]["In-Reply-To"] == "<CAHqs2r1ExampleFirst@mail.example.org>"
    (content,) = sent["content"]
    assert content["type"] == "text/plain"
    assert content["value"].startswith(f"Your request {ticket.number} is resolved.")
    (link,) = LINK.findall(content["value"])
    assert link.startswith(f"{django_settings.SITE_URL}/feedback/")
    (survey,) = surveys(ticket)
    assert (survey.channel, survey.delivery_status) == ("email", "sent")
    assert Delivery.objects.get().target_key == f"email:{account.pk}"


@responses.activate
def test_a_resolved_event_delivered_twice_sends_one_survey(
    wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SURVEY-2"}]})
    resolve(wa_ticket, agent, django_capture_on_commit_callbacks)
    event = OutboxEvent.objects.get(event_type="ticket.resolved", aggregate_id=str(wa_ticket.pk))
    assert event.delivered_at is not None
    before = counts()
    # at-least-once delivery: the same event comes again
    OutboxEvent.objects.filter(pk=event.pk).update(delivered_at=None)
    with django_capture_on_commit_callbacks(execute=True):
        assert outbox_relay() >= 1
    assert diff(before, counts()) == {}
    assert len(surveys(wa_ticket)) == 1
    assert len(responses.calls) == 1


@responses.activate
def test_reopened_and_resolved_again_asks_again_once_per_resolution(
    wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SURVEY-3"}]})
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SURVEY-4"}]})
    resolve(wa_ticket, agent, django_capture_on_commit_callbacks)
    first = OutboxEvent.objects.get(event_type="ticket.resolved")
    with django_capture_on_commit_callbacks(execute=True):
        ticket_update(ticket=wa_ticket, status="open", actor=agent)
    assert len(surveys(wa_ticket)) == 1
    resolve(wa_ticket, agent, django_capture_on_commit_callbacks)
    assert [m.channel_message_id for m in surveys(wa_ticket)] == [
        "wamid.SURVEY-3",
        "wamid.SURVEY-4",
    ]
    assert Delivery.objects.count() == 2
    # the first resolution's event again: that resolution is over, nothing more is sent
    assert (
        csat_survey_send(ticket_id=wa_ticket.pk, resolved_at=first.payload["resolved_at"]) is None
    )
    assert len(surveys(wa_ticket)) == 2
    assert len(responses.calls) == 2


@responses.activate
def test_an_event_arriving_after_a_reopening_or_a_merge_sends_nothing(
    wa_ticket: Ticket, agent: Any, customer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # nothing committed runs here: the events wait in the outbox until the relay below
    ticket_update(ticket=wa_ticket, status="resolved", actor=agent)
    ticket_update(ticket=wa_ticket, status="open", actor=agent)
    other = ticket_create(customer=wa_ticket.customer, subject="Two", body="x", channel="whatsapp")
    ticket_update(ticket=other, status="resolved", actor=agent)
    target = ticket_create(
        customer=wa_ticket.customer, subject="Kept", body="y", channel="whatsapp"
    )
    ticket_merge(source=other, target=target, actor=agent)
    with django_capture_on_commit_callbacks(execute=True):
        outbox_relay()
    assert Message.objects.filter(metadata__has_key=SURVEY_METADATA_KEY).count() == 0
    assert Delivery.objects.count() == 0
    assert len(responses.calls) == 0
    # the ticket kept by the merge is asked about when it is resolved
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SURVEY-6"}]})
    resolve(target, agent, django_capture_on_commit_callbacks)
    assert [m.channel_message_id for m in surveys(target)] == ["wamid.SURVEY-6"]
    assert Message.objects.filter(metadata__has_key=SURVEY_METADATA_KEY).count() == 1


@responses.activate
def test_no_survey_when_turned_off(
    wa_ticket: Ticket, agent: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.CSAT_SURVEY_ENABLED = False
    before = counts()
    resolve(wa_ticket, agent, django_capture_on_commit_callbacks)
    assert diff(before, counts()) == {"messages": 1}  # the status change's entry only
    assert surveys(wa_ticket) == []
    assert len(responses.calls) == 0
    # turned on again: the next resolution is asked about (the switch is read at send)
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SURVEY-5"}]})
    settings.CSAT_SURVEY_ENABLED = True
    with django_capture_on_commit_callbacks(execute=True):
        ticket_update(ticket=wa_ticket, status="open", actor=agent)
    resolve(wa_ticket, agent, django_capture_on_commit_callbacks)
    assert [m.channel_message_id for m in surveys(wa_ticket)] == ["wamid.SURVEY-5"]


@responses.activate
@pytest.mark.parametrize("channel", ["api", "phone"])
def test_no_survey_for_a_ticket_without_a_channel_of_its_own(
    channel: str,
    customer: Any,
    agent: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """An API or phone ticket has no channel to send it on (a reply to one goes by e-mail,
    but a survey is not worth a mail the customer did not start): none, said in the log
    without the customer's details."""
    make_account("email")  # even with an e-mail account to send through
    ticket = ticket_create(customer=customer, subject="Order 77", body="Hi", channel=channel)
    before = counts()
    with caplog.at_level(logging.INFO, logger="channels_app.services.csat_survey"):
        resolve(ticket, agent, django_capture_on_commit_callbacks)
    assert diff(before, counts()) == {"messages": 1}
    assert len(responses.calls) == 0
    (record,) = [r for r in caplog.records if r.name == "channels_app.services.csat_survey"]
    assert record.levelno == logging.INFO
    label = {"api": "API", "phone": "Phone"}[channel]
    assert record.getMessage() == (
        f"No satisfaction survey for {ticket.number}: "
        f"{label} tickets have no channel of their own to send it on"
    )
    assert customer.email not in caplog.text
    assert customer.name not in caplog.text


def test_no_survey_when_the_customer_cannot_be_reached_on_the_channel(
    customer: Any,
    agent: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """A WhatsApp ticket made through the API for a customer with no WhatsApp identity:
    nobody to send it to, so no message that could only fail."""
    make_account("whatsapp")
    ticket = ticket_create(customer=customer, subject="Hi", body="Hello", channel="whatsapp")
    with caplog.at_level(logging.INFO, logger="channels_app.services.csat_survey"):
        resolve(ticket, agent, django_capture_on_commit_callbacks)
    assert surveys(ticket) == []
    assert Delivery.objects.count() == 0
    assert (
        f"No satisfaction survey for {ticket.number}: the customer has no WhatsApp contact "
        "to send it to"
    ) in caplog.text


def test_no_survey_outside_the_whatsapp_window(
    wa_ticket: Ticket,
    agent: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The customer last wrote more than 24 hours ago: WhatsApp takes no free-form message,
    so no survey that could only fail (a dead letter for a person to look at)."""
    Message.objects.filter(ticket=wa_ticket, direction="inbound").update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    with caplog.at_level(logging.INFO, logger="channels_app.services.csat_survey"):
        resolve(wa_ticket, agent, django_capture_on_commit_callbacks)
    assert surveys(wa_ticket) == []
    assert Delivery.objects.count() == 0
    assert (
        f"No satisfaction survey for {wa_ticket.number}: WhatsApp takes no free-form message "
        "now (the customer last wrote outside its window)"
    ) in caplog.text


# --- the link goes to the customer only -------------------------------------------------------


@responses.activate
def test_the_link_is_never_stored_nor_shown_to_agents_only_sent_to_the_customer(
    post_fixture: Any, agent: Any, client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The signed link answers as the customer: an agent who could read it on the timeline
    or through the API could rate (or re-rate) for them. It is put in the text only when
    the request to the channel is built."""
    post_fixture(make_account("email"), "inbound_parse_new")
    ticket = Ticket.objects.get()
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-survey"})
    resolve(ticket, agent, django_capture_on_commit_callbacks)
    (survey,) = surveys(ticket)
    assert survey.body_text == (
        f"Your request {ticket.number} is resolved. How did we do?\n\n"
        "Open this link to rate our help from 1 to 5 (and tell us more if you like):\n"
        f"{SURVEY_LINK_PLACEHOLDER}\n\nThank you."
    )
    assert "/feedback/" not in json.dumps(survey.metadata)
    # what went to the customer (and the attempt's record of it) has the working link
    sent = json.loads(responses.calls[0].request.body or b"")
    (link,) = LINK.findall(sent["content"][0]["value"])
    assert SURVEY_LINK_PLACEHOLDER not in sent["content"][0]["value"]
    attempt = Attempt.objects.get()
    assert attempt.request_summary["content"][0]["value"] == sent["content"][0]["value"]
    path = link.removeprefix(django_settings.SITE_URL)
    assert client.post(path, {"rating": "2"}).status_code == 200
    assert CsatFeedback.objects.values_list("rating", "via_link").get() == (2, True)
    # agents see the survey, never its link: ticket page, live timeline, the API
    client.force_login(agent)
    for url in (
        f"/tickets/{ticket.number}/",
        f"/tickets/{ticket.number}/live",
        f"/api/tickets/{ticket.pk}",  # the ticket with its messages
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        content = response.content.decode()
        assert "/feedback/" not in content, url
        assert f"Your request {ticket.number} is resolved." in content, url


@responses.activate
def test_a_retried_survey_still_carries_a_working_link(
    wa_ticket: Ticket, agent: Any, client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(WA_URL, status=500, json={"error": {"message": "Unavailable", "code": 2}})
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SURVEY-R"}]})
    resolve(wa_ticket, agent, django_capture_on_commit_callbacks)
    assert len(responses.calls) == 2
    for call in responses.calls:
        (link,) = LINK.findall(wa_text(call))
        assert client.get(link.removeprefix(django_settings.SITE_URL)).status_code == 200
    (survey,) = surveys(wa_ticket)
    assert (survey.delivery_status, survey.channel_message_id) == ("sent", "wamid.SURVEY-R")
    assert "/feedback/" not in survey.body_text
    assert list(Attempt.objects.order_by("number").values_list("outcome", flat=True)) == [
        "retryable",
        "success",
    ]


def test_a_web_chat_visitor_polling_its_conversation_gets_its_survey_with_the_link(
    agent: Any, client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The widget's polling fallback shows what was pushed: the visitor's own link."""
    account = make_account("webchat")
    session = session_issue(account, name="Vera", email="vera@example.com")["session"]
    with django_capture_on_commit_callbacks(execute=True):
        posted = client.post(
            f"/api/webhooks/webchat/{account.webhook_token}",
            data={"text": "Where is my order?", "client_id": "client-0001"},
            content_type="application/json",
            HTTP_X_WEBCHAT_SESSION=session,
        )
    assert posted.status_code < 300, posted.content
    ticket = Ticket.objects.get()
    with mock.patch("channels_app.adapters.webchat.adapter.get_channel_layer") as layer:
        layer.return_value.group_send = mock.AsyncMock()
        resolve(ticket, agent, django_capture_on_commit_callbacks)
    pushed = layer.return_value.group_send.await_args.args[1]["message"]["text"]
    (link,) = LINK.findall(pushed)
    (survey,) = surveys(ticket)
    assert SURVEY_LINK_PLACEHOLDER in survey.body_text
    polled = client.get(
        f"/api/webchat/{account.webhook_token}/messages?after=0",
        HTTP_X_WEBCHAT_SESSION=session,
    )
    texts = [m["text"] for m in polled.json()["messages"]]
    assert texts[0] == "Where is my order?"
    (shown,) = [t for t in texts if "How did we do" in t]
    (polled_link,) = LINK.findall(shown)
    assert client.get(polled_link.removeprefix(django_settings.SITE_URL)).status_code == 200
    assert link.split("/feedback/")[0] == polled_link.split("/feedback/")[0]


# --- the sweep: a resolution whose survey task never finished ----------------------------


def resolve_task_lost(ticket: Ticket, agent: Any, capture: Any, minutes_ago: float) -> None:
    """Resolve, with the survey task lost (a worker killed, the database away longer than
    its retries): the event is delivered, no survey is written. Then move the resolution
    back ``minutes_ago``."""
    with mock.patch("channels_app.tasks.csat_survey_send_task") as lost:
        resolve(ticket, agent, capture)
    assert lost.delay.called
    at = timezone.now() - timedelta(minutes=minutes_ago)
    Ticket.objects.filter(pk=ticket.pk).update(resolved_at=at)
    ticket.refresh_from_db()


@responses.activate
def test_the_sweep_sends_the_survey_whose_task_was_lost_once(
    wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SWEPT-1"}]})
    resolve_task_lost(wa_ticket, agent, django_capture_on_commit_callbacks, minutes_ago=15)
    assert surveys(wa_ticket) == []
    with django_capture_on_commit_callbacks(execute=True):
        assert csat_surveys_sweep() == 1
    (survey,) = surveys(wa_ticket)
    assert survey.channel_message_id == "wamid.SWEPT-1"
    resolved_at = wa_ticket.resolved_at
    assert resolved_at is not None
    assert survey.metadata[SURVEY_METADATA_KEY] == (
        f"{wa_ticket.pk}:{resolved_at.isoformat().replace('+00:00', 'Z')}"
    )
    # looked at once: the next runs find nothing to do, and the late task writes nothing
    with django_capture_on_commit_callbacks(execute=True):
        assert csat_surveys_sweep() == 0
        late = csat_survey_send(
            ticket_id=wa_ticket.pk,
            resolved_at=resolved_at.isoformat(),  # "+00:00", not the event's "Z"
        )
    assert late == survey
    assert len(surveys(wa_ticket)) == 1
    assert len(responses.calls) == 1


@responses.activate
def test_the_sweep_leaves_fresh_old_and_answered_resolutions_alone(
    wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ticket = wa_ticket
    # resolved five minutes ago: its task may still be on its way
    resolve_task_lost(ticket, agent, django_capture_on_commit_callbacks, minutes_ago=5)
    assert csat_surveys_sweep() == 0
    # two days ago: too late to ask
    Ticket.objects.filter(pk=ticket.pk).update(resolved_at=timezone.now() - timedelta(days=2))
    assert csat_surveys_sweep() == 0
    assert surveys(ticket) == []
    # a survey was written for it: nothing to do
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SWEPT-2"}]})
    with django_capture_on_commit_callbacks(execute=True):
        ticket_update(ticket=ticket, status="open", actor=agent)
    resolve(ticket, agent, django_capture_on_commit_callbacks)
    Ticket.objects.filter(pk=ticket.pk).update(resolved_at=timezone.now() - timedelta(minutes=15))
    Message.objects.filter(metadata__has_key=SURVEY_METADATA_KEY).update(created_at=timezone.now())
    assert len(surveys(ticket)) == 1
    assert csat_surveys_sweep() == 0
    assert len(responses.calls) == 1


@responses.activate
def test_the_sweep_says_once_why_a_resolution_gets_no_survey(
    wa_ticket: Ticket,
    agent: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    resolve_task_lost(wa_ticket, agent, django_capture_on_commit_callbacks, minutes_ago=15)
    Message.objects.filter(ticket=wa_ticket, direction="inbound").update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    why = f"No satisfaction survey for {wa_ticket.number}: WhatsApp takes no free-form message"
    with caplog.at_level(logging.INFO, logger="channels_app.services.csat_survey"):
        assert csat_surveys_sweep() == 1
        assert csat_surveys_sweep() == 0  # not looked at (nor logged) every run
    assert caplog.text.count(why) == 1
    assert surveys(wa_ticket) == []
    assert Delivery.objects.count() == 0


@responses.activate
def test_turning_surveys_on_does_not_survey_the_resolutions_from_before(
    settings: Any, wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A resolution while surveys were off got no task (none was meant to survey it): the
    sweep that later finds them on does not ask its customer; one resolved since does."""
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SWEPT-ON"}]})
    settings.CSAT_SURVEY_ENABLED = False
    with django_capture_on_commit_callbacks(execute=True):
        ticket_update(ticket=wa_ticket, status="resolved", actor=agent)
    Ticket.objects.filter(pk=wa_ticket.pk).update(
        resolved_at=timezone.now() - timedelta(minutes=15)
    )
    assert csat_surveys_sweep() == 0
    assert cache.get(SWEEP_ON_SINCE_KEY) == "off"  # a run that found them off says so
    settings.CSAT_SURVEY_ENABLED = True
    assert csat_surveys_sweep() == 0  # resolved before this run found surveys on again
    since = cache.get(SWEEP_ON_SINCE_KEY)
    assert since not in (None, "off")
    assert surveys(wa_ticket) == []
    # resolved again after that, its task lost: swept 15 minutes later
    with django_capture_on_commit_callbacks(execute=True):
        ticket_update(ticket=wa_ticket, status="open", actor=agent)
    resolve_task_lost(wa_ticket, agent, django_capture_on_commit_callbacks, minutes_ago=0)
    later = timezone.now() + timedelta(minutes=15)
    with (
        mock.patch("channels_app.services.csat_survey.timezone.now", return_value=later),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert csat_surveys_sweep() == 1
    assert cache.get(SWEEP_ON_SINCE_KEY) == since  # the first run's time stays
    (survey,) = surveys(wa_ticket)
    assert survey.channel_message_id == "wamid.SWEPT-ON"


@responses.activate
def test_a_sweep_that_never_saw_surveys_off_keeps_its_whole_window(
    wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """No record of surveys off (a deploy, Redis's data lost): a resolution of the last
    day whose task was lost is still swept, as before the off/on rule."""
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SWEPT-W"}]})
    resolve_task_lost(wa_ticket, agent, django_capture_on_commit_callbacks, minutes_ago=600)
    with django_capture_on_commit_callbacks(execute=True):
        assert csat_surveys_sweep() == 1
    assert cache.get(SWEEP_ON_SINCE_KEY) is None
    (survey,) = surveys(wa_ticket)
    assert survey.channel_message_id == "wamid.SWEPT-W"


def test_the_beat_runs_the_survey_sweep() -> None:
    entry = django_settings.CELERY_BEAT_SCHEDULE["csat-surveys-sweep"]
    assert entry["task"] == "channels_app.tasks.csat_surveys_sweep_task"
    assert entry["schedule"] == 300.0


@responses.activate
def test_a_survey_moved_in_by_a_merge_is_not_this_tickets(
    wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A merge moves the source's messages, its survey too (marked with the ticket it was
    written on): it does not answer for the target's own resolution."""
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SWEPT-M"}]})
    resolve_task_lost(wa_ticket, agent, django_capture_on_commit_callbacks, minutes_ago=15)
    moved = Message.objects.create(
        ticket=wa_ticket,
        direction="outbound",
        kind="public",
        channel="whatsapp",
        body_text="How did we do with T-000999?",
        metadata={SURVEY_METADATA_KEY: "999:2026-12-06T10:00:00Z", "written_on_ticket_id": 999},
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert csat_surveys_sweep() == 1
    assert [m.pk for m in surveys(wa_ticket) if m.pk != moved.pk] != []
    assert len(responses.calls) == 1


def test_a_ticket_the_sweep_fails_on_is_tried_again_and_holds_up_no_other(
    wa_ticket: Ticket, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    first = wa_ticket
    resolve_task_lost(first, agent, django_capture_on_commit_callbacks, minutes_ago=20)
    second = ticket_create(
        subject="Another", body="Also broken", customer=first.customer, channel="whatsapp"
    )
    resolve_task_lost(second, agent, django_capture_on_commit_callbacks, minutes_ago=15)
    seen: list[int] = []

    def send(*, ticket_id: int, resolved_at: str) -> None:
        seen.append(ticket_id)
        if ticket_id == second.pk and seen.count(ticket_id) == 1:
            raise ValueError("a bug")

    with mock.patch("channels_app.services.csat_survey.csat_survey_send", side_effect=send):
        assert csat_surveys_sweep() == 2  # the newer one failed; the older one still looked at
        assert csat_surveys_sweep() == 1  # the failed one again, not the one done
    assert seen == [second.pk, first.pk, second.pk]
