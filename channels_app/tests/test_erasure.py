"""The channels' erasure hook on raw deliveries: what is blanked, what is only redacted."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.core import signing
from django.core.signing import TimestampSigner
from django.test.client import BOUNDARY, encode_multipart

from channels_app.adapters.webchat.adapter import SESSION_HEADER
from channels_app.models import InboundEvent, InboundStatus
from channels_app.privacy import (
    ERASED_INSEPARABLE_NOTE,
    ERASED_NOTE,
    inbound_events_erase,
    token_claims,
)
from channels_app.services import inbound_event_process
from channels_app.tests.conftest import make_account, wa_body
from tickets.context.privacy import ErasureSubject
from tickets.models import Message

pytestmark = pytest.mark.django_db

CLAIMS = {"a": 1, "v": "v_0a1b2c", "n": "Zelda Quimby", "e": "zq@example.org"}


def test_session_token_claims_are_read_whatever_the_token_shape():
    assert token_claims(signing.dumps(CLAIMS, salt="x")) == CLAIMS
    assert token_claims(signing.dumps({**CLAIMS, "pad": "z" * 300}, compress=True))["e"] == (
        "zq@example.org"
    )
    assert token_claims(TimestampSigner(salt="y").sign_object(CLAIMS)) == CLAIMS
    assert token_claims("not a token") == {}
    assert token_claims("") == {}


def _subject() -> ErasureSubject:
    return ErasureSubject(
        customer_id=1,
        ticket_ids=[],
        tokens=["zq@example.org", "v_0a1b2c", "Zelda Quimby", "Quimby", "Zelda"],
        identifiers=["zq@example.org", "v_0a1b2c"],
    )


def test_deliveries_naming_them_only_by_a_name_word_are_left_alone():
    """A name word is anyone's: a delivery holding none of their identifiers is someone
    else's and is not touched, pending or processed, whatever it says (before 2026-12-07
    the pending one was redacted and the processed one blanked)."""
    account = make_account("whatsapp")
    body = wa_body("15550001111", "wamid.O-1", "My neighbour Zelda said you fix kettles")
    other = InboundEvent.objects.create(
        channel="whatsapp",
        account=account,
        external_id="other-1",
        headers={"user-agent": "facebookexternalua"},
        body=body,
    )
    done = InboundEvent.objects.create(
        channel="whatsapp",
        account=account,
        external_id="other-2",
        body=wa_body("15550002222", "wamid.O-2", "Zelda Quimby? Never heard of her"),
        status=InboundStatus.PROCESSED,
    )
    assert inbound_events_erase(_subject()) == 0
    other.refresh_from_db()
    done.refresh_from_db()
    assert (other.status, bytes(other.body)) == (InboundStatus.RECEIVED, body)
    assert other.headers == {"user-agent": "facebookexternalua"}
    assert b"Zelda Quimby? Never heard of her" in bytes(done.body)


def test_a_kept_deliverys_json_keys_are_never_rewritten():
    """Someone else's pending delivery naming them by an identifier is redacted value by
    value, as whole words; its keys stay ("phone_number_id" while "Number" is one of their
    name words: before 2026-12-07 it became "phone_[redacted]_id")."""
    account = make_account("whatsapp")
    subject = ErasureSubject(
        customer_id=1,
        ticket_ids=[],
        tokens=["nina.number@example.org", "Nina Number", "Number", "Nina"],
        identifiers=["nina.number@example.org"],
    )
    event = _pending(
        account,
        "k-1",
        _wa_batch(
            [("34611111111", "Bea")],
            [
                _wa_message(
                    "34611111111",
                    "wamid.K1",
                    "My order changed; Nina Number (nina.number@example.org) knows",
                )
            ],
        ),
    )
    assert inbound_events_erase(subject) == 1
    event.refresh_from_db()
    assert event.status == InboundStatus.RECEIVED
    value = json.loads(bytes(event.body))["entry"][0]["changes"][0]["value"]
    assert value["metadata"] == {"phone_number_id": "106540352242922"}
    assert value["messages"][0]["text"]["body"] == (
        "My order changed; [redacted] ([redacted]) knows"
    )


def test_a_web_chat_delivery_is_found_through_its_session_token():
    account = make_account("webchat")
    token = signing.dumps({**CLAIMS, "a": account.pk}, compress=True)
    event = InboundEvent.objects.create(
        channel="webchat",
        account=account,
        external_id="s-123:c-1",  # a key that does not name them
        headers={"x-webchat-session": token},
        body=b'{"text": "hello", "client_id": "c-1"}',
        status=InboundStatus.DEAD,
    )
    assert inbound_events_erase(_subject()) == 1
    event.refresh_from_db()
    assert (bytes(event.body), event.headers, event.status) == (b"", {}, InboundStatus.IGNORED)
    assert event.error.startswith("erased")


# --- a pending delivery holding their identifiers: whose is it? --------------------------
#
# Ana (phone +34 600 000 001, ana@example.com, WhatsApp 34600000001, Messenger PSID
# 2400000000000001) is erased while other customers' deliveries that name her wait.

ANA_PHONE = "34600000001"
ANA_PSID = "2400000000000001"


def _ana() -> ErasureSubject:
    return ErasureSubject(
        customer_id=1,
        ticket_ids=[],
        tokens=["ana@example.com", "+34600000001", ANA_PSID, ANA_PHONE, "Ana Ruiz", "Ruiz", "Ana"],
        identifiers=["ana@example.com", "+34600000001", ANA_PSID, ANA_PHONE],
        message_ids=["wamid.ANA-OLD"],
    )


def _wa_message(sender: str, message_id: str, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "from": sender,
        "id": message_id,
        "timestamp": "1764100000",
        "type": "text",
        "text": {"body": text},
        **extra,
    }


def _wa_batch(contacts: list[tuple[str, str]], messages: list[dict[str, Any]]) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": name}, "wa_id": wa_id} for wa_id, name in contacts],
        "messages": messages,
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "waba", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(payload).encode()


def _pending(account: Any, key: str, body: bytes, **fields: Any) -> InboundEvent:
    return InboundEvent.objects.create(
        channel=account.channel, account=account, external_id=key, body=body, **fields
    )


def _names_ana(event: InboundEvent) -> bool:
    raw = (bytes(event.body) + json.dumps(event.headers).encode()).lower()
    return any(v.lower().encode() in raw for v in [*_ana().identifiers, "wamid.ANA-OLD"])


def test_another_customers_pending_messages_naming_them_are_redacted_and_still_processed():
    account = make_account("whatsapp")
    asks = _pending(
        account,
        "b-1",
        _wa_batch(
            [("34611111111", "Bea")],
            [
                _wa_message(
                    "34611111111",
                    "wamid.B1",
                    "My order 7731 never came. My husband's number is +34600000001.",
                    context={"from": "106540352242922", "id": "wamid.ANA-OLD"},
                )
            ],
        ),
    )
    dead = _pending(
        account,
        "b-2",
        _wa_batch(
            [("34622222222", "Carl")],
            [_wa_message("34622222222", "wamid.B2", "Please reply to ANA@example.com too")],
        ),
        status=InboundStatus.DEAD,
        attempts=5,
        error="was failing",
    )

    assert inbound_events_erase(_ana()) == 2

    asks.refresh_from_db()
    dead.refresh_from_db()
    assert (asks.status, dead.status) == (InboundStatus.RECEIVED, InboundStatus.DEAD)
    assert (dead.attempts, dead.error) == (5, "was failing")  # still a dead letter to re-drive
    assert not _names_ana(asks)
    assert not _names_ana(dead)
    for event in (asks, dead):
        inbound_event_process(event_id=event.pk)
    first = Message.objects.get(channel_message_id="wamid.B1")
    second = Message.objects.get(channel_message_id="wamid.B2")
    assert first.body_text == "My order 7731 never came. My husband's number is [redacted]."
    assert second.body_text == "Please reply to [redacted] too"
    assert first.ticket.customer.phone == "+34611111111"


def test_their_own_pending_delivery_is_still_blanked_and_closed():
    account = make_account("whatsapp")
    own = _pending(
        account,
        "a-1",
        _wa_batch([(ANA_PHONE, "Ana")], [_wa_message(ANA_PHONE, "wamid.A1", "Where is 7731?")]),
        status=InboundStatus.RETRYING,
    )
    assert inbound_events_erase(_ana()) == 1
    own.refresh_from_db()
    assert (bytes(own.body), own.headers, own.status) == (b"", {}, InboundStatus.IGNORED)
    assert own.error.startswith("erased: personal data removed")


def test_a_batch_from_several_senders_keeps_the_others_messages_only():
    account = make_account("whatsapp")
    batch = _pending(
        account,
        "batch-1",
        _wa_batch(
            [(ANA_PHONE, "Ana"), ("34611111111", "Bea")],
            [
                _wa_message(ANA_PHONE, "wamid.A2", "Ring me on 600 000 001"),
                _wa_message("34611111111", "wamid.B3", "Ana Ruiz is my sister"),
            ],
        ),
    )
    assert inbound_events_erase(_ana()) == 1
    batch.refresh_from_db()
    assert batch.status == InboundStatus.RECEIVED
    assert not _names_ana(batch)
    assert b"Ring me" not in bytes(batch.body)
    value = json.loads(bytes(batch.body))["entry"][0]["changes"][0]["value"]
    assert [c["wa_id"] for c in value["contacts"]] == ["34611111111"]
    inbound_event_process(event_id=batch.pk)
    assert list(Message.objects.values_list("channel_message_id", "body_text")) == [
        ("wamid.B3", "[redacted] is my sister")
    ]


def test_a_messenger_batch_loses_their_entries_and_keeps_the_others():
    account = make_account("messenger")

    def entry(sender: str, recipient: str, mid: str, text: str) -> dict[str, Any]:
        return {
            "sender": {"id": sender},
            "recipient": {"id": recipient},
            "timestamp": 1764100000000,
            "message": {"mid": mid, "text": text},
        }

    page = "107240291734629"
    body = {
        "object": "page",
        "entry": [
            {
                "id": page,
                "time": 1764100000000,
                "messaging": [
                    entry(ANA_PSID, page, "m_A", "hello again"),
                    entry("2400000000000002", page, "m_B", f"Ana's id was {ANA_PSID}"),
                ],
            }
        ],
    }
    batch = _pending(account, "m-1", json.dumps(body).encode(), status=InboundStatus.DEAD)
    assert inbound_events_erase(_ana()) == 1
    batch.refresh_from_db()
    assert batch.status == InboundStatus.DEAD
    assert not _names_ana(batch)
    messaging = json.loads(bytes(batch.body))["entry"][0]["messaging"]
    assert [m["message"] for m in messaging] == [
        {"mid": "m_B", "text": "[redacted]'s id was [redacted]"}
    ]


def _email_event(account: Any, key: str, **fields: str) -> InboundEvent:
    body = encode_multipart(BOUNDARY, {"to": "support@acme.test", "SPF": "pass", **fields})
    return _pending(
        account,
        key,
        body,
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )


def test_an_email_that_copies_them_is_redacted_and_one_hiding_them_in_encoding_is_closed():
    account = make_account("email")
    copied = _email_event(
        account,
        "e-1",
        **{
            "from": "Bea <bea@example.net>",
            "headers": "Cc: Ana Ruiz <ana@example.com>\nSubject: Refund\n",
            "subject": "Refund",
            "text": "Hello, my friend ana@example.com said you refund quickly.",
        },
    )
    part = base64.b64encode(b"Write to ana@example.com please").decode()
    raw = (
        "From: Bea <bea@example.net>\r\nTo: support@acme.test, ana@example.com\r\n"
        "Subject: Hi\r\nMessage-ID: <b-9@example.net>\r\nContent-Type: text/plain\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{part}\r\n"
    )
    encoded = _email_event(account, "e-2", email=raw)
    theirs = _email_event(
        account, "e-3", **{"from": "Ana <ana@example.com>", "subject": "Me", "text": "It's me"}
    )

    assert inbound_events_erase(_ana()) == 3

    copied.refresh_from_db()
    assert copied.status == InboundStatus.RECEIVED
    assert not _names_ana(copied)
    inbound_event_process(event_id=copied.pk)
    message = Message.objects.get()
    assert message.body_text == "Hello, my friend [redacted] said you refund quickly."
    assert message.ticket.subject == "Refund"
    # Her address inside a base64 part: no text search of the body can redact it, so
    # the delivery is closed, and says why (not silently lost).
    encoded.refresh_from_db()
    assert (bytes(encoded.body), encoded.status) == (b"", InboundStatus.IGNORED)
    assert encoded.error == ERASED_INSEPARABLE_NOTE
    theirs.refresh_from_db()
    assert (bytes(theirs.body), theirs.status) == (b"", InboundStatus.IGNORED)
    assert theirs.error == ERASED_NOTE


def test_another_visitors_web_chat_message_naming_them_is_redacted_not_blanked():
    account = make_account("webchat")
    token = signing.dumps({"a": account.pk, "v": "v_someone_else", "n": "Bea"}, compress=True)
    event = InboundEvent.objects.create(
        channel="webchat",
        account=account,
        external_id="v_someone_else:c-12345678",
        headers={SESSION_HEADER: token},
        body=b'{"text": "my friend ana@example.com \\u0061na@example.com", "client_id": "c-1"}',
    )
    assert inbound_events_erase(_ana()) == 1
    event.refresh_from_db()
    assert event.status == InboundStatus.RECEIVED
    assert json.loads(bytes(event.body))["text"] == "my friend [redacted] [redacted]"
    assert event.headers == {SESSION_HEADER: token}


def test_another_senders_address_holding_their_name_word_is_kept_as_it_is():
    account = make_account("email")
    event = _email_event(
        account,
        "e-4",
        **{
            "from": "Anabel Ortiz <anabel.ortiz@example.net>",
            "subject": "For Ana",
            "text": "Copying ana@example.com, my cousin Ana.",
        },
    )
    assert inbound_events_erase(_ana()) == 1
    event.refresh_from_db()
    assert event.status == InboundStatus.RECEIVED
    assert not _names_ana(event)
    assert b"<anabel.ortiz@example.net>" in bytes(event.body)
    inbound_event_process(event_id=event.pk)
    message = Message.objects.get()
    assert message.body_text == "Copying [redacted], my cousin [redacted]."
    assert message.ticket.subject == "For [redacted]"
    assert message.ticket.customer.name == "Anabel Ortiz (unverified: anabel.ortiz@example.net)"


def test_web_chat_verifications_of_another_customer_are_kept():
    """Verification rows are deleted by the person's customer and unshared addresses (their
    ``identifiers``), never by an address only a token names (a mailbox shared with
    another customer) nor one naming another customer (before: every address in
    ``tokens``)."""
    from datetime import timedelta

    from django.utils import timezone

    from channels_app.models import WebchatVerification
    from channels_app.verification import webchat_verifications_erase
    from tickets.models import Customer

    zelda = Customer.objects.create(name="Zelda Quimby", email="zq@example.org")
    other = Customer.objects.create(name="Otto", email="otto@example.org")
    account = make_account("webchat")
    expires = timezone.now() + timedelta(minutes=10)

    def row(email: str, customer: Customer | None) -> WebchatVerification:
        return WebchatVerification.objects.create(
            account=account,
            visitor_id=f"v-{WebchatVerification.objects.count()}",
            email=email,
            code_salt="s",
            expires_at=expires,
            customer=customer,
        )

    hers = [row("zq@example.org", None), row("anything@example.org", zelda)]
    kept = [
        row("shared@example.org", None),  # in her tokens, not her identifiers
        row("zq@example.org", other),  # her address, typed by someone it names
    ]
    subject = ErasureSubject(
        customer_id=zelda.pk,
        ticket_ids=[],
        tokens=["zq@example.org", "shared@example.org", "Zelda Quimby"],
        identifiers=["zq@example.org"],
    )
    assert webchat_verifications_erase(subject) == 2
    left = set(WebchatVerification.objects.values_list("pk", flat=True))
    assert left == {r.pk for r in kept}
    assert not left & {r.pk for r in hers}
