"""What anyone can send to the public intake (web chat, SendGrid Inbound Parse) is kept:
a NUL, a path for a file name, an over-long name, address or Message-ID, a header the
standard library's parser fails on, an unknown charset. Before, each was acknowledged
(200) and then failed in the drain for ever (dead letter; a re-drive failed again)."""

from __future__ import annotations

import base64
import json
import secrets
import sys
from typing import Any
from unittest import mock

import pytest
import responses
from django.test import Client

from channels_app.adapters.email import parsing
from channels_app.adapters.email.parsing import html_to_text
from channels_app.adapters.webchat.adapter import SESSION_HEADER, session_issue
from channels_app.models import InboundEvent, InboundStatus
from channels_app.tests.conftest import make_account
from tickets.models import Attachment, ChannelIdentity, Customer, Message, Ticket
from tickets.services import message_add

pytestmark = pytest.mark.django_db


@pytest.fixture
def web() -> Client:
    return Client(
        REMOTE_ADDR=f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.7",
        raise_request_exception=False,
    )


def _processed(account: Any) -> InboundEvent:
    event = InboundEvent.objects.get(account=account)
    assert event.status == InboundStatus.PROCESSED, (event.status, event.error[:300])
    return event


# --- web chat -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "body", "kept"),
    [
        ("Vera", {"text": "hello\x00world"}, {"body_text": "hello\ufffdworld"}),
        ("Vera", {"text": "hi", "page_url": "https://shop.test/\x00"}, {"page_url": "/\ufffd"}),
        ("Ve\x00ra", {"text": "hi"}, {"customer": "Ve\ufffdra"}),  # a session from before
    ],
    ids=["text", "page-url", "session-name"],
)
def test_webchat_nul_is_kept_as_u_fffd(
    web: Client,
    django_capture_on_commit_callbacks: Any,
    name: str,
    body: dict[str, str],
    kept: dict[str, str],
) -> None:
    account = make_account("webchat")
    session = session_issue(account, name=name, email="v@example.com")["session"]
    with django_capture_on_commit_callbacks(execute=True):
        sent = web.post(
            f"/api/webhooks/webchat/{account.webhook_token}",
            data=json.dumps({"client_id": "client-nul-1", **body}),
            content_type="application/json",
            **{f"HTTP_{SESSION_HEADER.upper().replace('-', '_')}": session},
        )
    assert sent.status_code == 200, sent.content
    _processed(account)
    message = Message.objects.select_related("ticket__customer").get(channel="webchat")
    if "body_text" in kept:
        assert message.body_text == kept["body_text"]
    if "page_url" in kept:
        assert message.metadata["page_url"].endswith(kept["page_url"])
    if "customer" in kept:
        assert message.ticket.customer.name == kept["customer"]


