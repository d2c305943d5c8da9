"""Mail loops (RFC 3834): automatic mail (out-of-office replies, bounces, newsletters,
no-reply senders) and our own mail coming back are never a customer writing: they reopen
nothing, open no ticket and draw no survey; and our own automatic mail says it is
automatic. Posted through the real Inbound Parse endpoint."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from channels_app.adapters.email.adapter import (
    AUTO_SUBMITTED_KEY,
    NO_AUTO_REPLY_KEY,
    outgoing_mail,
)
from channels_app.models import InboundEvent, InboundStatus
from channels_app.services.csat_survey import SURVEY_METADATA_KEY, csat_survey_send
from channels_app.services.outbound import _outbound_request
from channels_app.tests.conftest import counts, diff, make_account
from channels_app.tests.email_forms import JANE, inbound_mail, post_mail
from support.events import event_time
from tickets.models import Customer, Message, Ticket, TicketStatus
from tickets.services import message_add, ticket_update

pytestmark = pytest.mark.django_db

SENDGRID = "https://api.sendgrid.com/v3/mail/send"
OUT_OF_OFFICE = (
    "Auto-Submitted: auto-replied\nX-Autoreply: yes\nPrecedence: auto_reply\n"
    "X-Auto-Response-Suppress: All\n"
)


def resolve(ticket: Ticket, agent: Any, capture: Any) -> Ticket:
    with capture(execute=True):
        return ticket_update(ticket=ticket, status="resolved", actor=agent)


def sent_mails() -> list[dict[str, Any]]:
    return [json.loads(call.request.body or b"") for call in responses.calls]


@responses.activate
def test_an_out_of_office_reply_to_the_survey_is_a_note_and_reopens_nothing(
    client: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg"})
    capture = django_capture_on_commit_callbacks
    account = make_account("email")
    post_mail(client, capture, account, inbound_mail())
    ticket = Ticket.objects.get()
    resolve(ticket, agent, capture)
    (survey,) = sent_mails()
    resolved_at = Ticket.objects.get().resolved_at
    for n in (1, 2):
        our_id = survey["headers"]["Message-ID"]
        post_mail(
            client,
            capture,
            account,
            inbound_mail(
                subject=f"Automatic reply: {survey['subject']}",
                text="I am out of the office until Monday.",
                msgid=f"<ooo-{n}@mail.example.org>",
                extra_headers=f"In-Reply-To: {our_id}\nReferences: {our_id}\n" + OUT_OF_OFFICE,
            ),
        )
        ticket = Ticket.objects.get()
        # still resolved, its resolution (and SLA clock) untouched
        assert (ticket.status, ticket.resolved_at) == (TicketStatus.RESOLVED, resolved_at)
        resolve(ticket, agent, capture)  # nothing to resolve again: no new survey
    assert len(responses.calls) == 1
    notes = list(Message.objects.filter(ticket=ticket, kind="internal_note").order_by("pk"))
    assert [n.channel_message_id for n in notes] == [
        "<ooo-1@mail.example.org>",
        "<ooo-2@mail.example.org>",
    ]
    assert notes[0].direction == "outbound"
    assert notes[0].author_customer is None
    assert notes[0].metadata[AUTO_SUBMITTED_KEY] == "Auto-Submitted: auto-replied"
    assert "out of the office" in notes[0].body_text
    assert not Message.objects.filter(ticket=ticket, direction="inbound").exclude(
        channel_message_id="<first@mail.example.org>"
    )


@pytest.mark.parametrize(
    ("frm", "extra_headers", "envelope_from", "reason"),
    [
        (
            "Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>",
            "Content-Type: multipart/report; report-type=delivery-status; boundary=x\n",
            "",
            "multipart/report",
        ),
        ("Mail system <bounces@mx.example.org>", "", "", "null envelope sender"),
        ("Shop <deals@shop.example.com>", "Precedence: bulk\n", None, "Precedence: bulk"),
        ("Shop <deals@shop.example.com>", "Auto-Submitted: auto-generated\n", None, "Auto"),
        ("Away <away@example.net>", "X-Autorespond: yes\n", None, "X-Autorespond"),
        ("Shop <noreply@shop.example.com>", "", None, "automatic address (noreply@)"),
        ("Shop <no-reply@shop.example.com>", "", None, "automatic address (no-reply@)"),
        ("Host <postmaster@example.net>", "", None, "automatic address (postmaster@)"),
    ],
)
@responses.activate
def test_automatic_mail_with_no_ticket_opens_none_and_is_kept_as_its_event(
    client: Any,
    django_capture_on_commit_callbacks: Any,
    frm: str,
    extra_headers: str,
    envelope_from: str | None,
    reason: str,
) -> None:
    account = make_account("email")
    before = counts()
    post_mail(
        client,
        django_capture_on_commit_callbacks,
        account,
        inbound_mail(
            frm=frm,
            subject="Undelivered Mail Returned to Sender",
            text="Your message could not be delivered.",
            msgid="<auto-1@mx.example.org>",
            extra_headers=extra_headers,
            envelope_from=envelope_from,
        ),
    )
    # no customer, no ticket, no mail: only the delivery, processed, saying why
    assert diff(before, counts()) == {"events": 1}
    event = InboundEvent.objects.get()
    assert event.status == InboundStatus.PROCESSED
    assert event.summary["set_aside"] == 1
    (why,) = event.summary["set_aside_reasons"]
    assert reason in why
    assert "not made a ticket" in why
    assert not responses.calls


@pytest.mark.parametrize(
    "extra_headers",
    [
        "List-Id: <team.lists.example.com>\n",
        "X-Auto-Response-Suppress: OOF, AutoReply\n",
        "Precedence: list\n",
    ],
)
@responses.activate
def test_mail_through_a_list_is_a_ticket_that_draws_no_automatic_mail(
    client: Any, agent: Any, django_capture_on_commit_callbacks: Any, extra_headers: str
) -> None:
    """A person may write through a mailing list, or from a client that asks for no
    automatic replies: a ticket as any other, but no survey when it is resolved (RFC 3834
    section 2)."""
    capture = django_capture_on_commit_callbacks
    account = make_account("email")
    post_mail(client, capture, account, inbound_mail(extra_headers=extra_headers))
    message = Message.objects.get()
    assert message.direction == "inbound"
    assert AUTO_SUBMITTED_KEY not in message.metadata
    assert message.metadata[NO_AUTO_REPLY_KEY]
    with capture(execute=False):
        ticket = ticket_update(ticket=message.ticket, status="resolved", actor=agent)
    assert ticket.resolved_at is not None
    assert csat_survey_send(ticket_id=ticket.pk, resolved_at=event_time(ticket.resolved_at)) is None


def test_auto_submitted_no_is_a_person_writing(
    client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    account = make_account("email")
    post_mail(
        client,
        django_capture_on_commit_callbacks,
        account,
        inbound_mail(extra_headers="Auto-Submitted: no\nPrecedence: first-class\n"),
    )
    message = Message.objects.get()
    assert message.direction == "inbound"
    assert AUTO_SUBMITTED_KEY not in message.metadata


@responses.activate
def test_a_bounce_naming_a_customers_ticket_does_not_reach_it(
    client: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The daemon is not the ticket's customer: set aside, not a suspicious new ticket."""
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg"})
    capture = django_capture_on_commit_callbacks
    account = make_account("email")
    post_mail(client, capture, account, inbound_mail())
    ticket = Ticket.objects.get()
    resolve(ticket, agent, capture)
    our_id = sent_mails()[0]["headers"]["Message-ID"]
    post_mail(
        client,
        capture,
        account,
        inbound_mail(
            frm="MAILER-DAEMON@mx.example.org",
            subject="Undelivered Mail Returned to Sender",
            text="Delivery failed.",
            msgid="<dsn-2@mx.example.org>",
            envelope_from="",
            extra_headers=f"In-Reply-To: {our_id}\nAuto-Submitted: auto-replied\n",
        ),
    )
    assert list(Ticket.objects.values_list("pk", "status")) == [(ticket.pk, "resolved")]
    assert not Message.objects.filter(channel_message_id="<dsn-2@mx.example.org>").exists()
    assert InboundEvent.objects.order_by("-pk").first().summary["set_aside"] == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "frm", ["Acme <support@acme.test>", "Acme <SUPPORT@inbound.acme.test>", "Acme <out@acme.test>"]
)
@responses.activate
def test_mail_from_our_own_address_is_never_a_ticket(
    client: Any, django_capture_on_commit_callbacks: Any, frm: str
) -> None:
    account = make_account("email")
    account.settings = {**account.settings, "from_email": "out@acme.test", "from_name": "Acme"}
    account.save()
    before = counts()
    post_mail(
        client,
        django_capture_on_commit_callbacks,
        account,
        inbound_mail(frm=frm, subject="Re: Your request [T-000999]", text="Notification copy"),
    )
    assert diff(before, counts()) == {"events": 1}
    event = InboundEvent.objects.get()
    assert event.status == InboundStatus.PROCESSED
    (why,) = event.summary["set_aside_reasons"]
    assert "our own mail, never a ticket" in why
    assert not Customer.objects.exists()
    assert not responses.calls


