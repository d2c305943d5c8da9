"""Erase customers who came in through real signed deliveries (one on WhatsApp; one on every
channel, the chatbot hand-off and a phone call), were routed and got replies: no table
(text, JSON, search vectors or raw bytes, found by introspecting the database) keeps their
name, e-mail, phone, their words, or the encoded forms those took in raw deliveries."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses
from django.db import connection

from channels_app.adapters.meta.common import meta_signature
from channels_app.models import InboundEvent
from channels_app.tests.conftest import make_account, wa_body
from channels_app.tests.test_email_events import (  # noqa: F401  (fixtures)
    email_account,
    keys,
    post_events,
    sent_reply,
)
from routing.models import RoutingDecision
from support.delivery.models import Attempt
from tickets.context import privacy
from tickets.models import Customer, Ticket
from tickets.services import message_add

pytestmark = pytest.mark.django_db

WA_URL = "https://graph.facebook.com/v21.0/106540352242922/messages"
PERSONAL = ["Sheena Nelson", "16505551234", "Sheena", "Nelson"]


def _columns() -> list[tuple[str, str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT table_name, column_name, data_type FROM information_schema.columns
            WHERE table_schema = 'public'
              AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'tsvector',
                                'character', 'bytea')
            """
        )
        return cursor.fetchall()


def _scan(tokens: list[str]) -> list[tuple[str, str, str]]:
    hits = []
    with connection.cursor() as cursor:
        for table, column, kind in _columns():
            expr = f"encode(\"{column}\", 'escape')" if kind == "bytea" else f'"{column}"::text'
            for token in tokens:
                cursor.execute(
                    f'SELECT count(*) FROM "{table}" WHERE {expr} ILIKE %s',  # noqa: S608
                    [f"%{token}%"],
                )
                if cursor.fetchone()[0]:
                    hits.append((table, column, token))
    return hits


