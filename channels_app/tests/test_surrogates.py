"""A lone UTF-16 surrogate (JSON ``"\\ud800"``) from the public intake: valid JSON that
PostgreSQL cannot store. A web chat message carrying one was acknowledged (200) and then
failed in the drain for ever, or was a 500 (its ``client_id`` keys the delivery); a
chatbot hand-off's transcript (jsonb) was a 500. Now it is U+FFFD where the message is
kept, and a ``client_id`` that is not printable ASCII is a 400."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from channels_app.adapters.webchat.adapter import SESSION_HEADER, session_issue
from channels_app.models import InboundEvent, InboundStatus
from channels_app.tests.conftest import TEST_SECRET, make_account
from channels_app.tests.test_chatbot_webchat import HANDOFF, _signed_post
from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def web() -> Client:
    return Client(
        REMOTE_ADDR=f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.9",
        raise_request_exception=False,
    )


def _post_message(web: Client, account: Any, session: str, raw: str) -> Any:
    return web.post(
        f"/api/webhooks/webchat/{account.webhook_token}",
        data=raw,
        content_type="application/json",
        headers={SESSION_HEADER: session},
    )


@pytest.mark.parametrize(
    "client_id",
    ['"\\ud800abcdefgh"', '"abcdefgh\\udfff"', '"abc\\u00e9defgh"', '"abcdefgh\\u0007"'],
    ids=["lone-high", "lone-low", "non-ascii", "control"],
)
def test_webchat_client_id_must_be_printable_ascii(
    web: Client, django_capture_on_commit_callbacks: Any, client_id: str
) -> None:
    account = make_account("webchat")
    session = session_issue(account, name="Vera", email="v@example.com")["session"]
    with django_capture_on_commit_callbacks(execute=True):
        sent = _post_message(web, account, session, f'{{"text": "hi", "client_id": {client_id}}}')
    assert sent.status_code == 400, sent.content
    assert sent.json()["error"]["code"] == "malformed_payload"
    assert "client_id" in sent.json()["error"]["message"]
    event = InboundEvent.objects.get(account=account)
    assert event.status == InboundStatus.MALFORMED
    assert not Message.objects.exists()


def test_webchat_text_with_a_lone_surrogate_is_kept_as_u_fffd(
    web: Client, django_capture_on_commit_callbacks: Any
) -> None:
    account = make_account("webchat")
    session = session_issue(account, name="Vera", email="v@example.com")["session"]
    with django_capture_on_commit_callbacks(execute=True):
        sent = _post_message(
            web, account, session, '{"text": "hi \\ud800 there", "client_id": "client-sur-1"}'
        )
    assert sent.status_code == 200, sent.content
    event = InboundEvent.objects.get(account=account)
    assert event.status == InboundStatus.PROCESSED, (event.status, event.error[:300])
    message = Message.objects.get(channel="webchat")
    assert message.body_text == "hi \ufffd there"


def test_webchat_session_name_with_a_lone_surrogate_is_kept_as_u_fffd(
    web: Client, django_capture_on_commit_callbacks: Any
) -> None:
    account = make_account("webchat")
    started = web.post(
        f"/api/webchat/{account.webhook_token}/session",
        data='{"name": "Ve\\ud800ra", "email": "v@example.com"}',
        content_type="application/json",
    )
    assert started.status_code == 201, started.content
    with django_capture_on_commit_callbacks(execute=True):
        sent = _post_message(
            web, account, started.json()["session"], '{"text": "hi", "client_id": "client-sur-2"}'
        )
    assert sent.status_code == 200, sent.content
    event = InboundEvent.objects.get(account=account)
    assert event.status == InboundStatus.PROCESSED, (event.status, event.error[:300])
    message = Message.objects.select_related("ticket__customer").get(channel="webchat")
    assert message.ticket.customer.name == "Ve\ufffdra"


def test_webchat_session_from_before_with_a_lone_surrogate_is_kept_as_u_fffd(
    web: Client, django_capture_on_commit_callbacks: Any
) -> None:
    """A session signed before names were cleaned carries the surrogate itself."""
    account = make_account("webchat")
    session = session_issue(account, name="Ve\ud800ra", email="v@example.com")["session"]
    with django_capture_on_commit_callbacks(execute=True):
        sent = _post_message(web, account, session, '{"text": "hi", "client_id": "client-sur-3"}')
    assert sent.status_code == 200, sent.content
    event = InboundEvent.objects.get(account=account)
    assert event.status == InboundStatus.PROCESSED, (event.status, event.error[:300])
    message = Message.objects.select_related("ticket__customer").get(channel="webchat")
    assert message.ticket.customer.name == "Ve\ufffdra"


def test_chatbot_handoff_transcript_with_a_lone_surrogate(api_client: APIClient) -> None:
    make_account("chatbot")
    body = json.dumps(HANDOFF).replace('"refund"', '"ref\\ud800und"', 1)
    assert "\\ud800" in body
    response = _signed_post(api_client, json.loads(body), TEST_SECRET)
    assert response.status_code == 201, response.content
    ticket = Ticket.objects.get()
    note = Message.objects.get(ticket=ticket, kind="internal_note")
    assert "ref\ufffdund" in note.body_text
