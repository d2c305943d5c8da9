"""IVR journeys (seed 002): a step timeline from the record, and failure detection.

Steps come from, in order of preference:

1. Amazon Connect flow logs attached to the record (``ContactFlowLogs``: the CloudWatch
   flow-log entries ``ContactFlowName``, ``ContactFlowModuleType``, ``Parameters``,
   ``Results``, ``Timestamp``), e.g. by the Lambda or Firehose transform that ships them;
2. a contact attribute ``ivr_journey`` set by the flows: a JSON list of
   ``{"flow", "module", "prompt", "input", "result", "time"}``;
3. a contact attribute ``ivr_path`` (``"Main>Billing>Payments"``): menu names only.

Pure functions: no database.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from calls.parsers import obj, objects
from support.parsing import json_loads

ERROR_RESULTS = frozenset({"error", "failed", "failure", "lambdaerror", "noroute"})
RETRY_RESULTS = frozenset({"timeout", "nomatch", "nomatchingcondition", "invalidinput"})
MAX_RETRY_RESULTS = frozenset({"maxretries", "max_retries_exceeded", "maxretriesexceeded"})


@dataclass(frozen=True)
class JourneyVerdict:
    steps: list[dict[str, Any]]
    outcome: str  # JourneyOutcome value
    failure_kind: str = ""
    failure_reason: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.failure_kind)


def _step(
    flow: Any, module: Any, prompt: Any, input_: Any, result: Any, time: Any
) -> dict[str, Any]:
    return {
        "flow": str(flow or ""),
        "module": str(module or ""),
        "prompt": str(prompt or ""),
        "input": str(input_ or ""),
        "result": str(result or ""),
        "time": str(time or ""),
    }


def journey_steps(record: dict[str, Any], attributes: dict[str, Any]) -> list[dict[str, Any]]:
    logs = record.get("ContactFlowLogs") or record.get("FlowLogs")
    if isinstance(logs, list) and logs:
        steps = []
        for i, entry in enumerate(objects(logs, "ContactFlowLogs")):
            params = obj(entry.get("Parameters"), f"ContactFlowLogs[{i}].Parameters")
            prompt = params.get("Text") or params.get("PromptLocation") or params.get("Name") or ""
            input_ = params.get("Input") or params.get("Value") or params.get("StoredCustomerInput")
            steps.append(
                _step(
                    entry.get("ContactFlowName"),
                    entry.get("ContactFlowModuleType"),
                    prompt,
                    input_,
                    entry.get("Results"),
                    entry.get("Timestamp"),
                )
            )
        return steps
    raw = attributes.get("ivr_journey") or attributes.get("ivrJourney")
    if raw:
        try:
            # Set by a contact flow from what callers typed: read like any JSON from outside.
            items = (
                json_loads(raw, what="The ivr_journey attribute") if isinstance(raw, str) else raw
            )
        except ValueError:
            items = []
        if isinstance(items, list):
            return [
                _step(
                    i.get("flow"),
                    i.get("module"),
                    i.get("prompt"),
                    i.get("input"),
                    i.get("result"),
                    i.get("time"),
                )
                for i in items
                if isinstance(i, dict)
            ]
    path = attributes.get("ivr_path") or attributes.get("MenuPath")
    if isinstance(path, str) and path:
        return [_step(part.strip(), "Menu", "", "", "", "") for part in path.split(">") if part]
    return []


def _norm(value: str) -> str:
    return value.replace(" ", "").replace("-", "").lower()


def assess(
    record: dict[str, Any],
    attributes: dict[str, Any],
    *,
    reached_agent: bool,
    queued: bool,
    disconnect_reason: str,
    max_retries: int = 3,
) -> JourneyVerdict:
    """Outcome and the first failure found (errors, retries, loops, timeouts, hang-ups)."""
    steps = journey_steps(record, attributes)
    outcome = "agent" if reached_agent else "queued" if queued else "self_service"

    def fail(kind: str, reason: str) -> JourneyVerdict:
        return JourneyVerdict(steps, "failed", kind, reason)

    for step in steps:
        result = _norm(step["result"])
        if result in ERROR_RESULTS:
            return fail(
                "error_branch",
                f"The {step['module'] or 'step'} in flow {step['flow']!r} took its error branch.",
            )
        if result in MAX_RETRY_RESULTS:
            return fail(
                "max_retries",
                f"The caller hit the maximum retries at {step['prompt'] or step['module']!r} "
                f"in flow {step['flow']!r}.",
            )
    retries = Counter(
        (s["flow"], s["module"], s["prompt"]) for s in steps if _norm(s["result"]) in RETRY_RESULTS
    )
    for (flow, module, prompt), count in retries.items():
        if count >= max_retries:
            return fail(
                "max_retries",
                f"{count} failed attempts at {prompt or module!r} in flow {flow!r}.",
            )
    flows: list[str] = []
    for s in steps:
        if s["flow"] and (not flows or flows[-1] != s["flow"]):
            flows.append(s["flow"])
    looped = [name for name, n in Counter(flows).items() if n >= 3]
    if looped:
        return fail(
            "transfer_loop", f"The caller was transferred back to {looped[0]!r} repeatedly."
        )
    ivr_only = not reached_agent and not queued
    if ivr_only and steps and _norm(steps[-1]["result"]) == "timeout":
        return fail(
            "timeout", f"The caller timed out at {steps[-1]['prompt'] or steps[-1]['module']!r}."
        )
    completed = str(attributes.get("ivr_completed", "")).lower() in ("true", "1", "yes")
    if ivr_only and steps and disconnect_reason == "CUSTOMER_DISCONNECT" and not completed:
        last = steps[-1]
        where = last["prompt"] or last["module"] or last["flow"]
        return fail("disconnect_in_ivr", f"The caller hung up in the IVR at {where!r}.")
    return JourneyVerdict(steps, outcome)
