"""Strands model factory shared by every app that needs an LLM (routing, call summaries).

``strands_model(purpose)`` returns a configured Strands ``Model`` for the ``AI_PROVIDER``
setting; callers build their own ``Agent`` around it. ``local`` has no LLM: callers use
their offline path instead (``LLMUnavailable``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class LLMUnavailable(ImproperlyConfigured):
    """No LLM is configured for this provider (``AI_PROVIDER=local``)."""


def _bedrock_model_id(purpose: str) -> str:
    ids = {
        "routing": settings.ROUTING_BEDROCK_MODEL_ID,
        "summary": settings.ROUTING_BEDROCK_SUMMARY_MODEL_ID,
    }
    return ids.get(purpose, settings.ROUTING_BEDROCK_MODEL_ID)


def _timeout(purpose: str) -> float:
    """Routing answers in seconds; a summary (a call, a reply draft) may take a minute."""
    if purpose == "summary":
        return float(settings.AWS_BEDROCK_READ_TIMEOUT)
    return float(settings.ROUTING_BEDROCK_TIMEOUT)


def strands_model(purpose: str = "routing", provider: str | None = None) -> Any:
    """A Strands model for ``purpose`` (``routing`` or ``summary``); no network until used."""
    provider = provider or settings.AI_PROVIDER
    if provider == "bedrock":
        from strands.models.bedrock import BedrockModel

        from support.aws import aws_config

        return BedrockModel(
            model_id=_bedrock_model_id(purpose),
            streaming=False,
            region_name=settings.ROUTING_BEDROCK_REGION,
            temperature=0.0,
            max_tokens=1024,
            # One attempt inside botocore: AgentProvider.decide retries (bounded, with
            # backoff) what support.aws classifies as retryable, then falls back to local.
            boto_client_config=aws_config(read_timeout=_timeout(purpose), max_attempts=1),
        )
    if provider == "openai":
        try:
            from strands.models.openai import OpenAIModel
        except ImportError as exc:  # the optional `openai` package is not installed
            raise LLMUnavailable("AI_PROVIDER=openai needs `pip install openai`.") from exc
        if not settings.ROUTING_OPENAI_BASE_URL:
            raise LLMUnavailable("AI_PROVIDER=openai needs ROUTING_OPENAI_BASE_URL.")
        return OpenAIModel(
            client_args={
                "base_url": settings.ROUTING_OPENAI_BASE_URL,
                "api_key": settings.ROUTING_OPENAI_API_KEY or "unused",
                "timeout": _timeout(purpose),
                # One attempt inside the client too: call_with_retries retries, bounded.
                "max_retries": 0,
            },
            model_id=settings.ROUTING_OPENAI_MODEL_ID,
            params={"temperature": 0.0, "max_tokens": 1024},
        )
    raise LLMUnavailable(f"AI_PROVIDER={provider!r} has no LLM.")


def model_id_of(model: Any) -> str:
    config = model.get_config() if hasattr(model, "get_config") else {}
    return str(config.get("model_id", "")) if isinstance(config, dict) else ""
