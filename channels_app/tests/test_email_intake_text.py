"""What an inbound mail's stored text keeps (quotes in other languages left out, our survey
link never kept, unknown charsets read) and which ticket a subject's tokens name. Posted
through the real Inbound Parse endpoint."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import responses
from django.conf import settings

from channels_app.adapters.email.adapter import outgoing_mail
from channels_app.services.outbound import _outbound_request
from channels_app.services.survey_link import SURVEY_LINK_PLACEHOLDER
from channels_app.tests.conftest import make_account
from channels_app.tests.email_forms import inbound_mail, post_mail
from tickets.models import Message, Ticket
from tickets.services import message_add, ticket_update

pytestmark = pytest.mark.django_db

SENDGRID = "https://api.sendgrid.com/v3/mail/send"
FEEDBACK_LINK = re.compile(r"/feedback/")
QUOTED = "Your request T-000001 is resolved. How did we do?"


def stored(subject: str) -> str:
    return Message.objects.get(ticket__subject=subject).body_text


@pytest.mark.parametrize(
    ("name", "quote"),
    [
        (
            "de-outlook",
            "-----Ursprüngliche Nachricht-----\nVon: Acme <support@acme.test>\n"
            "Gesendet: Mittwoch, 27. Juli 2016 14:53\nAn: jane@example.org\nBetreff: x\n\n",
        ),
        (
            "de-outlook-headers",
            "Von: Acme <support@acme.test>\nGesendet: Mittwoch, 27. Juli 2016 14:53\n\n",
        ),
        ("de-gmail", "Am Mi., 27. Juli 2016 um 14:53 Uhr schrieb Acme <support@acme.test>:\n\n> "),
        (
            "fr-outlook",
            "-----Message d'origine-----\nDe : Acme <support@acme.test>\n"
            "Envoyé : mercredi 27 juillet 2016 14:53\nÀ : fleur@example.fr\nObjet : x\n\n",
        ),
        ("fr-outlook-headers", "De : Acme <support@acme.test>\nEnvoyé : mercredi 27 juillet\n\n"),
        ("fr-gmail", "Le mer. 27 juil. 2016 à 14:53, Acme <support@acme.test> a écrit :\n\n> "),
        ("es-outlook", "-----Mensaje original-----\nDe: Acme <support@acme.test>\n\n"),
        (
            "gmail-wrapped",
            "On Wed, Jul 27, 2016 at 2:53 PM Acme Customer Support Team <\n"
            "support@acme.test> wrote:\n\n> ",
        ),
    ],
)
def test_a_quote_in_another_language_or_wrapped_is_left_out(
    client: Any, django_capture_on_commit_callbacks: Any, name: str, quote: str
) -> None:
    post_mail(
        client,
        django_capture_on_commit_callbacks,
        make_account("email"),
        inbound_mail(subject=name, text=f"Merci, danke, thanks.\n\n{quote}{QUOTED}"),
    )
    assert stored(name) == "Merci, danke, thanks."


@responses.activate
def test_our_survey_link_quoted_in_any_style_is_never_stored(
    client: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A quote no marker recognises (Dutch, an inline paste) still loses the link: the
    placeholder agents see on the survey stands in its place."""
    responses.post(SENDGRID, status=202, headers={"X-Message-Id": "sg"})
    capture = django_capture_on_commit_callbacks
    account = make_account("email")
    post_mail(client, capture, account, inbound_mail())
    ticket = Ticket.objects.get()
    with capture(execute=True):
        ticket_update(ticket=ticket, status="resolved", actor=agent)
    sent = json.loads(responses.calls[-1].request.body or b"")
    survey_text = sent["content"][0]["value"]
    assert f"{settings.SITE_URL}/feedback/" in survey_text
    link = next(w for w in survey_text.split() if "/feedback/" in w)
    reply = (
        "Dank je, maar het is nog niet opgelost.\n\n"
        "Op wo 27 jul. 2016 om 14:53 schreef Acme <support@acme.test>:\n\n" + survey_text
    )
    post_mail(
        client,
        capture,
        account,
        inbound_mail(
            subject=f"Re: {sent['subject']}",
            text=reply,
            msgid="<nl-1@mail.example.org>",
            extra_headers=f"In-Reply-To: {sent['headers']['Message-ID']}\n",
            html=f'<p>Dank je.</p><div>Op wo schreef Acme:<br><a href="{link}">{link}</a></div>',
        ),
    )
    inbound = Message.objects.get(channel_message_id="<nl-1@mail.example.org>")
    assert not FEEDBACK_LINK.search(inbound.body_text)
    assert SURVEY_LINK_PLACEHOLDER in inbound.body_text
    assert inbound.body_text.startswith("Dank je, maar het is nog niet opgelost.")


