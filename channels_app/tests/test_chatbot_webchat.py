"""Chatbot hand-off (API key or HMAC) and the web chat widget's endpoints."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from channels_app.adapters.meta.common import meta_signature
from channels_app.services import handoff
from channels_app.tests.conftest import TEST_SECRET, counts, diff, make_account
from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db

HANDOFF = {
    "source": "website-bot",
    "customer_email": "ana@example.com",
    "subject": "Bot could not help with a refund",
    "initial_message": "I want a refund for order 77",
    "session_id": "sess-123",
    "transcript": [{"role": "user", "text": "refund"}, {"role": "bot", "text": "Which order?"}],
}


def _signed_post(
    client: APIClient,
    payload: dict[str, Any],
    secret: str = TEST_SECRET,
    *,
    timestamp: int | None = None,
) -> Any:
    """The hand-off POSTed with the body's HMAC, or with ``timestamp`` the HMAC of
    ``"<timestamp>." + body`` and its ``X-Signature-Timestamp``."""
    body = json.dumps(payload).encode()
    headers = {"HTTP_X_SIGNATURE_256": meta_signature(secret, body)}
    if timestamp is not None:
        headers = {
            "HTTP_X_SIGNATURE_TIMESTAMP": str(timestamp),
            "HTTP_X_SIGNATURE_256": handoff.handoff_signature(secret, timestamp, body),
        }
    return client.generic(
        "POST",
        "/api/webhooks/chatbot",
        data=body,  # type: ignore[arg-type]
        content_type="application/json",
        **headers,  # type: ignore[arg-type]
    )


def test_hmac_signed_handoff_creates_one_ticket_per_session(api_client: APIClient) -> None:
    make_account("chatbot")
    before = counts()
    response = _signed_post(api_client, HANDOFF)
    assert response.status_code == 201, response.content
    ticket = Ticket.objects.get()
    assert response.json() == {
        "ticket_id": ticket.pk,
        "number": ticket.number,
        "status": "new",
        "is_bot_handoff": True,
        "status_url": f"/api/tickets/{ticket.pk}/status",
    }
    assert diff(before, counts()) == {"customers": 1, "tickets": 1, "messages": 2}
    assert (ticket.channel, ticket.is_bot_handoff, ticket.origin_platform_id) == (
        "chatbot",
        True,
        "sess-123",
    )
    note = Message.objects.get(kind="internal_note")
    assert note.body_text == "Bot transcript\nuser: refund\nbot: Which order?"
    again = _signed_post(api_client, HANDOFF)
    assert again.status_code == 200
    assert again.json()["ticket_id"] == ticket.pk
    assert Ticket.objects.count() == 1


def test_handoff_refuses_forged_and_unauthenticated(api_client: APIClient) -> None:
    make_account("chatbot")
    assert _signed_post(api_client, HANDOFF, secret="wrong").status_code == 403
    response = api_client.post("/api/webhooks/chatbot", HANDOFF, format="json")
    assert response.status_code == 401
    assert Ticket.objects.count() == 0


def test_handoff_with_an_agent_api_key_and_validation(agent: Any, api_client: APIClient) -> None:
    from support.services import api_key_create

    _, raw = api_key_create(user=agent, name="bot")
    api_client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    bad = api_client.post(
        "/api/webhooks/chatbot", {**HANDOFF, "customer_email": "x"}, format="json"
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid"
    ok = api_client.post("/api/webhooks/chatbot", HANDOFF, format="json")
    assert ok.status_code == 201
    status = api_client.get(ok.json()["status_url"])
    assert status.status_code == 200


def test_webchat_session_message_and_poll(
    client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    account = make_account("webchat")
    started = client.post(
        f"/api/webchat/{account.webhook_token}/session",
        data={"name": "Vera", "email": "vera@example.com"},
        content_type="application/json",
    )
    assert started.status_code == 201
    session = started.json()["session"]
    with django_capture_on_commit_callbacks(execute=True):
        sent = client.post(
            started.json()["messages_url"],
            data={"text": "Hi there", "client_id": "client-0001"},
            content_type="application/json",
            HTTP_X_WEBCHAT_SESSION=session,
        )
    assert sent.status_code == 200
    polled = client.get(started.json()["poll_url"], HTTP_X_WEBCHAT_SESSION=session)
    assert polled.status_code == 200
    [message] = polled.json()["messages"]
    assert (message["from"], message["text"], message["client_id"]) == (
        "visitor",
        "Hi there",
        "client-0001",
    )
    ticket = Ticket.objects.get()
    # What the visitor typed is a claim kept for agents, never the customer's address.
    assert (ticket.customer.name, ticket.customer.email) == ("Vera", "")
    assert Message.objects.get().metadata["claimed_email"] == "vera@example.com"
    assert client.get(started.json()["poll_url"]).status_code == 401
    assert (
        client.get(started.json()["poll_url"], HTTP_X_WEBCHAT_SESSION="forged").status_code == 403
    )


def test_webchat_session_for_another_widget_is_refused(client: Any) -> None:
    one = make_account("webchat", name="one")
    two = make_account("webchat", name="two")
    started = client.post(
        f"/api/webchat/{one.webhook_token}/session",
        data={"name": "Vera", "email": "vera@example.com"},
        content_type="application/json",
    )
    response = client.get(
        f"/api/webchat/{two.webhook_token}/messages",
        HTTP_X_WEBCHAT_SESSION=started.json()["session"],
    )
    assert response.status_code == 403


def test_widget_endpoints_allow_cross_origin_without_cookies(client: Any) -> None:
    account = make_account("webchat")
    preflight = client.options(f"/api/webhooks/webchat/{account.webhook_token}")
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Headers"] == "Content-Type, X-Webchat-Session"
    other = make_account("whatsapp")
    response = client.get(other.webhook_path)
    assert "Access-Control-Allow-Origin" not in response


def test_widget_script_is_served_from_static(client: Any) -> None:
    from django.contrib.staticfiles import finders

    path = finders.find("webchat/widget.js")
    assert path is not None
    with open(path, encoding="utf-8") as fh:
        script = fh.read()
    assert "/ws/webchat/" in script
    assert "X-Webchat-Session" in script


def _key_client(agent: Any, name: str = "bot") -> APIClient:
    from support.services import api_key_create

    _, raw = api_key_create(user=agent, name=name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


def test_a_session_id_is_the_callers_own(agent: Any, api_client: APIClient) -> None:
    """Another bot account, or an API key, reusing a session id gets its own ticket, never
    the first caller's (its id, number and status) with its own message dropped."""
    make_account("chatbot")
    make_account("chatbot", name="other-bot", app_secret="other-secret")
    first = _signed_post(api_client, HANDOFF)
    assert first.status_code == 201
    other = _signed_post(
        api_client, {**HANDOFF, "initial_message": "Other bot's user"}, secret="other-secret"
    )
    assert other.status_code == 201, other.content
    assert other.json()["ticket_id"] != first.json()["ticket_id"]
    keyed = _key_client(agent).post(
        "/api/webhooks/chatbot", {**HANDOFF, "initial_message": "Key's user"}, format="json"
    )
    assert keyed.status_code == 201, keyed.content
    second_key = _key_client(agent, name="bot-2").post(
        "/api/webhooks/chatbot", HANDOFF, format="json"
    )
    assert second_key.status_code == 201
    ids = {r.json()["ticket_id"] for r in (first, other, keyed, second_key)}
    assert len(ids) == 4
    assert {
        Ticket.objects.get(pk=pk).messages.filter(direction="inbound").get().body_text for pk in ids
    } == {"I want a refund for order 77", "Other bot's user", "Key's user"}
    # each caller's retry still finds its own ticket
    assert _signed_post(api_client, HANDOFF).json()["ticket_id"] == first.json()["ticket_id"]
    again = _signed_post(api_client, HANDOFF, secret="other-secret")
    assert (again.status_code, again.json()["ticket_id"]) == (200, other.json()["ticket_id"])