@pytest.mark.parametrize("field", ["name", "email"])
def test_webchat_session_refuses_nul_with_a_clear_400(web: Client, field: str) -> None:
    account = make_account("webchat")
    data = {"name": "Vera", "email": "v@example.com"}
    data[field] = data[field].replace("e", "e\x00", 1)
    response = web.post(
        f"/api/webchat/{account.webhook_token}/session",
        data=json.dumps(data),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "NUL" in response.json()["error"]["message"]


def test_webchat_polling_is_rate_limited_per_session(web: Client, settings: Any) -> None:
    settings.WEBCHAT_POLL_RATE_LIMIT_PER_MINUTE = 3
    account = make_account("webchat")
    session = session_issue(account, name="Vera", email="v@example.com")["session"]
    url = f"/api/webchat/{account.webhook_token}/messages"
    codes = [web.get(url, HTTP_X_WEBCHAT_SESSION=session).status_code for _ in range(4)]
    assert codes[:3] == [200, 200, 200]
    refused = web.get(url, HTTP_X_WEBCHAT_SESSION=session)
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited"
    # another visitor (another session) from another address still polls
    other = session_issue(account, name="Olga", email="o@example.com")["session"]
    fresh = Client(REMOTE_ADDR="10.251.0.1")
    assert fresh.get(url, HTTP_X_WEBCHAT_SESSION=other).status_code == 200


def test_webchat_polling_is_rate_limited_per_address(web: Client, settings: Any) -> None:
    settings.WEBCHAT_POLL_IP_RATE_LIMIT_PER_MINUTE = 2
    account = make_account("webchat")
    url = f"/api/webchat/{account.webhook_token}/messages"
    codes = [
        web.get(
            url,
            HTTP_X_WEBCHAT_SESSION=session_issue(account, name="V", email="v@example.com")[
                "session"
            ],
        ).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]


# --- e-mail (SendGrid Inbound Parse) -------------------------------------------------------


def _multipart(parts: list[tuple[str, str, bytes, str]]) -> tuple[bytes, str]:
    """(name, filename, value, content type) parts, byte-exact as SendGrid posts them."""
    boundary = "xYzZY"
    out = b""
    for name, filename, value, ctype in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        if ctype:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + value + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def _email(client: Client, account: Any, capture: Any, **fields: str | bytes) -> Any:
    values: dict[str, str | bytes] = {
        "from": "Eve <eve@attacker.test>",
        "to": "support@acme.test",
        "subject": "Hello",
        "text": "Please help",
        "SPF": "pass",
        "dkim": "{@attacker.test : pass}",
        **fields,
    }
    parts = [
        (name, "", value if isinstance(value, bytes) else value.encode(), "")
        for name, value in values.items()
        if not name.startswith("file:")
    ] + [
        ("attachment1", name[5:], value if isinstance(value, bytes) else value.encode(), "x/y")
        for name, value in values.items()
        if name.startswith("file:")
    ]
    body, ctype = _multipart(parts)
    token = base64.b64encode(f"sendgrid:{account.inbound_token}".encode()).decode()
    with capture(execute=True):
        return client.generic(
            "POST",
            account.webhook_path,
            data=body,
            content_type=ctype,
            HTTP_AUTHORIZATION=f"Basic {token}",
        )


@pytest.mark.parametrize(
    ("filename", "stored"),
    [("../../invoice.pdf", "invoice.pdf"), ("..", "attachment"), ("a\x00b.pdf", "ab.pdf")],
)
def test_email_attachment_named_by_the_sender_is_stored_safely(
    web: Client,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    tmp_path: Any,
    filename: str,
    stored: str,
) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    account = make_account("email")
    sent = _email(
        web, account, django_capture_on_commit_callbacks, **{f"file:{filename}": b"%PDF-1.4"}
    )
    assert sent.status_code == 200
    _processed(account)
    attachment = Attachment.objects.get()
    assert attachment.filename.replace("\ufffd", "") == stored
    assert attachment.file.name.startswith(f"attachments/{attachment.message.ticket_id}/")
    assert ".." not in attachment.file.name
    assert attachment.file.read() == b"%PDF-1.4"


LONG_ID = f"<{'m' * 300}@attacker.test>"


@pytest.mark.parametrize(
    ("fields", "check"),
    [
        ({"text": "hello\x00world"}, lambda m: m.body_text == "hello\ufffdworld"),
        ({"subject": "hi\x00there"}, lambda m: m.ticket.subject == "hi\ufffdthere"),
        (
            {"from": f"{'A' * 250} <eve@attacker.test>"},
            lambda m: m.ticket.customer.name == "A" * 200,
        ),
        (
            {"headers": f"Message-ID: {LONG_ID}\n"},
            lambda m: len(m.channel_message_id) == 255 and m.channel_message_id.endswith(">"),
        ),
        ({"headers": "Message-ID: <a@[\n"}, lambda m: m.body_text == "Please help"),
        (
            {
                "email": (
                    "From: Eve <eve@attacker.test>\r\nTo: support@acme.test\r\n"
                    "Subject: hi\r\nMessage-ID: <raw-1@attacker.test>\r\n"
                    "Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nhello\r\n"
                )
            },
            lambda m: m.body_text == "hello" and m.channel_message_id == "<raw-1@attacker.test>",
        ),
        (
            {
                "from": f"eve@{'a' * 250}.attacker.test",
                "dkim": f"{{@{'a' * 250}.attacker.test : pass}}",
            },
            lambda m: len(m.ticket.customer.email) <= 254,
        ),
        ({"charsets": "[" * 1000 + "]" * 1000}, lambda m: m.body_text == "Please help"),
    ],
    ids=[
        "nul-in-body",
        "nul-in-subject",
        "long-display-name",
        "long-message-id",
        "message-id-stdlib-parser-bug",
        "raw-mime-unknown-charset",
        "long-address",
        "deep-charsets-json",
    ],
)
def test_email_anyone_can_send_is_kept_with_cleaned_values(
    web: Client, django_capture_on_commit_callbacks: Any, fields: dict[str, str], check: Any
) -> None:
    account = make_account("email")
    sent = _email(web, account, django_capture_on_commit_callbacks, **fields)
    assert sent.status_code == 200, sent.content
    _processed(account)
    message = Message.objects.select_related("ticket__customer").get(channel="email")
    assert check(message), (message.body_text, message.channel_message_id)


def test_a_reply_to_an_over_long_message_id_threads_into_its_ticket(
    web: Client, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.CHANNELS_EMAIL_AUTH_POLICY = "off"
    account = make_account("email")
    _email(web, account, django_capture_on_commit_callbacks, headers=f"Message-ID: {LONG_ID}\n")
    _email(
        web,
        account,
        django_capture_on_commit_callbacks,
        text="Any news?",
        headers=f"Message-ID: <second@attacker.test>\nIn-Reply-To: {LONG_ID}\n",
    )
    assert InboundEvent.objects.filter(status=InboundStatus.PROCESSED).count() == 2
    first, second = Message.objects.filter(channel="email").order_by("pk")
    assert second.ticket_id == first.ticket_id
    assert Customer.objects.count() == 1


# --- e-mail whose From names no address: kept, never skipped ---------------------------------

ENVELOPE = '{"to": ["support@acme.test"], "from": "john@example.org"}'


@pytest.mark.parametrize(
    ("fields", "email", "found_in"),
    [
        (
            {"from": "John Smith", "envelope": ENVELOPE, "dkim": "none"},
            "john@example.org",
            "envelope",
        ),
        (
            {"from": "<>", "headers": "Sender: John <john@example.org>\n", "SPF": "none"},
            "john@example.org",
            "sender",
        ),
        (
            {
                "from": "undisclosed-recipients:;",
                "headers": "Reply-To: John <John@Example.org>\n",
                "SPF": "none",
            },
            "john@example.org",
            "reply-to",
        ),
    ],
    ids=["bare-name-envelope", "empty-sender-header", "group-reply-to"],
)
def test_email_from_without_an_address_takes_the_next_header_that_has_one(
    web: Client,
    django_capture_on_commit_callbacks: Any,
    fields: dict[str, str],
    email: str,
    found_in: str,
    supervisor: Any,
) -> None:
    """Before: the message was skipped ("without id or sender") once acknowledged: lost."""
    account = make_account("email")
    fields = {"dkim": "{@example.org : pass}", **fields}
    sent = _email(web, account, django_capture_on_commit_callbacks, **fields)
    assert sent.status_code == 200
    _processed(account)
    message = Message.objects.select_related("ticket__customer").get(channel="email")
    assert message.body_text == "Please help"
    assert message.ticket.customer.email == email  # authenticated: the address's customer
    assert message.metadata["sender_from"] == found_in
    assert "suspicious" not in message.metadata
    page = Client()
    page.force_login(supervisor)
    shown = page.get(f"/tickets/{message.ticket.number}/").content.decode()
    assert "The From header named no address: the sender's address was taken from" in shown


@responses.activate
def test_email_with_no_sender_address_at_all_is_kept_marked_and_a_reply_says_why(
    web: Client, django_capture_on_commit_callbacks: Any, agent: Any
) -> None:
    account = make_account("email")
    for n in (1, 2):  # two such mails: two guests, neither threads into the other's ticket
        _email(
            web,
            account,
            django_capture_on_commit_callbacks,
            **{"from": "undisclosed-recipients:;", "text": f"Help {n}"},
            headers=f"Message-ID: <none-{n}@nowhere>\n",
        )
    first, second = Message.objects.select_related("ticket__customer").order_by("pk")
    assert (first.body_text, second.body_text) == ("Help 1", "Help 2")
    assert first.ticket_id != second.ticket_id
    assert first.ticket.customer_id != second.ticket.customer_id
    assert first.ticket.customer.name == "Unknown sender (no sender address)"
    assert first.ticket.customer.email == ""
    assert first.metadata["sender_from"] == "none"
    assert any("no sender address" in reason for reason in first.metadata["suspicious"])
    assert ChannelIdentity.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        reply = message_add(ticket=first.ticket, body="Who are you?", author_user=agent)
    reply.refresh_from_db()
    assert reply.delivery_status == "failed"
    assert "named no sender address" in reply.delivery_error
    assert len(responses.calls) == 0  # nothing was sent anywhere
    # an agent who learns the address gives it to the customer: replies go there
    Customer.objects.filter(pk=first.ticket.customer_id).update(email="ann@example.org")
    responses.post("https://api.sendgrid.com/v3/mail/send", status=202)
    with django_capture_on_commit_callbacks(execute=True):
        message_add(ticket=first.ticket, body="Found you.", author_user=agent)
    sent = json.loads(responses.calls[0].request.body or b"")
    assert sent["personalizations"] == [{"to": [{"email": "ann@example.org"}]}]


@responses.activate
def test_a_reply_names_the_whole_over_long_message_id_it_answers(
    web: Client, django_capture_on_commit_callbacks: Any, agent: Any, settings: Any
) -> None:
    """Before: In-Reply-To named the id as stored (shortened with a hash): the customer's
    mail program could not thread our reply."""
    settings.CHANNELS_EMAIL_AUTH_POLICY = "off"
    account = make_account("email")
    account.settings = {"from_email": "support@acme.test"}
    account.save()
    _email(web, account, django_capture_on_commit_callbacks, headers=f"Message-ID: {LONG_ID}\n")
    ticket = Ticket.objects.get()
    responses.post("https://api.sendgrid.com/v3/mail/send", status=202)
    with django_capture_on_commit_callbacks(execute=True):
        message_add(ticket=ticket, body="Looking into it.", author_user=agent)
    headers = json.loads(responses.calls[0].request.body or b"")["headers"]
    assert headers["In-Reply-To"] == LONG_ID
    assert headers["References"] == LONG_ID


# --- work an e-mail can cause ---------------------------------------------------------------


def _calls_made(function: Any, *args: Any) -> int:
    """How many Python and built-in function calls ``function(*args)`` makes: a count of
    work that does not depend on the machine's speed or load."""
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        function(*args)
    finally:
        sys.setprofile(None)
    return count


def test_deeply_nested_html_costs_work_in_proportion_to_its_size() -> None:
    """Each block element's newline used to walk to its last descendant: HTML nested N
    deep cost N² (220 KB of nested ``<div>`` took 72 s in the drain, past the drain's soft
    time limit, which rolled the inbox's whole batch back, so the next drain took the same
    e-mail again). Twice the depth must now cost about twice the work, not four times."""

    def nested(depth: int) -> str:
        return "<div>" * depth + "x" + "</div>" * depth

    assert html_to_text(nested(3)) == "x"
    small, large = _calls_made(html_to_text, nested(1000)), _calls_made(html_to_text, nested(2000))
    assert large / small < 2.5, (small, large)


def test_html_text_keeps_what_it_kept() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body><p>Hello <b>there</b>"
        "</p><div>line<br>two</div><blockquote>quoted<p>x</p></blockquote><script>bad()"
        "</script><!-- note --><table><tr><td>a</td><td>b</td></tr></table><ul><li>one</li>"
        "<li>two</li></ul><template><p>hidden</p></template>tail&nbsp;&nbsp;x</body></html>"
    )
    assert html_to_text(html) == "Hello there\nline\ntwo\nab\n\none\ntwo\n\ntail x"


def test_only_the_beginning_of_a_huge_html_part_is_read_for_text(monkeypatch: Any) -> None:
    monkeypatch.setattr(parsing, "HTML_TEXT_MAX_CHARS", len("<p>first paragraph</p>"))
    assert html_to_text("<p>first paragraph</p><p>second</p>") == "first paragraph"


def _raw_mime(body: str, content_type: str) -> str:
    return (
        "From: Eve <eve@attacker.test>\r\nTo: support@acme.test\r\nSubject: Nested\r\n"
        f"Message-ID: <nested-1@attacker.test>\r\nContent-Type: {content_type}\r\n\r\n{body}"
    )


def test_an_email_nested_too_deep_is_kept_with_its_headers_and_a_note(
    web: Client, django_capture_on_commit_callbacks: Any, supervisor: Any
) -> None:
    """1,200 nested multipart sections (80 KB): the standard library's parser spent
    seconds on it and then raised RecursionError, so the e-mail failed in the drain on
    every try and never became a ticket."""
    depth = 1200
    body = "".join(
        f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n'
        for i in range(depth)
    )
    body += f"--b{depth}\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    body += "".join(f"--b{i}--\r\n" for i in reversed(range(depth + 1)))
    account = make_account("email")
    raw = _raw_mime(body, 'multipart/mixed; boundary="b0"')
    sent = _email(web, account, django_capture_on_commit_callbacks, email=raw)
    assert sent.status_code == 200
    _processed(account)
    message = Message.objects.select_related("ticket__customer").get(channel="email")
    assert message.ticket.subject == "Nested"
    assert message.channel_message_id == "<nested-1@attacker.test>"
    assert message.metadata["not_read"] == [
        f"This e-mail declares {depth + 1} nested MIME sections (more than 100): its text "
        "and attachments were not read. The delivery is kept as it arrived (admin: inbound "
        "events)."
    ]
    assert not Attachment.objects.exists()
    page = Client()
    page.force_login(supervisor)
    shown = page.get(f"/tickets/{message.ticket.number}/").content.decode()
    assert f"This e-mail declares {depth + 1} nested MIME sections" in shown


def _email_with_attachments(
    web: Client, capture: Any, settings: Any, tmp_path: Any, count: int
) -> Message:
    """A raw e-mail saying "See attached" with ``count`` one-byte attachments, received
    and drained; its message."""
    settings.MEDIA_ROOT = str(tmp_path)
    parts = "--B\r\nContent-Type: text/plain\r\n\r\nSee attached\r\n" + "".join(
        f"--B\r\nContent-Type: application/octet-stream\r\n"
        f'Content-Disposition: attachment; filename="f{i}.bin"\r\n\r\nx\r\n'
        for i in range(count)
    )
    account = make_account("email")
    raw = _raw_mime(parts + "--B--\r\n", 'multipart/mixed; boundary="B"')
    sent = _email(web, account, capture, email=raw)
    assert sent.status_code == 200
    _processed(account)
    return Message.objects.get(channel="email")


def test_an_email_keeps_its_first_hundred_attachments_and_says_so(
    web: Client, django_capture_on_commit_callbacks: Any, settings: Any, tmp_path: Any
) -> None:
    """Each attachment is a row and a stored file: 3,000 one-byte attachments (300 KB)
    took 12 s in one drain, and 25 MiB holds some 250,000."""
    message = _email_with_attachments(
        web, django_capture_on_commit_callbacks, settings, tmp_path, 150
    )
    assert message.body_text == "See attached"
    assert sorted(a.filename for a in message.attachments.all()) == sorted(
        f"f{i}.bin" for i in range(100)
    )
    assert message.metadata["not_read"] == [
        "This e-mail has 150 attachments: the first 100 are kept. The delivery is kept as "
        "it arrived (admin: inbound events)."
    ]


# --- the widget's own endpoints -----------------------------------------------------------


def test_widget_endpoints_refuse_a_large_body_before_reading_it(web: Client) -> None:
    """They read whatever Django would (DATA_UPLOAD_MAX_MEMORY_SIZE, 25 MiB) and parsed
    it, for anyone, 60 times a minute per address."""
    account = make_account("webchat")
    url = f"/api/webchat/{account.webhook_token}/session"
    big = json.dumps({"name": "Vera" + " " * 20_000, "email": "v@example.com"})
    refused = web.post(url, data=big, content_type="application/json")
    assert refused.status_code == 413, refused.content
    assert refused.json()["error"]["code"] == "too_large"
    assert refused["Access-Control-Allow-Origin"] == "*"  # the widget can read why
    small = json.dumps({"name": "Vera", "email": "v@example.com"})
    assert web.post(url, data=small, content_type="application/json").status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"name": ["Vera", "Ann"], "email": "v@example.com"},
        {"name": "Vera", "email": {"@": "example.com"}},
        {"name": {"first": "Vera"}, "email": ["a@b.test"]},
    ],
    ids=["name-list", "email-object", "both"],
)
def test_a_session_needs_a_name_and_an_email_that_are_strings(
    web: Client, body: dict[str, Any]
) -> None:
    """Before, str() turned a list or an object into the visitor's name or claimed
    address ("['Vera', 'Ann']", "{'@': 'example.com'}") and the session was issued."""
    account = make_account("webchat")
    sent = web.post(
        f"/api/webchat/{account.webhook_token}/session",
        data=json.dumps(body),
        content_type="application/json",
    )
    assert sent.status_code == 400
    assert sent.json()["error"]["message"] == "name and email must be strings."