@pytest.mark.parametrize(
    ("raw", "charset", "expected"),
    [
        ("Ma facture est erronée.".encode("latin-1"), "x-unknown-8bit", "Ma facture est erronée."),
        ("Ça coûte 5 € de plus.".encode("cp1252"), "x-unknown-8bit", "Ça coûte 5 € de plus."),
        ("Grüße aus Köln".encode(), "x-mac-unknown", "Grüße aus Köln"),
        ("Grüße aus Köln".encode(), "us-ascii", "Grüße aus Köln"),  # declared wrong
    ],
)
def test_an_unknown_or_wrong_charset_is_read_as_utf8_then_windows_1252(
    client: Any, django_capture_on_commit_callbacks: Any, raw: bytes, charset: str, expected: str
) -> None:
    charsets = json.dumps({"to": "UTF-8", "subject": "UTF-8", "from": "UTF-8", "text": charset})
    post_mail(
        client,
        django_capture_on_commit_callbacks,
        make_account("email"),
        inbound_mail(subject="charset", text=raw, charsets=charsets),
    )
    assert stored("charset") == expected


def test_a_reply_to_a_closed_ticket_opens_one_new_ticket_and_stays_on_it(
    client: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    account = make_account("email")
    post_mail(client, capture, account, inbound_mail(text="Broken mug."))
    first = Ticket.objects.get()
    with capture(execute=True):
        ticket_update(ticket=first, status="closed", actor=agent)
    # a web mailer: no In-Reply-To / References, only the subject's token
    post_mail(
        client,
        capture,
        account,
        inbound_mail(
            subject=f"Re: Order 1234 arrived broken [{first.number}]",
            text="Still broken.",
            msgid="<r1@mail.example.org>",
        ),
    )
    second = Ticket.objects.exclude(pk=first.pk).get()
    assert second.subject == "Re: Order 1234 arrived broken"  # the closed one's token gone
    reply = message_add(ticket=second, body="On it.", author_user=agent, channel="email")
    subject = outgoing_mail(account, _outbound_request(reply, "k")).subject
    assert subject == f"Re: Order 1234 arrived broken [{second.number}]"
    # even a subject that still carries both tokens threads into the open one
    for n, subj in enumerate(
        (f"Re: {subject}", f"Re: x [{first.number}] [{second.number}]"), start=2
    ):
        post_mail(
            client,
            capture,
            account,
            inbound_mail(subject=subj, text="Any news?", msgid=f"<r{n}@mail.example.org>"),
        )
    assert Ticket.objects.count() == 2
    assert Message.objects.filter(ticket=second, direction="inbound").count() == 3


def test_a_strangers_tokens_never_let_them_in_whatever_their_order(
    client: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The last token that names an open ticket *of the sender* wins: a stranger naming
    Jane's open ticket after their own closed one still gets a ticket of their own."""
    capture = django_capture_on_commit_callbacks
    account = make_account("email")
    post_mail(client, capture, account, inbound_mail(text="Broken mug."))
    janes = Ticket.objects.get()
    bob = "Bob <bob@other.example>"
    post_mail(
        client, capture, account, inbound_mail(frm=bob, subject="Mine", msgid="<b0@other.example>")
    )
    bobs = Ticket.objects.exclude(pk=janes.pk).get()
    with capture(execute=True):
        ticket_update(ticket=bobs, status="closed", actor=agent)
    post_mail(
        client,
        capture,
        account,
        inbound_mail(
            frm=bob,
            subject=f"Re: x [{bobs.number}] [{janes.number}]",
            text="ship to my address",
            msgid="<b1@other.example>",
        ),
    )
    assert Message.objects.filter(ticket=janes).count() == 1
    new = Ticket.objects.exclude(pk__in=[janes.pk, bobs.pk]).get()
    assert new.customer_id == bobs.customer_id
    # Jane's own mail with the same tokens goes to her open ticket
    post_mail(
        client,
        capture,
        account,
        inbound_mail(
            subject=f"Re: x [{janes.number}] [{bobs.number}]",
            text="hello",
            msgid="<j2@mail.example.org>",
        ),
    )
    assert Message.objects.filter(ticket=janes, direction="inbound").count() == 2
