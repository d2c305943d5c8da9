"""One decision schema and one tool-trace format for every provider."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field


class RoutingDecisionOutput(BaseModel):
    """The routing decision for one support ticket."""

    team: str = Field(description="Slug of the team that should handle the ticket.")
    priority: Literal["low", "normal", "high", "urgent"] = Field(description="Ticket priority.")
    # An LLM's answer holds the figure it states; ``routing.providers.decide`` keeps it as
    # ``ProviderResult.model_stated_confidence`` and puts the classifier's calibrated
    # probability here (``routing.providers.base.confidence_measure``).
    confidence: float = Field(ge=0.0, le=1.0, description="Confidence in the team, 0 to 1.")
    category: str = Field(description="Issue category (from classify_issue).")
    intent: str = Field(description="Issue intent (from classify_issue).")
    secondary: list[str] = Field(default_factory=list, description="Other plausible intents.")
    reasoning: str = Field(description="Short explanation naming the signals used.")
    requires_manual_review: bool = Field(
        default=False, description="True when signals conflict or you are unsure."
    )


@dataclass
class ToolTrace:
    """Tool calls as ``[{name, input, output, ms}]``; thread-safe enough for list.append."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def call(self, name: str, inputs: dict[str, Any], fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        output = fn()
        self.calls.append(
            {
                "name": name,
                "input": inputs,
                "output": output,
                "ms": round((time.perf_counter() - started) * 1000, 3),
            }
        )
        return output

    def last(self, name: str) -> dict[str, Any] | None:
        for call in reversed(self.calls):
            if call["name"] == name:
                return call["output"]  # type: ignore[no-any-return]
        return None


@dataclass
class ProviderResult:
    decision: RoutingDecisionOutput
    trace: ToolTrace
    provider: str
    model_id: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal("0")
    fallback_from: str = ""
    fallback_reason: str = ""
    review_reasons: list[str] = field(default_factory=list)
    # What an LLM provider said of its own decision, as it answered (None: the local
    # provider, whose figure is the classifier's). Never compared with the review threshold
    # on its own behalf except to add a reason: a model unsure of itself still goes to review.
    model_stated_confidence: float | None = None
    # False: no calibrated probability could be had for the decision (``decision.confidence``
    # is then 0 and the decision goes to review: "confidence not measured").
    confidence_measured: bool = True
