"""Malformed ids and NUL characters answer 4xx, never 500 (regressions from the API fuzz
run and a review of every ``isdigit()`` in the code).

Two families: Unicode digits ("¹" passes ``str.isdigit()``, then ``int()`` raises) and
NUL characters (PostgreSQL text and jsonb cannot hold them, so the query failed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from tests.authz_world import WEBHOOK_SECRET, World, build_world

pytestmark = pytest.mark.django_db

SUP = "¹"  # superscript one: "¹".isdigit() is True, int("¹") raises ValueError


@pytest.fixture
def world(settings: Any, tmp_path: Any) -> World:
    settings.MEDIA_ROOT = tmp_path
    return build_world()


@pytest.fixture
def supervisor(world: World) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(world.users["supervisor"])
    return client


def _ticket(w: World) -> str:
    return str(w.ticket.pk)


# (method, url builder, body builder or None, expected status)
Request = tuple[str, Callable[[World], str], Callable[[World], Any] | None, int]

UNICODE_DIGITS: dict[str, Request] = {
    "api ticket": ("GET", lambda w: f"/api/tickets/{SUP}", None, 404),
    "api ticket number": ("GET", lambda w: f"/api/tickets/T-{SUP}", None, 404),
    "api merge into": (
        "POST",
        lambda w: f"/api/tickets/{_ticket(w)}/merge",
        lambda w: {"into": SUP},
        404,
    ),
    "api list team filter": ("GET", lambda w: f"/api/tickets?team={SUP}", None, 400),
    "api list customer filter": ("GET", lambda w: f"/api/tickets?customer={SUP}", None, 400),
    "api customer context": ("GET", lambda w: f"/api/customers/{SUP}/context", None, 404),
    "api analytics limit": ("GET", lambda w: f"/api/analytics?limit={SUP}", None, 400),
    "api suggestion feedback": (
        "POST",
        lambda w: f"/api/tickets/{_ticket(w)}/suggestions/{SUP}/feedback",
        lambda w: {"helpful": True},
        201,  # not a passage id: kept as the backend's reference, like any other text
    ),
    "api suggestion feedback, long ref": (
        "POST",
        lambda w: f"/api/tickets/{_ticket(w)}/suggestions/{'x' * 201}/feedback",
        lambda w: {"helpful": True},
        400,
    ),
    # not a page number: back to the inbox, saying so (the workbench's answer to bad input)
    "inbox page": ("GET", lambda w: f"/?page={SUP}", None, 302),
    "ticket page": ("GET", lambda w: f"/tickets/{SUP}/", None, 404),
    "ticket search by number": ("GET", lambda w: f"/?view=all&q=T-{SUP}", None, 200),
    "workbench team": (
        "FORM",
        lambda w: f"/tickets/{w.ticket.number}/update",
        lambda w: {"team": SUP},
        400,  # the ticket page again, the reason by the controls (a form's value)
    ),
    "workbench assignee": (
        "FORM",
        lambda w: f"/tickets/{w.ticket.number}/update",
        lambda w: {"assignee": SUP},
        400,  # the ticket page again, saying so (a form's value, not a missing page)
    ),
    "workbench bulk ids": (
        "FORM",
        lambda w: "/tickets/bulk",
        lambda w: {"action": "tag", "value": "x", "ids": [SUP]},
        400,  # the inbox again, the selection kept, the reason by the form
    ),
    "workbench merge into": (
        "FORM",
        lambda w: f"/tickets/{w.ticket.number}/merge",
        lambda w: {"into": SUP},
        400,  # the ticket page again, the reason in the merge form
    ),
    # a download URL a hand-off bot's callback gave: anything not ours is the one 404
    "chatbot file expiry": (
        "GET",
        lambda w: f"/api/webhooks/chatbot/files/{w.attachment.pk}?expires={SUP}&signature=0",
        None,
        404,
    ),
    "chatbot file id": ("GET", lambda w: f"/api/webhooks/chatbot/files/{SUP}", None, 404),
    "feedback page rating": (
        "FORM",
        lambda w: f"/feedback/{w.feedback_token}",
        lambda w: {"rating": SUP},
        400,
    ),
}


def _chatbot_file_url(attachment_id: str) -> str:
    """A download URL signed with the world's chatbot account's secret, as a bot holding
    it could make for any id (then only the database lookup can fail)."""
    from channels_app.services.handoff import handoff_file_signature

    expires = int(time.time()) + 60
    signature = handoff_file_signature(WEBHOOK_SECRET, int(attachment_id), expires)
    return f"/api/webhooks/chatbot/files/{attachment_id}?expires={expires}&signature={signature}"


# Ids of more digits than a PostgreSQL bigint holds (or Python will read: 4,300) are no ids.
BIG = "9" * 25
HUGE = "9" * 5000
LONG_NUMBERS: dict[str, Request] = {
    "api customer context, 25 digits": (
        "GET",
        lambda w: f"/api/customers/{BIG}/context",
        None,
        404,
    ),
    "api customer context, 5000 digits": (
        "GET",
        lambda w: f"/api/customers/{HUGE}/context",
        None,
        404,
    ),
    "api ticket, 25 digits": ("GET", lambda w: f"/api/tickets/{BIG}", None, 404),
    "chatbot file, 25 digits signed": ("GET", lambda w: _chatbot_file_url(BIG), None, 404),
    "chatbot file, 5000 digits": (
        "GET",
        lambda w: f"/api/webhooks/chatbot/files/{HUGE}?expires=1&signature=0",
        None,
        404,
    ),
    "chatbot file, 5000-digit expiry": (
        "GET",
        lambda w: f"/api/webhooks/chatbot/files/{w.attachment.pk}?expires={HUGE}&signature=0",
        None,
        404,
    ),
    "ticket page, 25 digits": ("GET", lambda w: f"/tickets/{BIG}/", None, 404),
}

NUL_CHARACTERS: dict[str, Request] = {
    "api list status": ("GET", lambda w: "/api/tickets?status=open%00", None, 400),
    "api list tag": ("GET", lambda w: "/api/tickets?tag=%00", None, 400),
    "api kb search": ("GET", lambda w: "/api/kb/search?q=%00", None, 400),
    "api kb search source": ("GET", lambda w: "/api/kb/search?q=refund&source=%00", None, 400),
    "inbox search": ("GET", lambda w: "/?q=%00", None, 400),
    "inbox status": ("GET", lambda w: "/?status=%00", None, 400),
    "calls search": ("GET", lambda w: "/calls/?q=%00", None, 400),
    "chatbot file signature": (
        "GET",
        lambda w: f"/api/webhooks/chatbot/files/{w.attachment.pk}?expires=1&signature=%00",
        None,
        400,
    ),
    "chatbot file expiry": (
        "GET",
        lambda w: f"/api/webhooks/chatbot/files/{w.attachment.pk}?expires=%00&signature=0",
        None,
        400,
    ),
    "workbench reply": (
        "FORM",
        lambda w: f"/tickets/{w.ticket.number}/messages",
        lambda w: {"body": "a\x00b"},
        400,
    ),
    "workbench tags": (
        "FORM",
        lambda w: f"/tickets/{w.ticket.number}/update",
        lambda w: {"tags": "a\x00b"},
        400,
    ),
    "kb upload source": (
        "MULTIPART",
        lambda w: "/api/kb/documents",
        lambda w: {"source": "faq\x00", "file": _upload()},
        400,
    ),
    "call events body": ("RAW", lambda w: "/api/calls/events", lambda w: b"\x00", 400),
    "call events json": (
        "JSON",
        lambda w: "/api/calls/events",
        lambda w: {"detail-type": "x\x00", "detail": {"contactId": "\x00"}},
        400,
    ),
    "chatbot transcript": (
        "JSON",
        lambda w: "/api/webhooks/chatbot",
        lambda w: {
            "source": "bot",
            "customer_email": "nul@example.com",
            "subject": "s",
            "initial_message": "m",
            "session_id": "nul-session",
            "transcript": [{"text": "a\x00b"}],
        },
        400,
    ),
}


def _upload() -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("faq.md", b"# Refunds\n\nFive days.", content_type="text/markdown")


def _send(client: Client, world: World, request: Request, headers: dict[str, str]) -> Any:
    method, url, body, _ = request
    path = url(world)
    data = body(world) if body else None
    if method == "GET":
        return client.get(path, headers=headers)
    if method == "FORM":
        return client.post(path, data, headers=headers)
    if method == "MULTIPART":
        return client.post(path, data, headers=headers)
    if method == "RAW":
        return client.post(path, data, content_type="application/json", headers=headers)
    return client.post(path, json.dumps(data), content_type="application/json", headers=headers)


@pytest.mark.parametrize("name", sorted(UNICODE_DIGITS))
def test_unicode_digits_are_not_ids(world: World, supervisor: Client, name: str) -> None:
    request = UNICODE_DIGITS[name]
    response = _send(supervisor, world, request, world.key_headers("key_supervisor"))
    assert response.status_code == request[3], response.content[:300]


@pytest.mark.parametrize("name", sorted(LONG_NUMBERS))
def test_numbers_too_long_for_an_id_are_not_found(
    world: World, supervisor: Client, name: str
) -> None:
    request = LONG_NUMBERS[name]
    response = _send(supervisor, world, request, world.key_headers("key_supervisor"))
    assert response.status_code == request[3], response.content[:300]


@pytest.mark.parametrize("name", sorted(NUL_CHARACTERS))
def test_nul_characters_are_refused(world: World, supervisor: Client, name: str) -> None:
    request = NUL_CHARACTERS[name]
    if request[1](world) == "/api/calls/events":
        # Call events take an integration key only (and no signed-in person).
        client, headers = Client(raise_request_exception=False), "key_integration"
    else:
        client, headers = supervisor, "key_supervisor"
    response = _send(client, world, request, world.key_headers(headers))
    assert response.status_code == request[3], response.content[:300]


def test_api_error_shape_for_nul_in_the_query(world: World, supervisor: Client) -> None:
    body = supervisor.get("/api/tickets?tag=%00").json()
    assert body["error"]["code"] == "malformed_request"
    assert "NUL" in body["error"]["message"]


def test_webchat_polling_after_a_unicode_digit(world: World) -> None:
    from channels_app.adapters.webchat.adapter import SESSION_HEADER, session_issue

    session = session_issue(world.webchat, name="Visitor", email="v@example.com")["session"]
    response = Client(raise_request_exception=False).get(
        f"/api/webchat/{world.webchat.webhook_token}/messages",
        {"after": SUP},
        headers={SESSION_HEADER: session},
    )
    assert response.status_code == 200, response.content[:300]
    assert response.json() == {"messages": []}


# --- JSON nested too deeply: 2 KB made json.loads raise RecursionError (a 500) ----------

DEEP = b"[" * 1000 + b"]" * 1000


def _webchat_session(world: World) -> dict[str, Any]:
    from channels_app.adapters.webchat.adapter import session_issue

    issued = session_issue(world.webchat, name="Visitor", email="v@example.com")
    return {"HTTP_X_WEBCHAT_SESSION": issued["session"]}


@pytest.mark.parametrize(
    "path",
    [
        "/api/webchat/{token}/session",
        "/api/webhooks/webchat/{token}",
        "/api/webchat/{token}/verify",
        "/api/webchat/{token}/verify/confirm",
    ],
)
def test_deep_json_at_the_web_chat_endpoints_is_a_400(world: World, path: str) -> None:
    response = Client(raise_request_exception=False).post(
        path.format(token=world.webchat.webhook_token),
        DEEP,
        content_type="application/json",
        **_webchat_session(world),
    )
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "malformed_payload"
    assert "nested more than" in error["message"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"--b\r\nnot a part", "multipart/form-data; boundary=b"),  # cut short
        (b"file=x", "multipart/form-data"),  # no boundary
        (b"file=x", "application/x-www-form-urlencoded"),  # no file at all
        (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a\x00.png"\r\n\r\n'
            b'\x89PNG\r\n\x1a\n\r\n--b\r\nContent-Disposition: form-data; name="text"\r\n\r\n'
            b"a\x00b\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),  # NUL in the file name and the text
    ],
)
def test_a_malformed_web_chat_upload_is_a_400(world: World, body: bytes, content_type: str) -> None:
    response = Client(raise_request_exception=False).post(
        f"/api/webchat/{world.webchat.webhook_token}/files",
        body,
        content_type=content_type,
        **_webchat_session(world),
    )
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["code"] in ("malformed_payload", "invalid")


def test_deep_json_at_a_signed_webhook_is_a_400(world: World) -> None:
    from channels_app.fixtures import meta_signature

    response = Client(raise_request_exception=False).post(
        f"/api/webhooks/whatsapp/{world.whatsapp.webhook_token}",
        DEEP,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=meta_signature(WEBHOOK_SECRET, DEEP),
    )
    assert response.status_code == 400, response.content[:300]
    assert "nested more than" in response.json()["error"]["message"]


def test_deep_json_at_the_sns_endpoint_is_a_400(world: World) -> None:
    response = Client(raise_request_exception=False).post(
        "/api/calls/sns", DEEP, content_type="application/json"
    )
    assert response.status_code == 400, response.content[:300]
    assert "nested more than" in response.json()["error"]["message"]


def test_deep_json_at_call_events_is_a_400(world: World) -> None:
    response = Client(raise_request_exception=False).post(
        "/api/calls/events",
        DEEP,
        content_type="application/json",
        headers=world.key_headers("key_integration"),
    )
    assert response.status_code == 400, response.content[:300]
    assert "nested more than" in response.json()["error"]["message"]


def test_deep_json_at_the_api_is_a_400(world: World, supervisor: Client) -> None:
    """Every DRF endpoint reads JSON with ``support.parsing.JsonParser``."""
    response = supervisor.post(
        f"/api/tickets/{_ticket(world)}/merge",
        DEEP,
        content_type="application/json",
        headers=world.key_headers("key_supervisor"),
    )
    assert response.status_code == 400, response.content[:300]
    assert "nested more than" in response.json()["error"]["message"]


# --- e-mail addresses longer than the column (254): Django's validator takes up to 320 ---

LONG_EMAIL = "a" * 250 + "@example.com"

LONG_EMAILS: dict[str, Request] = {
    "api ticket create": (
        "JSON",
        lambda w: "/api/tickets",
        lambda w: {"subject": "s", "body": "b", "customer": {"email": LONG_EMAIL}},
        400,
    ),
    "seed ticket create": (
        "JSON",
        lambda w: "/tickets",
        lambda w: {"subject": "s", "description": "b", "customer": {"email": LONG_EMAIL}},
        400,
    ),
    "chatbot hand-off": (
        "JSON",
        lambda w: "/api/webhooks/chatbot",
        lambda w: {
            "source": "bot",
            "customer_email": LONG_EMAIL,
            "subject": "s",
            "initial_message": "m",
            "session_id": "long-email-session",
        },
        400,
    ),
    "workbench new ticket": (
        "FORM",
        lambda w: "/tickets/new",
        lambda w: {"customer_email": LONG_EMAIL, "subject": "s", "body": "b", "channel": "phone"},
        400,
    ),
}


@pytest.mark.parametrize("name", sorted(LONG_EMAILS))
def test_an_address_longer_than_254_characters_is_refused(
    world: World, supervisor: Client, name: str
) -> None:
    """A 262-character address passed every validator and failed PostgreSQL's
    varchar(254): a 500 (security review 2026-12-07)."""
    world.chatbot.trusts_customer_email = True
    world.chatbot.save()
    request = LONG_EMAILS[name]
    response = _send(supervisor, world, request, world.key_headers("key_supervisor"))
    assert response.status_code == request[3], response.content[:300]
    assert b"254" in response.content
