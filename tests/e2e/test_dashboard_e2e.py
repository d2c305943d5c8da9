"""The supervisor dashboard in a real browser against a real ASGI server: demo data in
every chart, the date-range and team filters, a new ticket raising the backlog live, and
an agent refused."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest

from calls.demo import load_demo_calls
from routing.models import FeedbackVerdict, RoutingDecision, RoutingFeedback
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_workbench_e2e import LIVE_TIMEOUT_MS, _call, _wait_live
from tickets import services
from tickets.demo import load_demo
from tickets.models import Customer, Team, Ticket

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests-1"
WIDGETS = [
    "backlog",
    "flow",
    "channels",
    "response_times",
    "sla",
    "csat",
    "routing",
    "routing_time",  # the four routing breakdowns are lazy: loaded after the page
    "routing_confidence",
    "routing_teams",
    "routing_priority",
    "calls",
    "agents",
]


def _demo_world() -> None:
    """The product's demo (tickets, CSAT, calls, routing history) plus more routing
    decisions and verdicts (a worker makes those in `make run`; tests run without it)."""
    load_demo(password=PASSWORD, progress=lambda _: None)
    load_demo_calls(progress=lambda _: None)
    undecided = Ticket.objects.filter(routing_decisions__isnull=True).order_by("pk")
    for i, ticket in enumerate(undecided[:40]):
        decision = RoutingDecision.objects.create(
            ticket=ticket,
            priority=ticket.priority,
            confidence=0.6 + (i % 4) / 10,
            provider="local",
            correlation_id=ticket.correlation_id,
            requires_manual_review=i % 5 == 0,
            cost_usd=Decimal("0.0031"),
            tokens_in=900,
            tokens_out=120,
        )
        RoutingDecision.objects.filter(pk=decision.pk).update(created_at=ticket.created_at)
        if i % 2 == 0:
            feedback = RoutingFeedback.objects.create(
                decision=decision,
                verdict=FeedbackVerdict.OVERRIDDEN if i % 6 == 0 else FeedbackVerdict.ACCEPTED,
                team_correct=i % 6 != 0,
                priority_correct=True,
            )
            RoutingFeedback.objects.filter(pk=feedback.pk).update(created_at=ticket.created_at)


def _in_thread(fn: Any) -> None:
    """Like ``_call`` with room for the demo load (a minute or more on a loaded machine)."""
    from django.db import connection

    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=600)
    assert not thread.is_alive(), "the demo load did not finish"
    if errors:
        raise errors[0]


def _sign_in(page, username: str) -> None:
    page.goto("/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login" not in url)


def _backlog(page) -> int:
    text = page.locator('#widget-backlog [data-stat="open-tickets-now"]').inner_text()
    return int(text.replace(",", ""))


def test_supervisor_dashboard_filters_and_live_backlog(page, browser, live_asgi, supervisor):
    _in_thread(_demo_world)
    _sign_in(page, "supervisor")
    assert page.url.endswith("/dashboard/")  # supervisors land on the dashboard
    _wait_live(page)
    for name in WIDGETS:
        chart = page.locator(f"#widget-{name} svg.chart")
        chart.first.wait_for(timeout=10_000)
        assert chart.count() == 1, f"{name} draws no chart"
        assert chart.is_visible()
    assert page.locator(".empty-chart").count() == 0
    page.screenshot(path=str(ARTIFACTS / "dashboard-demo.png"), full_page=True)

    # Date range: the form submits on change and the window shown follows.
    before = page.locator("#dash-window").inner_text()
    page.select_option("#f-range", "30d")
    page.wait_for_url("**/dashboard/?range=30d*")
    assert page.locator("#dash-window").inner_text() != before

    # Team filter: the backlog shows that team only.
    team = Team.objects.get(slug="customer-care")
    page.select_option("#f-team", str(team.pk))
    page.wait_for_url(f"**team={team.pk}*")
    _wait_live(page)
    rows = page.locator("#widget-backlog table tbody th").all_text_contents()
    assert rows == [team.name]
    backlog = _backlog(page)
    expected = Ticket.objects.filter(
        team=team, status__in=["new", "open", "pending"], merged_into__isnull=True
    ).count()
    assert backlog == expected

    # A new ticket for that team raises the backlog without a reload.
    page.evaluate("window.__marker = 'same page'")
    customer = Customer.objects.order_by("pk").first()
    _call(
        services.ticket_create,
        customer=customer,
        subject="Dashboard live check",
        body="Hello",
        channel="email",
        team=team,
    )
    page.wait_for_function(
        "n => Number(document.querySelector('#widget-backlog [data-stat=\"open-tickets-now\"]')"
        ".textContent.replace(/,/g, '')) === n",
        arg=backlog + 1,
        timeout=LIVE_TIMEOUT_MS,
    )
    assert page.evaluate("window.__marker") == "same page"

    # CSV export of a chart.
    with page.expect_download() as download:
        page.click("#widget-channels a:text('CSV')")
    assert download.value.suggested_filename.startswith("channels_")


def test_agent_gets_403(browser, live_asgi, agent):
    context = browser.new_context(base_url=live_asgi)
    page = context.new_page()
    _sign_in(page, "agent")
    assert "view=unassigned" in page.url  # nothing assigned: lands on Unassigned
    response = page.goto("/dashboard/")
    assert response is not None
    assert response.status == 403
    assert "for supervisors" in page.content()
    assert page.locator('a[href="/dashboard/"]').count() == 0
    context.close()


def test_a_lazy_widget_that_cannot_load_says_so(page, live_asgi, supervisor):
    """A lazy widget whose fragment fails does not stay on "Loading…" for ever: it says it
    could not load and offers to try again (in place, in the dashboard's own layout); the
    other widgets load."""
    page.route("**/dashboard/widgets/sla/**", lambda route: route.abort())
    _sign_in(page, "supervisor")
    body = page.locator("#widget-sla .widget-body")
    alert = body.locator("[role=alert]")
    alert.wait_for(timeout=10_000)
    assert "Could not load this widget." in alert.inner_text()
    assert body.get_attribute("aria-busy") is None
    page.unroute("**/dashboard/widgets/sla/**")
    alert.get_by_role("button", name="Try again").click()
    page.wait_for_function(
        "() => { const b = document.querySelector('#widget-sla .widget-body');"
        " return !b.hasAttribute('aria-busy') && !b.querySelector('[role=alert]'); }"
    )
    assert "Loading" not in body.inner_text()
    assert "Could not load" not in body.inner_text()
    assert page.url.rstrip("/").endswith("/dashboard")  # still on the dashboard
    routing = page.locator("#widget-routing .widget-body")
    page.wait_for_function(
        "() => !document.querySelector('#widget-routing .widget-body').hasAttribute('aria-busy')"
    )
    assert "Loading" not in routing.inner_text()
