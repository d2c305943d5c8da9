"""The LLM provider: a Strands ``Agent`` (Bedrock, or an OpenAI-compatible endpoint) that
calls the seven tools and answers with a structured ``RoutingDecisionOutput``.

A fresh agent per ticket (an Agent cannot run concurrently), no stdout callback handler,
Strands' own retries off (we retry, bounded, then the local router decides). Nothing leaves
unredacted: the model is wrapped in ``RedactingModel``, which redacts every request (the
prompt, every tool result, the earlier turns) with the shared ``support.redaction`` service
and the names of the ticket's own customer (``TicketContext.redact_names``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from pydantic import ValidationError
from strands import Agent, ToolContext, tool
from strands.types.exceptions import (
    ContextWindowOverflowException,
    ModelThrottledException,
    StructuredOutputException,
)

from routing import tools
from routing.providers.base import ProviderUnavailable, cost_usd
from routing.providers.models import model_id_of, strands_model
from routing.providers.redacting import RedactingModel
from routing.schemas import ProviderResult, RoutingDecisionOutput, ToolTrace
from routing.tools import TicketContext
from support.aws import classify_aws_error
from support.fallback import is_programming_error, provider_error_summary
from support.outbound import backoff_seconds
from support.prompt_data import DATA_RULE, DataFence, data_fence

logger = logging.getLogger(__name__)
T = TypeVar("T")

SYSTEM_PROMPT = (
    """You route customer-support tickets to a team and set their priority.
