"""The workbench's New ticket page in Chromium: an agent opens a ticket for a caller from
the inbox, is told under the field what to change, corrects it and lands on the new
ticket, assigned to them, with what the caller said as its first message (no
Content-Security-Policy violation on the way: the page fixture checks)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.test_workbench_e2e import _call, _sign_in
from tickets.models import Ticket

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_agent_opens_a_ticket_for_a_caller(page, agent):
    _sign_in(page)
    page.goto("/?view=all")
    page.click("a.inbox-new")
    page.wait_for_url("**/tickets/new")
    page.fill("#id_customer_email", "caller@example.com")
    page.fill("#id_customer_name", "Cara Caller")
    page.fill("#id_subject", "Kettle leaks")
    page.fill("#id_description", "It leaks from the lid since Monday.")
    page.fill("#id_tags", "x" * 70)
    page.click("button:has-text('Open ticket')")
    expect(page.locator("#err_tags")).to_contain_text("a tag has at most 64 characters")
    assert page.locator("#id_subject").input_value() == "Kettle leaks"  # kept

    page.fill("#id_tags", "kettles")
    page.check("input[name=take]")
    page.click("button:has-text('Open ticket')")
    page.wait_for_url("**/tickets/T-*/")
    ticket = _call(
        Ticket.objects.select_related("customer", "assignee").get, subject="Kettle leaks"
    )
    expect(page.locator(".flash")).to_contain_text(f"{ticket.number} opened.")
    expect(page.locator("body")).to_contain_text("It leaks from the lid since Monday.")
    assert (ticket.customer.email, ticket.assignee, ticket.channel) == (
        "caller@example.com",
        agent,
        "phone",
    )
