"""Seed 003's /api/analytics shape."""

from __future__ import annotations

import hashlib

import pytest

from calls.models import Call, CallAnalytics, QueueTeam
from support.middleware import NUL_PATH_MESSAGE
from tickets.models import Team

pytestmark = pytest.mark.django_db


@pytest.fixture
def analysed(db, agent):
    billing = Team.objects.create(name="Billing", slug="billing")
    billing.members.add(agent)
    QueueTeam.objects.create(queue_name="BillingQueue", team=billing)
    call = Call.objects.create(
        contact_id="call-123",
        queue_name="BillingQueue",
        s3_input_uri="s3://in/call-123.wav",
        s3_output_uri="s3://out/call-123/results.json",
    )
    CallAnalytics.objects.create(
        call=call,
        call_summary="Customer called regarding an invoice.",
        call_categories=["Billing", "Customer service"],
        topics=["payment", "invoice"],
        transcript="Full transcript...",
        audio_summary="A",
        topic_summary="B",
        bedrock_status="Success",
        produced_by="data_automation",
    )
    return call


def test_list_has_the_seed_shape(agent_client, analysed):
    body = agent_client.get("/api/analytics").json()
    assert set(body) == {"message", "count", "items"}
    assert body["message"] == "Call recording analytics retrieved successfully"
    assert body["count"] == 1
    item = body["items"][0]
    assert item["hash"] == hashlib.md5(b"call-123", usedforsecurity=False).hexdigest()
    assert {
        k: item[k]
        for k in (
            "call_id",
            "call_summary",
            "call_categories",
            "topics",
            "transcript",
            "audio_summary",
            "topic_summary",
            "bedrock_status",
            "s3_input_uri",
            "s3_output_uri",
        )
    } == {
        "call_id": "call-123",
        "call_summary": "Customer called regarding an invoice.",
        "call_categories": ["Billing", "Customer service"],
        "topics": ["payment", "invoice"],
        "transcript": "Full transcript...",
        "audio_summary": "A",
        "topic_summary": "B",
        "bedrock_status": "Success",
        "s3_input_uri": "s3://in/call-123.wav",
        "s3_output_uri": "s3://out/call-123/results.json",
    }
    assert isinstance(item["epchdatetimestamp"], int)
    assert item["created_at"].endswith("Z")


def test_by_hash_and_by_call_id(agent_client, analysed):
    by_hash = agent_client.get(f"/api/analytics/{analysed.hash}").json()
    by_id = agent_client.get("/api/analytics", {"callId": "call-123"}).json()
    assert by_hash == by_id
    assert by_hash["count"] == 1


def test_not_found_and_pagination(agent_client, analysed):
    missing = agent_client.get("/api/analytics/" + "0" * 32)
    assert missing.status_code == 404
    assert missing.json() == {
        "message": "No analytics found for this hash",
        "count": 0,
        "items": [],
    }
    assert agent_client.get("/api/analytics", {"callId": "nope"}).status_code == 404
    assert agent_client.get("/api/analytics", {"offset": "1"}).json()["count"] == 0
    assert agent_client.get("/api/analytics", {"limit": "x"}).status_code == 400


def test_needs_an_agent(api_client, analysed):
    assert api_client.get("/api/analytics").status_code in (401, 403)


def test_agents_see_only_calls_of_their_teams_queues(
    analysed, agent_client, other_agent, supervisor_client, django_assert_max_num_queries
):
    """Queue → team mapping: other teams' agents get an empty list and 404 on the hash;
    calls of an unmapped queue are for supervisors only."""
    from rest_framework.test import APIClient

    outside = APIClient()
    outside.force_authenticate(other_agent)
    assert outside.get("/api/analytics").json()["count"] == 0
    assert outside.get(f"/api/analytics/{analysed.hash}").status_code == 404
    assert outside.get("/api/analytics", {"callId": "call-123"}).status_code == 404

    unmapped = Call.objects.create(contact_id="call-456", queue_name="VipQueue")
    CallAnalytics.objects.create(call=unmapped, call_summary="VIP call.", produced_by="local")
    with django_assert_max_num_queries(3):
        mine = agent_client.get("/api/analytics").json()
    assert [i["call_id"] for i in mine["items"]] == ["call-123"]
    assert agent_client.get(f"/api/analytics/{unmapped.hash}").status_code == 404
    everything = supervisor_client.get("/api/analytics").json()
    assert sorted(i["call_id"] for i in everything["items"]) == ["call-123", "call-456"]
    assert supervisor_client.get(f"/api/analytics/{unmapped.hash}").status_code == 200


@pytest.mark.parametrize("bad", ["%00", "abc", "0" * 31 + "g", "a" * 33])
def test_a_hash_that_is_no_md5_digest_answers_400(bad, supervisor_client, analysed):
    """The schema's pattern (32 hex digits): a NUL in the path reached PostgreSQL (500)."""
    response = supervisor_client.get(f"/api/analytics/{bad}")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        NUL_PATH_MESSAGE  # refused before URL resolution (support.middleware)
        if bad == "%00"
        else "hash must be the 32-character hex MD5 digest of the call id."
    )


def test_a_hash_in_capitals_finds_the_call(supervisor_client, analysed):
    response = supervisor_client.get(f"/api/analytics/{analysed.hash.upper()}")
    assert response.status_code == 200
    assert response.json()["items"][0]["hash"] == analysed.hash
