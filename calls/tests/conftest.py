from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SF_LOGIN = "https://login.salesforce.com/services/oauth2/token"
SF_INSTANCE = "https://example.my.salesforce.com"
SF_SOBJECTS = f"{SF_INSTANCE}/services/data/v62.0/sobjects"
SF_TOKEN_BODY = {
    "access_token": "00D5e000000XXXX!AQ0AQExampleAccessToken",
    "signature": "Q2d2ZXJ5U2lnbmF0dXJlRXhhbXBsZQ==",
    "scope": "api",
    "instance_url": SF_INSTANCE,
    "id": "https://login.salesforce.com/id/00D5e000000XXXXEAA/0055e000003XXXXAAA",
    "token_type": "Bearer",
    "issued_at": "1732550400000",
}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def calls_settings(settings: Any, tmp_path: Path) -> Any:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.CALLS_TRANSCRIPTION_BACKEND = "local"
    settings.CALLS_AI_PROVIDER = "local"
    settings.SALESFORCE_ENABLED = False
    settings.SITE_URL = "https://support.example.com"
    # The bucket the fixture contact trace records name (Recording.Location).
    settings.CALLS_RECORDINGS_BUCKET = "connect-recordings-example"
    settings.CALLS_ALLOWED_S3_BUCKETS = []
    return settings


@pytest.fixture
def integration_key(django_user_model: Any) -> tuple[Any, str]:
    """An integration API key (the Connect forwarder's machine credential) and its raw key."""
    from support.models import ApiKeyRole
    from support.services import api_key_create

    service = django_user_model.objects.create_user(username="svc-connect")
    return api_key_create(name="connect", user=service, role=ApiKeyRole.INTEGRATION)


@pytest.fixture
def integration_client(integration_key: tuple[Any, str]) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {integration_key[1]}")
    return client


@pytest.fixture
def salesforce(calls_settings: Any) -> Any:
    calls_settings.SALESFORCE_ENABLED = True
    calls_settings.SALESFORCE_CLIENT_ID = "3MVG9example"
    calls_settings.SALESFORCE_CLIENT_SECRET = "example-secret"
    calls_settings.SALESFORCE_API_VERSION = "v62.0"
    return calls_settings


def place_result(contact_id: str, name: str, doc: Any) -> None:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    default_storage.save(f"calls/results/{contact_id}/{name}", ContentFile(json.dumps(doc)))


def kinesis(*records: Any) -> dict[str, Any]:
    """``records`` as a Kinesis batch reaches a Lambda (and the forwarder posts it on)."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "1",
                    "sequenceNumber": f"4959033022767391722317744727084645658{i}",
                    "data": base64.b64encode(json.dumps(r).encode()).decode(),
                    "approximateArrivalTimestamp": 1732550400.123,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:4959033022767391722317744727084645658{i}",
                "eventName": "aws:kinesis:record",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/connect-ctr",
            }
            for i, r in enumerate(records)
        ]
    }


def on_event_bus(detail_type: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as an EventBridge rule's API destination posts it: the bus's envelope,
    with a detail-type the publisher chose (Connect itself publishes no CTR on a bus)."""
    return {
        "version": "0",
        "id": f"bus-{detail_type.replace(' ', '-').lower()}",
        "detail-type": detail_type,
        "source": "buddie.connect",
        "account": "123456789012",
        "time": "2026-11-20T10:12:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": record,
    }