def test_a_typed_email_is_a_claim_not_the_addresss_customer(api_client: APIClient) -> None:
    """As in web chat: the address a bot's user gives never attaches the hand-off to the
    customer who owns it (profile, orders, history); a guest holds it, the claim kept."""
    from tickets.models import Customer

    ana = Customer.objects.create(name="Ana Real", email="ana@example.com")
    make_account("chatbot")
    response = _signed_post(api_client, {**HANDOFF, "customer_name": "Ana"})
    assert response.status_code == 201
    ticket = Ticket.objects.get(pk=response.json()["ticket_id"])
    assert ticket.customer_id != ana.pk
    guest = ticket.customer
    assert (guest.email, guest.name) == ("", "Ana (unverified: ana@example.com)")
    first = ticket.messages.get(direction="inbound")
    assert first.metadata["claimed_email"] == "ana@example.com"
    assert Customer.objects.get(pk=ana.pk).tickets.count() == 0


def test_a_trusted_bot_account_attaches_the_addresss_customer(api_client: APIClient) -> None:
    from tickets.models import Customer

    ana = Customer.objects.create(name="Ana Real", email="ana@example.com")
    account = make_account("chatbot")
    account.settings = {"trusts_customer_email": "true"}
    account.save()
    response = _signed_post(api_client, HANDOFF)
    assert Ticket.objects.get(pk=response.json()["ticket_id"]).customer_id == ana.pk


