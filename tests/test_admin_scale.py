"""The supervisor admin at production scale (100,000 tickets, a million messages and
deliveries): no page reads a whole big table, whatever its size, and no action runs over
an unbounded selection in the web request. Each test grows a table and checks that what a
page does stays the same (queries, their shape, the page's size)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from support.delivery.models import Delivery
from tickets import services
from tickets.models import Customer, Message, Tag, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(supervisor: Any) -> Client:
    """The admin as the project's supervisor fixture (staff, in the Supervisors group)."""
    client = Client()
    client.force_login(supervisor)
    return client


def _messages(ticket: Ticket, n: int, text: str = "Still waiting") -> None:
    Message.objects.bulk_create(
        Message(ticket=ticket, direction="inbound", channel="email", body_text=f"{text} {i}")
        for i in range(n)
    )


def _page(client: Client, url: str) -> tuple[str, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return response.content.decode(), [q["sql"] for q in captured.captured_queries]


def test_the_ticket_page_shows_the_latest_messages_not_all(
    client: Client, customer: Customer
) -> None:
    """A thread of hundreds of messages (a bot loop, years of e-mail) was one form per
    message on the ticket's admin page, read without a limit: megabytes. Now the latest
    50, the same page whatever the thread's length, and a link to all of them."""
    ticket = services.ticket_create(customer=customer, subject="Where is it?", body="Hello?")
    url = reverse("admin:tickets_ticket_change", args=[ticket.pk])
    _messages(ticket, 60)
    short, _ = _page(client, url)
    _messages(ticket, 240, text="Later")
    long, queries = _page(client, url)
    shown = re.findall(r'href="/admin/tickets/message/(\d+)/change/"', long)
    assert len(shown) == 50
    assert "The latest 50 of 301 messages" in long
    assert f"/admin/tickets/message/?ticket__id__exact={ticket.pk}" in long
    assert abs(len(long) - len(short)) < 2_000  # the page does not grow with the thread
    unbounded = [
        q
        for q in queries
        if 'FROM "tickets_message"' in q and "LIMIT" not in q and "COUNT" not in q
    ]
    assert not unbounded, unbounded


def test_text_column_filters_read_recent_rows_not_the_table(client: Client) -> None:
    """A list filter on a plain text column (a delivery's error code) offered every
    distinct value: ``SELECT DISTINCT`` over the whole table on every load. It reads the
    latest rows now (the primary key's index, a LIMIT) and still offers their values."""
    Delivery.objects.bulk_create(
        Delivery(
            target_kind="channel_reply",
            target_key=f"whatsapp:+4477009{i:05d}",
            idempotency_key=f"scale-{i}",
            error_code="provider_4xx" if i % 2 else "",
        )
        for i in range(40)
    )
    page, queries = _page(client, reverse("admin:delivery_delivery_changelist"))
    distinct = [q for q in queries if "DISTINCT" in q and 'FROM "delivery_delivery"' in q]
    assert not distinct, distinct
    assert "error_code=provider_4xx" in page or "error_code__exact=provider_4xx" in page


def test_a_select_all_action_is_refused_over_the_bound(
    client: Client, customer: Customer, settings: Any
) -> None:
    """ "Select all" and an action ran a service call per row inside the web request (a
    gateway timeout over 100,000 tickets, an unknown part changed). Over
    ``ADMIN_ACTION_MAX_ROWS`` nothing is changed and the page says why; within it the
    action runs as before."""
    settings.ADMIN_ACTION_MAX_ROWS = 3
    tickets = [
        services.ticket_create(customer=customer, subject=f"T{i}", body="x") for i in range(4)
    ]
    url = reverse("admin:tickets_ticket_changelist")
    data = {"action": "set_priority_high", "index": "0", ACTION_CHECKBOX_NAME: [tickets[0].pk]}
    response = client.post(url, {**data, "select_across": "1"}, follow=True)
    assert "at most 3 rows at a time and 4 are selected" in response.content.decode()
    assert not Ticket.objects.filter(priority="high").exists()

    client.post(url, {**data, ACTION_CHECKBOX_NAME: [t.pk for t in tickets[:3]]})
    assert Ticket.objects.filter(priority="high").count() == 3


def test_message_search_reads_no_body_and_finds_by_ticket_words_and_ids(
    client: Client, customer: Customer
) -> None:
    """Message search was ``UPPER(body_text) LIKE '%…%'`` over every message. It looks in
    the tickets' indexed search now, and at exact ids."""
    wanted = services.ticket_create(customer=customer, subject="Refund for order 1", body="x")
    other = services.ticket_create(customer=customer, subject="Password reset", body="y")
    _messages(other, 3, text="refund please")  # in a body only: no longer a scan's match
    url = reverse("admin:tickets_message_changelist")
    page, queries = _page(client, url + "?q=refund")
    assert not [q for q in queries if "LIKE" in q and "body_text" in q]
    listed = set(map(int, re.findall(r'href="/admin/tickets/message/(\d+)/change/', page)))
    assert listed == set(wanted.messages.values_list("pk", flat=True))
    page, _ = _page(client, url + f"?q=T-{other.pk:06d}")
    listed = set(map(int, re.findall(r'href="/admin/tickets/message/(\d+)/change/', page)))
    assert listed == set(other.messages.values_list("pk", flat=True))


def test_ticket_search_uses_the_index_and_numbers(client: Client, customer: Customer) -> None:
    wanted = services.ticket_create(customer=customer, subject="Broken hinge", body="x")
    services.ticket_create(customer=customer, subject="Late parcel", body="y")
    url = reverse("admin:tickets_ticket_changelist")
    for q in ("hinge", f"T-{wanted.pk:06d}", str(wanted.pk)):
        page, queries = _page(client, url + f"?q={q}")
        assert not [s for s in queries if "LIKE" in s and '"subject"' in s], q
        assert "Broken hinge" in page, q
        assert "Late parcel" not in page, q


@pytest.mark.parametrize(
    ("changelist", "term"),
    [
        ("admin:delivery_delivery_changelist", "abc"),
        ("admin:delivery_delivery_changelist", "9" * 40),
        ("admin:routing_routingdecision_changelist", "abc"),
        ("admin:routing_routingdecision_changelist", "9" * 40),
        ("admin:channels_app_inboundevent_changelist", "x" * 5000),
        ("admin:calls_callevent_changelist", "abc"),
        ("admin:support_outboxevent_changelist", "abc"),
        ("admin:support_auditlog_changelist", "abc"),
    ],
)
def test_exact_searches_take_any_text(admin_client: Client, changelist: str, term: str) -> None:
    """Big tables are searched by exact values; a value a column cannot hold (letters for
    an id, a number past bigint, text past the column) finds nothing, never a 500."""
    _, queries = _page(admin_client, reverse(changelist) + f"?q={term}")
    assert not [q for q in queries if "LIKE" in q or "UPPER(" in q]


def test_exact_search_finds_the_row(client: Client) -> None:
    Delivery.objects.bulk_create(
        Delivery(target_kind="channel_reply", target_key=f"t{i}", idempotency_key=f"key-{i}")
        for i in range(3)
    )
    url = reverse("admin:delivery_delivery_changelist")
    page, _ = _page(client, url + "?q=key-1")
    assert "key-1" in page
    assert "key-2" not in page
    page, _ = _page(client, url + "?q=key")  # part of a key: exact search finds nothing
    assert "key-1" not in page


def test_the_ticket_form_does_not_list_every_tag(client: Client, customer: Customer) -> None:
    """Tags are free text: the ticket form offered every one of them in a select."""
    Tag.objects.bulk_create(Tag(name=f"tag-{i}") for i in range(120))
    ticket = services.ticket_create(customer=customer, subject="Tagged", body="x", tags=["vip"])
    page, _ = _page(client, reverse("admin:tickets_ticket_change", args=[ticket.pk]))
    assert "tag-77" not in page
    assert "vip" in page  # the ticket's own tag, as a chosen value
