"""Web chat visitors are anonymous (issue #13, item 3): a typed email never links a visitor
to an existing customer; proving the address with a one-time code sent by the email
channel does (merge, audited); sessions expire."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any
from unittest import mock

import pytest
import responses
from django.test import Client

from channels_app import services
from channels_app.adapters.webchat.adapter import session_issue
from channels_app.models import WebchatVerification
from channels_app.services import bulk, drain
from channels_app.tests.conftest import make_account
from channels_app.verification import webchat_verification_delivery
from support.delivery.models import Attempt, Delivery
from support.models import AuditLog
from tickets import services as ticket_services
from tickets.models import ChannelIdentity, Customer, Message, Ticket

pytestmark = pytest.mark.django_db

SENDGRID = "https://api.sendgrid.com/v3/mail/send"


@pytest.fixture
def web() -> Client:
    """A browser with its own address (rate limits are per IP and live in Redis)."""
    return Client(REMOTE_ADDR=f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.7")


@pytest.fixture
def victim(agent: Any) -> Customer:
    """A real customer with a web chat history: an open ticket and an agent's reply."""
    customer = Customer.objects.create(name="Ana Real", email="ana@example.com")
    account = make_account("webchat")
    ChannelIdentity.objects.create(customer=customer, channel="webchat", external_id="v_ana")
    ticket = ticket_services.ticket_create(
        customer=customer,
        subject="My order",
        body="Where is order 991?",
        channel="webchat",
        channel_account_id=str(account.pk),
        origin_platform_id="v_ana",
    )
    with mock.patch("channels_app.adapters.webchat.adapter.get_channel_layer"):
        ticket_services.message_add(
            ticket=ticket, body="Order 991 ships to 1 Secret Road tomorrow.", author_user=agent
        )
    return customer


def signing_clock(at: float) -> Any:
    """Django's signing (session tokens) sees ``at`` as the current time."""
    return mock.patch("django.core.signing.time", mock.Mock(time=mock.Mock(return_value=at)))


def _start(web: Client, account: Any, email: str, name: str = "Mallory") -> dict[str, Any]:
    started = web.post(
        f"/api/webchat/{account.webhook_token}/session",
        data={"name": name, "email": email},
        content_type="application/json",
    )
    assert started.status_code == 201, started.content
    return dict(started.json())


def _say(web: Client, capture: Any, started: dict[str, Any], text: str) -> None:
    with capture(execute=True):
        sent = web.post(
            started["messages_url"],
            data={"text": text, "client_id": secrets.token_hex(6)},
            content_type="application/json",
            HTTP_X_WEBCHAT_SESSION=started["session"],
        )
    assert sent.status_code == 200, sent.content


def _poll(web: Client, started: dict[str, Any]) -> list[str]:
    polled = web.get(started["poll_url"], HTTP_X_WEBCHAT_SESSION=started["session"])
    assert polled.status_code == 200, polled.content
    return [m["text"] for m in polled.json()["messages"]]


@pytest.mark.parametrize("path", ["bulk", "one_by_one"])
def test_typing_an_existing_customers_email_links_nothing(
    web: Client, victim: Customer, django_capture_on_commit_callbacks: Any, path: str
) -> None:
    account = make_account("webchat")
    started = _start(web, account, "ANA@example.com ")
    plain = bulk._message_is_plain if path == "bulk" else (lambda *_: False)
    with mock.patch.object(drain, "_message_is_plain", side_effect=plain):
        _say(web, django_capture_on_commit_callbacks, started, "Hi, it's Ana. Order status?")
        _say(web, django_capture_on_commit_callbacks, started, "And my address?")

    ticket = Ticket.objects.get(origin_platform_id=started["visitor_id"])
    guest = ticket.customer
    assert guest.pk != victim.pk
    assert (guest.name, guest.email) == ("Mallory", "")  # a guest: no email identity
    identity = ChannelIdentity.objects.get(external_id=started["visitor_id"])
    assert identity.customer == guest
    assert victim.tickets.count() == 1
    assert not Message.objects.filter(ticket__customer=victim, body_text__contains="Ana.").exists()
    # The typed address is kept for agents, marked as a claim.
    assert {m.metadata["claimed_email"] for m in ticket.messages.all()} == {"ANA@example.com"}
    # The visitor sees its own conversation only, none of the victim's replies.
    assert _poll(web, started) == ["Hi, it's Ana. Order status?", "And my address?"]