def test_transcript_turns_accept_from_as_well_as_role(api_client: APIClient) -> None:
    """Seed 001's example (and the API's) name the speaker ``from``."""
    make_account("chatbot")
    transcript = [{"from": "customer", "text": "refund?"}, {"role": "bot", "content": "Which?"}]
    _signed_post(api_client, {**HANDOFF, "transcript": transcript})
    note = Message.objects.get(kind="internal_note")
    assert note.body_text == "Bot transcript\ncustomer: refund?\nbot: Which?"


def test_a_handoff_body_over_the_webhook_cap_is_refused_before_it_is_hashed(
    api_client: APIClient, settings: Any, monkeypatch: Any
) -> None:
    """Any X-Signature-256 made the view read the body (up to 25 MiB, Django's cap) and
    hash it with every chatbot account's secret, for anyone, 60,000 times a minute."""
    make_account("chatbot")
    settings.CHANNELS_WEBHOOK_MAX_BYTES = 4096
    hashed: list[bytes] = []
    monkeypatch.setattr(
        handoff,
        "chatbot_account_for_signature",
        lambda given, *, payload, timestamp=None: hashed.append(payload),
    )
    big = {**HANDOFF, "initial_message": "x" * 5000}
    response = _signed_post(api_client, big)
    assert response.status_code == 413
    assert response.json()["error"]["details"] == {"max_bytes": 4096}
    assert hashed == []
    assert Ticket.objects.count() == 0


def test_a_handoff_may_be_signed_with_a_timestamp(api_client: APIClient) -> None:
    """The same signature scheme as the bot's status polls and our callbacks: a captured
    hand-off cannot be sent again once the timestamp is stale."""
    make_account("chatbot")
    now = int(time.time())
    response = _signed_post(api_client, HANDOFF, timestamp=now)
    assert response.status_code == 201, response.content
    assert Ticket.objects.get().is_bot_handoff

    stale = _signed_post(api_client, {**HANDOFF, "session_id": "s-2"}, timestamp=now - 301)
    assert stale.status_code == 401
    assert stale.json()["error"]["code"] == "stale_signature"
    # A timestamp the signature does not cover (a body-only signature with the header added)
    body = json.dumps({**HANDOFF, "session_id": "s-3"}).encode()
    forged = api_client.generic(
        "POST",
        "/api/webhooks/chatbot",
        data=body,  # type: ignore[arg-type]
        content_type="application/json",
        HTTP_X_SIGNATURE_TIMESTAMP=str(now),
        HTTP_X_SIGNATURE_256=meta_signature(TEST_SECRET, body),
    )
    assert forged.status_code == 403
    assert forged.json()["error"]["code"] == "invalid_signature"
    assert _signed_post(api_client, HANDOFF, timestamp=now, secret="wrong").status_code == 403
    again = _signed_post(api_client, HANDOFF, timestamp=now)
    assert again.status_code == 200  # the same session again: its ticket, nothing new
    assert Ticket.objects.count() == 1


def test_an_account_may_require_the_timestamp(api_client: APIClient) -> None:
    account = make_account("chatbot")
    account.settings = {"require_signature_timestamp": "true"}
    account.save()
    replayable = _signed_post(api_client, HANDOFF)
    assert replayable.status_code == 401
    error = replayable.json()["error"]
    assert error["code"] == "timestamp_required"
    assert "X-Signature-Timestamp" in error["message"]
    assert Ticket.objects.count() == 0
    assert _signed_post(api_client, HANDOFF, timestamp=int(time.time())).status_code == 201