@responses.activate
def test_erase_reaches_channel_deliveries_and_routing(
    post_fixture: Any,
    agent: Any,
    supervisor: Any,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.ROUTING_ENABLED = True
    settings.TICKETING_SYSTEM_URL = ""
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SENT-ERASE"}]})
    account = make_account("whatsapp")
    assert post_fixture(account, "text_message").status_code == 200
    ticket = Ticket.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        message_add(ticket=ticket, body="Hi Sheena, it comes in blue.", author_user=agent)
    assert RoutingDecision.objects.filter(ticket=ticket).exists()
    assert Attempt.objects.count() == 1
    before = {(t, c) for t, c, _ in _scan(PERSONAL)}
    assert ("channels_app_inboundevent", "body") in before

    customer = Customer.objects.get()
    privacy.customer_erase(customer=customer, actor=supervisor, via="test")

    assert _scan(PERSONAL) == []
    assert InboundEvent.objects.count() == 1  # the delivery record stays, redacted


# --- a customer who used every channel and called ---------------------------------------

NAME, EMAIL, PHONE = "Zelda Quimby", "zelda.quimby@example.org", "+14155550177"
WA_ID, FB_ID, IG_ID, X_ID, VISITOR = (
    "14155550177",
    "7012345678901234",
    "1784145960000777",
    "4337860000",
    "v_zelda0001",
)
SAID = {
    "whatsapp": "My blender arrived cracked along the lid",
    "messenger": "The warranty leaflet was missing from the box",
    "instagram": "Can I swap the teal kettle for the grey one",
    "twitter": "Still waiting on the courier since Tuesday morning",
    "email": "The toaster sparks whenever I press the lever",
    "webchat": "Is the red stand mixer back in stock soon",
    "chatbot": "The bot could not reset my smart plug",
    "chatbot_transcript": "my smart plug keeps blinking amber",
    "call": "My oven door hinge snapped yesterday evening",
}
EMAIL_SUBJECT = "Sparking toaster complaint"


def _meta_body(channel: str, sender: str, mid: str, text: str) -> bytes:
    page = {"messenger": "107240291734629", "instagram": "17841405822304914"}[channel]
    payload = {
        "object": "page" if channel == "messenger" else "instagram",
        "entry": [
            {
                "time": 1749416383000,
                "id": page,
                "messaging": [
                    {
                        "sender": {"id": sender},
                        "recipient": {"id": page},
                        "timestamp": 1749416383123,
                        "message": {"mid": mid, "text": text},
                    }
                ],
            }
        ],
    }
    return json.dumps(payload).encode()


def _x_body(text: str) -> bytes:
    payload = {
        "for_user_id": "3001969357",
        "direct_message_events": [
            {
                "type": "message_create",
                "id": "954491830116100001",
                "created_timestamp": "1516403560557",
                "message_create": {
                    "target": {"recipient_id": "3001969357"},
                    "sender_id": X_ID,
                    "message_data": {"text": text, "entities": {}},
                },
            }
        ],
        "users": {
            X_ID: {"id": X_ID, "name": NAME, "screen_name": "zquimby", "location": "Leeds"},
            "3001969357": {"id": "3001969357", "name": "Acme Support"},
        },
    }
    return json.dumps(payload).encode()


def _email_body() -> tuple[bytes, list[str]]:
    """A SendGrid raw-MIME delivery whose text is base64 and whose HTML is
    quoted-printable; returns the body and the encoded lines (found before the erase)."""
    from email.message import EmailMessage

    mime = EmailMessage()
    mime["From"] = f"{NAME} <{EMAIL}>"
    mime["To"] = "support@acme.test"
    mime["Subject"] = EMAIL_SUBJECT
    mime["Message-ID"] = "<zq-0001@example.org>"
    mime.set_content(f"{SAID['email']}.\nRegards, {NAME}\n", cte="base64")
    mime.add_alternative(
        f"<p>{SAID['email']}.</p><p>Regards, {NAME} &mdash; caf\u00e9 owner</p>",
        subtype="html",
        cte="quoted-printable",
    )
    raw = mime.as_bytes()
    encoded = [
        line.decode()
        for line in raw.splitlines()
        if len(line) > 20 and not line.startswith((b"Content-", b"From", b"To", b"Subj", b"Mess"))
    ]
    boundary = "xYzZY"
    fields = {
        "dkim": "{@example.org : pass}",
        "email": raw.decode(),
        "to": "support@acme.test",
        "from": f"{NAME} <{EMAIL}>",
        "subject": EMAIL_SUBJECT,
        "sender_ip": "1.2.3.4",
        "envelope": json.dumps({"to": ["support@acme.test"], "from": EMAIL}),
        "charsets": json.dumps({"to": "UTF-8", "subject": "UTF-8", "from": "UTF-8"}),
        "SPF": "pass",
    }
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode(), encoded


def _post(client: Any, account: Any, body: bytes, headers: dict[str, str], **session: str) -> Any:
    from channels_app.fixtures import Fixture, signed_headers
    from channels_app.tests.conftest import post_raw

    fixture = Fixture(headers=headers, body=body, session=session or None)
    return post_raw(client, account, body, signed_headers(account, fixture))


def _call(capture: Any) -> None:
    """A Connect contact trace record (their phone, a name attribute) and a Transcribe
    result in which the customer speaks."""
    from calls.services import call_events_intake
    from calls.tests.conftest import load, place_result

    ctr = load("ctr_billing.json")
    ctr["CustomerEndpoint"]["Address"] = PHONE
    ctr["Attributes"]["caller_name"] = NAME
    result = load("transcribe_billing.json")
    segments = result["results"]["audio_segments"]
    segments[1]["transcript"] = f"Hi John, it's {NAME}. {SAID['call']}."
    segments[3]["transcript"] = f"Thanks, you can reach me on {PHONE}."
    result["results"]["transcripts"][0]["transcript"] = " ".join(s["transcript"] for s in segments)
    place_result(ctr["ContactId"], "transcribe.json", result)
    with capture(execute=True):
        call_events_intake(body=json.dumps(ctr).encode())


@responses.activate
def test_erase_a_customer_who_used_every_channel_and_called(
    client: Any,
    agent: Any,
    supervisor: Any,
    settings: Any,
    tmp_path: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from channels_app.adapters.webchat.adapter import SESSION_HEADER
    from channels_app.models import InboundStatus
    from channels_app.tests.conftest import TEST_SECRET
    from knowledge.models import SuggestionFeedback
    from tickets.models import ChannelIdentity

    settings.ROUTING_ENABLED = True
    settings.TICKETING_SYSTEM_URL = ""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.CALLS_TRANSCRIPTION_BACKEND = "local"
    settings.CALLS_AI_PROVIDER = "local"
    settings.CALLS_RECORDINGS_BUCKET = "connect-recordings-example"  # the CTR fixture's bucket
    settings.CALLS_ALLOWED_S3_BUCKETS = []
    settings.SALESFORCE_ENABLED = False
    responses.post(WA_URL, json={"messages": [{"id": "wamid.SENT-ZQ"}]})

    customer = Customer.objects.create(name=NAME, email=EMAIL, phone=PHONE)
    for channel, external_id in (
        ("whatsapp", WA_ID),
        ("messenger", FB_ID),
        ("instagram", IG_ID),
        ("twitter", X_ID),
        ("webchat", VISITOR),
    ):
        ChannelIdentity.objects.create(
            customer=customer, channel=channel, external_id=external_id, display_name=NAME
        )
    json_headers = {"Content-Type": "application/json"}
    email_body, encoded_lines = _email_body()
    with django_capture_on_commit_callbacks(execute=True):
        posts = [
            _post(
                client,
                make_account("whatsapp"),
                wa_body(WA_ID, "wamid.ZQ-1", SAID["whatsapp"]),
                json_headers,
            ),
            _post(
                client,
                make_account("messenger"),
                _meta_body("messenger", FB_ID, "m_ZQ-1", SAID["messenger"]),
                json_headers,
            ),
            _post(
                client,
                make_account("instagram"),
                _meta_body("instagram", IG_ID, "ig_ZQ-1", SAID["instagram"]),
                json_headers,
            ),
            _post(client, make_account("twitter"), _x_body(SAID["twitter"]), json_headers),
            _post(
                client,
                make_account("email"),
                email_body,
                {"Content-Type": "multipart/form-data; boundary=xYzZY"},
            ),
            _post(
                client,
                make_account("webchat"),
                json.dumps({"text": SAID["webchat"], "client_id": "c-zq-000001"}).encode(),
                json_headers,
                v=VISITOR,
                n=NAME,
                e=EMAIL,
            ),
        ]
    assert [p.status_code for p in posts] == [200] * 6, [p.content for p in posts]
    bot = make_account("chatbot")  # a bot behind the site's login vouches for addresses
    bot.settings = {"trusts_customer_email": True}
    bot.save()
    handoff = json.dumps(
        {
            "source": "website-bot",
            "customer_email": EMAIL,
            "customer_name": NAME,
            "subject": "Smart plug hand-off",
            "initial_message": SAID["chatbot"],
            "session_id": "bot-sess-zq",
            "transcript": [
                {"role": "user", "text": SAID["chatbot_transcript"]},
                {"role": "bot", "text": "Try holding the button for ten seconds."},
            ],
        }
    ).encode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.generic(
            "POST",
            "/api/webhooks/chatbot",
            data=handoff,
            content_type="application/json",
            HTTP_X_SIGNATURE_256=meta_signature(TEST_SECRET, handoff),
        )
    assert response.status_code == 201, response.content
    _call(django_capture_on_commit_callbacks)

    customer.refresh_from_db()
    tickets = Ticket.objects.filter(customer=customer).order_by("id")
    assert sorted(t.channel for t in tickets) == sorted(
        ["whatsapp", "messenger", "instagram", "twitter", "email", "webchat", "chatbot"]
    )
    wa_ticket = tickets.get(channel="whatsapp")
    with django_capture_on_commit_callbacks(execute=True):
        message_add(
            ticket=wa_ticket, body=f"Hi Zelda, about: {SAID['whatsapp']}", author_user=agent
        )
    SuggestionFeedback.objects.create(
        ticket=wa_ticket,
        chunk_ref="doc-1#0",
        passage="Returns are free within 30 days.",
        helpful=False,
        comment=f"Zelda wrote '{SAID['whatsapp']}', this article is about returns",
        user=agent,
    )
    session_token = next(
        e.headers[SESSION_HEADER] for e in InboundEvent.objects.filter(channel="webchat")
    )
    # One more delivery in the queue, not processed yet (it must never be, after erase).
    pending = InboundEvent.objects.create(
        channel="whatsapp",
        account=make_account("whatsapp"),
        external_id="pending-zq",
        headers={},
        body=wa_body(WA_ID, "wamid.ZQ-2", "One more thing about the blender"),
    )
    needles = [
        NAME,
        "Zelda",
        "Quimby",
        EMAIL,
        PHONE,
        WA_ID,
        *SAID.values(),
        EMAIL_SUBJECT,
        session_token,
        *encoded_lines,
    ]
    found = _scan(needles)
    assert {n for _, _, n in found} == set(needles)  # the scan sees each one before
    before = {(t, c) for t, c, _ in found}
    assert {
        ("channels_app_inboundevent", "body"),
        ("channels_app_inboundevent", "headers"),
        ("tickets_message", "body_text"),
        ("tickets_ticket", "subject"),
        ("calls_transcript", "text"),
        ("calls_callevent", "payload"),
        ("knowledge_suggestionfeedback", "comment"),
        ("routing_routingdecision", "tool_calls"),
    } <= before

    counts = privacy.customer_erase(customer=customer, actor=supervisor, via="test")

    assert _scan(needles) == []
    assert counts["hook_knowledge"] == 1
    pending.refresh_from_db()
    assert (pending.status, bytes(pending.body), pending.headers) == (
        InboundStatus.IGNORED,
        b"",
        {},
    )
    # The records stay (blanked), and so do the aggregates.
    assert InboundEvent.objects.count() == 7
    assert {bytes(e.body) for e in InboundEvent.objects.all()} == {b""}
    assert Ticket.objects.filter(customer=customer).count() == 7
    assert SuggestionFeedback.objects.get().helpful is False


# --- what erasing one customer must leave alone (review 2026-12-07) ---------------------


def _wa_delivery(sender: str, name: str, mid: str, text: str) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": name}, "wa_id": sender}],
        "messages": [
            {
                "from": sender,
                "id": mid,
                "timestamp": "1764100000",
                "type": "text",
                "text": {"body": text},
            }
        ],
    }
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "waba", "changes": [{"field": "messages", "value": value}]}],
        }
    ).encode()


