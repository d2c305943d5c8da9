"""Routing providers behind one interface, chosen by ``AI_PROVIDER``.

- ``local`` (default): the trained classifier and the rule tools, offline.
- ``bedrock``: a Strands agent on Amazon Bedrock (``routing.providers.agent``).
- ``openai``: the same agent on any OpenAI-compatible endpoint (needs the ``openai`` package).

An LLM's decision carries the classifier's calibrated confidence, not the figure the model
states (kept as ``model_stated_confidence``: ``routing.providers.base.confidence_measure``).

``decide`` never leaves a ticket unrouted: when an LLM provider fails after its bounded
retries, the local provider decides and the result records the fallback. A programming
error is not an outage: ``support.fallback.provider_failure`` logs it with its traceback,
counts it, and re-raises it where ``PROVIDER_RAISE_PROGRAMMING_ERRORS`` is on (tests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings

from routing.providers.base import (
    ProviderUnavailable,
    RoutingProvider,
    confidence_measure,
    review_reasons,
    rules_decision,
)
from routing.providers.local import LocalProvider
from routing.schemas import ProviderResult
from routing.tools import TicketContext
from support.fallback import provider_error_summary, provider_failure

logger = logging.getLogger(__name__)


def _agent(name: str) -> RoutingProvider:
    from routing.providers.agent import AgentProvider

    return AgentProvider(name=name)


REGISTRY: dict[str, Callable[[], RoutingProvider]] = {
    "local": LocalProvider,
    "bedrock": lambda: _agent("bedrock"),
    "openai": lambda: _agent("openai"),
}


def get_provider(name: str | None = None) -> RoutingProvider:
    name = name or settings.AI_PROVIDER
    if name not in REGISTRY:
        raise ProviderUnavailable(f"Unknown AI_PROVIDER {name!r} (known: {', '.join(REGISTRY)}).")
    return REGISTRY[name]()


def decide(ctx: TicketContext, provider: RoutingProvider | None = None) -> ProviderResult:
    chosen = provider or get_provider()
    if chosen.name == "local":
        result = chosen.decide(ctx)
    else:
        try:
            result = chosen.decide(ctx)
        except Exception as exc:  # noqa: BLE001 - any LLM failure falls back; never unrouted
            provider_failure(exc, component="routing", provider=chosen.name)
            result = LocalProvider().decide(ctx)
            result.fallback_from = chosen.name
            result.fallback_reason = provider_error_summary(exc)[:2000]
    rules = None
    if result.provider != "local":  # an LLM's decision: the classifier's confidence, not its own
        rules = rules_decision(ctx)
        confidence_measure(result, ctx, rules)
    result.review_reasons = review_reasons(result, ctx, rules)
    return result


__all__ = ["REGISTRY", "ProviderUnavailable", "RoutingProvider", "decide", "get_provider"]
