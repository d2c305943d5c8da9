"""Files on a chatbot hand-off's callback: the callback body lists the reply's files (name,
type, size) with a ``url`` the bot can fetch for a few minutes: the signed S3 URL on S3,
else this app's own download URL signed with the bot's secret (``api-chatbot-file``),
which serves only the files of that bot's hand-off tickets' replies and answers one 404
for anything else (docs/channels.md#chatbot-hand-off)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.test import Client

from channels_app.adapters.meta.common import meta_signature
from channels_app.services import handoff
from channels_app.tests.conftest import TEST_SECRET, make_account
from support.delivery.models import Delivery
from support.delivery.services import delivery_redrive
from tickets.models import Message, MessageKind, Ticket
from tickets.services import NewAttachment, message_add, ticket_create, ticket_merge

pytestmark = pytest.mark.django_db

SENDGRID = "https://api.sendgrid.com/v3/mail/send"
CALLBACK = "https://bot.example.com/support-replies"
PDF = b"%PDF-1.4 invoice \x00\xff"
PNG = b"\x89PNG\r\n\x1a\n label"
HANDOFF = {
    "source": "web_chat",
    "customer_email": "user@example.com",
    "subject": "Cannot login",
    "initial_message": "The reset link never arrives.",
    "session_id": "xyz",
    "callback_url": CALLBACK,
}


@pytest.fixture(autouse=True)
def _world(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.MEDIA_ROOT = tmp_path
    settings.SITE_URL = "https://support.example.com"
    monkeypatch.setattr("support.safe_urls._resolve", lambda host, port: ["93.184.216.34"])
    account = make_account("email")
    account.settings = {"from_email": "support@acme.test"}
    account.save()


def _handoff(client: Client, secret: str = TEST_SECRET, **extra: Any) -> Ticket:
    body = json.dumps({**HANDOFF, **extra}).encode()
    response = client.post(
        "/api/webhooks/chatbot",
        body,
        content_type="application/json",
        HTTP_X_SIGNATURE_256=meta_signature(secret, body),
    )
    assert response.status_code == 201, response.content
    return Ticket.objects.get(pk=response.json()["ticket_id"])


def _files() -> list[NewAttachment]:
    return [
        NewAttachment("invoice.pdf", "application/pdf", PDF, kind="document"),
        NewAttachment("label.png", "image/png", PNG, kind="image"),
    ]


def _reply_and_callback(ticket: Ticket, agent: Any, capture: Any) -> tuple[Message, Any]:
    """An agent's reply with two files; the callback body the bot received."""
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    responses.post(CALLBACK, status=200, body="ok")
    with capture(execute=True):
        message = message_add(
            ticket=ticket, body="Your invoice and label.", author_user=agent, attachments=_files()
        )
    [callback] = [c for c in responses.calls if c.request.url == CALLBACK]
    return message, json.loads(callback.request.body or b"")


def _signed(attachment_id: int, expires: int, secret: str = TEST_SECRET) -> str:
    message = f"chatbot-file:{attachment_id}:{expires}".encode()
    signature = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"/api/webhooks/chatbot/files/{attachment_id}?expires={expires}&signature={signature}"


