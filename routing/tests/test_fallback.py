"""A programming error is not an outage: the provider fallback logs it with its traceback,
counts it, and (in tests, ``PROVIDER_RAISE_PROGRAMMING_ERRORS``) re-raises it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from routing import providers, tools
from routing.providers.agent import AgentProvider
from routing.providers.base import ProviderUnavailable
from routing.schemas import ProviderResult
from routing.tests.conftest import ScriptedModel, ticket_context
from routing.tests.test_providers import DECISION
from routing.tools import TicketContext
from support import fallback


@pytest.fixture
def ctx(bitext_router: Any) -> TicketContext:
    return ticket_context(bitext_router, "Please cancel my order 123456")


class Broken:
    name = "bedrock"

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def decide(self, ctx: TicketContext) -> ProviderResult:
        raise self.exc


def test_a_programming_error_in_the_provider_fails_the_test_suite(ctx: TicketContext) -> None:
    before = fallback.programming_error_count()
    with pytest.raises(TypeError, match="unexpected keyword"):
        providers.decide(ctx, Broken(TypeError("decide() got an unexpected keyword")))
    assert fallback.programming_error_count() == before + 1


def test_in_production_a_programming_error_falls_back_logged_with_traceback_and_counted(
    ctx: TicketContext,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    client: Any,
    db: Any,
) -> None:
    settings.PROVIDER_RAISE_PROGRAMMING_ERRORS = False
    before = fallback.programming_error_counts().get("routing", 0)
    with caplog.at_level(logging.WARNING, logger="support.fallback"):
        result = providers.decide(ctx, Broken(KeyError("inputTokens")))
    assert (result.provider, result.fallback_from) == ("local", "bedrock")
    assert result.decision.team == "orders"
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError
    assert "Programming error in the routing provider bedrock" in record.getMessage()
    assert fallback.programming_error_counts()["routing"] == before + 1
    body = client.get("/health").json()
    assert body["counters"]["provider_programming_errors"] == fallback.programming_error_count()


def test_an_outage_still_falls_back_quietly_and_is_not_counted(
    ctx: TicketContext, caplog: pytest.LogCaptureFixture
) -> None:
    before = fallback.programming_error_count()
    with caplog.at_level(logging.WARNING, logger="support.fallback"):
        result = providers.decide(ctx, Broken(ProviderUnavailable("bedrock failed 3 time(s)")))
    assert (result.provider, result.fallback_reason) == ("local", "bedrock failed 3 time(s)")
    [record] = caplog.records
    assert (record.levelno, record.exc_info) == (logging.WARNING, None)
    assert fallback.programming_error_count() == before


def test_a_programming_error_inside_an_agent_tool_is_not_hidden_by_strands(
    ctx: TicketContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Strands turns a tool's exception into an error result for the model and carries on:
    the bug used to vanish behind the model's answer."""

    def broken(text: str) -> dict[str, Any]:
        return {"service_ids": text.undefined_attribute}  # type: ignore[attr-defined]

    monkeypatch.setattr(tools, "extract_entities", broken)
    model = ScriptedModel(
        [("tool", "extract_entities", {}), ("tool", "RoutingDecisionOutput", DECISION)]
    )
    with pytest.raises(AttributeError, match="undefined_attribute"):
        providers.decide(ctx, AgentProvider(model_factory=lambda: model))
