"""Machine intake with a lone UTF-16 surrogate (JSON ``"\\ud800"``): valid JSON that
PostgreSQL cannot store (a 500 before). It is kept as U+FFFD."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from tickets.context.models import Interaction, Order
from tickets.context.tests.test_intake_api import (
    INTERACTIONS,
    ORDERS,
    _interaction,
    _key_client,
    _order,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def crm(django_user_model: Any) -> APIClient:
    return _key_client(django_user_model.objects.create_user(username="svc-crm-sur"))


def _post_with_surrogate(client: APIClient, url: str, body: Any) -> Any:
    raw = json.dumps(body).replace("SURROGATE", "\\ud800")
    assert "\\ud800" in raw
    return client.post(url, raw, content_type="application/json")


def test_an_interaction_summary_with_a_lone_surrogate(crm: APIClient, customer: Any) -> None:
    body = _interaction(customer.pk, summary="late SURROGATE parcel")
    response = _post_with_surrogate(crm, INTERACTIONS, body)
    assert response.status_code == 201, response.content
    assert Interaction.objects.get().summary == "late \ufffd parcel"


def test_order_items_with_a_lone_surrogate(crm: APIClient, customer: Any) -> None:
    body = _order(customer.pk, items=[{"xSURROGATE": "SURROGATE"}])
    response = _post_with_surrogate(crm, ORDERS, body)
    assert response.status_code == 201, response.content
    assert Order.objects.get().items == [{"x\ufffd": "\ufffd"}]