@responses.activate
def test_our_survey_says_it_is_automatic_and_an_agents_reply_does_not(
    client: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg"})
    capture = django_capture_on_commit_callbacks
    account = make_account("email")
    post_mail(client, capture, account, inbound_mail())
    ticket = Ticket.objects.get()
    with capture(execute=True):
        message_add(ticket=ticket, body="We are on it.", author_user=agent, channel="email")
    resolve(Ticket.objects.get(), agent, capture)
    reply, survey = sent_mails()
    assert "Auto-Submitted" not in reply["headers"]
    assert "X-Auto-Response-Suppress" not in reply["headers"]
    assert survey["headers"]["Auto-Submitted"] == "auto-generated"
    assert survey["headers"]["X-Auto-Response-Suppress"] == "All"


def test_no_survey_to_a_no_reply_address_or_after_an_automatic_last_mail(
    client: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Tickets from before the intake set such mail aside (or an agent's address change)
    still get no survey: the rule is checked where the survey is sent."""
    capture = django_capture_on_commit_callbacks
    account = make_account("email")
    post_mail(client, capture, account, inbound_mail())
    ticket = Ticket.objects.get()
    # an automatic mail recorded as the customer's (as the intake did before)
    last = Message.objects.get(ticket=ticket)
    last.metadata = {**last.metadata, AUTO_SUBMITTED_KEY: "Auto-Submitted: auto-replied"}
    last.save(update_fields=["metadata"])
    with capture(execute=False):  # the task itself is called below
        ticket = ticket_update(ticket=ticket, status="resolved", actor=agent)
    assert ticket.resolved_at is not None
    resolved_at = event_time(ticket.resolved_at)
    assert csat_survey_send(ticket_id=ticket.pk, resolved_at=resolved_at) is None
    # the same ticket once its mail is a person's, but to a no-reply address
    last.metadata = {k: v for k, v in last.metadata.items() if k != AUTO_SUBMITTED_KEY}
    last.save(update_fields=["metadata"])
    Ticket.objects.filter(pk=ticket.pk).update(origin_platform_id="noreply@example.org")
    assert csat_survey_send(ticket_id=ticket.pk, resolved_at=resolved_at) is None
    # and to the customer's own address it is sent
    Ticket.objects.filter(pk=ticket.pk).update(origin_platform_id="jane.doe@example.org")
    survey = csat_survey_send(ticket_id=ticket.pk, resolved_at=resolved_at)
    assert survey is not None
    assert SURVEY_METADATA_KEY in survey.metadata


def test_references_keep_the_first_and_the_latest_ten_ids(
    client: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    account = make_account("email")
    post_mail(client, capture, account, inbound_mail(frm=JANE, msgid="<m0@mail.example.org>"))
    ticket = Ticket.objects.get()
    for n in range(1, 15):
        post_mail(
            client,
            capture,
            account,
            inbound_mail(
                subject=f"Re: Order 1234 arrived broken [{ticket.number}]",
                text=f"Mail {n}",
                msgid=f"<m{n}@mail.example.org>",
            ),
        )
    reply = message_add(ticket=ticket, body="Reply.", author_user=agent, channel="email")
    mail = outgoing_mail(account, _outbound_request(reply, "k"))
    kept = mail.headers["References"].split()
    assert kept == ["<m0@mail.example.org>"] + [f"<m{n}@mail.example.org>" for n in range(5, 15)]
    assert mail.headers["In-Reply-To"] == "<m14@mail.example.org>"