def test_the_agent_sees_the_claim_as_unverified(
    web: Client, victim: Customer, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    account = make_account("webchat")
    started = _start(web, account, "ana@example.com")
    _say(web, django_capture_on_commit_callbacks, started, "Hello")
    ticket = Ticket.objects.get(origin_platform_id=started["visitor_id"])
    agent_web = Client()
    agent_web.force_login(agent)
    page = agent_web.get(f"/tickets/{ticket.number}/").content.decode()
    assert "ana@example.com" in page
    assert "unverified" in page
    assert "Ana Real" not in page  # not the victim's profile, orders or tickets
    assert "My order" not in page


def test_expired_session_is_401_with_a_clear_message(
    web: Client, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    account = make_account("webchat")
    started = _start(web, account, "vera@example.com")
    assert started["expires_in"] == settings.WEBCHAT_SESSION_TTL_SECONDS == 86400
    _say(web, django_capture_on_commit_callbacks, started, "before it expires")
    later = time.time() + 86400 + 5
    with signing_clock(later):
        polled = web.get(started["poll_url"], HTTP_X_WEBCHAT_SESSION=started["session"])
        posted = web.post(
            started["messages_url"],
            data={"text": "after", "client_id": "client-late-1"},
            content_type="application/json",
            HTTP_X_WEBCHAT_SESSION=started["session"],
        )
        verify = web.post(started["verify_url"], data={}, HTTP_X_WEBCHAT_SESSION=started["session"])
    assert polled.status_code == 401
    assert polled.json()["error"] == {
        "code": "session_expired",
        "message": "This web chat session has expired; start a new chat session.",
        "details": {},
    }
    assert posted.status_code == 401
    assert "expired" in posted.json()["error"]["message"]
    assert verify.status_code == 401
    assert Message.objects.filter(body_text="after").count() == 0


def test_text_carried_from_an_expired_session_is_the_new_visitors_own(
    web: Client, django_capture_on_commit_callbacks: Any
) -> None:
    """The widget offers what an expired session could not send in the next session
    (docs/channels.md, "When the session ends"). The server's own rules say whose it is
    then: the new session's, a new anonymous visitor with a guest customer of its own,
    even with the same name and address typed and the same client id; the old chat gets
    nothing and its session stays refused."""
    account = make_account("webchat")
    old = _start(web, account, "vera@example.com", "Vera")
    _say(web, django_capture_on_commit_callbacks, old, "first question")
    text, client_id = "Please refund order 77", "c-aaaaaaaaaaaaaaaaaaaaaaaa"

    def send(started: dict[str, Any]) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return web.post(
                started["messages_url"],
                data={"text": text, "client_id": client_id},
                content_type="application/json",
                HTTP_X_WEBCHAT_SESSION=started["session"],
            )

    with signing_clock(time.time() + 86400 + 5):
        assert send(old).status_code == 401
        new = _start(web, account, "vera@example.com", "Vera")
        assert send(new).status_code == 200
        assert _poll(web, new) == [text]
        polled_old = web.get(old["poll_url"], HTTP_X_WEBCHAT_SESSION=old["session"])
    assert polled_old.status_code == 401
    assert new["visitor_id"] != old["visitor_id"]
    message = Message.objects.get(body_text=text)
    assert message.channel_message_id == f"{new['visitor_id']}:{client_id}"
    first = Message.objects.get(body_text="first question")
    assert message.ticket_id != first.ticket_id
    identities = ChannelIdentity.objects.filter(
        channel="webchat", external_id__in=[old["visitor_id"], new["visitor_id"]]
    )
    assert len({i.customer_id for i in identities}) == 2
    assert message.ticket.customer_id == identities.get(external_id=new["visitor_id"]).customer_id


def test_session_lifetime_is_a_setting(web: Client, settings: Any) -> None:
    settings.WEBCHAT_SESSION_TTL_SECONDS = 60
    account = make_account("webchat")
    started = _start(web, account, "vera@example.com")
    assert started["expires_in"] == 60
    with signing_clock(time.time() + 61):
        polled = web.get(started["poll_url"], HTTP_X_WEBCHAT_SESSION=started["session"])
    assert polled.status_code == 401


def test_a_delivery_accepted_before_expiry_is_still_processed_after() -> None:
    """Processing (or an admin re-drive) may run after the session expired."""
    account = make_account("webchat")
    issued = session_issue(account, name="Vera", email="vera@example.com")
    request = services.webhook_request_build(
        headers={"X-Webchat-Session": issued["session"], "content-type": "application/json"},
        body=json.dumps({"text": "late processing", "client_id": "client-0042"}).encode(),
        query={},
    )
    event, _ = services.inbound_receive(account=account, request=request)
    with signing_clock(time.time() + 90000):
        services.inbound_event_process(event_id=event.pk)
    assert Message.objects.filter(body_text="late processing").count() == 1


# --- verification -------------------------------------------------------------------------


def _email_account() -> Any:
    account = make_account("email")
    account.settings = {"from_email": "support@acme.test"}
    account.save()
    return account


def _sent_code() -> str:
    body = json.loads(responses.calls[-1].request.body or b"")
    match = re.search(r"code is (\d{6})", body["content"][0]["value"])
    assert match, body
    return match.group(1)


def test_verify_without_an_email_channel_is_a_clear_409_and_links_nothing(
    web: Client, victim: Customer, django_capture_on_commit_callbacks: Any
) -> None:
    account = make_account("webchat")
    started = _start(web, account, "ana@example.com")
    _say(web, django_capture_on_commit_callbacks, started, "Hello")
    response = web.post(
        started["verify_url"],
        data={},
        content_type="application/json",
        HTTP_X_WEBCHAT_SESSION=started["session"],
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "email_channel_unavailable"
    assert "no email channel" in response.json()["error"]["message"]
    assert WebchatVerification.objects.count() == 0
    guest = Ticket.objects.get(origin_platform_id=started["visitor_id"]).customer
    assert guest.pk != victim.pk


@responses.activate
def test_a_verified_code_merges_the_guest_into_the_addresss_customer(
    web: Client, victim: Customer, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    _email_account()
    account = make_account("webchat")
    started = _start(web, account, "ana@example.com", name="Ana")
    _say(web, django_capture_on_commit_callbacks, started, "Hi, it's really me")
    guest_ticket = Ticket.objects.get(origin_platform_id=started["visitor_id"])
    guest = guest_ticket.customer
    headers = {"HTTP_X_WEBCHAT_SESSION": started["session"]}

    with django_capture_on_commit_callbacks(execute=True):
        asked = web.post(started["verify_url"], data={}, content_type="application/json", **headers)
    assert asked.status_code == 202, asked.content
    assert asked.json() == {"status": "sending", "email": "ana@example.com", "expires_in": 600}
    [call] = responses.calls
    mail = json.loads(call.request.body or b"")
    assert mail["personalizations"] == [{"to": [{"email": "ana@example.com"}]}]
    assert mail["subject"] == "Your chat verification code"
    code = _sent_code()

    # Hashed at rest: the code appears in no stored row.
    verification = WebchatVerification.objects.get()
    delivery = webchat_verification_delivery(verification)
    assert delivery is not None
    assert (delivery.target_kind, delivery.status) == ("webchat_verification", "succeeded")
    assert delivery.expires_at == verification.expires_at
    stored = json.dumps(
        [
            list(WebchatVerification.objects.values().get().values()),
            list(Delivery.objects.values_list()),
            list(Attempt.objects.values_list()),
        ],
        default=str,
    )
    assert code not in stored

    wrong = "000000" if code != "000000" else "111111"
    refused = web.post(
        started["verify_confirm_url"],
        data={"code": wrong},
        content_type="application/json",
        **headers,
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "code": "invalid_code",
        "message": "Wrong code; 4 attempts left.",
        "details": {},
    }
    assert Ticket.objects.get(pk=guest_ticket.pk).customer_id == guest.pk

    with django_capture_on_commit_callbacks(execute=True):
        confirmed = web.post(
            started["verify_confirm_url"],
            data={"code": code},
            content_type="application/json",
            **headers,
        )
    assert confirmed.status_code == 200, confirmed.content
    assert confirmed.json() == {"status": "verified"}
    assert Ticket.objects.get(pk=guest_ticket.pk).customer_id == victim.pk
    assert ChannelIdentity.objects.get(external_id=started["visitor_id"]).customer == victim
    assert not Customer.objects.filter(pk=guest.pk).exists()
    assert Message.objects.filter(author_customer=victim, body_text="Hi, it's really me").exists()
    actions = list(AuditLog.objects.order_by("id").values_list("action", "object_id", "details"))
    assert [(a, o) for a, o, _ in actions] == [
        ("customer.merge", str(victim.pk)),
        ("webchat.visitor_verified", str(victim.pk)),
    ]
    assert actions[0][2]["source_customer_id"] == guest.pk
    assert actions[1][2]["merged_guest_customer_id"] == guest.pk
    # The visitor's next message now goes to the verified customer; it still sees only
    # its own conversation.
    _say(web, django_capture_on_commit_callbacks, started, "thanks")
    assert Message.objects.get(body_text="thanks").ticket.customer == victim
    assert "Order 991 ships to 1 Secret Road tomorrow." not in _poll(web, started)
    # A used code does not work twice.
    again = web.post(
        started["verify_confirm_url"],
        data={"code": code},
        content_type="application/json",
        **headers,
    )
    assert again.status_code == 400


@responses.activate
def test_verifying_an_unknown_address_makes_the_guest_that_customer(
    web: Client, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(SENDGRID, status=202)
    _email_account()
    account = make_account("webchat")
    started = _start(web, account, "typo@example.com", name="Nia")
    _say(web, django_capture_on_commit_callbacks, started, "hello")
    guest = Ticket.objects.get(origin_platform_id=started["visitor_id"]).customer
    headers = {"HTTP_X_WEBCHAT_SESSION": started["session"]}
    with django_capture_on_commit_callbacks(execute=True):
        asked = web.post(
            started["verify_url"],
            data={"email": "nia@example.com"},
            content_type="application/json",
            **headers,
        )
    assert asked.status_code == 202
    confirmed = web.post(
        started["verify_confirm_url"],
        data={"code": _sent_code()},
        content_type="application/json",
        **headers,
    )
    assert confirmed.status_code == 200
    guest.refresh_from_db()
    assert guest.email == "nia@example.com"
    assert list(AuditLog.objects.order_by("id").values_list("action", flat=True)) == [
        "customer.email_verified",
        "webchat.visitor_verified",
    ]


def _verify_request(web: Client, started: dict[str, Any], capture: Any) -> Any:
    """Ask for a code for the session ``started``, running what is sent after commit."""
    with capture(execute=True):
        return web.post(
            started["verify_url"],
            data={},
            content_type="application/json",
            HTTP_X_WEBCHAT_SESSION=started["session"],
        )


@responses.activate
def test_one_address_cannot_have_codes_mailed_to_many_others(
    web: Client, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A new session per request, each naming another address, got round the per-session
    and per-address limits: one IP could have ~30 codes a minute mailed to strangers
    (the sender's reputation and quota). An hourly limit per IP stops it."""
    responses.post(SENDGRID, status=202)
    _email_account()
    account = make_account("webchat")
    settings.WEBCHAT_VERIFY_REQUESTS_PER_IP_PER_HOUR = 3
    answers = []
    for n in range(5):
        started = _start(web, account, f"stranger{n}@example.com")
        answers.append(_verify_request(web, started, django_capture_on_commit_callbacks))
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
    assert answers[3].json()["error"]["code"] == "rate_limited"
    assert 1 <= int(answers[3]["Retry-After"]) <= 3600
    assert len(responses.calls) == 3


@responses.activate
def test_codes_are_limited_per_address_and_guesses_per_code(
    web: Client, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(SENDGRID, status=202)
    _email_account()
    account = make_account("webchat")
    settings.WEBCHAT_VERIFY_CODES_PER_HOUR = 2
    sessions = [_start(web, account, "ana@example.com") for _ in range(3)]
    answers = []
    for started in sessions:
        answers.append(_verify_request(web, started, django_capture_on_commit_callbacks))
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].json()["error"]["code"] == "rate_limited"
    assert len(responses.calls) == 2

    code = _sent_code()
    headers = {"HTTP_X_WEBCHAT_SESSION": sessions[1]["session"]}
    wrong = str((int(code) + 1) % 1_000_000).zfill(6)
    statuses = [
        web.post(
            sessions[1]["verify_confirm_url"],
            data={"code": wrong},
            content_type="application/json",
            **headers,
        ).status_code
        for _ in range(settings.WEBCHAT_VERIFY_MAX_ATTEMPTS)
    ]
    assert statuses == [400] * 5
    locked = web.post(
        sessions[1]["verify_confirm_url"],
        data={"code": code},
        content_type="application/json",
        **headers,
    )
    assert locked.status_code == 400
    assert locked.json()["error"]["message"] == "Too many wrong codes: ask for a new one."
    assert WebchatVerification.objects.filter(verified_at__isnull=False).count() == 0


@responses.activate
def test_a_failed_send_is_retried_and_recorded(
    web: Client, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(SENDGRID, status=503)
    responses.post(SENDGRID, status=202)
    _email_account()
    account = make_account("webchat")
    started = _start(web, account, "ana@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        asked = web.post(
            started["verify_url"],
            data={},
            content_type="application/json",
            HTTP_X_WEBCHAT_SESSION=started["session"],
        )
    assert asked.status_code == 202
    delivery = webchat_verification_delivery(WebchatVerification.objects.get())
    assert delivery is not None
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert list(delivery.attempt_log.values_list("outcome", "http_status")) == [
        ("retryable", 503),
        ("success", 202),
    ]


def test_widget_offers_verification_and_restarts_expired_sessions() -> None:
    from django.contrib.staticfiles import finders

    path = finders.find("webchat/widget.js")
    assert path is not None
    with open(path, encoding="utf-8") as fh:
        script = fh.read()
    assert '"/verify"' in script
    assert '"/verify/confirm"' in script
    assert "4401" in script


@responses.activate
def test_a_verified_chat_cannot_be_moved_to_another_address(
    web: Client, victim: Customer, django_capture_on_commit_callbacks: Any
) -> None:
    """Proving a second address must not merge two real customers."""
    responses.post(SENDGRID, status=202)
    _email_account()
    other = Customer.objects.create(name="Other", email="other@example.com")
    account = make_account("webchat")
    started = _start(web, account, "ana@example.com")
    _say(web, django_capture_on_commit_callbacks, started, "hello")
    headers = {"HTTP_X_WEBCHAT_SESSION": started["session"], "content_type": "application/json"}
    for email, expected in (("ana@example.com", 200), ("other@example.com", 409)):
        with django_capture_on_commit_callbacks(execute=True):
            web.post(started["verify_url"], data={"email": email}, **headers)
        answer = web.post(started["verify_confirm_url"], data={"code": _sent_code()}, **headers)
        assert answer.status_code == expected, answer.content
    assert answer.json()["error"]["code"] == "already_verified"
    assert Customer.objects.filter(pk__in=[victim.pk, other.pk]).count() == 2
    assert ChannelIdentity.objects.get(external_id=started["visitor_id"]).customer == victim


def test_after_a_merge_each_visitor_sees_only_its_own_chat_and_replies(
    agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Every visitor is its own guest customer: merging two web chats puts both on one
    ticket, but each widget still shows its own messages and the replies sent to it, and
    a reply goes to the visitor who wrote last."""
    account = make_account("webchat")
    alice_web, bob_web = Client(REMOTE_ADDR="10.9.9.1"), Client(REMOTE_ADDR="10.9.9.2")
    alice = _start(alice_web, account, "alice@example.com", "Alice")
    bob = _start(bob_web, account, "bob@example.com", "Bob")
    capture = django_capture_on_commit_callbacks
    with mock.patch("channels_app.adapters.webchat.adapter.get_channel_layer") as layer:
        layer.return_value.group_send = mock.AsyncMock()
        _say(alice_web, capture, alice, "My card ends 4242, 1 Private Rd")
        _say(bob_web, capture, bob, "A question about shipping")
        ta = Ticket.objects.get(origin_platform_id=alice["visitor_id"])
        tb = Ticket.objects.get(origin_platform_id=bob["visitor_id"])
        with capture(execute=True):
            ticket_services.message_add(ticket=ta, body="Alice: card noted", author_user=agent)
            ticket_services.message_add(ticket=tb, body="Bob: ships Monday", author_user=agent)
        ticket_services.ticket_merge(source=ta, target=tb, actor=agent, confirm_customer_merge=True)
        assert _poll(bob_web, bob) == ["A question about shipping", "Bob: ships Monday"]
        assert _poll(alice_web, alice) == ["My card ends 4242, 1 Private Rd", "Alice: card noted"]

        _say(alice_web, capture, alice, "Also my PIN hint is blue")
        assert Message.objects.filter(ticket=tb, direction="inbound").count() == 3
        layer.return_value.group_send.reset_mock()
        with capture(execute=True):
            ticket_services.message_add(ticket=tb, body="Alice: PIN noted", author_user=agent)
    [call] = layer.return_value.group_send.await_args_list
    assert call.args[0] == f"webchat-{alice['visitor_id']}"
    assert _poll(bob_web, bob) == ["A question about shipping", "Bob: ships Monday"]
    assert _poll(alice_web, alice)[-2:] == ["Also my PIN hint is blue", "Alice: PIN noted"]


def test_migration_names_the_visitor_of_replies_sent_before(agent: Any) -> None:
    """0008: an old ``webchat-out-<id>`` reply gets its ticket's visitor, except on a
    ticket another was merged into (which visitor it went to is unknown)."""
    import importlib

    from django.db import connection

    forward = importlib.import_module(
        "channels_app.migrations.0008_webchat_reply_visitor_ids"
    ).FORWARD
    account = make_account("webchat")
    customer = Customer.objects.create(name="Guest")
    replies = []
    for visitor in ("v_one", "v_two"):
        ticket = ticket_services.ticket_create(
            customer=customer,
            subject="Hi",
            body="Hello",
            channel="webchat",
            channel_account_id=str(account.pk),
            origin_platform_id=visitor,
            channel_message_id=f"{visitor}:c1234567",
        )
        with mock.patch("channels_app.services.outbound_wanted", return_value=False):
            message = ticket_services.message_add(ticket=ticket, body="Hi!", author_user=agent)
        Message.objects.filter(pk=message.pk).update(channel_message_id=f"webchat-out-{message.pk}")
        replies.append(message)
    other = ticket_services.ticket_create(customer=customer, subject="x", body="y", channel="api")
    ticket_services.ticket_merge(source=other, target=replies[1].ticket, actor=agent)
    with connection.cursor() as cursor:
        cursor.execute(forward)
    ids = [Message.objects.get(pk=m.pk).channel_message_id for m in replies]
    assert ids == [f"v_one:out-{replies[0].pk}", f"webchat-out-{replies[1].pk}"]


def test_an_address_longer_than_the_column_is_a_400_not_a_500(web: Client) -> None:
    """Django's validator takes addresses up to 320 characters, the column 254: a visitor's
    262-character address was a 500 (security review 2026-12-07)."""
    _email_account()
    started = _start(web, make_account("webchat"), "m@example.com")
    response = web.post(
        started["verify_url"],
        data={"email": "a" * 250 + "@example.com"},
        content_type="application/json",
        HTTP_X_WEBCHAT_SESSION=started["session"],
    )
    assert response.status_code == 400, response.content
    assert "at most 254 characters" in response.json()["error"]["message"]
    assert WebchatVerification.objects.count() == 0
