"""The channels' erasure hook on raw deliveries: what is blanked, what is only redacted."""

from __future__ import annotations

import pytest
from django.core import signing
from django.core.signing import TimestampSigner

from channels_app.models import InboundEvent, InboundStatus
from channels_app.privacy import inbound_events_erase, token_claims
from channels_app.tests.conftest import make_account, wa_body
from tickets.context.privacy import ErasureSubject

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


def test_a_pending_delivery_naming_them_only_by_a_name_word_is_redacted_not_blanked():
    account = make_account("whatsapp")
    other = InboundEvent.objects.create(
        channel="whatsapp",
        account=account,
        external_id="other-1",
        headers={"user-agent": "facebookexternalua"},
        body=wa_body("15550001111", "wamid.O-1", "My neighbour Zelda said you fix kettles"),
    )
    assert inbound_events_erase(_subject()) == 1
    other.refresh_from_db()
    assert other.status == InboundStatus.RECEIVED  # still to be processed
    assert b"My neighbour [redacted] said you fix kettles" in bytes(other.body)
    assert other.headers == {"user-agent": "facebookexternalua"}


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
