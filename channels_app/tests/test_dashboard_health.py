"""The dashboard's "Intake and delivery health" widget (``intake_health``): what the text
channels kept instead of losing, counted per state, with the dashboard's filters, links to
the admin lists of those rows, its JSON and CSV, and never a message's text or a customer."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from channels_app.models import InboundEvent, InboundStatus
from channels_app.tests.conftest import make_account
from knowledge.models import ObjectEvent
from support.delivery.models import Delivery
from support.models import OutboxEvent
from tickets.context.models import ContextDeadLetter
from tickets.models import Attachment, Customer, Message, Team, Ticket

pytestmark = pytest.mark.django_db

SECRET_TEXT = "my card number is 4111 1111"
CUSTOMER_EMAIL = "ada.lovelace@example.org"


@pytest.fixture
def sup(supervisor: Any) -> Client:
    client = Client()
    client.force_login(supervisor)
    return client


def _ticket(team: Team, channel: str) -> Ticket:
    customer, _ = Customer.objects.get_or_create(email=CUSTOMER_EMAIL, defaults={"name": "Ada"})
    return Ticket.objects.create(customer=customer, subject="Private", team=team, channel=channel)


def _reply(
    ticket: Ticket, *, status: str = "failed", failed_ago: timedelta | None = None
) -> Message:
    failed_at = timezone.now() - (failed_ago or timedelta(hours=1)) if status == "failed" else None
    return Message.objects.create(
        ticket=ticket,
        direction="outbound",
        kind="public",
        channel=ticket.channel,
        body_text=SECRET_TEXT,
        delivery_status=status,
        delivery_error=f"could not reach {CUSTOMER_EMAIL}",
        delivery_error_code="not_sent_in_time" if status == "failed" else "",
        failed_at=failed_at,
    )


def _attachment(message: Message, status: str, *, age: timedelta | None = None) -> Attachment:
    attachment = Attachment.objects.create(
        message=message, filename="passport.jpg", download_status=status
    )
    if age:
        Attachment.objects.filter(pk=attachment.pk).update(created_at=timezone.now() - age)
    return attachment


def _inbound(account: Any, status: str, n: int) -> None:
    for i in range(n):
        InboundEvent.objects.create(
            channel=account.channel,
            account=account,
            external_id=f"{status}-{i}",
            body=SECRET_TEXT.encode(),
            status=status,
        )


def world() -> dict[str, Team]:
    """Two teams; email and WhatsApp: every state the widget counts, and some it must not."""
    alpha = Team.objects.create(name="Alpha", slug="alpha")
    beta = Team.objects.create(name="Beta", slug="beta")
    email = make_account("email")
    whatsapp = make_account("whatsapp")
    _inbound(email, InboundStatus.DEAD, 2)
    _inbound(email, InboundStatus.QUARANTINED, 3)
    _inbound(whatsapp, InboundStatus.DEAD, 1)
    _inbound(whatsapp, InboundStatus.RETRYING, 4)
    _inbound(whatsapp, InboundStatus.PROCESSED, 5)  # not counted
    _inbound(email, InboundStatus.CLOSED, 1)  # a supervisor closed it: not counted

    email_alpha = _ticket(alpha, "email")
    whatsapp_beta = _ticket(beta, "whatsapp")
    _reply(email_alpha)
    _reply(email_alpha)
    _reply(whatsapp_beta)
    _reply(whatsapp_beta, failed_ago=timedelta(days=40))  # out of the range
    _reply(email_alpha, status="sent")  # not failed
    Message.objects.create(  # a customer's message: not a reply
        ticket=email_alpha, direction="inbound", channel="email", body_text=SECRET_TEXT
    )

    inbound_wa = Message.objects.create(
        ticket=whatsapp_beta, direction="inbound", channel="whatsapp", body_text=SECRET_TEXT
    )
    inbound_email = Message.objects.create(
        ticket=email_alpha, direction="inbound", channel="email", body_text=SECRET_TEXT
    )
    _attachment(inbound_wa, "failed")
    _attachment(inbound_wa, "failed", age=timedelta(days=40))  # out of the range
    _attachment(inbound_wa, "pending", age=timedelta(days=40))  # pending: counted, now
    _attachment(inbound_email, "pending")
    _attachment(inbound_email, "stored")  # not counted

    Delivery.objects.create(target_kind="channel_reply", idempotency_key="a", status="dead")
    Delivery.objects.create(target_kind="channel_reply", idempotency_key="b", status="dead")
    Delivery.objects.create(target_kind="alert_email", idempotency_key="c", status="dead")
    Delivery.objects.create(target_kind="channel_reply", idempotency_key="d", status="succeeded")

    now = timezone.now()
    ObjectEvent.objects.create(
        event_key="k1", via="http", bucket="b", key="a.md", action="upsert", failed_at=now
    )
    ObjectEvent.objects.create(event_key="k2", via="http", bucket="b", key="b.md", action="upsert")
    ObjectEvent.objects.create(  # failed once, then re-driven and applied: not counted
        event_key="k3",
        via="http",
        bucket="b",
        key="c.md",
        action="upsert",
        failed_at=now,
        processed_at=now,
    )
    # outbox events the relay gave up on (failed_at), one re-driven since, one pending
    for failed_at in (now, now - timedelta(days=40), None):
        OutboxEvent.objects.create(
            event_type="ticket.updated",
            aggregate_type="ticket",
            aggregate_id=str(email_alpha.pk),
            failed_at=failed_at,
            attempts=10 if failed_at else 2,
        )
    # customer-context work given up: a history entry and a survey, whatever their age
    for kind, task in (
        ("interaction", "tickets.context.tasks.interaction_record_for_message_task"),
        ("csat_survey", "channels_app.tasks.csat_survey_send_task"),
    ):
        ContextDeadLetter.objects.create(kind=kind, task=task, args=[1], error="x")
    return {"alpha": alpha, "beta": beta}


def _rows(body: dict[str, Any]) -> dict[str, list[Any]]:
    return {row[0]: row[1:] for row in body["rows"]}


def _stats(body: dict[str, Any]) -> dict[str, Any]:
    return {s["label"]: s["value"] for s in body["stats"]}


def test_counts_every_state_by_channel_and_kind(sup):
    world()
    body = sup.get("/dashboard/data/intake_health/?range=30d").json()
    assert body["columns"] == [
        "Channel or delivery kind",
        "Inbound dead letters",
        "Quarantined",
        "Inbound retrying",
        "Replies failed",
        "Media failed",
        "Media pending",
        "Delivery dead letters",
    ]
    rows = _rows(body)
    assert rows["Email"] == [2, 3, 0, 2, 0, 1, None]
    assert rows["WhatsApp"] == [1, 0, 4, 1, 1, 1, None]
    assert rows["Web chat"] == [0, 0, 0, 0, 0, 0, None]  # every text channel listed
    assert "Phone" not in rows  # calls have their own widget
    assert rows["Outbound: channel_reply"] == [None, None, None, None, None, None, 2]
    assert rows["Outbound: alert_email"] == [None, None, None, None, None, None, 1]
    assert _stats(body) == {
        "Inbound dead letters": 3,
        "Quarantined e-mail": 3,
        "Replies failed": 3,
        "Media downloads failed": 1,
        "KB events failed": 1,
        "Delivery dead letters": 3,
        "Outbox events failed": 2,  # now, however old
        "Customer-context work given up": 2,  # now, however old
    }
    assert body["chart"] == "stacked"
    assert "whatever the range" in body["note"]


def test_range_team_and_channel_filters(sup):
    teams = world()
    # 90 days: the 40-day-old failures count too; the "now" figures do not move
    stats = _stats(sup.get("/dashboard/data/intake_health/?range=90d").json())
    assert stats["Replies failed"] == 4
    assert stats["Media downloads failed"] == 2
    assert stats["Inbound dead letters"] == 3

    body = sup.get(f"/dashboard/data/intake_health/?range=30d&team={teams['alpha'].pk}").json()
    rows = _rows(body)
    # the team filter: replies and media by their ticket's team; inbound events have none
    assert rows["Email"] == [2, 3, 0, 2, 0, 1, None]
    assert rows["WhatsApp"] == [1, 0, 4, 0, 0, 0, None]
    assert _stats(body)["Replies failed"] == 2

    body = sup.get("/dashboard/data/intake_health/?range=30d&channel=whatsapp").json()
    rows = _rows(body)
    assert list(rows) == ["WhatsApp", "Outbound: alert_email", "Outbound: channel_reply"]
    assert rows["WhatsApp"] == [1, 0, 4, 1, 1, 1, None]
    stats = _stats(body)
    assert stats["Inbound dead letters"] == 1
    assert stats["Quarantined e-mail"] == 0
    assert stats["Delivery dead letters"] == 3  # no channel: the filter does not apply
    assert stats["KB events failed"] == 1
    assert stats["Outbox events failed"] == 2
    assert stats["Customer-context work given up"] == 2  # no channel either


def test_json_csv_and_page_show_no_message_text_or_customer(sup):
    world()
    json_text = sup.get("/dashboard/data/intake_health/?range=30d").content.decode()
    response = sup.get("/dashboard/data/intake_health/?range=30d&format=csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="intake_health_')
    csv_text = response.content.decode("utf-8-sig")
    fragment = sup.get("/dashboard/widgets/intake_health/?range=30d").content.decode()
    for text in (json_text, csv_text, fragment):
        assert SECRET_TEXT not in text
        assert CUSTOMER_EMAIL not in text
        assert "passport" not in text
        assert "not_sent_in_time" not in text
    rows = list(csv.reader(io.StringIO(csv_text)))
    assert rows[0][0] == "Channel or delivery kind"
    email = next(row for row in rows if row[0] == "Email")
    assert email == ["Email", "2", "3", "0", "2", "0", "1", ""]
    assert ["Outbound: channel_reply", "", "", "", "", "", "", "2"] in rows


def test_each_figure_links_to_the_admin_list_of_those_rows(sup):
    world()
    fragment = sup.get("/dashboard/widgets/intake_health/?range=30d&channel=email").content
    html = fragment.decode()
    assert (
        'href="/admin/channels_app/inboundevent/?status__exact=dead&amp;channel__exact=email"'
        in html
    )
    assert (
        "/admin/channels_app/inboundevent/?status__exact=quarantined&amp;channel__exact=email"
        in html
    )
    assert 'href="/admin/knowledge/objectevent/?state=failed"' in html
    assert 'href="/admin/delivery/delivery/?status__exact=dead"' in html
    assert 'href="/admin/support/outboxevent/?failed_at__isempty=0"' in html
    assert "/admin/tickets/message/?delivery_status__exact=failed" in html
    assert "/admin/tickets/attachment/?download_status__exact=failed" in html
    # the links are the page's only: never in the JSON
    body = sup.get("/dashboard/data/intake_health/?range=30d").json()
    assert all(set(s) == {"label", "value", "unit", "hint"} for s in body["stats"])

    # each link lists exactly the rows its figure counts
    links = _stat_links(sup.get("/dashboard/widgets/intake_health/?range=30d").content.decode())
    for label, expected in [
        ("inbound-dead-letters", 3),
        ("quarantined-e-mail", 3),
        ("replies-failed", 3),
        ("media-downloads-failed", 1),
        ("kb-events-failed", 1),
        ("delivery-dead-letters", 3),
        ("outbox-events-failed", 2),  # a supervisor's page, no model permission needed
    ]:
        response = sup.get(links[label])
        assert response.status_code == 200, label
        assert response.context["cl"].result_count == expected, label

    # several channels chosen: the links keep them
    query = "range=30d&channel=email&channel=whatsapp"
    links = _stat_links(sup.get(f"/dashboard/widgets/intake_health/?{query}").content.decode())
    for label, expected in [("inbound-dead-letters", 3), ("replies-failed", 3)]:
        assert "channel__in=email%2Cwhatsapp" in links[label]
        response = sup.get(links[label])
        assert response.context["cl"].result_count == expected, label
    links = _stat_links(
        sup.get("/dashboard/widgets/intake_health/?range=30d&channel=email").content.decode()
    )
    assert sup.get(links["inbound-dead-letters"]).context["cl"].result_count == 2
    assert sup.get(links["replies-failed"]).context["cl"].result_count == 2


def _stat_links(html: str) -> dict[str, str]:
    import html as html_lib
    import re

    return {
        slug: html_lib.unescape(url)
        for slug, url in re.findall(r'data-stat="([^"]+)"><a href="([^"]+)"', html)
    }


@pytest.mark.parametrize(
    "url",
    [
        "/dashboard/widgets/intake_health/",
        "/dashboard/data/intake_health/",
        "/dashboard/data/intake_health/?format=csv",
    ],
)
def test_agents_get_403(client, agent, url):
    world()
    client.force_login(agent)
    response = client.get(url)
    assert response.status_code == 403
    assert b"Outbound" not in response.content


def test_is_lazy_on_the_page_and_live_on_reply_failures(sup):
    html = sup.get("/dashboard/").content.decode()
    assert 'id="widget-intake_health"' in html
    assert 'data-live-events="message.delivery_updated"' in html
    start = html.index('id="widget-intake_health"')
    assert "data-lazy" in html[start : start + 2000]


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        (
            "SELECT count(*) FROM tickets_message WHERE direction = 'outbound' AND kind = "
            "'public' AND delivery_status = 'failed' AND failed_at >= now() - interval '7 days'",
            "message_reply_failed_idx",
        ),
        (
            "SELECT count(*) FROM tickets_attachment WHERE download_status = 'failed' "
            "AND created_at >= now() - interval '7 days'",
            "attachment_failed_idx",
        ),
    ],
)
def test_the_window_counts_can_use_their_partial_index(sql, index):
    """At 1M messages a sequential scan is what the planner must not be left with: the
    index exists and fits the query (seq scans off, as a large table would make them)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert index in plan, plan