def test_require_signature_timestamp_is_a_known_chatbot_setting() -> None:
    from channels_app.account_settings import account_settings_problems

    assert account_settings_problems("chatbot", {"require_signature_timestamp": "yes"}) == []
    assert account_settings_problems("chatbot", {"require_signature_timestamp": "maybe"}) == [
        "require_signature_timestamp takes true or false (whether a hand-off must be signed "
        "with X-Signature-Timestamp); got 'maybe'."
    ]


# --- a session's later hand-offs: nothing received is dropped, a replay adds nothing ------


def _inbound(ticket_id: int) -> list[str]:
    return list(
        Message.objects.filter(ticket_id=ticket_id, direction="inbound")
        .order_by("pk")
        .values_list("body_text", flat=True)
    )


def _notes(ticket_id: int) -> list[str]:
    return list(
        Message.objects.filter(ticket_id=ticket_id, kind="internal_note")
        .order_by("pk")
        .values_list("body_text", flat=True)
    )


def test_an_exact_replay_adds_nothing_even_after_the_ticket_closed(
    api_client: APIClient,
) -> None:
    make_account("chatbot")
    first = _signed_post(api_client, HANDOFF)
    assert first.status_code == 201
    ticket_id = first.json()["ticket_id"]
    before = counts()
    again = _signed_post(api_client, HANDOFF)
    assert (again.status_code, again.json()["ticket_id"]) == (200, ticket_id)
    # the turns in another key order are the same turns
    reordered = [{"text": "refund", "role": "user"}, {"text": "Which order?", "role": "bot"}]
    assert _signed_post(api_client, {**HANDOFF, "transcript": reordered}).status_code == 200
    Ticket.objects.filter(pk=ticket_id).update(status="closed")
    late = _signed_post(api_client, HANDOFF)
    assert (late.status_code, late.json()["ticket_id"]) == (200, ticket_id)
    assert late.json()["status"] == "closed"
    assert diff(before, counts()) == {}


def test_the_same_handoff_an_hour_after_its_ticket_was_done_opens_a_new_ticket(
    api_client: APIClient,
) -> None:
    """A bot whose hand-off text is fixed ("Customer asked for an agent") sends the same
    words every time: once the ticket is closed and the replay window has passed, that is
    the customer asking again, not a retry (it was answered with the closed ticket)."""
    from datetime import timedelta

    from django.utils import timezone

    make_account("chatbot")
    first = _signed_post(api_client, HANDOFF)
    ticket_id = first.json()["ticket_id"]
    Ticket.objects.filter(pk=ticket_id).update(status="closed")
    Message.objects.filter(ticket_id=ticket_id).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    again = _signed_post(api_client, HANDOFF)
    assert again.status_code == 201, again.content
    new_id = again.json()["ticket_id"]
    assert new_id != ticket_id
    assert _inbound(new_id) == ["I want a refund for order 77"]
    first_message = Message.objects.filter(ticket_id=new_id).order_by("pk").first()
    assert first_message is not None
    assert first_message.metadata["bot_previous_ticket_id"] == ticket_id
    # and a retry of that one is a replay again
    retry = _signed_post(api_client, HANDOFF)
    assert (retry.status_code, retry.json()["ticket_id"]) == (200, new_id)


