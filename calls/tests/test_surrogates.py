"""Call events with a lone UTF-16 surrogate (JSON ``"\\ud800"``): valid JSON that jsonb
cannot store, so the batch's one INSERT failed and every record in it was lost (a 500).
Each is kept as U+FFFD, in the body and in Kinesis records decoded from it."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from calls.models import CallEvent
from calls.tests.conftest import kinesis, load

pytestmark = pytest.mark.django_db


def _post(client: Any, raw: str, capture: Any) -> Any:
    with capture(execute=True):
        return client.post("/api/calls/events", data=raw, content_type="application/json")


def test_a_record_with_a_lone_surrogate_is_kept(
    integration_client: Any, calls_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    record = {**load("contact_event_connected.json"), "Note": "SURROGATE"}
    raw = json.dumps(record).replace("SURROGATE", "\\ud800")
    response = _post(integration_client, raw, django_capture_on_commit_callbacks)
    assert response.status_code == 202, response.content
    assert (CallEvent.objects.get().payload or {})["Note"] == "\ufffd"


def test_a_kinesis_batch_with_a_lone_surrogate_keeps_every_record(
    integration_client: Any, calls_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ctr2 = {**load("ctr_billing.json"), "ContactId": "c2", "Recording": None}
    batch = kinesis(load("ctr_billing.json"), ctr2)
    data = json.dumps({**ctr2, "ContactId": "c3", "Note": "SURROGATE"})
    batch["Records"][1]["kinesis"]["data"] = base64.b64encode(
        data.replace("SURROGATE", "\\udfff").encode()
    ).decode()
    response = _post(integration_client, json.dumps(batch), django_capture_on_commit_callbacks)
    assert response.status_code == 202, response.content
    assert (response.json()["accepted"], response.json()["errors"]) == (2, [])
    assert (CallEvent.objects.get(contact_id="c3").payload or {})["Note"] == "\ufffd"