Call classify_issue, extract_entities, check_vip_status, get_historical_context,
check_service_status, calculate_priority and route_to_team (call independent tools together
in one turn: classify_issue, extract_entities, check_vip_status, get_historical_context
first, then check_service_status, then calculate_priority with its outage_match and
known_issue, and route_to_team), then answer with the decision. A decision made without
classify_issue, check_service_status, calculate_priority and route_to_team goes to a person.
Use the team slug from route_to_team and the priority from calculate_priority unless the
evidence clearly says otherwise (another team, or a priority above calculate_priority's,
goes to a person); explain which signals decided. Set requires_manual_review
when signals conflict or you are unsure. Personal data is redacted as [EMAIL], [PHONE],
[CARD], [IBAN], [ACCOUNT], [ADDRESS], [POSTCODE], [NAME]; never ask for it.
"""
    + DATA_RULE
)

# Failures worth another attempt. AWS errors (ClientError, BotoCoreError) are caught too,
# then classified by support.aws: only throttled/retryable ones are tried again; an auth or
# permanent one (AccessDenied, ValidationException, no credentials) falls back at once.
RETRYABLE: tuple[type[BaseException], ...] = (
    ModelThrottledException,
    ClientError,
    BotoCoreError,
    StructuredOutputException,
    ContextWindowOverflowException,
    ValidationError,
    TimeoutError,
    ConnectionError,
)
try:  # the optional `openai` extra: its timeouts, connection failures and 5xx
    import openai

    RETRYABLE += (openai.APITimeoutError, openai.APIConnectionError, openai.InternalServerError)
except ImportError:  # pragma: no cover - the extra is not installed
    pass


def _worth_retrying(exc: BaseException) -> bool:
    if isinstance(exc, ClientError | BotoCoreError):
        return classify_aws_error(exc).retryable
    return True


def call_with_retries(
    name: str, fn: Callable[[], T], *, sleep: Callable[[float], None] = time.sleep
) -> T:
    """``fn()`` up to ``ROUTING_BEDROCK_MAX_ATTEMPTS`` times with backoff while it fails in
    a way worth retrying; then (or at once for an auth or permanent AWS error)
    ``ProviderUnavailable``, for the caller to fall back. Any other exception propagates.
    Failures are described by ``provider_error_summary`` (in the log and in the message):
    what a model answered, which may quote the customer, is never repeated."""
    attempts = max(1, settings.ROUTING_BEDROCK_MAX_ATTEMPTS)
    errors: list[str] = []
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except RETRYABLE as exc:
            errors.append(provider_error_summary(exc)[:300])
            logger.warning("%s attempt %s failed: %s", name, attempt, errors[-1])
            if not _worth_retrying(exc):
                raise ProviderUnavailable(
                    f"{name} failed for good ({classify_aws_error(exc)}): " + " | ".join(errors)
                ) from exc
            if attempt < attempts:
                sleep(backoff_seconds(attempt, base=settings.ROUTING_BEDROCK_BACKOFF, cap=8.0))
    raise ProviderUnavailable(f"{name} failed {attempts} time(s): " + " | ".join(errors))


@dataclass
class AgentRun:
    ctx: TicketContext
    trace: ToolTrace
    # Programming errors raised inside a tool. Strands turns a tool's exception into an
    # error result for the model and carries on, which would hide the bug: the provider
    # raises the first one once the agent returns (``AgentProvider._once``).
    errors: list[BaseException] = field(default_factory=list)


def _run(
    tool_context: ToolContext, name: str, inputs: dict[str, Any], fn: Callable[[AgentRun], Any]
) -> Any:
    run: AgentRun = tool_context.invocation_state["routing_run"]
    # Returned as is: RedactingModel redacts the result when it is sent to the model.
    try:
        return run.trace.call(name, inputs, lambda: fn(run))
    except Exception as exc:
        if is_programming_error(exc):
            run.errors.append(exc)
        raise


@tool(context=True)
def classify_issue(tool_context: ToolContext) -> dict[str, Any]:
    """Classify the ticket: category and intent with probabilities and runner-up intents."""
    return _run(  # type: ignore[no-any-return]
        tool_context, "classify_issue", {}, lambda r: tools.classify_issue(r.ctx.text, r.ctx.router)
    )


@tool(context=True)
def extract_entities(tool_context: ToolContext) -> dict[str, Any]:
    """Extract account numbers, service ids, order numbers, error codes, phones, emails,
    money amounts and dates from the ticket (personal data reaches you redacted)."""
    return _run(  # type: ignore[no-any-return]
        tool_context, "extract_entities", {}, lambda r: tools.extract_entities(r.ctx.text)
    )


@tool(context=True)
def check_vip_status(tool_context: ToolContext) -> dict[str, Any]:
    """The customer's VIP tier and account type."""
    return _run(  # type: ignore[no-any-return]
        tool_context, "check_vip_status", {}, lambda r: tools.check_vip_status(r.ctx.customer)
    )


@tool(context=True)
def check_service_status(
    service_ids: list[str], category: str, tool_context: ToolContext
) -> dict[str, Any]:
    """Active outages and known issues on the services the ticket mentions.

    Args:
        service_ids: Service ids found by extract_entities (may be empty).
        category: The category from classify_issue.
    """
    return _run(  # type: ignore[no-any-return]
        tool_context,
        "check_service_status",
        {"service_ids": service_ids, "category": category},
        lambda r: tools.check_service_status(r.ctx.text, service_ids, category, r.ctx.services),
    )


@tool(context=True)
def calculate_priority(
    category: str, outage_match: bool, tool_context: ToolContext, known_issue: bool = False
) -> dict[str, Any]:
    """Weighted priority score (VIP, outage or known issue, urgency words, sentiment,
    waiting time, repeat contact) giving low / normal / high / urgent with reasons.

    Args:
        category: The category from classify_issue.
        outage_match: outage_match from check_service_status.
        known_issue: known_issue from check_service_status.
    """
    run: AgentRun = tool_context.invocation_state["routing_run"]
    # What check_service_status found wins over what the model passed on: the model cannot
    # drop the outage or known-issue signal (the local provider passes both the same way).
    service = run.trace.last("check_service_status")
    if service is not None:
        outage_match = bool(service.get("outage_match"))
        known_issue = bool(service.get("known_issue"))

    def fn(r: AgentRun) -> dict[str, Any]:
        history = tools.get_historical_context(r.ctx.history)
        return tools.calculate_priority(
            text=r.ctx.text,
            vip_tier=r.ctx.customer.vip_tier,
            account_type=r.ctx.customer.account_type,
            outage_match=outage_match,
            known_issue=known_issue,
            waiting_minutes=r.ctx.waiting_minutes,
            recent_tickets=history["tickets_last_7_days"],
            category=category,
        )

    return _run(  # type: ignore[no-any-return]
        tool_context,
        "calculate_priority",
        {"category": category, "outage_match": outage_match, "known_issue": known_issue},
        fn,
    )


