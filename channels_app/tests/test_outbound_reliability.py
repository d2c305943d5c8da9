"""Outbound replies the provider may already have taken (review of 2026-12-07): a 2xx
whose answer cannot be read is a success, never retried; a part taken with no id, or whose
record failed, is never sent again silently; a POST that may have reached the provider is
retried and counted as a possible duplicate; a reply whose status update failed after the
send is put right by the reply sweep. HTTP mocked with responses."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests
import responses
import urllib3
from django.db import OperationalError
from django.utils import timezone

from channels_app import services
from channels_app.adapters.base import OutboundFile
from channels_app.services import outbound as outbound_module
from channels_app.services import reply_parts as reply_parts_module
from channels_app.tests.conftest import make_account
from channels_app.tests.test_reply_files import WA_MEDIA, WA_MESSAGES, a_file, retry, send_reply
from support.delivery.models import Delivery
from support.outbound import AnswerTooLarge, AnswerTooSlow
from tickets.models import Message, Ticket
from tickets.services import message_add

pytestmark = pytest.mark.django_db

GRAPH = "https://graph.facebook.com/v21.0"


@pytest.fixture
def wa_ticket(post_fixture: Any) -> Ticket:
    post_fixture(make_account("whatsapp"), "text_message")
    return Ticket.objects.get()


def reply(ticket: Ticket, agent: Any, capture: Any, text: str = "On its way.") -> Message:
    """Queue a reply and run what is committed (its attempts and retries, eager)."""
    with capture(execute=True):
        return message_add(ticket=ticket, body=text, author_user=agent)


def texts_sent() -> int:
    return sum(1 for c in responses.calls if b'"type": "text"' in (c.request.body or b""))


# --- 1. a 2xx whose answer cannot be read ------------------------------------------------


@responses.activate
@pytest.mark.parametrize(
    ("channel", "fixture", "url", "status"),
    [
        ("whatsapp", "text_message", f"{GRAPH}/106540352242922/messages", 200),
        ("messenger", "text_message", f"{GRAPH}/me/messages", 200),
        ("instagram", "text_message", f"{GRAPH}/17841405822304914/messages", 200),
        ("twitter", "dm_message_create", "https://api.x.com/2/dm_conversations/with/", 201),
    ],
)
def test_an_accepted_reply_whose_answer_is_not_json_is_sent_once(
    channel: str,
    fixture: str,
    url: str,
    status: int,
    post_fixture: Any,
    agent: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    post_fixture(make_account(channel), fixture)
    ticket = Ticket.objects.get()
    if url.endswith("/with/"):
        url += "4337869213/messages"
    responses.post(url, status=status, body="OK")

    message = reply(ticket, agent, django_capture_on_commit_callbacks)

    assert len(responses.calls) == 1
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.external_id) == ("succeeded", 1, "")
    assert delivery.possible_duplicate is False
    attempt = delivery.attempt_log.get()
    assert (attempt.outcome, attempt.http_status, attempt.error_code) == (
        "success",
        status,
        "no_message_id",
    )
    assert "named no message id" in attempt.error
    assert attempt.response_summary == "OK"
    message.refresh_from_db()
    assert (message.delivery_status, message.channel_message_id) == ("sent", None)


# --- 2. parts: a part taken with no id, a part whose record failed -----------------------


@responses.activate
def test_a_text_taken_with_no_id_is_not_sent_again_when_a_file_is_retried(
    wa_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(a_file())
    responses.post(WA_MESSAGES, json={"messaging_product": "whatsapp"})  # no message id
    responses.post(WA_MEDIA, json={"id": "MEDIA-PDF"})
    responses.post(WA_MESSAGES, status=503, json={"error": {"message": "Try again"}})
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.PDF"}]})

    delivery = send_reply(wa_ticket, agent)
    assert (delivery.status, delivery.last_http_status) == ("retrying", 503)
    assert delivery.last_error.endswith("Already sent, not sent again: the text.")

    delivery = retry(delivery)
    assert (delivery.status, delivery.attempts, delivery.external_id) == (
        "succeeded",
        2,
        "wamid.PDF",
    )
    assert len(responses.calls) == 4
    assert texts_sent() == 1
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert message.metadata["reply_parts"]["text"] == {"id": "sent:no-id"}
    assert (message.delivery_status, message.channel_message_id) == ("sent", "wamid.PDF")
    skipped = delivery.attempt_log.get(number=2).request_summary["parts"][0]
    assert skipped == {"part": "text", "skipped": "sent by an earlier attempt", "id": "sent:no-id"}


@responses.activate
def test_a_text_taken_whose_record_failed_is_never_sent_again_silently(
    wa_ticket: Ticket, agent: Any, files: list[OutboundFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    files.append(a_file())
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.TEXT"}]})
    responses.post(WA_MEDIA, json={"id": "MEDIA-PDF"})
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.PDF"}]})
    original = reply_parts_module.reply_part_record

    def failing(*, message_id: int, part: str, **values: str) -> None:
        if part == "text" and "id" in values:
            raise OperationalError("server closed the connection unexpectedly")
        original(message_id=message_id, part=part, **values)

    monkeypatch.setattr(reply_parts_module, "reply_part_record", failing)

    delivery = send_reply(wa_ticket, agent)
    assert len(responses.calls) == 1
    assert (delivery.status, delivery.error_code) == ("dead", "reply_part_not_recorded")
    assert delivery.possible_duplicate is True
    assert delivery.last_error.startswith(
        "WhatsApp took the text, but it could not be recorded as sent "
        "(OperationalError: server closed the connection unexpectedly)"
    )
    delivery = retry(delivery)  # nothing to claim: not sent again
    assert (len(responses.calls), texts_sent(), delivery.attempts) == (1, 1, 1)
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert message.delivery_status == "failed"


# --- 3. a POST that may have reached the provider -----------------------------------------


def _reset() -> requests.ConnectionError:
    reset = ConnectionResetError(104, "Connection reset by peer")
    return requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.", reset))


def _refused() -> requests.ConnectionError:
    refused = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, WA_MESSAGES, refused))  # type: ignore[arg-type]


@responses.activate
@pytest.mark.parametrize(
    ("error", "maybe_sent"),
    [
        (requests.exceptions.ReadTimeout("Read timed out. (read timeout=10)"), True),
        (requests.exceptions.ChunkedEncodingError("Connection broken"), True),
        (_reset(), True),
        (requests.exceptions.ConnectTimeout("Connect timed out"), False),
        (_refused(), False),
    ],
    ids=["read-timeout", "chunked", "reset", "connect-timeout", "refused"],
)
def test_a_send_that_may_have_reached_the_provider_is_retried_and_counted(
    error: Exception,
    maybe_sent: bool,
    wa_ticket: Ticket,
    agent: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    responses.post(WA_MESSAGES, body=error)
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.SENT"}]})

    message = reply(wa_ticket, agent, django_capture_on_commit_callbacks)

    assert len(responses.calls) == 2
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert delivery.possible_duplicate is maybe_sent
    assert list(delivery.attempt_log.values_list("outcome", flat=True)) == [
        "retryable",
        "success",
    ]
    message.refresh_from_db()
    assert (message.delivery_status, message.channel_message_id) == ("sent", "wamid.SENT")


@responses.activate
def test_a_timed_out_upload_is_not_counted_as_a_possible_duplicate(
    wa_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    """Only a message the customer could see twice counts: an upload sent again is not."""
    files.append(a_file())
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.TEXT"}]})
    responses.post(WA_MEDIA, body=requests.exceptions.ReadTimeout("Read timed out."))
    delivery = send_reply(wa_ticket, agent)
    assert (delivery.status, delivery.possible_duplicate) == ("retrying", False)


# --- 4. a reply whose status update failed after the send ---------------------------------


def _status_update_fails_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reply's status update, run with the engine's record, fails once (a deadlock)."""
    original = outbound_module.ticket_services.message_delivery_update
    calls = {"n": 0}

    def fails_once(**kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("deadlock detected")
        original(**kwargs)

    monkeypatch.setattr(outbound_module.ticket_services, "message_delivery_update", fails_once)


@responses.activate
def test_the_reply_sweep_puts_right_a_reply_whose_status_update_failed(
    wa_ticket: Ticket,
    agent: Any,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.SENT"}]})
    _status_update_fails_once(monkeypatch)
    message = reply(wa_ticket, agent, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get()
    message.refresh_from_db()
    assert delivery.status == "succeeded"
    assert (message.delivery_status, message.channel_message_id) == ("queued", None)

    # within the grace: left alone
    assert services.outbound_replies_sweep() == 0
    Delivery.objects.filter(pk=delivery.pk).update(
        completed_at=timezone.now() - timedelta(minutes=5)
    )
    assert services.outbound_replies_sweep() == 1
    message.refresh_from_db()
    assert (message.delivery_status, message.channel_message_id) == ("sent", "wamid.SENT")
    assert len(responses.calls) == 1  # put right, not sent again
    assert services.outbound_replies_sweep() == 0


@responses.activate
def test_the_reply_sweep_puts_right_a_dead_reply_left_queued(
    wa_ticket: Ticket,
    agent: Any,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    responses.post(WA_MESSAGES, status=400, json={"error": {"message": "Invalid recipient"}})
    _status_update_fails_once(monkeypatch)
    message = reply(wa_ticket, agent, django_capture_on_commit_callbacks)
    Delivery.objects.update(completed_at=timezone.now() - timedelta(minutes=5))
    message.refresh_from_db()
    assert message.delivery_status == "queued"

    assert services.outbound_replies_sweep() == 1
    message.refresh_from_db()
    assert message.delivery_status == "failed"
    assert "Invalid recipient" in message.delivery_error
    assert len(responses.calls) == 1


# --- a 2xx whose body breaks off while it is read ---------------------------------------


def _body_breaks_once(monkeypatch: pytest.MonkeyPatch, failure: Exception) -> list[int]:
    """The first answer's body fails while it is read (the status line and headers came:
    ``http_call`` streams); the others are read as usual. Returns the statuses hit."""
    from channels_app.adapters import base as adapter_base

    real = adapter_base.response_read_bounded
    statuses: list[int] = []

    def read(response: Any, **kwargs: Any) -> Any:
        statuses.append(response.status_code)
        if len(statuses) == 1:
            raise failure
        return real(response, **kwargs)

    monkeypatch.setattr(adapter_base, "response_read_bounded", read)
    return statuses


@responses.activate
@pytest.mark.parametrize(
    "failure",
    [
        AnswerTooSlow("the answer did not arrive whole within 10 s"),
        requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
        AnswerTooLarge("over 1048576 bytes"),
    ],
    ids=["trickle", "broken", "too-large"],
)
def test_a_taken_reply_whose_answer_breaks_off_is_sent_once(
    wa_ticket: Ticket,
    agent: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
    failure: Exception,
) -> None:
    """With the status 200 already read, a body that breaks off, trickles or is too large
    was a retry (or a dead letter): the customer got the reply twice, or the agent was told
    it failed (review of 2026-12-07, second look)."""
    statuses = _body_breaks_once(monkeypatch, failure)
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.1"}]})

    message = reply(wa_ticket, agent, django_capture_on_commit_callbacks)

    assert statuses == [200]
    assert texts_sent() == 1
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.possible_duplicate) == (
        "succeeded",
        1,
        False,
    )
    assert delivery.attempt_log.get().error_code == "no_message_id"
    message.refresh_from_db()
    assert (message.delivery_status, message.channel_message_id) == ("sent", None)


@responses.activate
def test_an_upload_whose_answer_breaks_off_is_uploaded_again(
    wa_ticket: Ticket, agent: Any, files: list[OutboundFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload's media id is in its answer: one that breaks off is uploaded again (the
    customer never sees an upload), not a dead letter for want of an id."""
    files.append(a_file())
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.TEXT"}]})
    responses.post(WA_MEDIA, json={"id": "MEDIA-PDF"})
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.PDF"}]})
    from channels_app.adapters import base as adapter_base

    real = adapter_base.response_read_bounded
    broken: list[str] = []

    def read(response: Any, **kwargs: Any) -> Any:
        if response.url == WA_MEDIA and not broken:
            broken.append(response.url)
            raise requests.exceptions.ChunkedEncodingError("Connection broken")
        return real(response, **kwargs)

    monkeypatch.setattr(adapter_base, "response_read_bounded", read)

    delivery = send_reply(wa_ticket, agent)
    assert delivery.status == "retrying"
    assert "could not be read" in delivery.last_error
    assert delivery.possible_duplicate is False
    delivery = retry(delivery)
    assert (delivery.status, delivery.external_id) == ("succeeded", "wamid.TEXT")
    assert texts_sent() == 1
    assert sum(1 for c in responses.calls if c.request.url == WA_MEDIA) == 2
