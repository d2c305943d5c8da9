"""Demo calls: records and results shipped in ``calls/demo_data`` go through the real
intake, parsing and pipeline path (results placed in storage, as the local backend reads)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from calls import services
from calls.analytics.providers import CallAnalysisOutput, ModelProvider
from calls.models import AlertKind, AlertRule, Call, QueueTeam
from calls.transcription import LOCAL_RESULTS_DIR
from routing.providers.base import ProviderUnavailable

DATA = Path(__file__).resolve().parent / "demo_data"
TECH_CALL = "3f0c9b1e-2222-4c1d-8e77-0a1b2c3d4e5f"
BROKEN_CALL = "3f0c9b1e-9999-4c1d-8e77-0a1b2c3d4e5f"
# The bundled records name this (fictional) recordings bucket; the local backend never
# reads it, and the allow-list exception applies to this demo load only.
DEMO_RECORDINGS = ("connect-recordings-example/",)
# Queue → team for the demo's calls (teams of ``load_demo``, when they exist).
DEMO_QUEUES = {"BillingQueue": "billing", "SupportQueue": "customer-care"}


def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def _place(contact_id: str, name: str, doc: Any) -> None:
    path = f"{LOCAL_RESULTS_DIR}/{contact_id}/{name}"
    if default_storage.exists(path):
        default_storage.delete(path)
    default_storage.save(path, ContentFile(json.dumps(doc).encode()))


def _shifted(value: Any, by: timedelta) -> Any:
    """``value`` with every ``…Timestamp`` in it moved by ``by`` (a CTR keeps its shape)."""
    if isinstance(value, list):
        return [_shifted(item, by) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key.endswith("Timestamp") and isinstance(item, str):
            moved = datetime.fromisoformat(item.replace("Z", "+00:00")) + by
            out[key] = moved.astimezone(UTC).isoformat().replace("+00:00", "Z")
        else:
            out[key] = _shifted(item, by)
    return out


def _tech_ctr() -> dict[str, Any]:
    """The billing call's record, another caller on the Support queue two hours later (all
    its times move together: the call lasts as long)."""
    ctr = _shifted(copy.deepcopy(_load("ctr_billing.json")), timedelta(hours=1, minutes=57))
    ctr["ContactId"] = TECH_CALL
    ctr["CustomerEndpoint"]["Address"] = "+14155550122"
    ctr["Queue"]["Name"] = "SupportQueue"
    ctr["Agent"]["Username"] = "asmith"
    ctr["Attributes"] = {"ivr_path": "Main IVR>Support"}
    ctr["Recording"]["Location"] = f"connect-recordings-example/calls/{TECH_CALL}.wav"
    return ctr


def _agent_events(now: datetime) -> list[dict[str, Any]]:
    acw = copy.deepcopy(_load("agent_state_acw.json"))
    started = now - timedelta(minutes=12)
    acw["EventId"] = f"demo-acw-{started:%Y%m%d%H%M}"
    acw["EventTimestamp"] = now.isoformat().replace("+00:00", "Z")
    acw["CurrentAgentSnapshot"]["Contacts"][0]["StateStartTimestamp"] = started.isoformat()
    available = copy.deepcopy(acw)
    available["EventId"] = f"demo-available-{started:%Y%m%d%H%M}"
    available["AgentARN"] = acw["AgentARN"].replace("aaaaaaaa", "bbbbbbbb")
    snapshot = available["CurrentAgentSnapshot"]
    snapshot["Configuration"]["Username"] = "asmith"
    snapshot["Contacts"] = []
    snapshot["AgentStatus"]["StartTimestamp"] = (now - timedelta(minutes=3)).isoformat()
    return [acw, available]


class DemoBedrockOutage(ModelProvider):
    """Demo history: the billing call's summary was asked of Bedrock while it was
    throttling, so the local analysis stood in (the real fallback path; no AWS call)."""

    def __init__(self) -> None:
        super().__init__("bedrock", sleep=lambda seconds: None)

    def _once(self, transcript: str, names: Sequence[str]) -> tuple[CallAnalysisOutput, str]:
        raise ProviderUnavailable(
            "Demo history: Bedrock answered ThrottlingException (rate exceeded)"
        )


def _broken_ctr() -> dict[str, Any]:
    """Demo history: a CTR whose start time is not a time. It is recorded and fails to
    apply, as the dead-letter queue of seed 003 would hold it (a re-send retries it)."""
    ctr = copy.deepcopy(_load("ctr_billing.json"))
    ctr["ContactId"] = BROKEN_CALL
    ctr["InitiationTimestamp"] = "demo history: not a timestamp"
    return ctr


def load_demo_calls(progress: Callable[[str], None] = print) -> list[Call]:
    """Idempotent: records already received are duplicates, finished steps are skipped."""
    from tickets.models import Team

    for queue, slug in DEMO_QUEUES.items():
        team = Team.objects.filter(slug=slug).first()
        if team is not None:
            QueueTeam.objects.get_or_create(queue_name=queue, team=team)
    AlertRule.objects.get_or_create(
        name="Long after-contact work",
        defaults={
            "kind": AlertKind.STATE_LONGER_THAN,
            "state": "AfterContactWork",
            "threshold_minutes": 5,
        },
    )
    billing = _load("ctr_billing.json")
    _place(billing["ContactId"], "transcribe.json", _load("transcribe_billing.json"))
    _place(
        TECH_CALL,
        "result.json",
        {**_load("bda_standard_output.json"), "custom_output": _load("bda_custom_output.json")},
    )
    records = [
        billing,
        _load("ctr_ivr_failure.json"),
        _tech_ctr(),
        *_agent_events(datetime.now(UTC)),
        _broken_ctr(),
    ]
    result = services.call_events_intake(
        body=json.dumps(records).encode(), schedule=False, also_allow_s3=DEMO_RECORDINGS
    )
    for event_id in result.accepted:
        services.call_event_process(event_id=event_id)
    calls = list(Call.objects.filter(contact_id__in=[r.get("ContactId") for r in records[:3]]))
    for call in calls:
        # Inline so the demo is complete without a worker; queued runs find the work done.
        if services.call_transcribe(call_id=call.pk) == "done":
            outage = DemoBedrockOutage() if call.contact_id == billing["ContactId"] else None
            services.call_analyse(call_id=call.pk, provider=outage)
            services.call_salesforce_case(call_id=call.pk)
    progress(f"Demo calls: {len(calls)} calls, {len(result.accepted)} new records.")
    return calls