def test_erasing_a_customer_leaves_other_customers_records_alone(
    supervisor: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Before: each name word was matched as a substring across the whole database, so
    erasing the product's own "Caller unknown number" (an anonymous caller's IVR failure)
    blanked Bea's processed delivery, rewrote her dead letter's JSON keys
    ("phone_[redacted]_id") and text, her outbox payloads and audit note, and replaced her
    admin log entry by "[erased]". Only rows tied to the person (their customer id,
    tickets, identifiers, message ids) are touched now, and names as whole words."""
    from django.contrib.admin.models import CHANGE, LogEntry
    from django.contrib.contenttypes.models import ContentType

    from calls.models import Call
    from calls.services.ivr import escalation_create
    from channels_app.models import InboundStatus
    from channels_app.services import inbound_event_process
    from support.models import AuditLog, OutboxEvent
    from support.services import audit_log_record
    from tickets.models import Message

    account = make_account("whatsapp")
    first = _wa_delivery(
        "34611111111", "Bea Lopez", "wamid.BEA1", "My phone number changed, is my order lost?"
    )
    done = InboundEvent.objects.create(
        channel="whatsapp", account=account, external_id="bea-1", body=first
    )
    with django_capture_on_commit_callbacks(execute=True):
        inbound_event_process(event_id=done.pk)
    bea = Message.objects.get(channel_message_id="wamid.BEA1").ticket.customer
    second = _wa_delivery(
        "34611111111",
        "Bea Lopez",
        "wamid.BEA2",
        "Tracking number please, the parcel is unknown to the courier",
    )
    dead = InboundEvent.objects.create(
        channel="whatsapp",
        account=account,
        external_id="bea-2",
        body=second,
        status=InboundStatus.DEAD,
        attempts=5,
        error="was failing",
    )
    audit_log_record(
        actor=supervisor,
        action="customer.update",
        object_type="customer",
        object_id=bea.pk,
        details={"changed": ["phone"], "note": "new phone number"},
    )
    repr_ = "Bea Lopez (phone number +34611111111)"
    LogEntry.objects.create(
        user=supervisor,
        content_type=ContentType.objects.get_for_model(Customer),
        object_id=str(bea.pk),
        object_repr=repr_,
        action_flag=CHANGE,
        change_message="[]",
    )
    payloads = dict(OutboxEvent.objects.values_list("id", "payload"))

    call = Call.objects.create(contact_id="c-anon", customer_phone="")
    with django_capture_on_commit_callbacks(execute=True):
        escalation_create(call=call, kind="no_input", reason="caller said nothing")
    call.refresh_from_db()
    anon = call.customer
    assert anon is not None
    assert anon.name == "Caller unknown number"
    with django_capture_on_commit_callbacks(execute=True):
        privacy.customer_erase(customer=anon, actor=supervisor, via="test")

    done.refresh_from_db()
    dead.refresh_from_db()
    assert (bytes(done.body), done.error) == (first, "")
    assert (bytes(dead.body), dead.status, dead.error) == (second, "dead", "was failing")
    after = dict(OutboxEvent.objects.filter(pk__in=payloads).values_list("id", "payload"))
    assert after == payloads
    note = AuditLog.objects.get(action="customer.update", object_id=str(bea.pk))
    assert note.details["note"] == "new phone number"
    assert LogEntry.objects.get(object_id=str(bea.pk)).object_repr == repr_
    anon.refresh_from_db()
    assert anon.name == ""
    # Re-driven, Bea's dead letter still says what she wrote.
    dead.status = InboundStatus.RECEIVED
    dead.save(update_fields=["status"])
    with django_capture_on_commit_callbacks(execute=True):
        inbound_event_process(event_id=dead.pk)
    assert Message.objects.get(channel_message_id="wamid.BEA2").body_text == (
        "Tracking number please, the parcel is unknown to the courier"
    )


def test_a_shared_phone_number_erases_only_her_calls_and_messages(
    supervisor: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Bob and Alice share a landline. Before: erasing Alice erased Bob's call (its number
    contained hers) and blanked and closed Bob's pending WhatsApp message from it."""
    from calls.models import Call, Transcript
    from channels_app.models import InboundStatus
    from tickets.services import customer_get_or_create

    phone = "+14155550100"
    bob, _ = customer_get_or_create(name="Bob Baker", email="bob@example.com", phone=phone)
    call = Call.objects.create(contact_id="c-bob", customer=bob, customer_phone=phone)
    segments = [
        {"speaker": "customer", "text": "My fridge is leaking water"},
        {"speaker": "agent", "text": "Sorry to hear that Bob"},
    ]
    Transcript.objects.create(call=call, source="transcribe", text="x", segments=segments)
    # No one was matched to this call from the shared number: not hers to erase either.
    unmatched = Call.objects.create(contact_id="c-none", customer_phone=phone)
    body = _wa_delivery("14155550100", "Bob Baker", "wamid.BOB9", "Bob here: when?")
    pending = InboundEvent.objects.create(
        channel="whatsapp",
        account=make_account("whatsapp"),
        external_id="bob-9",
        status=InboundStatus.RETRYING,
        body=body,
    )
    alice, _ = customer_get_or_create(name="Alice Baker", email="alice@example.com", phone=phone)
    # Cleo's own number, written another way on a call matched to no one: hers.
    cleo, _ = customer_get_or_create(
        name="Cleo Park", email="cleo@example.com", phone="+14155550199"
    )
    cleos = Call.objects.create(contact_id="c-cleo", customer_phone="+1 (415) 555-0199")
    longer = Call.objects.create(contact_id="c-long", customer_phone="+141555501990")

    with django_capture_on_commit_callbacks(execute=True):
        privacy.customer_erase(customer=alice, actor=supervisor, via="test")
        privacy.customer_erase(customer=cleo, actor=supervisor, via="test")

    call.refresh_from_db()
    unmatched.refresh_from_db()
    pending.refresh_from_db()
    assert (call.customer_id, call.customer_phone) == (bob.pk, phone)
    assert Transcript.objects.get(call=call).segments == segments
    assert unmatched.customer_phone == phone
    assert (pending.status, bytes(pending.body)) == (InboundStatus.RETRYING, body)
    cleos.refresh_from_db()
    longer.refresh_from_db()
    assert cleos.customer_phone == ""
    assert longer.customer_phone == "+141555501990"