@responses.activate
def test_the_callback_lists_the_replys_files_with_a_url_the_bot_can_fetch(
    client: Client, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    make_account("chatbot")
    ticket = _handoff(client)
    before = int(time.time())
    message, body = _reply_and_callback(ticket, agent, django_capture_on_commit_callbacks)
    pdf, png = message.attachments.order_by("pk")
    assert body["message"]["body_text"] == "Your invoice and label."
    files = body["message"]["files"]
    assert [{k: v for k, v in f.items() if k not in ("url", "expires_at")} for f in files] == [
        {"id": pdf.pk, "name": "invoice.pdf", "content_type": "application/pdf", "size": len(PDF)},
        {"id": png.pk, "name": "label.png", "content_type": "image/png", "size": len(PNG)},
    ]
    for item, content in zip(files, (PDF, PNG), strict=True):
        url = urlsplit(item["url"])
        assert (url.scheme, url.netloc, url.path) == (
            "https",
            "support.example.com",
            f"/api/webhooks/chatbot/files/{item['id']}",
        )
        expires = int(parse_qs(url.query)["expires"][0])
        assert before + 300 <= expires <= int(time.time()) + 300
        assert item["expires_at"] == datetime.fromtimestamp(expires, tz=UTC).isoformat()
        # fetched as the bot would: a plain GET, no credentials but the URL's own
        response = Client().get(f"{url.path}?{url.query}")
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == content  # type: ignore[attr-defined]
        assert response["Content-Type"] == item["content_type"]
        assert response["Content-Disposition"].startswith("attachment;")
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Cache-Control"] == "private, no-store"


@responses.activate
def test_on_s3_the_url_is_the_signed_s3_url(
    client: Client, agent: Any, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(
        "channels_app.services.outbound.attachment_provider_url",
        lambda attachment: f"https://bucket.s3.amazonaws.com/{attachment.pk}?X-Amz-Signature=s",
    )
    make_account("chatbot")
    ticket = _handoff(client)
    message, body = _reply_and_callback(ticket, agent, django_capture_on_commit_callbacks)
    ids = list(message.attachments.order_by("pk").values_list("pk", flat=True))
    assert [f["url"] for f in body["message"]["files"]] == [
        f"https://bucket.s3.amazonaws.com/{pk}?X-Amz-Signature=s" for pk in ids
    ]


@responses.activate
def test_a_reply_without_files_lists_none(
    client: Client, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    make_account("chatbot")
    ticket = _handoff(client)
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    responses.post(CALLBACK, status=200, body="ok")
    with django_capture_on_commit_callbacks(execute=True):
        message_add(ticket=ticket, body="Hello", author_user=agent)
    [callback] = [c for c in responses.calls if c.request.url == CALLBACK]
    assert json.loads(callback.request.body or b"")["message"]["files"] == []
    assert Delivery.objects.get(target_kind="chatbot_callback").status == "succeeded"


def _get(path: str) -> Any:
    return Client(raise_request_exception=False).get(path)


@responses.activate
def test_the_download_url_serves_only_that_bots_reply_files(
    client: Client, agent: Any, customer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Forged, altered, expired, another bot's, an internal note's, the customer's own and
    another ticket's files are all the same 404 (nothing says whether a file exists)."""
    make_account("chatbot")
    make_account("chatbot", name="other-bot", app_secret="other-bot-secret")
    ticket = _handoff(client)
    message, _ = _reply_and_callback(ticket, agent, django_capture_on_commit_callbacks)
    pdf = message.attachments.order_by("pk").first()
    assert pdf is not None
    note = message_add(
        ticket=ticket,
        body="internal",
        kind=MessageKind.INTERNAL_NOTE,
        author_user=agent,
        attachments=[NewAttachment("secret.pdf", "application/pdf", PDF)],
    ).attachments.get()
    inbound = message_add(
        ticket=ticket,
        body="from the customer",
        direction="inbound",
        author_customer=ticket.customer,
        attachments=[NewAttachment("mine.pdf", "application/pdf", PDF)],
    ).attachments.get()
    theirs = _handoff(client, secret="other-bot-secret", session_id="other")
    other_bot_file = message_add(
        ticket=theirs, body="y", author_user=agent, attachments=_files()
    ).attachments.first()
    plain = ticket_create(customer=customer, subject="Not a hand-off", body="Hi", channel="api")
    plain_file = message_add(
        ticket=plain, body="z", author_user=agent, attachments=_files()
    ).attachments.first()
    assert other_bot_file is not None
    assert plain_file is not None
    later = int(time.time()) + 120

    assert _get(_signed(pdf.pk, later)).status_code == 200
    refused = {
        "forged": _signed(pdf.pk, later, secret="forged"),
        "altered id": _signed(pdf.pk, later).replace(f"files/{pdf.pk}?", f"files/{note.pk}?"),
        "altered expiry": _signed(pdf.pk, later).replace(f"={later}&", f"={later + 1}&"),
        "expired": _signed(pdf.pk, int(time.time()) - 1),
        "too far ahead": _signed(pdf.pk, int(time.time()) + 3600),
        "another bot's secret": _signed(pdf.pk, later, secret="other-bot-secret"),
        "internal note": _signed(note.pk, later),
        "the customer's own": _signed(inbound.pk, later),
        "another bot's ticket": _signed(other_bot_file.pk, later),
        "not a hand-off": _signed(plain_file.pk, later),
        "no such file": _signed(999_999_999, later),
        "no signature": f"/api/webhooks/chatbot/files/{pdf.pk}?expires={later}",
        "no expiry": _signed(pdf.pk, later).replace(f"expires={later}&", ""),
        "upper-case hex": _signed(pdf.pk, later).replace(
            _signed(pdf.pk, later).rpartition("=")[2],
            _signed(pdf.pk, later).rpartition("=")[2].upper(),
        ),
        "not hex": _signed(pdf.pk, later)[:-1] + "g",
        "two expiries": _signed(pdf.pk, later) + f"&expires={later}",
    }
    answers = {name: _get(path) for name, path in refused.items()}
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(refused, 404)
    assert len({r.content for r in answers.values()}) == 1


@responses.activate
def test_a_deactivated_bot_account_fetches_nothing(
    client: Client, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    account = make_account("chatbot")
    ticket = _handoff(client)
    _, body = _reply_and_callback(ticket, agent, django_capture_on_commit_callbacks)
    url = urlsplit(body["message"]["files"][0]["url"])
    account.is_active = False
    account.save()
    assert _get(f"{url.path}?{url.query}").status_code == 404


def test_file_signatures_are_the_documented_hmac() -> None:
    assert handoff.handoff_file_signature("s3cret", 7, 1764767100) == (
        hmac.new(b"s3cret", b"chatbot-file:7:1764767100", hashlib.sha256).hexdigest()
    )


# --- the status poll: the same files, fresh URLs ----------------------------------------------


def _poll(ticket_id: int, secret: str = TEST_SECRET) -> Any:
    """``GET /api/tickets/<id>/status`` signed as the bot signs it (its own secret)."""
    path = f"/api/tickets/{ticket_id}/status"
    stamp = str(int(time.time()))
    signature = hmac.new(secret.encode(), f"{stamp}.GET {path}".encode(), hashlib.sha256)
    return Client().get(
        path,
        HTTP_X_SIGNATURE_TIMESTAMP=stamp,
        HTTP_X_SIGNATURE_256="sha256=" + signature.hexdigest(),
    )


def _fetch(url: str) -> Any:
    parts = urlsplit(url)
    return _get(f"{parts.path}?{parts.query}")


def _without_urls(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in f.items() if k not in ("url", "expires_at")} for f in files]


@responses.activate
def test_the_poll_lists_the_last_replys_files_as_the_callback_does(
    client: Client, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    make_account("chatbot")
    ticket = _handoff(client)
    message, body = _reply_and_callback(ticket, agent, django_capture_on_commit_callbacks)
    response = _poll(ticket.pk)
    assert response.status_code == 200, response.content
    reply = response.json()["last_agent_reply"]
    assert (reply["id"], reply["body_text"]) == (message.pk, "Your invoice and label.")
    assert [f["name"] for f in reply["files"]] == ["invoice.pdf", "label.png"]
    assert _without_urls(reply["files"]) == _without_urls(body["message"]["files"])
    for item, content in zip(reply["files"], (PDF, PNG), strict=True):
        assert urlsplit(item["url"]).path == f"/api/webhooks/chatbot/files/{item['id']}"
        fetched = _fetch(item["url"])
        assert fetched.status_code == 200
        assert b"".join(fetched.streaming_content) == content


@responses.activate
def test_a_bot_without_a_callback_learns_of_the_files_by_polling(
    client: Client, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    make_account("chatbot")
    ticket = _handoff(client, callback_url="")
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    with django_capture_on_commit_callbacks(execute=True):
        message_add(ticket=ticket, body="Your label.", author_user=agent, attachments=_files()[1:])
    [item] = _poll(ticket.pk).json()["last_agent_reply"]["files"]
    assert (item["name"], item["content_type"], item["size"]) == ("label.png", "image/png", 14)
    assert _fetch(item["url"]).status_code == 200


@responses.activate
def test_an_expired_callback_url_is_404_and_a_poll_gives_a_fresh_one(
    client: Client,
    agent: Any,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_account("chatbot")
    ticket = _handoff(client)
    _, body = _reply_and_callback(ticket, agent, django_capture_on_commit_callbacks)
    old = body["message"]["files"][0]
    later = time.time() + 301
    monkeypatch.setattr(time, "time", lambda: later)
    assert _fetch(old["url"]).status_code == 404
    fresh = _poll(ticket.pk).json()["last_agent_reply"]["files"][0]
    assert fresh["id"] == old["id"]
    assert fresh["url"] != old["url"]
    assert int(parse_qs(urlsplit(fresh["url"]).query)["expires"][0]) == int(later) + 300
    assert _fetch(fresh["url"]).status_code == 200


# --- merged tickets: a bot keeps the files meant for it, and gets nothing else ----------------


def _merge(source: Ticket, target: Ticket, agent: Any) -> None:
    ticket_merge(source=source, target=target, actor=agent, confirm_customer_merge=True)


@responses.activate
def test_after_its_ticket_is_merged_the_bot_still_fetches_its_replys_files(
    client: Client, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Merging moves the hand-off's timeline to the other ticket: the bot's callback URLs
    keep working, and its poll (of its own ticket, now closed) still shows the reply."""
    make_account("chatbot")
    ticket = _handoff(client)
    message, body = _reply_and_callback(ticket, agent, django_capture_on_commit_callbacks)
    target = ticket_create(customer=ticket.customer, subject="Duplicate", body="Same problem")
    _merge(ticket, target, agent)
    assert Message.objects.get(pk=message.pk).ticket_id == target.pk
    for item in body["message"]["files"]:
        assert _fetch(item["url"]).status_code == 200
    polled = _poll(ticket.pk).json()
    assert polled["status"] == "closed"
    reply = polled["last_agent_reply"]
    assert reply["id"] == message.pk
    assert _without_urls(reply["files"]) == _without_urls(body["message"]["files"])
    assert [_fetch(f["url"]).status_code for f in reply["files"]] == [200, 200]
    assert _poll(target.pk).status_code == 404  # the target is no hand-off of this bot
    # merged on again: the reply is still the bot's
    final = ticket_create(customer=ticket.customer, subject="Third", body="Again")
    _merge(target, final, agent)
    reply = _poll(ticket.pk).json()["last_agent_reply"]
    assert reply["id"] == message.pk
    assert [_fetch(f["url"]).status_code for f in reply["files"]] == [200, 200]


@responses.activate
def test_merged_into_another_bots_hand_off_the_files_stay_the_first_bots(
    client: Client, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    make_account("chatbot")
    make_account("chatbot", name="other-bot", app_secret="other-bot-secret")
    ticket = _handoff(client)
    message, _ = _reply_and_callback(ticket, agent, django_capture_on_commit_callbacks)
    theirs = _handoff(client, secret="other-bot-secret", session_id="other", callback_url="")
    _merge(ticket, theirs, agent)
    pdf = message.attachments.order_by("pk").first()
    assert pdf is not None
    later = int(time.time()) + 120
    assert _get(_signed(pdf.pk, later, secret="other-bot-secret")).status_code == 404
    assert _poll(theirs.pk, secret="other-bot-secret").json()["last_agent_reply"] is None
    assert _get(_signed(pdf.pk, later)).status_code == 200
    assert _poll(ticket.pk).json()["last_agent_reply"]["id"] == message.pk


@responses.activate
def test_a_ticket_merged_into_the_hand_off_brings_the_bot_nothing(
    client: Client, agent: Any, customer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Another ticket's replies (sent to its customer on its own channel) were never meant
    for the bot: merged into the hand-off, they stay out of its poll and its file URLs."""
    make_account("chatbot")
    ticket = _handoff(client)
    mine, _ = _reply_and_callback(ticket, agent, django_capture_on_commit_callbacks)
    other = ticket_create(customer=customer, subject="By e-mail", body="Hi", channel="api")
    theirs = message_add(
        ticket=other, body="Your contract", author_user=agent, attachments=_files()
    )
    assert theirs.created_at > mine.created_at
    _merge(other, ticket, agent)
    later = int(time.time()) + 120
    for attachment in theirs.attachments.all():
        assert _get(_signed(attachment.pk, later)).status_code == 404
    reply = _poll(ticket.pk).json()["last_agent_reply"]
    assert (reply["id"], reply["body_text"]) == (mine.pk, "Your invoice and label.")
    # the hand-off's own replies after the merge are the bot's, as before
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-2"})
    with django_capture_on_commit_callbacks(execute=True):
        after = message_add(ticket=ticket, body="One more", author_user=agent, attachments=_files())
    reply = _poll(ticket.pk).json()["last_agent_reply"]
    assert reply["id"] == after.pk
    assert [_fetch(f["url"]).status_code for f in reply["files"]] == [200, 200]


@responses.activate
def test_a_callback_re_driven_after_a_merge_goes_to_its_own_bot_session(
    client: Client, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A callback that failed before the merge and is re-driven after: still the
    hand-off's (its URL, ticket and session), with file URLs that work. Before, it read the
    ticket the reply had moved to: another session's callback URL and ids."""
    make_account("chatbot")
    other_callback = "https://bot.example.com/other-session"
    ticket = _handoff(client)
    second = _handoff(client, session_id="second", callback_url=other_callback)
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    responses.post(CALLBACK, status=400, body="down")
    with django_capture_on_commit_callbacks(execute=True):
        message = message_add(ticket=ticket, body="Files", author_user=agent, attachments=_files())
    delivery = Delivery.objects.get(target_kind="chatbot_callback")
    assert delivery.status == "dead"
    _merge(ticket, second, agent)
    responses.replace(responses.POST, CALLBACK, status=200, body="ok")
    responses.post(other_callback, status=200, body="ok")
    before = len(responses.calls)
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery_redrive(delivery_ids=[delivery.pk], actor=agent) == 1
    [call] = list(responses.calls)[before:]
    assert call.request.url == CALLBACK
    body = json.loads(call.request.body or b"")
    assert (body["ticket_id"], body["session_id"], body["number"]) == (
        ticket.pk,
        "xyz",
        ticket.number,
    )
    assert body["message"]["id"] == message.pk
    assert [_fetch(f["url"]).status_code for f in body["message"]["files"]] == [200, 200]
    assert Delivery.objects.get(pk=delivery.pk).status == "succeeded"


@responses.activate
def test_a_hand_off_that_took_another_in_keeps_its_own_callback_and_address(
    client: Client, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The hand-off's record (callback URL, the address typed) is its own first message:
    an older hand-off merged into it brings an earlier first message, never its record."""
    make_account("chatbot")
    other_callback = "https://bot.example.com/other-session"
    older = _handoff(client)
    ticket = _handoff(
        client,
        session_id="second",
        customer_email="second@example.com",
        callback_url=other_callback,
    )
    _merge(older, ticket, agent)
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    responses.post(other_callback, status=200, body="ok")
    with django_capture_on_commit_callbacks(execute=True):
        message = message_add(ticket=ticket, body="Hello", author_user=agent)
    mail, callback = responses.calls
    assert json.loads(mail.request.body or b"")["personalizations"] == [
        {"to": [{"email": "second@example.com"}]}
    ]
    assert callback.request.url == other_callback
    body = json.loads(callback.request.body or b"")
    assert (body["ticket_id"], body["session_id"], body["message"]["id"]) == (
        ticket.pk,
        "second",
        message.pk,
    )


@responses.activate
def test_a_hand_off_reply_queued_before_a_cross_customer_merge_is_mailed_to_its_customer(
    client: Client, agent: Any, customer: Any
) -> None:
    """The reply's e-mail waits (a retry, a paused account) while an agent merges the
    hand-off into another customer's ticket: it goes to the hand-off's customer, never to
    the other one (docs/channels.md#replies-and-merges)."""
    from channels_app.services import outbound_delivery_create
    from support.delivery import services as engine
    from support.delivery.models import Delivery

    make_account("chatbot")
    ticket = _handoff(client, callback_url="")
    message = message_add(ticket=ticket, body="Try this link.", author_user=agent)
    delivery = outbound_delivery_create(message_id=message.pk)
    assert delivery is not None
    theirs = ticket_create(customer=customer, subject="By e-mail", body="Hi", channel="api")
    _merge(ticket, theirs, agent)
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})

    engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)

    [call] = responses.calls
    sent = json.loads(call.request.body or b"")
    assert sent["personalizations"] == [{"to": [{"email": "user@example.com"}]}]
    assert Delivery.objects.get(pk=delivery.pk).status == "succeeded"


@responses.activate
def test_urls_that_match_no_file_are_limited_per_address(
    client: Client, agent: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Each try is a query and one HMAC per bot, and the URL needs no sign-in: past
    API_AUTH_FAILURE_LIMIT_PER_MINUTE misses a minute from one address, 429 before any look
    up (review 2026-12-07: there was no limit). Good URLs are never counted, and another
    address is not affected."""
    settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE = 2
    make_account("chatbot")
    ticket = _handoff(client)
    message, _ = _reply_and_callback(ticket, agent, django_capture_on_commit_callbacks)
    pdf = message.attachments.order_by("pk").first()
    assert pdf is not None
    good = _signed(pdf.pk, int(time.time()) + 120)
    prober = Client(raise_request_exception=False, REMOTE_ADDR="192.0.2.81")
    forged = f"/api/webhooks/chatbot/files/{pdf.pk}?expires=1&signature=0"
    assert [prober.get(forged).status_code for _ in range(3)] == [404, 404, 429]
    assert prober.get(good).status_code == 429  # the address waits out the minute
    bot = Client(raise_request_exception=False, REMOTE_ADDR="192.0.2.82")
    assert [bot.get(good).status_code for _ in range(4)] == [200] * 4


def _poll_from(ticket_id: int, address: str, secret: str = TEST_SECRET) -> int:
    """``_poll``'s request from ``address``: its status code."""
    path = f"/api/tickets/{ticket_id}/status"
    stamp = str(int(time.time()))
    signature = hmac.new(secret.encode(), f"{stamp}.GET {path}".encode(), hashlib.sha256)
    return int(
        Client(REMOTE_ADDR=address)
        .get(
            path,
            HTTP_X_SIGNATURE_TIMESTAMP=stamp,
            HTTP_X_SIGNATURE_256="sha256=" + signature.hexdigest(),
        )
        .status_code
    )


def test_forged_status_polls_are_limited_per_address_with_the_hand_offs(
    client: Client, settings: Any
) -> None:
    """A forged ``X-Signature-256`` on the status poll was answered 403 at the API's
    per-address rate, each hashed with every chatbot account's secret: it is counted
    with the hand-offs' misses now (the same secrets guessed), 429 past the limit; a
    genuine poll from another address is not affected."""
    settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE = 2
    make_account("chatbot")
    ticket = _handoff(client)
    codes = [_poll_from(ticket.pk, "198.51.100.7", secret="not-the-secret") for _ in range(3)]
    assert codes == [403, 403, 429]
    assert _poll_from(ticket.pk, "198.51.100.8") == 200
