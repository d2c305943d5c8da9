"""A JSON number past a float's range (``1e400``) is read by Python as ``inf``, which
PostgreSQL's jsonb refuses: a body holding one was a 500 where it was kept (the chatbot
hand-off's transcript, a contact record at ``/api/calls/events``: Firehose retries a 500
until it gives up). Both JSON readers now answer it with a 400 that says so."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from calls.tests.test_hostile_records import ctr
from channels_app.tests.conftest import TEST_SECRET, make_account
from support.models import ApiKeyRole
from support.parsing import UnreadableJson, json_loads
from support.services import api_key_create

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1.5e309"])
def test_json_loads_refuses_a_number_out_of_range(number: str) -> None:
    with pytest.raises(UnreadableJson, match="out of range"):
        json_loads(f'{{"a": [1, {{"b": {number}}}]}}')
    assert json_loads('{"a": 1e308, "b": -2.5e-300}') == {"a": 1e308, "b": -2.5e-300}


def test_a_signed_hand_off_with_a_number_out_of_range_is_a_400() -> None:
    make_account("chatbot")
    body = (
        b'{"source":"bot","customer_email":"a@example.com","subject":"s",'
        b'"initial_message":"hi","session_id":"s-1","transcript":[{"from":"c","text":1e400}]}'
    )
    signature = "sha256=" + hmac.new(TEST_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = Client(raise_request_exception=False).generic(
        "POST",
        "/api/webhooks/chatbot",
        data=body,
        content_type="application/json",
        HTTP_X_SIGNATURE_256=signature,
    )
    assert response.status_code == 400, response.content[:300]
    assert "out of range" in response.json()["error"]["message"]


def test_a_contact_record_with_a_number_out_of_range_is_a_400(django_user_model: Any) -> None:
    service = django_user_model.objects.create_user(username="firehose")
    _, raw = api_key_create(name="k", user=service, role=ApiKeyRole.INTEGRATION)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    body = json.dumps(ctr("inf-big-1", Extra="PLACEHOLDER")).replace('"PLACEHOLDER"', "1e400")
    response = client.generic(
        "POST", "/api/calls/events", data=body, content_type="application/json"
    )
    assert response.status_code == 400, response.content[:300]
    assert "out of range" in json.dumps(response.json())
