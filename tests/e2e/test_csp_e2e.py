"""The workbench, its panels, the admin and the API docs under the Content-Security-Policy,
in Chromium: everything still works and the browser refuses nothing (the ``page`` fixture
fails the test on any reported violation)."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from knowledge.parsing import parse_jsonl
from knowledge.services import documents_ingest, source_get_or_create
from routing.models import RoutingFeedback
from routing.testing import routing_decision_create
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_workbench_e2e import _call, _sign_in, _wait_live
from tickets import services
from tickets.models import Team

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests-1"
EVIL = {
    "id": "refund-evil",
    "title": "When will I get my refund?",
    "text": 'Refunds reach your card within 5 business days. <img src=x onerror="window.__xss=1">'
    " <script>window.__xss=2</script>",
    "url": "javascript:window.__xss=3",
}


def test_kb_panel_inserts_a_passage_and_a_stored_payload_stays_inert(page, supervisor, customer):
    source = _call(source_get_or_create, name="help")
    _call(documents_ingest, source=source, items=parse_jsonl(json.dumps(EVIL)))
    ticket = _call(
        services.ticket_create,
        customer=customer,
        subject="Refund",
        body="When will I get my refund on my card?",
    )
    _sign_in(page, "supervisor", PASSWORD)
    page.goto(f"/tickets/{ticket.number}/")
    _wait_live(page)
    suggestion = page.locator(".kb-suggestion").first
    suggestion.wait_for()
    assert suggestion.locator(".kb-snippet img, .kb-snippet script").count() == 0
    assert suggestion.locator("a").count() == 0  # the javascript: URL is not a link
    suggestion.locator(".kb-insert").click()
    assert "Refunds reach your card" in page.locator("#composer-body").input_value()
    assert page.evaluate("window.__xss") is None


def test_routing_panel_accept_posts_from_its_static_script(page, supervisor, customer):
    ticket = _call(services.ticket_create, customer=customer, subject="Route me", body="?")
    team = Team.objects.create(slug="billing", name="Billing")  # a decision names a team
    decision = routing_decision_create(ticket, team=team, confidence=0.5)
    _sign_in(page, "supervisor", PASSWORD)
    page.goto(f"/tickets/{ticket.number}/")
    _wait_live(page)
    with page.expect_navigation():  # the script reloads the page after the API answers
        page.click("form.routing-verdict button:has-text('Accept')")
    assert RoutingFeedback.objects.filter(decision=decision, verdict="accepted").exists()


def test_admin_and_api_docs_work_under_the_policy(page, supervisor):
    _sign_in(page, "supervisor", PASSWORD)
    page.goto("/admin/")
    page.wait_for_selector("#site-name")
    # filter_horizontal and prepopulated fields are built by the admin's static scripts
    page.goto("/admin/tickets/team/add/")
    page.wait_for_selector(".selector-available")
    page.fill("#id_name", "Billing Team")
    page.press("#id_name", "Tab")  # prepopulate.js listens to keyup/change
    expect(page.locator("#id_slug")).to_have_value("billing-team")  # no eval: CSP forbids it
    page.goto("/admin/tickets/ticket/")
    page.wait_for_selector("#changelist")
    page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .info", timeout=10_000)


def test_customer_page_opens_from_the_ticket_page(page, supervisor, customer):
    """The customer's name on the ticket page opens the customer page: the profile, the
    tickets (each opening its ticket) and the context panel, with nothing refused."""
    older = _call(services.ticket_create, customer=customer, subject="Where is my parcel", body="?")
    ticket = _call(services.ticket_create, customer=customer, subject="Refund", body="Refund?")
    _sign_in(page, "supervisor", PASSWORD)
    page.goto(f"/tickets/{ticket.number}/")
    with page.expect_navigation():
        page.locator(".card.customer .cust-name a").click()
    assert page.url.endswith(f"/customers/{customer.pk}/")
    expect(page.locator("h1")).to_have_text(customer.name)
    expect(page.locator("table.customer-tickets a.subject")).to_have_text(
        ["Refund", "Where is my parcel"]
    )
    expect(page.locator('[data-panel="customer_context"]')).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "customer-page.png"), full_page=True)
    with page.expect_navigation():
        page.locator("table.customer-tickets a.subject", has_text="Where is my parcel").click()
    assert page.url.endswith(f"/tickets/{older.number}/")
