"""A model answer that fails validation is not written to the log nor to the stored
fallback reason: the WARNING repeated it (``input_value=['… zq1815.home@exa wants a
refund']``), and the model may quote the customer."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from routing import providers
from routing.providers.agent import AgentProvider
from routing.providers.base import ProviderUnavailable
from routing.tests.conftest import ScriptedModel, ticket_context
from routing.tools import TicketContext

MARKER = "MODEL-OUTPUT-MARKER customer zq1815.home@exa wants a refund"
BAD = {
    "team": "orders",
    "priority": "normal",
    "confidence": 0.9,
    "category": "ORDER",
    "intent": "cancel_order",
    "secondary": [],
    "requires_manual_review": False,
    "reasoning": [MARKER],  # a list where a string belongs
}


def _ctx() -> TicketContext:
    return ticket_context(None, "refund please", number="T-1")


def _provider() -> AgentProvider:
    turns: list[tuple[Any, ...]] = [("tool", "RoutingDecisionOutput", BAD)] * 3
    turns += [("text", json.dumps(BAD))] * 3
    model = ScriptedModel(turns)
    return AgentProvider(model_factory=lambda: model, sleep=lambda s: None)


def test_a_refused_answer_is_not_logged_nor_in_the_error(settings, caplog):
    settings.ROUTING_BEDROCK_MAX_ATTEMPTS = 1
    with caplog.at_level(logging.INFO), pytest.raises(ProviderUnavailable) as raised:
        _provider().decide(_ctx())
    assert [r.getMessage() for r in caplog.records if "zq1815" in r.getMessage()] == []
    warned = [r.getMessage() for r in caplog.records if r.name == "routing.providers.agent"]
    assert warned == [
        "bedrock attempt 1 failed: StructuredOutputException <- "
        "ValidationError (reasoning: string_type)"
    ]
    assert str(raised.value) == (
        "bedrock failed 1 time(s): StructuredOutputException <- "
        "ValidationError (reasoning: string_type)"
    )


def test_the_stored_fallback_reason_holds_no_model_output(settings, caplog, bitext_router, teams):
    settings.ROUTING_BEDROCK_MAX_ATTEMPTS = 1
    ctx = _ctx()
    ctx.router = bitext_router
    with caplog.at_level(logging.INFO):
        result = providers.decide(ctx, _provider())
    assert (result.provider, result.fallback_from) == ("local", "bedrock")
    assert "zq1815" not in result.fallback_reason
    assert result.fallback_reason.startswith("bedrock failed 1 time(s): StructuredOutput")
    assert [r.getMessage() for r in caplog.records if "zq1815" in r.getMessage()] == []