def test_webchat_messages_over_http_share_the_sessions_limit(web: Client, settings: Any) -> None:
    """The socket allowed WEBCHAT_WS_MESSAGES_PER_MINUTE a session; the same messages
    POSTed to the widget's webhook had only the per-address webhook limit (60,000 a
    minute), each one an inbound event and a message on a ticket."""
    settings.WEBCHAT_WS_MESSAGES_PER_MINUTE = 2
    account = make_account("webchat")
    session = session_issue(account, name="Vera", email="v@example.com")["session"]

    def send(n: int, token: str) -> Any:
        return web.post(
            f"/api/webhooks/webchat/{account.webhook_token}",
            data=json.dumps({"text": f"hello {n}", "client_id": f"client-flood-{n}"}),
            content_type="application/json",
            headers={SESSION_HEADER: token},
        )

    sent = [send(n, session) for n in range(3)]
    assert [r.status_code for r in sent] == [200, 200, 429]
    assert sent[2].json()["error"]["code"] == "rate_limited"
    assert int(sent[2]["Retry-After"]) >= 1
    assert InboundEvent.objects.filter(account=account).count() == 2
    other = session_issue(account, name="Ann", email="a@example.com")["session"]
    assert send(3, other).status_code == 200  # another visitor: its own bucket
    assert send(4, "forged").status_code == 403  # refused as before, uncounted


