"""The agent-state board in a real browser: the minutes an agent has spent in a state keep
counting while the page stays open (a supervisor leaves it on a wall screen)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from calls.models import AgentStateSpan
from tests.e2e.test_workbench_e2e import _sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_minutes_in_state_keep_counting(page: Any, supervisor: Any) -> None:
    AgentStateSpan.objects.create(
        agent_arn="arn:aws:connect:eu-west-2:111122223333:instance/i/agent/jdoe",
        username="jdoe",
        state="AfterContactWork",
        started_at=timezone.now() - timedelta(minutes=12, seconds=10),
    )
    page.clock.install()  # the browser's clock, moved on below without waiting
    _sign_in(page, "supervisor")
    page.goto("/calls/board/")
    shown = page.locator('tr[data-agent="jdoe"] .minutes .duration')
    # time in state as people read it (it was a bare "12")
    assert re.fullmatch(r"12 min [1-5]\d s", shown.inner_text()), shown.inner_text()
    page.clock.fast_forward("10:00")
    page.wait_for_function(
        "/^22 min [1-5]\\d s$/.test("
        "document.querySelector('tr[data-agent=\"jdoe\"] .minutes .duration').textContent)",
        timeout=5000,
    )
