"""Login lockout through the real ASGI stack (axes' asynchronous middleware path)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_repeated_failures_show_the_lockout_message(page, agent):
    page.goto("/accounts/login/")
    for _ in range(5):
        page.fill("#id_username", "agent")
        page.fill("#id_password", "not-the-password")
        page.click("button[type=submit]")
        page.wait_for_selector("p.error")
    page.fill("#id_username", "agent")
    page.fill("#id_password", "pw-for-tests-1")
    with page.expect_response(lambda r: r.url.endswith("/accounts/login/")) as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 429
    assert page.locator("#lockout").inner_text() == (
        "Too many failed sign-in attempts. Try again in 15 minutes, "
        "or ask a supervisor to unlock your account."
    )
    page.goto("/")
    assert "/accounts/login/" in page.url  # still signed out
