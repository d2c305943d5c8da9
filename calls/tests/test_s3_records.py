"""An S3 notification that carries several objects: every one is recorded and applied."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest

from calls import services
from calls.models import Call, EventStatus

pytestmark = pytest.mark.django_db


def test_s3_notification_with_several_records_applies_each(
    calls_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    bucket = calls_settings.CALLS_RECORDINGS_BUCKET

    def record(contact: str) -> dict[str, Any]:
        return {
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "bucket": {"name": bucket},
                "object": {"key": f"{contact}/result.json", "eTag": f"etag-{contact}"},
            },
        }

    body = json.dumps({"Records": [record("call-a"), record("call-b"), record("call-c")]})
    result = services.call_events_intake(body=body.encode(), schedule=False)
    assert len(result.accepted) == 3
    assert result.errors == []
    with (
        mock.patch("calls.tasks.call_pipeline_start"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        for event_id in result.accepted:
            assert services.call_event_process(event_id=event_id) == EventStatus.PROCESSED
    assert dict(Call.objects.values_list("contact_id", "s3_output_uri")) == {
        c: f"s3://{bucket}/{c}/result.json" for c in ("call-a", "call-b", "call-c")
    }
