"""``GET /api/routing/accuracy`` (aggregate counts over every team's reviewed decisions)
is the supervisors', as the dashboard that shows the same figures is: no agent page calls
it. Before, any agent read it."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.django_db


def test_routing_accuracy_is_for_supervisors_only(
    agent_client: Any, supervisor_client: Any
) -> None:
    response = agent_client.get("/api/routing/accuracy")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This action is for supervisors only."
    assert supervisor_client.get("/api/routing/accuracy").json() == {
        "reviewed": 0,
        "overridden": 0,
        "team_accuracy": None,
        "priority_accuracy": None,
    }