def test_webchat_messages_over_http_share_the_addresss_limit(web: Client, settings: Any) -> None:
    """Anyone may start 60 sessions a minute, each with its own message limit: the messages
    of one address's sessions now count together too (WEBCHAT_MESSAGES_PER_IP_PER_MINUTE)."""
    settings.WEBCHAT_WS_MESSAGES_PER_MINUTE = 2
    settings.WEBCHAT_MESSAGES_PER_IP_PER_MINUTE = 3
    account = make_account("webchat")
    sessions = [
        session_issue(account, name=f"V{n}", email=f"v{n}@example.com")["session"] for n in range(3)
    ]

    def send(n: int, token: str, ip: str = "198.51.100.7") -> Any:
        return web.post(
            f"/api/webhooks/webchat/{account.webhook_token}",
            data=json.dumps({"text": f"hello {n}", "client_id": f"client-ipflood-{n}"}),
            content_type="application/json",
            headers={SESSION_HEADER: token},
            REMOTE_ADDR=ip,
        )

    clock = mock.patch("support.throttling.time", mock.Mock(time=mock.Mock(return_value=1.8e9)))
    with clock:
        sent = [send(n, token) for n, token in enumerate(sessions)]  # one each: 3
        sent.append(send(3, sessions[0]))  # the address's fourth
        sent.append(send(4, sessions[1], ip="198.51.100.8"))  # another address
    assert [r.status_code for r in sent] == [200, 200, 200, 429, 200]
    assert sent[3].json()["error"]["code"] == "rate_limited"
    assert InboundEvent.objects.filter(account=account).count() == 4


