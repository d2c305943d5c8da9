"""Shared pieces of the seed contract tests: an agent's API key (seed 004's "API Key"
authentication; seed 001's clients send a JWT, the platform's equivalent is a session or a
bearer token), a small knowledge base, an analysed call, and (from calls/tests) the Connect
forwarder's integration key and the calls and Salesforce settings (seed 002)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from calls.models import Call, CallAnalytics, QueueTeam
from calls.tests.conftest import (  # noqa: F401 - fixtures for seed 002's flows
    calls_settings,
    integration_client,
    integration_key,
    salesforce,
)
from knowledge.parsing import parse_jsonl
from knowledge.services import documents_ingest, source_get_or_create
from support.services import api_key_create
from tickets.models import Team

DASHBOARD = "https://dashboard.example.com"  # a browser client on another origin

ARTICLES = [
    {
        "id": "login",
        "title": "I cannot log in",
        "text": "Click 'Forgot password' on the sign-in page; we email you a reset link.",
        "url": "https://help.test/login",
        "tags": ["account"],
    },
    {
        "id": "outage",
        "title": "My internet is down",
        "text": "Restart the router; if the light stays red, check the service status page.",
        "url": "https://help.test/outage",
        "tags": ["network"],
    },
]


@pytest.fixture
def agent_key(agent: Any) -> str:
    return api_key_create(name="seed-client", user=agent)[1]


@pytest.fixture
def key_client(agent_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=agent_key)
    return client


@pytest.fixture
def supervisor_key_client(supervisor: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key_create(name="seed-sup", user=supervisor)[1])
    return client


@pytest.fixture
def kb(db: Any) -> Any:
    source = source_get_or_create(name="help")
    documents_ingest(source=source, items=parse_jsonl("\n".join(json.dumps(a) for a in ARTICLES)))
    return source


@pytest.fixture
def analysed(db: Any, agent: Any) -> Call:
    """Seed 003's example record ("call-123", Billing / Customer service, payment / invoice)
    on a queue mapped to the agent's team."""
    billing = Team.objects.create(name="Billing", slug="billing")
    billing.members.add(agent)
    QueueTeam.objects.create(queue_name="BillingQueue", team=billing)
    call = Call.objects.create(contact_id="call-123", queue_name="BillingQueue")
    CallAnalytics.objects.create(
        call=call,
        call_summary="Customer called regarding an invoice.",
        call_categories=["Billing", "Customer service"],
        topics=["payment", "invoice"],
        transcript="Full transcript...",
        bedrock_status="Success",
        produced_by="data_automation",
    )
    return call
