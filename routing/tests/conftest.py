from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from strands.models import Model

from routing.context import DEFAULT_CATEGORY_TEAMS
from routing.tools import CustomerInfo, TicketContext
from tickets.models import Team

TEAMS = {
    "accounts": "Accounts",
    "orders": "Orders & Delivery",
    "billing": "Billing",
    "customer-care": "Customer Care",
    "priority-billing": "Priority Billing",
}


def ticket_context(router: Any, text: str, **extra: Any) -> TicketContext:
    """The ticket context the provider tests route: one plain customer, no history, the
    default category-to-team map; ``extra`` overrides or adds fields."""
    fields: dict[str, Any] = {
        "ticket_id": 1,
        "number": "T-000001",
        "text": text,
        "customer": CustomerInfo(5, "none", "individual"),
        "waiting_minutes": 0.0,
        "history": [],
        "services": [],
        "team_map": dict(DEFAULT_CATEGORY_TEAMS),
        "team_names": dict(TEAMS),
        "vip_billing_team": "priority-billing",
        "router": router,
    }
    fields.update(extra)
    return TicketContext(**fields)


@pytest.fixture
def teams(db: Any) -> dict[str, Team]:
    return {slug: Team.objects.create(slug=slug, name=name) for slug, name in TEAMS.items()}


@pytest.fixture
def routing_on(settings: Any) -> Any:
    settings.ROUTING_ENABLED = True
    settings.TICKETING_SYSTEM_URL = ""
    settings.AI_PROVIDER = "local"
    return settings


class ScriptedModel(Model):
    """A Strands model double: each call to ``stream`` plays the next scripted turn, either
    ``("tool", name, input)`` or ``("text", text)``; it records what it was sent."""

    def __init__(self, turns: list[tuple[Any, ...]], usage: tuple[int, int] = (100, 20)) -> None:
        self.turns = list(turns)
        self.calls: list[dict[str, Any]] = []
        self.usage = usage
        self.config: dict[str, Any] = {"model_id": "scripted"}

    def update_config(self, **config: Any) -> None:
        self.config.update(config)

    def get_config(self) -> dict[str, Any]:
        return self.config

    async def structured_output(
        self, output_model: Any, prompt: Any, system_prompt: Any = None, **kw: Any
    ) -> Any:  # type: ignore[override]
        raise NotImplementedError
        yield  # pragma: no cover

    async def stream(  # type: ignore[override]
        self,
        messages: Any,
        tool_specs: Any = None,
        system_prompt: Any = None,
        *,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(
            {
                "messages": messages,
                "tools": [t["name"] for t in tool_specs or []],
                "system": system_prompt,
            }
        )
        turn = self.turns.pop(0)
        yield {"messageStart": {"role": "assistant"}}
        if turn[0] in ("tool", "tools"):
            calls = [turn[1:]] if turn[0] == "tool" else turn[1]
            for n, (name, payload) in enumerate(calls):
                tool_id = f"t{len(self.calls)}-{n}"
                start = {"toolUse": {"name": name, "toolUseId": tool_id}}
                yield {"contentBlockStart": {"start": start}}
                delta = {"toolUse": {"input": json.dumps(payload)}}
                yield {"contentBlockDelta": {"delta": delta}}
                yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "tool_use"}}
        else:
            yield {"contentBlockDelta": {"delta": {"text": turn[1]}}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "end_turn"}}
        i, o = self.usage
        yield {
            "metadata": {
                "usage": {"inputTokens": i, "outputTokens": o, "totalTokens": i + o},
                "metrics": {"latencyMs": 1},
            }
        }


@pytest.fixture(scope="session")
def bitext_router() -> Any:
    from routing.services import default_router

    return default_router()[2]
