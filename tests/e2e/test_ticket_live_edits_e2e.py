"""The ticket page while someone else works on the ticket: a live refresh (another agent's
note) never takes away what the agent is typing or choosing in the ticket's controls, and
keystrokes meant for a field never run the page's shortcuts ("e" resolves the ticket and
queues the satisfaction survey). Also: long names and unbroken text never widen the page,
and right-to-left text runs right to left. See conftest.py for the server and browser."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_workbench_e2e import LIVE_TIMEOUT_MS, _call, _sign_in, _wait_live
from tickets import services
from tickets.models import Customer, Ticket

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CONTROLS = "#ticket-controls"


def _note_from(user: Any, ticket: Ticket, text: str) -> None:
    """Another agent's internal note: an event that refreshes every open page of the ticket."""
    _call(services.message_add, ticket=ticket, body=text, kind="internal_note", author_user=user)


def _wait_entry(page: Any, text: str) -> None:
    page.locator("#timeline li.entry", has_text=text).wait_for(timeout=LIVE_TIMEOUT_MS)


def _controls_state(page: Any) -> dict[str, Any]:
    return page.evaluate(
        """() => {
          const c = document.getElementById('ticket-controls');
          return {
            tags: c.querySelector('input[name=tags]').value,
            priority: c.querySelector('select[name=priority]').value,
            mergeOpen: c.querySelector('details.merge').open,
            into: c.querySelector('input[name=into]').value,
            focus: document.activeElement.getAttribute('name') || document.activeElement.tagName,
          };
        }"""
    )


def test_a_live_refresh_keeps_the_controls_being_edited(page, agent, other_agent, customer):
    ticket = _call(
        services.ticket_create, customer=customer, subject="Shared", body="hi", tags=["vip"]
    )
    _sign_in(page)
    page.goto(f"/tickets/{ticket.number}/")
    _wait_live(page)
    tags = page.locator(f"{CONTROLS} input[name=tags]")
    tags.click()
    tags.press("End")
    tags.type(", needs-callback")
    page.select_option(f"{CONTROLS} select[name=priority]", "urgent")
    page.click(f"{CONTROLS} summary")
    page.fill(f"{CONTROLS} input[name=into]", "T-000031")
    edits = {
        "tags": "vip, needs-callback",
        "priority": "urgent",
        "mergeOpen": True,
        "into": "T-000031",
        "focus": "into",
    }
    assert _controls_state(page) == edits

    # focus in the controls: they are left as they are
    _note_from(other_agent, ticket, "FYI: customer called")
    _wait_entry(page, "FYI: customer called")
    page.wait_for_timeout(500)  # any swap of the controls came with the timeline's
    assert _controls_state(page) == edits

    # focus elsewhere: the controls are redrawn, with the edits not saved yet kept in them
    page.locator("#timeline").click()
    page.wait_for_timeout(500)
    _note_from(other_agent, ticket, "Second note")
    _wait_entry(page, "Second note")
    page.wait_for_timeout(500)
    state = _controls_state(page)
    assert {k: v for k, v in state.items() if k != "focus"} == {
        k: v for k, v in edits.items() if k != "focus"
    }
    page.locator(CONTROLS).screenshot(path=str(ARTIFACTS / "controls-kept-through-refresh.png"))

    # saving them still works, and the answer redraws the controls as saved
    page.click(f"{CONTROLS} button:has-text('Save changes')")
    page.locator("#ticket-live .badge.prio-urgent").wait_for(timeout=LIVE_TIMEOUT_MS)
    ticket.refresh_from_db()
    assert ticket.priority == "urgent"
    assert sorted(ticket.tags.values_list("name", flat=True)) == ["needs-callback", "vip"]


