"""SendGrid's signed Event Webhook: ECDSA signature over timestamp + body (a key pair made
here), stale timestamps refused, each event applied once by its sg_event_id, a bounce
marking our reply failed with the reason shown on the ticket page."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
import responses
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client

from channels_app.adapters.base import StatusUpdate, WebhookRequest, get_adapter
from channels_app.fixtures import fixture_load
from channels_app.models import ChannelAccount, InboundEvent, SentMessageEvent
from channels_app.services import sent_events
from channels_app.tests.conftest import counts, diff, make_account, post_raw
from tickets.models import Message, Ticket
from tickets.services import message_add

pytestmark = pytest.mark.django_db

SENDGRID = "https://api.sendgrid.com/v3/mail/send"
BOUNCE_ID = "Ym91bmNlLTQtNDkzMTgyMS1ldW8yaUt4ZFNh"


def key_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key and its public half as SendGrid shows it (base64 DER)."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def sign(private: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int) -> dict[str, str]:
    signature = private.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "User-Agent": "SendGrid Event API",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp),
    }


@pytest.fixture
def keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    return key_pair()


@pytest.fixture
def email_account(keys: tuple[ec.EllipticCurvePrivateKey, str]) -> ChannelAccount:
    account = make_account("email")
    account.settings = {"from_email": "support@acme.test", "event_webhook_public_key": keys[1]}
    account.save()
    return account


@pytest.fixture
def sent_reply(
    email_account: ChannelAccount,
    post_fixture: Any,
    agent: Any,
    django_capture_on_commit_callbacks: Any,
) -> Message:
    """A customer's e-mail and our reply, accepted by SendGrid (status "sent")."""
    post_fixture(email_account, "inbound_parse_new")
    ticket = Ticket.objects.get()
    with responses.RequestsMock() as mocked:
        mocked.post(SENDGRID, status=202, headers={"X-Message-Id": "euo2iKxdSayPF4YE4--I7A"})
        with django_capture_on_commit_callbacks(execute=True):
            message = message_add(ticket=ticket, body="Refund sent.", author_user=agent)
        sent = json.loads(mocked.calls[0].request.body or b"")
    assert sent["custom_args"] == {"ticket_id": str(ticket.pk), "message_id": str(message.pk)}
    message.refresh_from_db()
    assert message.delivery_status == "sent"
    return message


def batch(message: Message) -> bytes:
    """The recorded batch (processed, deferred, bounce) naming ``message``."""
    body = fixture_load("email", "event_webhook_bounce").body.decode()
    return (
        body.replace("MSGID", str(message.pk)).replace("TICKETID", str(message.ticket_id)).encode()
    )


def event(message_id: Any, name: str, event_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "email": "jane.doe@example.org",
        "timestamp": 1764100100,
        "event": name,
        "sg_event_id": event_id,
        "sg_message_id": "euo2iKxdSayPF4YE4--I7A.recvd-5f54b5d587-pczjm-1-67BADEEA-6.0",
        "message_id": str(message_id),
        **extra,
    }


