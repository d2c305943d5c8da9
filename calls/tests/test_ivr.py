"""IVR journey failure detection (pure)."""

from __future__ import annotations

import json

import pytest

from calls import ivr


def steps(*items):
    return {
        "ivr_journey": json.dumps(
            [dict(zip(("flow", "module", "prompt", "result"), i, strict=True)) for i in items]
        )
    }


def assess(attributes, **kw):
    base = {"reached_agent": False, "queued": False, "disconnect_reason": "CUSTOMER_DISCONNECT"}
    return ivr.assess({}, attributes, **{**base, **kw})


@pytest.mark.parametrize(
    ("attributes", "kind"),
    [
        (steps(("Main", "InvokeExternalResource", "Lookup", "Error")), "error_branch"),
        (steps(("Main", "GetUserInput", "PIN", "MaxRetries")), "max_retries"),
        (steps(*[("Main", "GetUserInput", "PIN", "NoMatch")] * 3), "max_retries"),
        (
            steps(
                ("A", "Transfer", "", "Success"),
                ("B", "Transfer", "", "Success"),
                ("A", "Transfer", "", "Success"),
                ("B", "Transfer", "", "Success"),
                ("A", "Transfer", "", "Success"),
            ),
            "transfer_loop",
        ),
        (
            steps(
                ("Main", "PlayPrompt", "Hi", "Success"), ("Main", "GetUserInput", "Menu", "Timeout")
            ),
            "timeout",
        ),
        (
            steps(("Main", "PlayPrompt", "Hi", "Success"), ("Main", "GetUserInput", "Menu", "2")),
            "disconnect_in_ivr",
        ),
    ],
)
def test_failures(attributes, kind):
    verdict = assess(attributes)
    assert (verdict.outcome, verdict.failure_kind) == ("failed", kind)
    assert verdict.failure_reason


def test_success_paths():
    two = steps(
        ("Main", "GetUserInput", "Menu", "1"), ("Billing", "TransferContactToQueue", "", "Success")
    )
    assert assess(two, reached_agent=True, disconnect_reason="AGENT_DISCONNECT").outcome == "agent"
    assert assess({**two, "ivr_completed": "true"}).outcome == "self_service"
    assert assess(two, queued=True).outcome == "queued"
    # Two retries stay under the limit of three.
    retries = steps(
        *[("Main", "GetUserInput", "PIN", "Timeout")] * 2, ("Main", "GetUserInput", "PIN", "1234")
    )
    assert not assess(retries, reached_agent=True).failed


def test_path_attribute_and_flow_logs():
    assert [s["flow"] for s in ivr.journey_steps({}, {"ivr_path": "Main>Billing>Payments"})] == [
        "Main",
        "Billing",
        "Payments",
    ]
    logs = {
        "ContactFlowLogs": [
            {
                "ContactFlowName": "Main",
                "ContactFlowModuleType": "GetUserInput",
                "Parameters": {"Text": "Menu"},
                "Results": "1",
                "Timestamp": "t",
            }
        ]
    }
    assert ivr.journey_steps(logs, {}) == [
        {
            "flow": "Main",
            "module": "GetUserInput",
            "prompt": "Menu",
            "input": "",
            "result": "1",
            "time": "t",
        }
    ]
    assert ivr.journey_steps({}, {"ivr_journey": "not json"}) == []
