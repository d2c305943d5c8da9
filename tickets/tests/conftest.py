"""Fixtures shared by the tickets app's tests."""

from __future__ import annotations

from typing import Any

import pytest

from tickets.models import Team


@pytest.fixture
def teams(agent: Any, other_agent: Any) -> tuple[Team, Team]:
    """``agent`` is in Billing, ``other_agent`` in Shipping."""
    billing = Team.objects.create(name="Billing", slug="billing")
    shipping = Team.objects.create(name="Shipping", slug="shipping")
    billing.members.add(agent)
    shipping.members.add(other_agent)
    return billing, shipping