def test_a_bounce_reason_naming_the_address_is_redacted(
    sent_reply: Any,  # noqa: F811
    post_events: Any,  # noqa: F811
    supervisor: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Before: the reply's ``delivery_error`` kept SendGrid's bounce reason, which quotes
    the address."""
    from channels_app.tests.test_email_events import event
    from tickets.models import Message

    customer = sent_reply.ticket.customer
    address = customer.email
    reason = f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    post_events([event(sent_reply.pk, "bounce", "bnc-1", type="bounce", reason=reason)])
    sent_reply.refresh_from_db()
    assert address in sent_reply.delivery_error
    with django_capture_on_commit_callbacks(execute=True):
        privacy.customer_erase(customer=customer, actor=supervisor, via="test")
    sent_reply.refresh_from_db()
    assert "<[redacted]>: Recipient address rejected" in sent_reply.delivery_error
    assert not Message.objects.filter(delivery_error__icontains=address).exists()


@responses.activate
def test_a_chatbot_callback_that_failed_on_their_ticket_is_redacted(
    client: Any,
    agent: Any,
    supervisor: Any,
    settings: Any,
    tmp_path: Any,
    monkeypatch: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Before: only channel replies were redacted; a hand-off bot's callback dead letter
    kept the bot's answer quoting the person."""
    from channels_app.tests.test_handoff_files import CALLBACK, SENDGRID, _handoff
    from support.delivery.models import Delivery

    settings.MEDIA_ROOT = tmp_path
    settings.SITE_URL = "https://support.example.com"
    monkeypatch.setattr("support.safe_urls._resolve", lambda host, port: ["93.184.216.34"])
    email = make_account("email")
    email.settings = {"from_email": "support@acme.test"}
    email.save()
    make_account("chatbot")
    ticket = _handoff(client, customer_email="jane.doe@example.org", customer_name="Jane Doe")
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg-1"})
    answer = '{"error":"conversation of jane.doe@example.org (Jane Doe) is closed"}'
    responses.post(CALLBACK, status=422, body=answer)
    with django_capture_on_commit_callbacks(execute=True):
        message_add(ticket=ticket, body="Hello Jane, fixed it.", author_user=agent)
    callback = Delivery.objects.get(target_kind="chatbot_callback")
    assert "jane.doe@example.org" in callback.last_error
    with django_capture_on_commit_callbacks(execute=True):
        privacy.customer_erase(customer=ticket.customer, actor=supervisor, via="test")
    callback.refresh_from_db()
    assert "conversation of [redacted] ([redacted] [redacted]) is closed" in callback.last_error
    assert _scan(["jane.doe@example.org", "jane.doe", "Jane Doe"]) == []
    attempt = Attempt.objects.get(delivery=callback)
    assert "[redacted]" in attempt.error
