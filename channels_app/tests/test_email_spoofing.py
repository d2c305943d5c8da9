"""E-mail spoofing (issue #13): SPF/DKIM results decide whether a From address is taken at
its word, and a message never threads into another customer's ticket.

Fixtures are SendGrid Inbound Parse posts: ``inbound_parse_new`` (Jane, SPF and DKIM pass),
``inbound_parse_spoofed_reply`` (claims to be Jane replying to her first mail; SPF fail,
DKIM fail) and ``inbound_parse_other_customer_reply`` (Bob, genuine, replying to Jane's
first mail)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import responses
from django.test import Client

from channels_app import services
from channels_app.adapters.base import InboundMessage, WebhookRequest
from channels_app.adapters.email.auth import sender_auth
from channels_app.fixtures import fixture_load, signed_headers
from channels_app.models import InboundEvent
from channels_app.services import bulk
from channels_app.tests.conftest import counts, diff, make_account
from support.delivery.models import Delivery
from support.models import AuditLog
from tickets.models import ChannelIdentity, Customer, Message, Ticket
from tickets.services import ticket_update

pytestmark = pytest.mark.django_db

FORGED = "SPF fail, DKIM fail"


def _mismatch(ticket: Ticket) -> str:
    return f"sender does not match the customer of {ticket.number}, which it replies to"


def _janes_ticket(post_fixture: Any, account: Any) -> Ticket:
    post_fixture(account, "inbound_parse_new")
    return Ticket.objects.get()


# --- the verdict -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spf", "dkim", "envelope_from", "from_address", "authenticated", "summary"),
    [
        ("pass", "{@example.org : pass}", "jane@example.org", "jane@example.org", True,
         "SPF pass, DKIM pass"),
        ("fail", "{@example.org : fail}", "jane@example.org", "jane@example.org", False,
         "SPF fail, DKIM fail"),
        # one aligned pass is enough, even when the other result is missing
        ("", "{@example.org : pass}", "", "jane@example.org", True, "SPF missing, DKIM pass"),
        ("pass", "", "jane@example.org", "jane@example.org", True, "SPF pass, DKIM missing"),
        # missing counts as not passing: both missing is not authenticated
        ("", "", "", "jane@example.org", False, "SPF missing, DKIM missing"),
        ("softfail", "none", "jane@example.org", "jane@example.org", False,
         "SPF softfail, DKIM none"),
        # passes for the attacker's own domain say nothing about the From address
        ("pass", "{@evil.test : pass}", "bounce@evil.test", "jane@example.org", False,
         "SPF pass for evil.test, DKIM pass for evil.test"),
        ("pass", "{@example.org.evil.test : pass}", "x@example.org.evil.test",
         "jane@example.org", False,
         "SPF pass for example.org.evil.test, DKIM pass for example.org.evil.test"),
        # several signatures: one aligned pass is enough
        ("softfail", "{@sendgrid.net : pass, @example.org : pass}", "b@sendgrid.net",
         "jane@example.org", True, "SPF softfail, DKIM pass for sendgrid.net / pass"),
        # relaxed alignment: a parent or child domain, never a sibling
        ("none", "{@example.org : pass}", "", "jane@mail.example.org", True,
         "SPF none, DKIM pass"),
        ("none", "{@news.example.org : pass}", "", "jane@mail.example.org", False,
         "SPF none, DKIM pass for news.example.org"),
        ("PASS (sendgrid)", "{@EXAMPLE.ORG : Pass}", "Jane@Example.org", "jane@example.org",
         True, "SPF pass, DKIM pass"),
    ],
)  # fmt: skip
def test_sender_auth_needs_a_pass_aligned_with_the_from_domain(
    spf: str, dkim: str, envelope_from: str, from_address: str, authenticated: bool, summary: str
) -> None:
    verdict = sender_auth(
        from_address=from_address, spf=spf, dkim=dkim, envelope_from=envelope_from
    )
    assert (verdict.authenticated, verdict.summary) == (authenticated, summary)


def test_the_adapter_keeps_the_envelope_sender_for_spf_alignment(post_fixture: Any) -> None:
    post_fixture(make_account("email"), "inbound_parse_new")
    metadata = Message.objects.get().metadata
    assert (metadata["spf"], metadata["dkim"], metadata["envelope_from"]) == (
        "pass",
        "{@example.org : pass}",
        "jane.doe@example.org",
    )
    assert "suspicious" not in metadata
    assert not Ticket.objects.get().tags.exists()


# --- policy "mark" (the default) -----------------------------------------------------------------


def test_a_reply_from_another_customer_does_not_thread_into_the_claimed_ticket(
    post_fixture: Any,
) -> None:
    account = make_account("email")
    janes = _janes_ticket(post_fixture, account)
    before = counts()
    post_fixture(account, "inbound_parse_other_customer_reply")
    assert diff(before, counts()) == {
        "customers": 1,
        "identities": 1,
        "tickets": 1,
        "messages": 1,
        "events": 1,
    }
    assert janes.messages.count() == 1
    bobs = Ticket.objects.exclude(pk=janes.pk).get()
    assert bobs.customer.email == "bob@example.net"  # genuine: his own customer
    message = bobs.messages.get()
    assert message.metadata["suspicious"] == [_mismatch(janes)]
    assert list(bobs.tags.values_list("name", flat=True)) == ["suspicious-sender"]


def test_a_spoofed_reply_is_marked_and_kept_out_of_the_victims_ticket_and_identity(
    post_fixture: Any,
) -> None:
    account = make_account("email")
    janes = _janes_ticket(post_fixture, account)
    jane = janes.customer
    before = counts()
    post_fixture(account, "inbound_parse_spoofed_reply")
    # a guest customer and its own ticket; no identity, nothing added to Jane's ticket
    assert diff(before, counts()) == {"customers": 1, "tickets": 1, "messages": 1, "events": 1}
    assert janes.messages.count() == 1
    forged = Message.objects.get(channel_message_id="<forged-0001@mail.attacker.test>")
    assert forged.ticket != janes
    assert forged.metadata["suspicious"] == [FORGED, _mismatch(janes)]
    guest = forged.ticket.customer
    assert guest != jane
    assert (guest.email, guest.name) == ("", "Jane Doe (unverified: jane.doe@example.org)")
    assert not guest.identities.exists()
    assert list(jane.identities.values_list("external_id", flat=True)) == ["jane.doe@example.org"]
    assert forged.ticket.origin_platform_id == "jane.doe@example.org"  # replies go to her
    assert list(forged.ticket.tags.values_list("name", flat=True)) == ["suspicious-sender"]


def test_an_unverified_from_never_links_to_the_existing_customer_of_that_address(
    post_fixture: Any,
) -> None:
    existing = Customer.objects.create(name="Jane D.", email="Jane.Doe@example.org")
    account = make_account("email")
    body = fixture_load("email", "inbound_parse_spoofed_reply").body
    body = body.replace(b"In-Reply-To: <CAHqs2r1ExampleFirst@mail.example.org>\n", b"")
    body = body.replace(b"References: <CAHqs2r1ExampleFirst@mail.example.org>", b"X-No: refs")
    before = counts()
    post_fixture(account, "inbound_parse_spoofed_reply", body=body)
    assert diff(before, counts()) == {"customers": 1, "tickets": 1, "messages": 1, "events": 1}
    ticket = Ticket.objects.get()
    assert ticket.customer != existing
    assert ticket.messages.get().metadata["suspicious"] == [FORGED]  # no thread claimed
    assert not ChannelIdentity.objects.exists()
    # the genuine owner's mail still links to her customer (and creates her identity)
    post_fixture(account, "inbound_parse_new")
    assert Ticket.objects.latest("id").customer == existing
    assert ChannelIdentity.objects.get().customer == existing


def test_a_subject_token_of_another_customers_ticket_is_marked(post_fixture: Any) -> None:
    account = make_account("email")
    janes = _janes_ticket(post_fixture, account)
    body = fixture_load("email", "inbound_parse_other_customer_reply").body
    body = body.replace(b"<CAHqs2r1ExampleFirst@mail.example.org>", b"<unknown@x>")
    body = body.replace(
        b'name="subject"\r\n\r\nRe: Order 1234 arrived broken',
        f'name="subject"\r\n\r\nRe: Order 1234 arrived broken [{janes.number}]'.encode(),
    )
    post_fixture(account, "inbound_parse_other_customer_reply", body=body)
    assert janes.messages.count() == 1
    assert Message.objects.latest("id").metadata["suspicious"] == [_mismatch(janes)]


def test_an_unverified_sender_threads_only_into_its_own_unverified_thread(
    post_fixture: Any,
) -> None:
    account = make_account("email")
    first = fixture_load("email", "inbound_parse_spoofed_reply").body
    first = first.replace(b"In-Reply-To: <CAHqs2r1ExampleFirst@mail.example.org>\n", b"")
    first = first.replace(b"References: <CAHqs2r1ExampleFirst@mail.example.org>", b"X-No: x")
    post_fixture(account, "inbound_parse_spoofed_reply", body=first)
    guest_ticket = Ticket.objects.get()
    second = fixture_load("email", "inbound_parse_spoofed_reply").body
    second = second.replace(
        b"CAHqs2r1ExampleFirst@mail.example.org", b"forged-0001@mail.attacker.test"
    )
    second = second.replace(b"Message-ID: <forged-0001@", b"Message-ID: <forged-0002@")
    post_fixture(account, "inbound_parse_spoofed_reply", body=second)
    assert Ticket.objects.count() == 1
    assert guest_ticket.messages.count() == 2
    assert guest_ticket.messages.latest("id").metadata["suspicious"] == [FORGED]
    # the genuine owner replying to that thread is not appended to the guest's ticket
    genuine = fixture_load("email", "inbound_parse_reply").body.replace(
        b"CAHqs2r1ExampleFirst@mail.example.org", b"forged-0001@mail.attacker.test"
    )
    post_fixture(account, "inbound_parse_reply", body=genuine)
    assert guest_ticket.messages.count() == 2
    assert Message.objects.latest("id").metadata["suspicious"] == [_mismatch(guest_ticket)]


def test_the_owners_own_reply_still_threads(post_fixture: Any) -> None:
    account = make_account("email")
    janes = _janes_ticket(post_fixture, account)
    post_fixture(account, "inbound_parse_reply")
    assert Ticket.objects.count() == 1
    assert "suspicious" not in janes.messages.latest("id").metadata


def test_the_timeline_and_the_inbox_show_the_suspicious_badge(
    post_fixture: Any, supervisor: Any
) -> None:
    account = make_account("email")
    _janes_ticket(post_fixture, account)
    post_fixture(account, "inbound_parse_spoofed_reply")
    forged = Message.objects.get(channel_message_id="<forged-0001@mail.attacker.test>")
    browser = Client()
    browser.force_login(supervisor)
    page = browser.get(f"/tickets/{forged.ticket.number}/").content.decode()
    assert '<span class="badge suspicious">Suspicious</span> SPF fail, DKIM fail / sender does' in (
        page
    )
    inbox = browser.get("/?view=all").content.decode()
    assert inbox.count('<span class="badge suspicious"') == 1
    filtered = browser.get("/?view=all&tag=suspicious-sender").content.decode()
    assert forged.ticket.number in filtered
    assert filtered.count('class="ticket-row') == 1


# --- policy "reject" -----------------------------------------------------------------------


def test_reject_quarantines_the_delivery_and_a_supervisor_can_release_it(
    post_fixture: Any, settings: Any, supervisor: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.CHANNELS_EMAIL_AUTH_POLICY = "reject"
    account = make_account("email")
    janes = _janes_ticket(post_fixture, account)
    before = counts()
    response = post_fixture(account, "inbound_parse_spoofed_reply")
    assert response.status_code == 200  # acknowledged: SendGrid must not retry
    assert diff(before, counts()) == {"events": 1}
    event = InboundEvent.objects.latest("id")
    assert event.status == "quarantined"
    assert event.summary["quarantined"] == 1
    assert event.summary["quarantine_reasons"] == [FORGED]
    # a genuine sender replying to someone else's thread is quarantined too
    post_fixture(account, "inbound_parse_other_customer_reply")
    other = InboundEvent.objects.latest("id")
    assert (other.status, other.summary["quarantine_reasons"]) == (
        "quarantined",
        [_mismatch(janes)],
    )
    assert diff(before, counts()) == {"events": 2}
    # re-processing keeps it quarantined; releasing creates it, marked
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.inbound_event_reprocess(event=event)
    assert len(callbacks) == 1
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("quarantined", 1)
    assert diff(before, counts()) == {"events": 2}
    with django_capture_on_commit_callbacks(execute=True):
        assert services.inbound_event_release(event=event, actor=supervisor)
    event.refresh_from_db()
    assert (event.status, event.summary["released_by"]) == ("processed", "supervisor")
    forged = Message.objects.get(channel_message_id="<forged-0001@mail.attacker.test>")
    assert forged.ticket != janes
    assert forged.metadata["suspicious"] == [FORGED, _mismatch(janes)]
    assert not services.inbound_event_release(event=event, actor=supervisor)  # done already


def test_supervisors_see_quarantined_events_in_the_admin_and_release_them(
    post_fixture: Any, settings: Any, supervisor: Any, agent: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    settings.CHANNELS_EMAIL_AUTH_POLICY = "reject"
    account = make_account("email")
    post_fixture(account, "inbound_parse_spoofed_reply")
    event = InboundEvent.objects.get()
    refused = Client()
    refused.force_login(agent)
    assert refused.get("/admin/channels_app/inboundevent/").status_code == 302  # to login
    type(supervisor).objects.filter(pk=supervisor.pk).update(is_superuser=True)
    browser = Client()
    browser.force_login(supervisor)
    url = "/admin/channels_app/inboundevent/"
    listing = browser.get(url, {"status__exact": "quarantined"})
    assert listing.status_code == 200
    assert f"/admin/channels_app/inboundevent/{event.pk}/change/" in listing.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(url, {"action": "release", "_selected_action": [event.pk]})
    event.refresh_from_db()
    assert event.status == "processed"
    assert Message.objects.get().metadata["suspicious"] == [FORGED]
    audit = AuditLog.objects.get(action="inbound_event.release")
    assert (audit.actor, audit.object_id, audit.details["reasons"]) == (
        supervisor,
        str(event.pk),
        [FORGED],
    )


# --- policy "off" --------------------------------------------------------------------------


def test_off_keeps_the_old_behaviour(post_fixture: Any, settings: Any) -> None:
    settings.CHANNELS_EMAIL_AUTH_POLICY = "off"
    account = make_account("email")
    janes = _janes_ticket(post_fixture, account)
    post_fixture(account, "inbound_parse_spoofed_reply")
    assert Ticket.objects.count() == 1
    assert janes.messages.count() == 2
    assert "suspicious" not in janes.messages.latest("id").metadata


# --- single and drain paths agree ------------------------------------------------------------


def _receive_all(account: Any) -> list[int]:
    names = [
        "inbound_parse_new",
        "inbound_parse_spoofed_reply",
        "inbound_parse_reply",
        "inbound_parse_other_customer_reply",
    ]
    for name in names:
        fixture = fixture_load("email", name)
        headers = {k.lower(): v for k, v in signed_headers(account, fixture).items()}
        services.inbound_receive(
            account=account,
            request=WebhookRequest(headers=headers, body=fixture.body, query={}),
        )
    return list(InboundEvent.objects.order_by("id").values_list("id", flat=True))


def _outcome() -> list[tuple[str, str, str, list[str]]]:
    first = Ticket.objects.order_by("id").first()
    return [
        (
            m.channel_message_id or "",
            m.ticket.customer.email or m.ticket.customer.name,
            m.ticket.subject,
            [r.replace(first.number, "<first>") for r in m.metadata.get("suspicious", [])]
            if first
            else [],
        )
        for m in Message.objects.select_related("ticket__customer").order_by("id")
    ]


def test_a_drain_and_one_by_one_processing_give_the_same_outcome() -> None:
    """One drain batch shares a customer cache keyed by address: the forged message must
    not pick Jane's customer from it (nor leave a guest in it for Jane's next mail)."""
    message = InboundMessage(external_message_id="<x@y>", sender_id="a@b.test", text="hi")
    assert not bulk._message_is_plain("email", message)  # never the bulk path

    account = make_account("email")
    for event_id in _receive_all(account):
        services.inbound_event_process(event_id=event_id)
    one_by_one = _outcome()
    Message.objects.all().delete()
    Ticket.objects.all().delete()
    ChannelIdentity.objects.all().delete()
    Customer.objects.all().delete()
    InboundEvent.objects.all().delete()

    _receive_all(account)
    assert services.inbound_events_drain(account_id=account.pk).taken == 4
    drained = _outcome()
    assert drained == one_by_one
    mismatch_first = "sender does not match the customer of <first>, which it replies to"
    assert Ticket.objects.order_by("id")[0].customer.email == "jane.doe@example.org"
    assert drained == [
        ("<CAHqs2r1ExampleFirst@mail.example.org>", "jane.doe@example.org",
         "Order 1234 arrived broken", []),
        ("<forged-0001@mail.attacker.test>", "Jane Doe (unverified: jane.doe@example.org)",
         "Re: Order 1234 arrived broken", [FORGED, mismatch_first]),
        ("<CAHqs2r1ExampleSecond@mail.example.org>", "jane.doe@example.org",
         "Order 1234 arrived broken", []),
        ("<CAbob0001@mail.example.net>", "bob@example.net", "Re: Order 1234 arrived broken",
         [mismatch_first]),
    ]  # fmt: skip


# --- no automatic mail to the address a forged sender named ----------------------------------


@responses.activate
def test_resolving_a_forged_senders_ticket_sends_no_survey_to_the_address_it_named(
    post_fixture: Any,
    agent: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Resolving is how agents dispose of spam: the satisfaction survey must not then mail
    the impersonated address, in our signed mail, with the attacker's subject."""
    account = make_account("email")
    post_fixture(account, "inbound_parse_spoofed_reply")
    forged = Ticket.objects.get()
    assert forged.customer.email == ""  # a guest
    before = counts()
    with (
        caplog.at_level(logging.INFO, logger="channels_app.services.csat_survey"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        ticket_update(ticket=forged, status="resolved", actor=agent)
    assert diff(before, counts()) == {"messages": 1}  # the status change's entry only
    assert not Message.objects.filter(metadata__has_key="csat_survey").exists()
    assert not Delivery.objects.exists()
    assert len(responses.calls) == 0
    assert (
        f"No satisfaction survey for {forged.number}: the e-mail sender is not verified "
        "(a guest customer or a suspicious sender)"
    ) in caplog.text
    assert "jane.doe@example.org" not in caplog.text


@responses.activate
def test_no_survey_for_a_ticket_marked_suspicious_even_with_a_known_customer(
    post_fixture: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Bob's genuine mail claimed Jane's thread: his own ticket, marked suspicious. Nothing
    is mailed automatically from a ticket marked so (an agent may still reply)."""
    account = make_account("email")
    janes = _janes_ticket(post_fixture, account)
    post_fixture(account, "inbound_parse_other_customer_reply")
    bobs = Ticket.objects.exclude(pk=janes.pk).get()
    assert bobs.customer.email == "bob@example.net"
    with django_capture_on_commit_callbacks(execute=True):
        ticket_update(ticket=bobs, status="resolved", actor=agent)
    assert not Message.objects.filter(metadata__has_key="csat_survey").exists()
    assert len(responses.calls) == 0
    # the tag alone is enough (a message's mark since removed, or the tag set by hand)
    Message.objects.filter(ticket=bobs).update(metadata={})
    with django_capture_on_commit_callbacks(execute=True):
        ticket_update(ticket=bobs, status="open", actor=agent)
        ticket_update(ticket=bobs, status="resolved", actor=agent)
    assert not Message.objects.filter(metadata__has_key="csat_survey").exists()
    assert len(responses.calls) == 0