def test_a_new_handoff_while_the_ticket_is_open_is_added_to_it(api_client: APIClient) -> None:
    """Before, the second hand-off of a session answered the first ticket and its message
    and new transcript turns were stored nowhere."""
    make_account("chatbot")
    first = _signed_post(api_client, HANDOFF)
    ticket_id = first.json()["ticket_id"]
    Ticket.objects.filter(pk=ticket_id).update(status="pending")
    second = {
        **HANDOFF,
        "customer_email": "ana.other@example.com",
        "subject": "Also: the parcel is late",
        "initial_message": "And my parcel has not arrived",
        "transcript": [*HANDOFF["transcript"], {"role": "user", "text": "parcel?"}],
    }
    before = counts()
    response = _signed_post(api_client, second)
    assert response.status_code == 200, response.content
    assert response.json()["ticket_id"] == ticket_id
    assert response.json()["status"] == "open"  # the customer's message reopens it
    assert diff(before, counts()) == {"messages": 2}
    assert _inbound(ticket_id) == ["I want a refund for order 77", "And my parcel has not arrived"]
    added = Message.objects.filter(ticket_id=ticket_id, direction="inbound").latest("pk")
    assert (added.kind, added.channel, added.author_customer_id) == (
        "public",
        "chatbot",
        Ticket.objects.get(pk=ticket_id).customer_id,
    )
    assert added.metadata == {
        "bot_source": "website-bot",
        "bot_session_id": "sess-123",
        "bot_caller": f"account:{added.ticket.channel_account_id}",
        "claimed_email": "ana.other@example.com",
        "bot_subject": "Also: the parcel is late",
    }
    assert _notes(ticket_id) == [
        "Bot transcript\nuser: refund\nbot: Which order?",
        "Bot transcript\nuser: parcel?",  # only the turn not already stored
    ]
    assert Ticket.objects.get(pk=ticket_id).subject == HANDOFF["subject"]
    # replays of either hand-off add nothing
    before = counts()
    assert _signed_post(api_client, second).json()["ticket_id"] == ticket_id
    assert _signed_post(api_client, HANDOFF).json()["ticket_id"] == ticket_id
    assert diff(before, counts()) == {}
    # the same message under another subject is another hand-off: its subject is kept
    _signed_post(api_client, {**second, "subject": "Parcel, third try"})
    assert Message.objects.filter(ticket_id=ticket_id, direction="inbound").latest("pk").metadata[
        "bot_subject"
    ] == ("Parcel, third try")


def test_new_turns_alone_are_added_as_a_transcript_note(api_client: APIClient) -> None:
    make_account("chatbot")
    ticket_id = _signed_post(api_client, HANDOFF).json()["ticket_id"]
    more = [*HANDOFF["transcript"], {"role": "bot", "text": "Order 77 it is."}]
    response = _signed_post(api_client, {**HANDOFF, "transcript": more})
    assert (response.status_code, response.json()["ticket_id"]) == (200, ticket_id)
    assert _inbound(ticket_id) == ["I want a refund for order 77"]
    assert _notes(ticket_id)[-1] == "Bot transcript\nbot: Order 77 it is."


@pytest.mark.parametrize("done", ["resolved", "closed"])
def test_a_new_handoff_after_the_ticket_is_done_opens_a_new_ticket(
    api_client: APIClient, done: str
) -> None:
    """The seed's contract: each hand-off creates a ticket (is_bot_handoff) and returns
    its id. Before, the closed ticket was answered (200) and the new message dropped."""
    make_account("chatbot")
    first = _signed_post(api_client, HANDOFF)
    old_id = first.json()["ticket_id"]
    Ticket.objects.filter(pk=old_id).update(status=done)
    new = {**HANDOFF, "subject": "Refund never arrived", "initial_message": "New problem"}
    before = counts()
    response = _signed_post(api_client, new)
    assert response.status_code == 201, response.content
    ticket = Ticket.objects.get(pk=response.json()["ticket_id"])
    assert ticket.pk != old_id
    assert response.json() == {
        "ticket_id": ticket.pk,
        "number": ticket.number,
        "status": "new",
        "is_bot_handoff": True,
        "status_url": f"/api/tickets/{ticket.pk}/status",
    }
    assert (ticket.subject, ticket.channel, ticket.origin_platform_id) == (
        "Refund never arrived",
        "chatbot",
        "sess-123",
    )
    # a guest of its own, as every untrusted hand-off's (docs/channels.md)
    assert diff(before, counts()) == {"customers": 1, "tickets": 1, "messages": 2}
    assert _inbound(ticket.pk) == ["New problem"]
    first_message = ticket.messages.get(direction="inbound")
    assert first_message.metadata["bot_previous_ticket_id"] == old_id
    assert _inbound(old_id) == ["I want a refund for order 77"]
    assert Ticket.objects.get(pk=old_id).status == done
    # the new ticket is now the session's: a further hand-off goes there, replays add nothing
    assert _signed_post(api_client, new).json()["ticket_id"] == ticket.pk
    follow = _signed_post(api_client, {**new, "initial_message": "Any news?"})
    assert (follow.status_code, follow.json()["ticket_id"]) == (200, ticket.pk)
    assert _inbound(ticket.pk) == ["New problem", "Any news?"]
    assert Ticket.objects.count() == 2


