"""Every channel: a signed fixture creates exactly the right records, a redelivery
creates nothing, a forged or unsigned one is refused and creates nothing."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
import responses

from channels_app.models import ChannelAccount, InboundEvent, InboundStatus
from channels_app.tests.conftest import counts, diff, make_account
from support.models import OutboxEvent
from tickets.models import Attachment, ChannelIdentity, Message, Ticket

pytestmark = pytest.mark.django_db

# channel, fixture, customer name, external identity, message text, attachments
NEW_CONVERSATIONS = [
    (
        "whatsapp",
        "text_message",
        "Sheena Nelson",
        "16505551234",
        "Does it come in another color? Café au lait 🙂",
        0,
    ),
    (
        "whatsapp",
        "location_message",
        "Sheena Nelson",
        "16505551234",
        "Location: 37.483307, -122.148981 Main Street Beach 1 Hacker Way, Menlo Park, CA 94025",
        0,
    ),
    (
        "whatsapp",
        "contacts_message",
        "Sheena Nelson",
        "16505551234",
        "Shared contact: Barbara J. Johnson +1 (940) 555-1234",
        0,
    ),
    ("whatsapp", "interactive_button_reply", "Sheena Nelson", "16505551234", "Track my order", 0),
    (
        "messenger",
        "text_message",
        "6789012345678901",
        "6789012345678901",
        "Hi, where is my order #1234?",
        0,
    ),
    ("messenger", "quick_reply", "6789012345678901", "6789012345678901", "Refund", 0),
    ("messenger", "postback", "6789012345678901", "6789012345678901", "Talk to a person", 0),
    (
        "instagram",
        "text_message",
        "1784145963457001",
        "1784145963457001",
        "Is the blue jacket back in stock?",
        0,
    ),
    ("twitter", "dm_message_create", "Jane Doe", "4337869213", "Hi, my package never arrived.", 0),
    (
        "email",
        "inbound_parse_new",
        "Jane Doe",
        "jane.doe@example.org",
        "Hello,\n\nThe mug in order 1234 arrived broken. Photo attached.\n\nJane",
        1,
    ),
    (
        "webchat",
        "visitor_message",
        "Vera Visitor",
        "v_fixture0001",
        "Hello, can I change my delivery address?",
        0,
    ),
]


@pytest.mark.parametrize(
    ("channel", "name", "customer_name", "identity", "text", "n_attachments"), NEW_CONVERSATIONS
)
def test_signed_fixture_creates_exactly_one_conversation_and_redelivery_nothing(
    post_fixture: Any,
    channel: str,
    name: str,
    customer_name: str,
    identity: str,
    text: str | None,
    n_attachments: int,
) -> None:
    account = make_account(channel)
    before = counts()
    response = post_fixture(account, name)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "accepted"
    assert diff(before, counts()) == {
        "customers": 1,
        "identities": 1,
        "tickets": 1,
        "messages": 1,
        "events": 1,
        **({"attachments": n_attachments} if n_attachments else {}),
    }
    ticket = Ticket.objects.get()
    message = Message.objects.get()
    ident = ChannelIdentity.objects.get()
    assert (ident.channel, ident.external_id) == (channel, identity)
    assert ticket.customer == ident.customer
    assert ticket.customer.name == customer_name
    assert (ticket.channel, ticket.channel_account_id) == (channel, str(account.pk))
    assert ticket.origin_platform_id == identity
    assert (message.direction, message.kind, message.channel) == ("inbound", "public", channel)
    if text is not None:
        assert message.body_text == text
    event = InboundEvent.objects.get()
    assert event.status == InboundStatus.PROCESSED
    assert event.summary == {
        "created_messages": 1,
        "duplicates": 0,
        "statuses": 0,
        "unmatched_statuses": 0,
        "unknown": 0,
    }

    again = counts()
    response = post_fixture(account, name)
    assert response.status_code == 200
    assert response.json() == {"status": "duplicate", "id": event.pk}
    assert diff(again, counts()) == {}


@pytest.mark.parametrize(
    ("channel", "name"),
    [
        ("whatsapp", "text_message"),
        ("messenger", "text_message"),
        ("instagram", "text_message"),
        ("twitter", "dm_message_create"),
        ("email", "inbound_parse_new"),
        ("webchat", "visitor_message"),
    ],
)
def test_forged_and_unsigned_deliveries_are_refused_and_create_nothing(
    post_fixture: Any, channel: str, name: str
) -> None:
    account = make_account(channel)
    forged = make_account(channel, name="other", **_other_secret(channel))
    from channels_app.fixtures import fixture_load, signed_headers

    fixture = fixture_load(channel, name)
    wrong_headers = signed_headers(forged, fixture)  # signed with another secret
    before = counts()
    response = post_fixture(account, name, sign=False, headers=wrong_headers)
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "invalid_signature"
    response = post_fixture(account, name, sign=False, headers=_unsigned(channel))
    assert response.status_code == 401, response.content
    assert diff(before, counts()) == {}
    account.refresh_from_db()
    assert account.rejected_count == 2


def _other_secret(channel: str) -> dict[str, str]:
    return {
        "whatsapp": {"app_secret": "wrong"},
        "messenger": {"app_secret": "wrong"},
        "instagram": {"app_secret": "wrong"},
        "twitter": {"consumer_secret": "wrong"},
        "email": {"inbound_token": "wrong"},
        "webchat": {},
    }[channel]


def _unsigned(channel: str) -> dict[str, str]:
    # Override the fixture's placeholder header with nothing usable.
    return {
        "whatsapp": {"X-Hub-Signature-256": ""},
        "messenger": {"X-Hub-Signature-256": ""},
        "instagram": {"X-Hub-Signature-256": ""},
        "twitter": {"X-Twitter-Webhooks-Signature": ""},
        "email": {},
        "webchat": {"X-Webchat-Session": ""},
    }[channel]


def test_body_changed_after_signing_is_refused(post_fixture: Any) -> None:
    account = make_account("whatsapp")
    from channels_app.fixtures import fixture_load, signed_headers

    fixture = fixture_load("whatsapp", "text_message")
    headers = signed_headers(account, fixture)
    # Meta escapes non-ASCII as \uXXXX: the same JSON re-serialised is different bytes.
    altered = fixture.body.replace(b"\\u00e9", "é".encode())
    assert altered != fixture.body
    before = counts()
    response = post_fixture(account, "text_message", body=altered, sign=False, headers=headers)
    assert response.status_code == 403
    assert diff(before, counts()) == {}


@pytest.mark.parametrize(
    ("channel", "body", "content_type", "message"),
    [
        (
            "whatsapp",
            b'{"object": "whatsapp_business_account", ',
            "application/json",
            "The body is not valid JSON",
        ),
        ("twitter", b"\xff\xfe", "application/json", "The body is not UTF-8"),
        ("email", b"not multipart", "text/plain", "Expected multipart/form-data"),
    ],
)
def test_malformed_body_is_400_with_a_clear_message_and_the_raw_body_is_kept(
    post_fixture: Any, channel: str, body: bytes, content_type: str, message: str
) -> None:
    account = make_account(channel)
    name = {
        "whatsapp": "text_message",
        "twitter": "dm_message_create",
        "email": "inbound_parse_new",
    }[channel]
    before = counts()
    response = post_fixture(account, name, body=body, headers={"Content-Type": content_type})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_payload"
    assert message in response.json()["error"]["message"]
    assert diff(before, counts()) == {"events": 1}
    event = InboundEvent.objects.get()
    assert event.status == InboundStatus.MALFORMED
    assert event.body_bytes == body
    assert message in event.error


@pytest.mark.parametrize(
    ("channel", "name"),
    [
        ("whatsapp", "unknown_field"),
        ("messenger", "unknown_optin"),
        ("twitter", "typing_indicator"),
    ],
)
def test_unknown_event_types_are_acknowledged_logged_and_create_nothing(
    post_fixture: Any, channel: str, name: str, caplog: Any
) -> None:
    account = make_account(channel)
    before = counts()
    with caplog.at_level("INFO", logger="channels_app.services"):
        response = post_fixture(account, name)
    assert response.status_code == 200
    assert diff(before, counts()) == {"events": 1}
    event = InboundEvent.objects.get()
    assert event.status == InboundStatus.IGNORED
    assert event.summary == {
        "created_messages": 0,
        "duplicates": 0,
        "statuses": 0,
        "unmatched_statuses": 0,
        "unknown": 1,
    }
    assert f"Unknown {channel} event acknowledged" in caplog.text


def test_unknown_account_token_is_404(client: Any) -> None:
    make_account("whatsapp")
    response = client.post(
        "/api/webhooks/whatsapp/nope", data=b"{}", content_type="application/json"
    )
    assert response.status_code == 404
    assert InboundEvent.objects.count() == 0


def test_second_message_threads_into_the_open_ticket_and_echo_is_recorded_outbound(
    post_fixture: Any,
) -> None:
    account = make_account("messenger")
    post_fixture(account, "text_message")
    before = counts()
    post_fixture(account, "quick_reply")
    assert diff(before, counts()) == {"messages": 1, "events": 1}
    before = counts()
    post_fixture(account, "echo")
    assert diff(before, counts()) == {"messages": 1, "events": 1}
    echo = Message.objects.get(channel_message_id="m_ECHO_FIXTURE_0001")
    assert (echo.direction, echo.kind, echo.delivery_status) == ("outbound", "public", "sent")
    assert echo.body_text == "Sent from the Page inbox"
    assert Ticket.objects.count() == 1


def test_echo_without_a_conversation_creates_nothing(post_fixture: Any) -> None:
    account = make_account("messenger")
    before = counts()
    response = post_fixture(account, "echo")
    assert response.status_code == 200
    assert diff(before, counts()) == {"events": 1}


def test_resolved_ticket_reopens_within_the_window_and_not_after(
    post_fixture: Any, settings: Any
) -> None:
    from django.utils import timezone

    from tickets.services import ticket_update

    account = make_account("whatsapp")
    post_fixture(account, "text_message")
    ticket = Ticket.objects.get()
    ticket_update(ticket=ticket, status="resolved")
    post_fixture(account, "interactive_button_reply")
    ticket.refresh_from_db()
    assert ticket.status == "open"
    assert Ticket.objects.count() == 1
    # the message's event (seed 001's schema) has the ticket as the message left it
    event = OutboxEvent.objects.filter(event_type="message.created").latest("pk")
    assert event.payload["ticket_id"] == ticket.pk
    assert (event.payload["status"], event.payload["customer_id"]) == ("open", ticket.customer_id)
    assert event.payload["source"] == "whatsapp"
    ticket_update(ticket=ticket, status="resolved")
    Ticket.objects.filter(pk=ticket.pk).update(
        resolved_at=timezone.now() - timedelta(hours=settings.CHANNEL_REOPEN_WINDOW_HOURS + 1)
    )
    post_fixture(account, "location_message")
    assert Ticket.objects.count() == 2
    ticket.refresh_from_db()
    assert ticket.status == "resolved"


def test_reaction_is_recorded_on_the_conversation(post_fixture: Any) -> None:
    account = make_account("whatsapp")
    post_fixture(account, "text_message")
    post_fixture(account, "reaction")
    reaction = Message.objects.latest("id")
    assert reaction.body_text == "Reacted 👍"
    assert reaction.metadata["reaction"]["message_id"].startswith("wamid.")
    assert Ticket.objects.count() == 1


@responses.activate
def test_whatsapp_media_is_downloaded_by_a_task_into_storage(
    post_fixture: Any, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    account = make_account("whatsapp")
    responses.get(
        "https://graph.facebook.com/v21.0/1003383421387256",
        json={
            "url": "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1",
            "mime_type": "image/jpeg",
            "id": "1003383421387256",
        },
        match=[responses.matchers.header_matcher({"Authorization": "Bearer test-access-token"})],
    )
    responses.get(
        "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1",
        body=b"\xff\xd8jpeg-bytes",
        content_type="image/jpeg",
    )
    before = counts()
    post_fixture(account, "image_message")
    assert diff(before, counts()) == {
        "customers": 1,
        "identities": 1,
        "tickets": 1,
        "messages": 1,
        "attachments": 1,
        "events": 1,
    }
    attachment = Attachment.objects.get()
    assert attachment.message.body_text == "The box arrived damaged"
    assert (attachment.kind, attachment.external_media_id) == ("image", "1003383421387256")
    assert attachment.content_type == "image/jpeg"
    assert attachment.size == len(b"\xff\xd8jpeg-bytes")
    with attachment.file.open("rb") as fh:
        assert fh.read() == b"\xff\xd8jpeg-bytes"
    assert len(responses.calls) == 2


@responses.activate
def test_messenger_image_url_is_downloaded(post_fixture: Any, settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    account = make_account("messenger")
    responses.get(
        "https://scontent.xx.fbcdn.net/v/t1.15752-9/photo.jpg?_nc_cat=1&oh=abc",
        body=b"png!",
        content_type="image/png",
    )
    post_fixture(account, "image_attachment")
    attachment = Attachment.objects.get()
    assert (attachment.kind, attachment.size, attachment.content_type) == ("image", 4, "image/png")


def test_meta_handshake(client: Any) -> None:
    account = make_account("whatsapp", verify_token="verify-me")
    url = account.webhook_path
    ok = client.get(
        url,
        {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"},
    )
    assert (ok.status_code, ok.content) == (200, b"1158201444")
    bad = client.get(
        url, {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1158201444"}
    )
    assert bad.status_code == 403


def test_x_crc_signature_matches_the_published_hmac_sha256_vector() -> None:
    from channels_app.adapters.twitter.adapter import x_signature

    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?". (The
    # handshake itself only signs base64-shaped tokens: test_webhook_limits.py.)
    expected = bytes.fromhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    assert x_signature("Jefe", b"what do ya want for nothing?") == (
        "sha256=" + base64.b64encode(expected).decode()
    )


def test_meta_signature_matches_the_published_hmac_sha256_vector() -> None:
    from channels_app.adapters.meta.common import meta_signature

    assert meta_signature("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_accounts_keep_their_own_conversations(post_fixture: Any) -> None:
    one = make_account("whatsapp", name="one")
    two = make_account("whatsapp", name="two")
    post_fixture(one, "text_message")
    post_fixture(two, "interactive_button_reply")
    assert sorted(Ticket.objects.values_list("channel_account_id", flat=True)) == sorted(
        [str(one.pk), str(two.pk)]
    )
    assert ChannelAccount.objects.count() == 2