def test_a_webchat_message_body_is_capped_near_what_a_message_holds(web: Client) -> None:
    """Any visitor's session may post, and the raw body is stored whole: a 5,000-character
    message with 1 MiB of padding in another field was stored as a 1 MiB inbound event."""
    account = make_account("webchat")
    session = session_issue(account, name="Vera", email="v@example.com")["session"]
    padded = json.dumps({"text": "hello", "client_id": "client-pad-1", "page_url": "x" * 100_000})
    refused = web.post(
        f"/api/webhooks/webchat/{account.webhook_token}",
        data=padded,
        content_type="application/json",
        headers={SESSION_HEADER: session},
    )
    assert refused.status_code == 413
    assert refused.json()["error"]["details"] == {"max_bytes": 65_536}
    assert not InboundEvent.objects.exists()
    longest = json.dumps({"text": "\u00e9" * 5000, "client_id": "client-pad-2"})
    assert len(longest.encode()) < 65_536  # every character escaped still fits
    accepted = web.post(
        f"/api/webhooks/webchat/{account.webhook_token}",
        data=longest,
        content_type="application/json",
        headers={SESSION_HEADER: session},
    )
    assert accepted.status_code == 200, accepted.content


def test_form_file_parts_past_the_cap_are_dropped_before_parsing() -> None:
    """SendGrid posts each attachment as a form file; the standard library's parser costs
    about 0.7 ms a part (24,000 one-byte files, 3 MB: 17 s), at intake and twice more in
    the drain. Fields are kept wherever they stand."""
    files = [(f"attachment{i}", f"f{i}.bin", b"x", "application/octet-stream") for i in range(150)]
    body, ctype = _multipart(
        [("from", "", b"Eve <eve@attacker.test>", ""), *files, ("text", "", b"Hi there", "")]
    )
    form = parsing.parse_form_data(ctype, body)
    assert form.dropped_files == 50
    assert sorted(form.files) == sorted(f"attachment{i}" for i in range(100))
    assert form.text("text") == "Hi there"
    assert form.text("from") == "Eve <eve@attacker.test>"


def test_a_raw_email_with_too_many_parts_is_read_up_to_the_cap(
    web: Client, django_capture_on_commit_callbacks: Any, settings: Any, tmp_path: Any
) -> None:
    message = _email_with_attachments(
        web, django_capture_on_commit_callbacks, settings, tmp_path, 1500
    )
    assert message.body_text == "See attached"
    assert message.metadata["not_read"] == [
        "This e-mail declares 1502 MIME parts: only the first 1000 were read. The delivery "
        "is kept as it arrived (admin: inbound events).",
        "This e-mail has 998 attachments: the first 100 are kept. The delivery is kept as "
        "it arrived (admin: inbound events).",
    ]
    assert message.attachments.count() == 100