def test_an_api_key_sessions_later_handoffs_follow_the_same_rules(
    agent: Any, api_client: APIClient
) -> None:
    client = _key_client(agent)
    first = client.post("/api/webhooks/chatbot", HANDOFF, format="json")
    ticket_id = first.json()["ticket_id"]
    more = {**HANDOFF, "initial_message": "Second thought"}
    added = client.post("/api/webhooks/chatbot", more, format="json")
    assert (added.status_code, added.json()["ticket_id"]) == (200, ticket_id)
    assert _inbound(ticket_id) == ["I want a refund for order 77", "Second thought"]
    assert (
        Message.objects.filter(ticket_id=ticket_id, direction="inbound")
        .latest("pk")
        .metadata["bot_api_key_id"]
        == (
            Message.objects.filter(ticket_id=ticket_id, direction="inbound")
            .earliest("pk")
            .metadata["bot_api_key_id"]
        )
    )
    Ticket.objects.filter(pk=ticket_id).update(status="closed")
    later = client.post(
        "/api/webhooks/chatbot", {**HANDOFF, "initial_message": "Later"}, format="json"
    )
    assert later.status_code == 201
    assert later.json()["ticket_id"] != ticket_id


def test_an_api_key_session_ticket_out_of_its_users_view_gets_no_more_handoffs(
    agent: Any,
) -> None:
    """A key's hand-off acts as its user (security review 2026-12-06): once routing moved
    the session's ticket to a team the agent is not in (GET on it: 404 for the key), the
    next hand-off opened no ticket; it added the customer's message there and answered
    with the ticket's id, number and status. Now it opens a new ticket, which keeps what
    was sent; while the agent may see the ticket, hand-offs still go to it."""
    from tickets.models import Team
    from tickets.services import ticket_update

    client = _key_client(agent)
    first = client.post("/api/webhooks/chatbot", HANDOFF, format="json")
    ticket_id = first.json()["ticket_id"]
    mine = Team.objects.create(name="Mine", slug="mine")
    mine.members.add(agent)
    ticket_update(ticket=Ticket.objects.get(pk=ticket_id), team=mine)
    more = {**HANDOFF, "initial_message": "Second thought"}
    added = client.post("/api/webhooks/chatbot", more, format="json")
    assert (added.status_code, added.json()["ticket_id"]) == (200, ticket_id)

    elsewhere = Team.objects.create(name="Elsewhere", slug="elsewhere")
    ticket_update(ticket=Ticket.objects.get(pk=ticket_id), team=elsewhere)  # routing
    assert client.get(f"/api/tickets/{ticket_id}").status_code == 404
    later = client.post(
        "/api/webhooks/chatbot", {**HANDOFF, "initial_message": "Still there?"}, format="json"
    )
    assert later.status_code == 201, later.content
    new_id = later.json()["ticket_id"]
    assert new_id != ticket_id
    assert later.json()["number"] != Ticket.objects.get(pk=ticket_id).number
    assert _inbound(ticket_id) == ["I want a refund for order 77", "Second thought"]
    assert _inbound(new_id) == ["Still there?"]
    assert client.get(f"/api/tickets/{new_id}").status_code == 200


