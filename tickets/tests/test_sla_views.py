"""SLA in the workbench (inbox badge, views, sort; ticket page) and in the admin."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tickets import services
from tickets.models import BusinessCalendar, SlaPolicy, Ticket

pytestmark = pytest.mark.django_db


def _dt(value: datetime | None) -> datetime:
    assert value is not None
    return value


@pytest.fixture
def policy() -> SlaPolicy:
    cal = BusinessCalendar.objects.create(name="24/7", timezone="UTC", is_24_7=True)
    return SlaPolicy.objects.create(
        name="High 1h",
        priority="high",
        calendar=cal,
        first_response_minutes=60,
        resolution_minutes=480,
    )


@pytest.fixture
def agent_web(client, agent):
    client.force_login(agent)
    return client


def _ticket(customer, subject: str, minutes_ago: int = 0, priority: str = "high") -> Ticket:
    ticket = services.ticket_create(
        customer=customer, subject=subject, body="hi", priority=priority
    )
    if minutes_ago:
        delta = timedelta(minutes=minutes_ago)
        Ticket.objects.filter(pk=ticket.pk).update(
            created_at=ticket.created_at - delta,
            first_response_due_at=_dt(ticket.first_response_due_at) - delta,
            resolution_due_at=_dt(ticket.resolution_due_at) - delta,
        )
    return ticket


def _subjects(response) -> list[str]:
    return [t.subject for t in response.context["result"].tickets]


def _policy_form(*, calendar: int, **fields: str) -> dict[str, str]:
    """The admin change form of the "High 1h" policy, with ``fields`` changed."""
    return {
        "name": "High 1h",
        "is_active": "on",
        "priority": "high",
        "team": "",
        "channel": "",
        "calendar": str(calendar),
        "first_response_minutes": "60",
        "resolution_minutes": "480",
        "escalate_on": "breached",
        "escalate_to_team": "",
        **fields,
    }


def _count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_inbox_shows_time_left_or_overdue(agent_web, customer, policy):
    _ticket(customer, "Late one", minutes_ago=90)
    _ticket(customer, "Close call", minutes_ago=40)
    _ticket(customer, "Fresh")
    _ticket(customer, "No policy", priority="low")
    html = agent_web.get("/?view=all").content.decode()
    assert '<th scope="col">SLA</th>' in html
    assert '<span class="badge sla sla-breached" title="Was due ' in html
    assert ">Overdue 30m</span>" in html
    assert '<span class="badge sla sla-risk"' in html
    assert ">19m left</span>" in html or ">20m left</span>" in html
    assert '<span class="badge sla sla-ok"' in html
    assert html.count("badge sla ") == 3


def test_breached_and_at_risk_views_and_due_sort(agent_web, customer, policy):
    _ticket(customer, "Late one", minutes_ago=90)
    _ticket(customer, "Later one", minutes_ago=120)
    _ticket(customer, "Close call", minutes_ago=40)
    _ticket(customer, "Fresh")
    _ticket(customer, "No policy", priority="low")
    breached = agent_web.get("/?view=sla_breached&sort=sla_due")
    assert _subjects(breached) == ["Later one", "Late one"]
    assert _subjects(agent_web.get("/?view=sla_risk")) == ["Close call"]
    by_due = _subjects(agent_web.get("/?view=all&sort=sla_due"))
    assert by_due == ["Later one", "Late one", "Close call", "Fresh", "No policy"]
    html = agent_web.get("/?view=all").content.decode()
    assert "SLA breached" in html
    assert "SLA at risk" in html
    assert "SLA due soonest" in html


def test_sla_views_cost_no_more_queries_than_the_plain_inbox(agent_web, customer, policy):
    for i in range(5):
        _ticket(customer, f"Late {i}", minutes_ago=90)
        _ticket(customer, f"Soon {i}", minutes_ago=40)
    plain = _count(agent_web, "/?view=all")
    assert _count(agent_web, "/?view=sla_breached&sort=sla_due") == plain
    assert _count(agent_web, "/?view=sla_risk") == plain


def test_ticket_page_shows_the_targets(agent_web, customer, policy, agent):
    ticket = _ticket(customer, "Late one", minutes_ago=90)
    html = agent_web.get(f"/tickets/{ticket.number}/").content.decode()
    assert "<dt>SLA</dt><dd>High 1h " in html
    assert "<dt>First response</dt><dd>Due <time" in html
    assert "<dt>Resolution</dt><dd>Due <time" in html
    assert "Overdue 30m" in html
    services.message_add(ticket=ticket, body="On it", author_user=agent)
    html = agent_web.get(f"/tickets/{ticket.number}/").content.decode()
    assert "<dt>First response</dt><dd>Missed · sent" in html
    services.ticket_update(ticket=ticket, status="resolved")
    html = agent_web.get(f"/tickets/{ticket.number}/").content.decode()
    assert "<dt>SLA</dt><dd>High 1h</dd>" in html  # no clock left to show ("High 1h —" before)


def test_agents_cannot_edit_policies_supervisors_can(client, agent, supervisor, policy):
    client.force_login(agent)
    for url in (
        "/admin/tickets/slapolicy/",
        f"/admin/tickets/slapolicy/{policy.pk}/change/",
        "/admin/tickets/businesscalendar/add/",
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]
    client.force_login(supervisor)
    assert client.get("/admin/tickets/slapolicy/").status_code == 200
    response = client.post(
        "/admin/tickets/businesscalendar/add/",
        {
            "name": "Office",
            "timezone": "Europe/Berlin",
            "hours-TOTAL_FORMS": "1",
            "hours-INITIAL_FORMS": "0",
            "hours-0-weekday": "0",
            "hours-0-opens_at": "09:00",
            "hours-0-closes_at": "17:00",
            "holidays-TOTAL_FORMS": "1",
            "holidays-INITIAL_FORMS": "0",
            "holidays-0-date": "2026-12-25",
            "holidays-0-name": "Christmas",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    office = BusinessCalendar.objects.get(name="Office")
    assert [str(h) for h in office.hours.all()] == ["Monday 09:00–17:00"]
    assert office.holidays.get().name == "Christmas"
    bad = client.post(
        "/admin/tickets/businesscalendar/add/",
        {
            "name": "Nowhere",
            "timezone": "Mars/Olympus",
            "hours-TOTAL_FORMS": "0",
            "hours-INITIAL_FORMS": "0",
            "holidays-TOTAL_FORMS": "0",
            "holidays-INITIAL_FORMS": "0",
        },
    )
    assert bad.status_code == 200
    assert "Unknown time zone" in bad.content.decode()
    response = client.post(
        f"/admin/tickets/slapolicy/{policy.pk}/change/",
        _policy_form(calendar=office.pk, first_response_minutes="30", resolution_minutes=""),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    policy.refresh_from_db()
    assert (policy.first_response_minutes, policy.resolution_minutes) == (30, None)
    assert policy.calendar == office


def test_the_api_gives_the_due_times(agent_client, customer, policy):
    ticket = _ticket(customer, "Late one", minutes_ago=90)
    body = agent_client.get(f"/api/tickets/{ticket.pk}").json()
    stored = Ticket.objects.get(pk=ticket.pk)
    assert body["first_response_due_at"] == _dt(stored.first_response_due_at).isoformat().replace(
        "+00:00", "Z"
    )
    assert body["resolution_due_at"] is not None


def test_a_policy_edited_in_the_admin_moves_the_open_tickets_due_times(
    client, supervisor, customer, policy, django_capture_on_commit_callbacks
):
    ticket = _ticket(customer, "Still open")
    client.force_login(supervisor)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/admin/tickets/slapolicy/{policy.pk}/change/",
            _policy_form(calendar=policy.calendar_id, first_response_minutes="20"),
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    stored = Ticket.objects.get(pk=ticket.pk)
    assert _dt(stored.first_response_due_at) - stored.created_at == pytest.approx(
        timedelta(minutes=20), abs=timedelta(seconds=1)
    )
    # Deleting the policy (superusers may) leaves the ticket without due times.
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-1")
    client.force_login(root)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/tickets/slapolicy/{policy.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert Ticket.objects.get(pk=ticket.pk).first_response_due_at is None


def _calendar_form(name: str, *hours: tuple[str, str, str]) -> dict[str, str]:
    data = {
        "name": name,
        "timezone": "Europe/London",
        "hours-TOTAL_FORMS": str(len(hours)),
        "hours-INITIAL_FORMS": "0",
        "holidays-TOTAL_FORMS": "0",
        "holidays-INITIAL_FORMS": "0",
    }
    for i, (day, opens, closes) in enumerate(hours):
        data |= {
            f"hours-{i}-weekday": day,
            f"hours-{i}-opens_at": opens,
            f"hours-{i}-closes_at": closes,
        }
    return data


def test_the_admin_refuses_overlapping_business_hours_naming_the_day(client, supervisor):
    client.force_login(supervisor)
    for hours in (
        (("0", "09:00", "17:00"), ("0", "09:00", "17:00")),  # the same row twice
        (("0", "09:00", "17:00"), ("0", "12:00", "13:00"), ("1", "09:00", "17:00")),
    ):
        response = client.post(
            "/admin/tickets/businesscalendar/add/", _calendar_form("Dup", *hours)
        )
        assert response.status_code == 200
        page = response.content.decode()
        assert "Business hours may not overlap on the same day" in page
        assert "Monday: 09:00–17:00 overlaps" in page
        assert "Tuesday" not in page.split("may not overlap", 1)[1].split("</ul>", 1)[0]
        assert not BusinessCalendar.objects.filter(name="Dup").exists()
    # meeting intervals (a lunch break of none) and the same hours on two days are fine
    response = client.post(
        "/admin/tickets/businesscalendar/add/",
        _calendar_form(
            "Split", ("0", "09:00", "12:00"), ("0", "12:00", "17:00"), ("1", "09:00", "17:00")
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert BusinessCalendar.objects.get(name="Split").hours.count() == 3


def test_the_ticket_page_gives_due_times_with_their_zone(agent_web, customer, policy, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    ticket = _ticket(customer, "Zoned")
    html = agent_web.get(f"/tickets/{ticket.number}/").content.decode()
    for label in ("First response", "Resolution"):
        found = re.search(rf"<dt>{label}</dt><dd>Due <time [^>]*>([^<]*)</time>", html)
        assert found is not None, label
        assert re.fullmatch(r"\w{3} \d{1,2}, \d\d:\d\d (CET|CEST)", found[1]), found[1]