@tool(context=True)
def route_to_team(category: str, tool_context: ToolContext) -> dict[str, Any]:
    """The team for a category (admin-managed map plus rules such as VIP + billing).

    Args:
        category: The category from classify_issue.
    """
    return _run(  # type: ignore[no-any-return]
        tool_context,
        "route_to_team",
        {"category": category},
        lambda r: tools.route_to_team(
            category=category,
            vip_tier=r.ctx.customer.vip_tier,
            team_map=r.ctx.team_map,
            vip_billing_team=r.ctx.vip_billing_team,
            team_names=r.ctx.team_names,
        ),
    )


@tool(context=True)
def get_historical_context(tool_context: ToolContext) -> dict[str, Any]:
    """The customer's recent tickets, common issues and past escalations."""
    return _run(  # type: ignore[no-any-return]
        tool_context,
        "get_historical_context",
        {},
        lambda r: tools.get_historical_context(r.ctx.history),
    )


AGENT_TOOLS = [
    classify_issue,
    extract_entities,
    check_vip_status,
    check_service_status,
    calculate_priority,
    route_to_team,
    get_historical_context,
]


def build_prompt(ctx: TicketContext, fence: DataFence | None = None) -> str:
    """The user turn (redacted on its way out by ``RedactingModel``, as everything is): the
    customer's text between this request's data tags (``support.prompt_data``), so nothing
    it says reads as an instruction of ours."""
    fence = fence or data_fence(ctx.text)
    return (
        f"Ticket {ctx.number}. The customer's text (redacted) is the data between "
        f"{fence.open} and {fence.close}:\n{fence.wrap(ctx.text)}\n\nRoute this ticket."
    )


class AgentProvider:
    """Strands agent over a model from ``strands_model`` (or an injected factory in tests)."""

    def __init__(
        self,
        name: str = "bedrock",
        model_factory: Callable[[], Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.model_factory = model_factory or (lambda: strands_model("routing", name))
        self.sleep = sleep

    def _once(self, ctx: TicketContext) -> ProviderResult:
        model = RedactingModel(self.model_factory(), names=ctx.redact_names)
        trace = ToolTrace()
        run = AgentRun(ctx=ctx, trace=trace)
        agent = Agent(
            model=model,
            tools=list(AGENT_TOOLS),
            system_prompt=SYSTEM_PROMPT,
            callback_handler=None,
            retry_strategy=None,
        )
        result = agent(
            build_prompt(ctx),
            structured_output_model=RoutingDecisionOutput,
            invocation_state={"routing_run": run},
        )
        if run.errors:  # a bug in a tool: surfaced, not hidden behind the model's answer
            raise run.errors[0]
        decision = result.structured_output
        if not isinstance(decision, RoutingDecisionOutput):
            raise StructuredOutputException("The model gave no routing decision.")
        usage = result.metrics.accumulated_usage
        tokens_in, tokens_out = int(usage["inputTokens"]), int(usage["outputTokens"])
        model_id = model_id_of(model)
        return ProviderResult(
            decision=decision,
            trace=trace,
            provider=self.name,
            model_id=model_id,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost_usd(model_id, tokens_in, tokens_out),
        )

    def decide(self, ctx: TicketContext) -> ProviderResult:
        return call_with_retries(self.name, lambda: self._once(ctx), sleep=self.sleep)