def test_an_api_key_replay_never_names_a_ticket_out_of_its_users_view(agent: Any) -> None:
    """A replay (same subject and message, within the hour) of a hand-off whose ticket
    routing then moved out of the key's user's view was answered 200 with that ticket's
    id, number and status (review 2026-12-06). Now it is handed off as new: 201, a new
    ticket keeps what was sent, the other is neither named nor written to; a replay of
    that one, which the agent sees, is a replay again (nothing added)."""
    from tickets.models import Team
    from tickets.services import ticket_update

    client = _key_client(agent)
    first = client.post("/api/webhooks/chatbot", HANDOFF, format="json")
    ticket_id = first.json()["ticket_id"]
    hidden = Ticket.objects.get(pk=ticket_id)
    elsewhere = Team.objects.create(name="Elsewhere", slug="elsewhere")
    ticket_update(ticket=hidden, team=elsewhere)  # routing
    assert client.get(f"/api/tickets/{ticket_id}").status_code == 404

    replay = client.post("/api/webhooks/chatbot", HANDOFF, format="json")
    assert replay.status_code == 201, replay.content
    answer = replay.json()
    new_id = answer["ticket_id"]
    assert new_id != ticket_id
    assert answer["number"] != hidden.number
    assert answer["status_url"] == f"/api/tickets/{new_id}/status"
    assert _inbound(ticket_id) == ["I want a refund for order 77"]
    assert _inbound(new_id) == ["I want a refund for order 77"]
    assert client.get(f"/api/tickets/{new_id}").status_code == 200

    again = client.post("/api/webhooks/chatbot", HANDOFF, format="json")
    assert (again.status_code, again.json()["ticket_id"]) == (200, new_id)
    assert _inbound(new_id) == ["I want a refund for order 77"]
    assert Ticket.objects.filter(origin_platform_id=HANDOFF["session_id"]).count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_of_a_handoff_create_one_ticket() -> None:
    """The session's advisory lock holds from the look-up to the write: the second of two
    simultaneous identical hand-offs waits, then finds the first's ticket."""
    import threading

    from django.db import connection

    from channels_app.services import chatbot_handoff

    account = make_account("chatbot")
    barrier = threading.Barrier(2)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def hand_off() -> None:
        try:
            barrier.wait(timeout=10)
            ticket, created = chatbot_handoff(
                source="website-bot",
                customer_email="ana@example.com",
                subject="Concurrent",
                initial_message="Same message twice at once",
                session_id="sess-race",
                transcript=[{"role": "user", "text": "hi"}],
                account=account,
            )
            results.append((ticket.pk, created))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=hand_off) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len({pk for pk, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, True]
    assert Ticket.objects.count() == 1
    assert Message.objects.count() == 2


def test_a_new_handoff_goes_to_the_open_ticket_its_session_was_merged_into(
    api_client: APIClient, supervisor: Any
) -> None:
    from tickets.services import ticket_merge

    make_account("chatbot")
    source_id = _signed_post(api_client, HANDOFF).json()["ticket_id"]
    source = Ticket.objects.get(pk=source_id)
    target = Ticket.objects.create(customer=source.customer, subject="Earlier e-mail")
    ticket_merge(source=source, target=target, actor=supervisor)
    before = counts()
    assert _signed_post(api_client, HANDOFF).json()["ticket_id"] == source_id  # a replay
    assert diff(before, counts()) == {}
    response = _signed_post(api_client, {**HANDOFF, "initial_message": "Still waiting"})
    assert (response.status_code, response.json()["ticket_id"]) == (200, target.pk)
    assert _inbound(target.pk)[-1] == "Still waiting"
    assert Ticket.objects.count() == 2
    # the bot's retry of that later hand-off (with a new turn) adds nothing: it was stored
    # on the target, where the session's own tickets' messages did not look
    later = {
        **HANDOFF,
        "initial_message": "Any news?",
        "transcript": [*HANDOFF["transcript"], {"role": "user", "text": "hello?"}],
    }
    assert _signed_post(api_client, later).json()["ticket_id"] == target.pk
    before = counts()
    retry = _signed_post(api_client, later)
    assert (retry.status_code, retry.json()["ticket_id"]) == (200, target.pk)
    assert diff(before, counts()) == {}
    assert _inbound(target.pk).count("Any news?") == 1


def test_forged_signatures_are_limited_per_address_before_the_body_is_hashed(
    settings: Any,
) -> None:
    """Each hand-off with an X-Signature-256 hashed its body (up to 1 MiB) with every
    chatbot account's secret and was answered 403, 60,000 times a minute (the webhook
    limit): misses are now limited per address as the seed webhook's are (review
    2026-12-07). Matching hand-offs are not counted; other addresses are not affected."""
    settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE = 2
    make_account("chatbot")
    make_account("chatbot", name="other", app_secret="another-secret")
    forger = APIClient(REMOTE_ADDR="192.0.2.66")
    forged = [_signed_post(forger, HANDOFF, "not-a-secret").status_code for _ in range(3)]
    assert forged == [403, 403, 429]
    assert "matches no account" in _signed_post(forger, HANDOFF).json()["error"]["message"]
    genuine = _signed_post(APIClient(REMOTE_ADDR="192.0.2.67"), HANDOFF)
    assert genuine.status_code == 201, genuine.content
    for _ in range(3):  # matching signatures are never counted (the same session: 200)
        assert _signed_post(APIClient(REMOTE_ADDR="192.0.2.67"), HANDOFF).status_code == 200