def test_typing_through_a_live_refresh_never_runs_shortcuts(page, agent, other_agent, customer):
    ticket = _call(services.ticket_create, customer=customer, subject="Typing", body="hi")
    _sign_in(page)
    page.goto(f"/tickets/{ticket.number}/")
    _wait_live(page)
    tags = page.locator(f"{CONTROLS} input[name=tags]")
    tags.click()
    page.keyboard.type("urgent, ")
    _note_from(other_agent, ticket, "heads-up note")
    _wait_entry(page, "heads-up note")
    page.keyboard.type("escalated")  # the agent goes on typing the tag
    page.wait_for_timeout(1500)
    assert page.locator("#ticket-status").inner_text() == "New"
    assert tags.input_value() == "urgent, escalated"
    assert page.evaluate("document.activeElement.name") == "tags"
    assert page.input_value("#composer-body") == ""
    ticket.refresh_from_db()
    assert ticket.status == "new"


def test_keys_right_after_a_field_vanished_are_not_shortcuts(page, agent, customer):
    """However a field is taken away under the agent's fingers (focus falls to the page
    body), the next keystrokes are the rest of a word, not "e" for resolve; a key pressed
    after a click, or after a pause, is a shortcut again."""
    ticket = _call(services.ticket_create, customer=customer, subject="Vanishing", body="hi")
    _sign_in(page)
    page.goto(f"/tickets/{ticket.number}/")
    _wait_live(page)
    page.click(f"{CONTROLS} input[name=tags]")
    page.keyboard.type("abc")
    page.evaluate("document.querySelector('#ticket-controls input[name=tags]').remove()")
    assert page.evaluate("document.activeElement === document.body")
    page.keyboard.type("escalated")
    page.wait_for_timeout(800)
    assert page.locator("#ticket-status").inner_text() == "New"

    page.locator("#timeline").click()  # deliberate: "e" is the shortcut again
    page.keyboard.press("e")
    page.locator("#ticket-status", has_text="Resolved").wait_for(timeout=LIVE_TIMEOUT_MS)


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (390, 844)])
def test_long_names_and_unbroken_text_never_widen_the_page(page, agent, width, height):
    page.set_viewport_size({"width": width, "height": height})
    long_name = "Wolfeschlegelsteinhausenbergerdorff" * 4
    customer = _call(
        Customer.objects.create, name=long_name, email=f"{'x' * 60}@subsidiary.example.com"
    )
    subject = "Refund " + "A" * 180
    body = "https://example.com/" + "verylongpath" * 40 + "\n\n" + "Z" * 400
    ticket = _call(
        services.ticket_create,
        customer=customer,
        subject=subject,
        body=body,
        tags=["t" * 60],
    )
    _sign_in(page)
    for url in (f"/tickets/{ticket.number}/", "/?view=all", f"/customers/{customer.pk}/"):
        page.goto(url)
        page.wait_for_load_state("networkidle")
        widths = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        page.screenshot(
            path=str(ARTIFACTS / f"long-text-{width}-{url.split('/')[1] or 'inbox'}.png")
        )
        assert widths[0] <= widths[1], (url, widths)


def test_right_to_left_text_runs_right_to_left(page, agent, customer):
    arabic = "مرحبا، لم يصل طلبي رقم 123 بعد!"
    ticket = _call(services.ticket_create, customer=customer, subject=arabic, body=arabic)
    _sign_in(page)
    page.goto(f"/tickets/{ticket.number}/")
    _wait_live(page)
    body = page.locator("#timeline .body").first
    assert body.get_attribute("dir") == "auto"
    assert body.evaluate("e => getComputedStyle(e).direction") == "rtl"
    assert (
        page.locator(".ticket-head h1 bdi").evaluate("e => getComputedStyle(e).direction") == "rtl"
    )
    assert page.get_attribute("#composer-body", "dir") == "auto"
    page.goto("/?view=all")
    row = page.locator("tr.ticket-row", has_text="123")
    assert row.locator(".subject bdi").evaluate("e => getComputedStyle(e).direction") == "rtl"
    assert row.locator(".preview").get_attribute("dir") == "auto"