@pytest.fixture
def post_events(
    client: Client,
    email_account: ChannelAccount,
    keys: tuple[ec.EllipticCurvePrivateKey, str],
    django_capture_on_commit_callbacks: Any,
) -> Callable[..., Any]:
    """POST a body signed with the account's key (``private``: another key) at
    ``timestamp`` (default now), running what is committed (eager tasks)."""

    def _post(
        body: bytes | list[dict[str, Any]],
        *,
        timestamp: int | None = None,
        private: ec.EllipticCurvePrivateKey | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = sign(private or keys[0], raw, int(time.time()) if timestamp is None else timestamp)
        if headers is not None:
            sent = headers
        with django_capture_on_commit_callbacks(execute=True):
            return post_raw(client, email_account, raw, sent)

    return _post


def test_bounce_marks_the_reply_failed_with_the_reason_on_the_ticket_page(
    sent_reply: Message, post_events: Any, client: Client, agent: Any
) -> None:
    before = counts()
    response = post_events(batch(sent_reply))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "accepted"
    assert diff(before, counts()) == {"events": 1}
    sent_reply.refresh_from_db()
    assert (sent_reply.delivery_status, sent_reply.delivery_error_code) == (
        "failed",
        "sendgrid_bounce",
    )
    reason = "550 5.1.1 The email account that you tried to reach does not exist. (5.1.1)"
    assert sent_reply.delivery_error == f"Bounced by the recipient's mail server: {reason}"
    recorded = {(e.event, e.outcome, e.message_id) for e in SentMessageEvent.objects.all()}
    assert recorded == {
        ("processed", "recorded", sent_reply.pk),
        ("deferred", "recorded", sent_reply.pk),
        ("bounce", "applied", sent_reply.pk),
    }
    raw = InboundEvent.objects.latest("id")
    assert raw.status == "processed"
    assert raw.summary == {
        "created_messages": 0,
        "duplicates": 0,
        "statuses": 1,
        "unmatched_statuses": 0,
        "unknown": 0,
        "recorded_events": 2,
    }
    assert "x-twilio-email-event-webhook-signature" in raw.headers
    client.force_login(agent)
    page = client.get(f"/tickets/{sent_reply.ticket.number}/").content.decode()
    assert "Failed: Bounced by the recipient&#x27;s mail server: 550 5.1.1" in page


def test_delivered_marks_the_reply_delivered_and_deferred_leaves_it(
    sent_reply: Message, post_events: Any
) -> None:
    assert post_events([event(sent_reply.pk, "deferred", "d-1")]).status_code == 200
    sent_reply.refresh_from_db()
    assert sent_reply.delivery_status == "sent"
    assert post_events([event(sent_reply.pk, "delivered", "d-2")]).status_code == 200
    sent_reply.refresh_from_db()
    assert sent_reply.delivery_status == "delivered"
    assert sent_reply.delivered_at is not None
    assert sent_reply.delivery_error == ""


def test_a_duplicate_event_is_applied_once(sent_reply: Message, post_events: Any) -> None:
    real = sent_events.ticket_services.message_delivery_update
    with mock.patch.object(
        sent_events.ticket_services, "message_delivery_update", side_effect=real
    ) as update:
        post_events(batch(sent_reply))
        # SendGrid sends the bounce again, in another batch with a spam report
        again = [*json.loads(batch(sent_reply))[2:], event(sent_reply.pk, "spamreport", "spam-1")]
        response = post_events(again)
    assert response.status_code == 200
    assert update.call_count == 1
    assert SentMessageEvent.objects.filter(external_id=BOUNCE_ID).count() == 1
    spam = SentMessageEvent.objects.get(external_id="spam-1")
    assert (spam.event, spam.outcome, spam.message_id) == ("spamreport", "recorded", sent_reply.pk)
    second = InboundEvent.objects.latest("id")
    assert (second.status, second.summary["duplicates"], second.summary["recorded_events"]) == (
        "processed",
        1,
        1,
    )


def test_the_same_delivery_posted_twice_is_recorded_once(
    sent_reply: Message, post_events: Any
) -> None:
    body = batch(sent_reply)
    assert post_events(body).json()["status"] == "accepted"
    assert post_events(body).json()["status"] == "duplicate"
    assert SentMessageEvent.objects.count() == 3


def test_a_forged_or_unsigned_delivery_is_refused_and_nothing_is_stored(
    sent_reply: Message, post_events: Any, email_account: ChannelAccount
) -> None:
    other, _ = key_pair()
    before = counts()
    forged = post_events(batch(sent_reply), private=other)
    assert forged.status_code == 403
    assert forged.json()["error"]["code"] == "invalid_signature"
    unsigned = post_events(batch(sent_reply), headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    # the Inbound Parse token does not vouch for events
    token = base64.b64encode(f"sendgrid:{email_account.inbound_token}".encode()).decode()
    with_token = post_events(
        batch(sent_reply),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
    )
    assert with_token.status_code == 401
    assert diff(before, counts()) == {}
    assert SentMessageEvent.objects.count() == 0
    email_account.refresh_from_db()
    assert email_account.rejected_count == 3
    sent_reply.refresh_from_db()
    assert sent_reply.delivery_status == "sent"


def test_a_stale_timestamp_is_refused(sent_reply: Message, post_events: Any, settings: Any) -> None:
    settings.CHANNELS_EMAIL_EVENT_MAX_AGE_SECONDS = 600
    before = counts()
    old = post_events(batch(sent_reply), timestamp=int(time.time()) - 601)
    assert old.status_code == 403
    assert "away from now" in old.json()["error"]["message"]
    future = post_events(batch(sent_reply), timestamp=int(time.time()) + 601)
    assert future.status_code == 403
    assert diff(before, counts()) == {}
    sent_reply.refresh_from_db()
    assert sent_reply.delivery_status == "sent"


def test_a_timestamp_of_thousands_of_digits_is_refused_not_a_500(
    sent_reply: Message, post_events: Any
) -> None:
    """Python refuses to read an integer of more than 4,300 digits: such a header is a bad
    timestamp (403), never an error."""
    sent = {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(b"x" * 64).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": "9" * 5000,
    }
    response = post_events(batch(sent_reply), headers=sent)
    assert response.status_code == 403
    assert "not a Unix time" in response.json()["error"]["message"]


def test_an_account_without_a_verification_key_refuses_events(
    sent_reply: Message, post_events: Any, email_account: ChannelAccount
) -> None:
    email_account.settings = {"from_email": "support@acme.test"}
    email_account.save()
    response = post_events(batch(sent_reply))
    assert response.status_code == 403
    assert "no Event Webhook verification key" in response.json()["error"]["message"]


def test_events_for_unknown_messages_are_recorded_and_ignored(
    email_account: ChannelAccount, post_events: Any
) -> None:
    response = post_events(
        [
            event(999999, "bounce", "b-unknown", reason="550 no such user", type="bounce"),
            {"email": "x@example.org", "event": "dropped", "reason": "Bounced Address"},
            "not an event",
        ]
    )
    assert response.status_code == 200
    raw = InboundEvent.objects.get()
    assert raw.status == "processed"
    assert raw.summary == {
        "created_messages": 0,
        "duplicates": 0,
        "statuses": 0,
        "unmatched_statuses": 0,
        "unknown": 1,
        "unmatched_events": 2,
    }
    assert {e.outcome for e in SentMessageEvent.objects.all()} == {"unmatched"}
    assert SentMessageEvent.objects.filter(external_id__startswith="sha256:").count() == 1


def test_an_event_naming_a_message_sent_through_another_account_is_not_applied(
    sent_reply: Message, client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    private, public = key_pair()
    other = make_account("email", name="other", inbound_token="other-token")
    other.settings = {"event_webhook_public_key": public}
    other.save()
    body = json.dumps([event(sent_reply.pk, "bounce", "b-x", reason="550")]).encode()
    with django_capture_on_commit_callbacks(execute=True):
        response = post_raw(client, other, body, sign(private, body, int(time.time())))
    assert response.status_code == 200
    assert SentMessageEvent.objects.get().outcome == "unmatched"
    sent_reply.refresh_from_db()
    assert sent_reply.delivery_status == "sent"


def test_a_body_that_is_not_an_array_is_a_400(post_events: Any) -> None:
    response = post_events(b'{"event": "bounce"}')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_payload"


def test_the_adapter_maps_sendgrid_events() -> None:
    body = json.dumps(
        [
            event(7, "dropped", "e-1", reason="Bounced Address"),
            event(7, "bounce", "e-2", reason="blocked by policy", type="blocked", status="5.7.1"),
            event("x", "open", "e-3"),
        ]
    ).encode()
    request = WebhookRequest(headers={"content-type": "application/json"}, body=body)
    items = get_adapter("email").parse(mock.Mock(), request)
    assert items == [
        StatusUpdate(
            external_message_id="euo2iKxdSayPF4YE4--I7A.recvd-5f54b5d587-pczjm-1-67BADEEA-6.0",
            status="failed",
            timestamp=items[0].timestamp,  # type: ignore[union-attr]
            error_code="sendgrid_dropped",
            error="Dropped by SendGrid: Bounced Address",
            event_id="e-1",
            message_ref=7,
            event="dropped",
        ),
        StatusUpdate(
            external_message_id="euo2iKxdSayPF4YE4--I7A.recvd-5f54b5d587-pczjm-1-67BADEEA-6.0",
            status="failed",
            timestamp=items[1].timestamp,  # type: ignore[union-attr]
            error_code="sendgrid_blocked",
            error="Blocked by the recipient's mail server: blocked by policy (5.7.1)",
            event_id="e-2",
            message_ref=7,
            event="bounce",
        ),
        StatusUpdate(
            external_message_id="euo2iKxdSayPF4YE4--I7A.recvd-5f54b5d587-pczjm-1-67BADEEA-6.0",
            status="open",
            timestamp=items[2].timestamp,  # type: ignore[union-attr]
            event_id="e-3",
            message_ref=None,
            event="open",
        ),
    ]


def test_supervisors_see_the_events_a_delivery_carried_and_retention_takes_them_along(
    sent_reply: Message, post_events: Any, supervisor: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from channels_app.retention import inbound_events_purge

    post_events(batch(sent_reply))
    raw = InboundEvent.objects.latest("id")
    admin = Client()
    admin.force_login(supervisor)
    page = admin.get(f"/admin/channels_app/inboundevent/{raw.pk}/change/").content.decode()
    assert BOUNCE_ID in page
    assert "Applied to the message" in page
    InboundEvent.objects.update(processed_at=timezone.now() - timedelta(days=400))
    result = inbound_events_purge(timezone.now() - timedelta(days=30), 100, 10)
    assert result.deleted == 2  # the two raw deliveries (inbound mail, events), not the 3 events
    assert SentMessageEvent.objects.count() == 0
    sent_reply.refresh_from_db()
    assert sent_reply.delivery_status == "failed"
