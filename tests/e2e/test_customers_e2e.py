"""The Customers page in Chromium: an agent goes from the navigation to the list, finds a
caller by the number as they say it (spaces, no country code typed the stored way) and
opens the customer's page (no Content-Security-Policy violation on the way: the page
fixture checks)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.test_workbench_e2e import _call, _sign_in
from tickets import services
from tickets.models import Customer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _customer_with_ticket(name: str, email: str, phone: str) -> Customer:
    customer = Customer.objects.create(name=name, email=email, phone=phone)
    services.ticket_create(customer=customer, subject=f"{name}'s question", body="Hello")
    return customer


def test_an_agent_finds_a_caller_by_number_and_opens_their_page(page, agent):
    caller = _call(
        _customer_with_ticket, name="Cara Caller", email="cara@example.com", phone="+442079460777"
    )
    _call(_customer_with_ticket, name="Otto Other", email="otto@example.com", phone="+15550100")
    _sign_in(page)
    page.click("nav >> text=Customers")
    page.wait_for_url("**/customers/")
    rows = page.locator("table.customers tbody tr")
    expect(rows).to_have_count(2)
    page.fill("input[name=q]", "7946 0777")
    page.click("button:has-text('Search')")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Cara Caller")
    expect(rows.first).to_contain_text("+442079460777")
    page.click("table.customers a.subject")
    page.wait_for_url(f"**/customers/{caller.pk}/")
    expect(page.locator("#customer-title")).to_contain_text("Cara Caller")
    expect(page.locator("table.customer-tickets")).to_contain_text("Cara Caller's question")
