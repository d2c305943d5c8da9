"""Seed 003 (call recording analytics): the retrieval API, called from a dashboard on
another origin.

Quoted from the seed: "API Endpoints: ``GET /analytics/{hash}`` - Get by hash; ``GET
/analytics?callId=xxx`` - Get by callId (converted to hash); ``GET /analytics`` - List
recent records"; "CORS: Enabled; Authentication: None (configurable)"; "``OPTIONS
/analytics/{hash}`` - CORS preflight"; and the response::

    {"message": "Call recording analytics retrieved successfully", "count": 1,
     "items": [{"hash": "abc123...", "call_id": "call-123",
                "call_summary": "Customer called regarding...",
                "call_categories": ["Billing", "Customer service"],
                "topics": ["payment", "invoice"], "transcript": "Full transcript...", ...}]}
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from django.test import Client

from calls.models import Call
from tests.seed_contracts.conftest import DASHBOARD

pytestmark = pytest.mark.django_db

ITEM_FIELDS = {"hash", "call_id", "call_summary", "call_categories", "topics", "transcript"}


def _preflight(client: Client, path: str, headers: str = "x-api-key") -> Any:
    return client.options(
        path,
        HTTP_ORIGIN=DASHBOARD,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS=headers,
    )


def _check_envelope(body: dict[str, Any], call: Call) -> None:
    assert body["message"] == "Call recording analytics retrieved successfully"
    assert body["count"] == 1
    [item] = body["items"]
    assert set(item) >= ITEM_FIELDS
    assert item["hash"] == hashlib.md5(b"call-123", usedforsecurity=False).hexdigest()
    assert item["call_id"] == "call-123"
    assert item["call_categories"] == ["Billing", "Customer service"]
    assert item["topics"] == ["payment", "invoice"]
    assert item["transcript"] == "Full transcript..."


def _seed_requests(call: Call) -> list[tuple[str, dict[str, str]]]:
    return [
        ("/analytics", {}),
        (f"/analytics/{call.hash}", {}),
        ("/analytics", {"callId": "call-123"}),
    ]


def test_three_requests_from_another_origin_with_an_api_key(
    client: Client, analysed: Call, agent_key: str, settings: Any
) -> None:
    settings.CORS_ALLOWED_ORIGINS = [DASHBOARD]
    for path, query in _seed_requests(analysed):
        preflight = _preflight(client, path)
        assert preflight.status_code == 200
        assert preflight["Access-Control-Allow-Origin"] == DASHBOARD
        assert "GET" in preflight["Access-Control-Allow-Methods"]
        assert "x-api-key" in preflight["Access-Control-Allow-Headers"]
        response = client.get(path, query, HTTP_ORIGIN=DASHBOARD, HTTP_X_API_KEY=agent_key)
        assert response.status_code == 200, (path, response.content)
        assert response["Access-Control-Allow-Origin"] == DASHBOARD
        assert response["Access-Control-Allow-Credentials"] == "true"
        _check_envelope(response.json(), analysed)


def test_three_requests_without_authentication_when_made_public(
    client: Client, analysed: Call, settings: Any
) -> None:
    """ "Authentication: None (configurable)": ``SEED_ANALYTICS_PUBLIC``."""
    settings.CORS_ALLOWED_ORIGINS = [DASHBOARD]
    settings.SEED_ANALYTICS_PUBLIC = True
    for path, query in _seed_requests(analysed):
        assert _preflight(client, path, headers="content-type").status_code == 200
        response = client.get(path, query, HTTP_ORIGIN=DASHBOARD)
        assert response.status_code == 200, (path, response.content)
        assert response["Access-Control-Allow-Origin"] == DASHBOARD
        _check_envelope(response.json(), analysed)


def test_not_public_by_default(client: Client, analysed: Call) -> None:
    for path, query in _seed_requests(analysed):
        assert client.get(path, query).status_code == 401
    # and the public switch opens only the seed paths, never /api/analytics
    with pytest.MonkeyPatch.context() as patch:
        from django.conf import settings

        patch.setattr(settings, "SEED_ANALYTICS_PUBLIC", True)
        assert client.get("/api/analytics").status_code == 401
        assert client.get("/analytics").status_code == 200
