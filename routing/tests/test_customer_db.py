"""Seed 004's customer database behind the VIP tool: asked when configured, with the bearer
token, cached per process, mapped onto this project's tier and account type, and local data
on any failure, with what happened in the decision's tool calls."""

from __future__ import annotations

import pytest
import requests
import responses

from routing import customer_db, services
from routing.customer_db import customer_lookup
from tickets import services as ticket_services
from tickets.models import Customer

pytestmark = pytest.mark.django_db
BASE = "https://customers.example.test/api"


@pytest.fixture(autouse=True)
def _empty_cache():
    customer_db.customer_cache_clear()
    yield
    customer_db.customer_cache_clear()


@pytest.fixture
def db_on(settings):
    settings.ROUTING_CUSTOMER_DB_URL = BASE + "/"
    settings.ROUTING_CUSTOMER_DB_TOKEN = "cdb-token"
    settings.ROUTING_CUSTOMER_DB_CACHE_SECONDS = 300.0
    settings.ROUTING_CUSTOMER_DB_VIP_TIER = "gold"
    return settings


def _lookup(customer_id: int = 7, tier: str = "none", kind: str = "individual"):
    return customer_lookup(customer_id=customer_id, vip_tier=tier, account_type=kind)


@responses.activate
def test_the_decision_uses_the_customer_databases_tier(
    db_on, routing_on, teams, customer, django_capture_on_commit_callbacks
):
    responses.get(
        f"{BASE}/customers/{customer.pk}",
        json={"customer_id": str(customer.pk), "vip_tier": "platinum", "account_type": "business"},
    )
    ticket = ticket_services.ticket_create(customer=customer, subject="Refund", body="refund?")
    with django_capture_on_commit_callbacks(execute=True):
        decision = services.routing_decide(ticket_id=ticket.pk)
    [call] = responses.calls
    assert call.request.headers["Authorization"] == "Bearer cdb-token"
    [vip] = [c for c in decision.tool_calls if c["name"] == "check_vip_status"]
    output = vip["output"]
    assert (output["vip_tier"], output["account_type"], output["source"]) == (
        "platinum",
        "business",
        "customer_db",
    )
    assert output["customer_db"]["status"] == "ok"
    assert "cdb-token" not in str(decision.tool_calls)
    assert "+30 platinum VIP" in decision.reasons
    customer.refresh_from_db()
    assert customer.vip_tier == "none"  # the customer row is not changed


@responses.activate
def test_a_customer_with_an_external_id_is_asked_by_it(db_on, customer):
    """The customer database is the ticketing system's: it knows the customer by the id
    ``POST /tickets`` took (``CUST-42``), not by this platform's. Quoted as one path
    segment; a customer without one is asked by its internal id, as before."""
    customer.external_id = "CUST/42 ?x"
    customer.save(update_fields=["external_id"])
    responses.get(f"{BASE}/customers/CUST%2F42%20%3Fx", json={"vip_tier": "platinum"})
    responses.get(f"{BASE}/customers/{customer.pk}", json={"vip_tier": "silver"})
    found = customer_db.customer_vip_get(customer)
    assert (found.vip_tier, found.source) == ("platinum", "customer_db")
    plain = Customer.objects.create(name="Grace")
    responses.get(f"{BASE}/customers/{plain.pk}", json={"vip_tier": "gold"})
    assert customer_db.customer_vip_get(plain).vip_tier == "gold"
    assert [c.request.url for c in responses.calls] == [
        f"{BASE}/customers/CUST%2F42%20%3Fx",
        f"{BASE}/customers/{plain.pk}",
    ]


@responses.activate
def test_without_a_customer_database_the_local_tier_is_used(settings, customer):
    settings.ROUTING_CUSTOMER_DB_URL = ""
    found = _lookup(tier="silver", kind="business")
    assert (found.vip_tier, found.account_type, found.source, found.record) == (
        "silver",
        "business",
        "local",
        {},
    )
    assert not responses.calls


@responses.activate
def test_answers_are_cached_per_customer(db_on):
    responses.get(f"{BASE}/customers/7", json={"is_vip": True})
    responses.get(f"{BASE}/customers/8", json={"is_vip": False})
    first, again = _lookup(7), _lookup(7)
    assert (first.vip_tier, first.source, first.record["status"]) == ("gold", "customer_db", "ok")
    assert (again.vip_tier, again.source, again.record) == (
        "gold",
        "customer_db",
        {"status": "ok", "cached": True},
    )
    assert _lookup(8).vip_tier == "none"
    assert [c.request.url for c in responses.calls] == [
        f"{BASE}/customers/7",
        f"{BASE}/customers/8",
    ]
    db_on.ROUTING_CUSTOMER_DB_CACHE_SECONDS = 0  # off: asked every time
    customer_db.customer_cache_clear()
    _lookup(7), _lookup(7)
    assert len(responses.calls) == 4


@responses.activate
@pytest.mark.parametrize(
    ("reply", "error", "http_status"),
    [
        ({"status": 503, "body": "busy"}, "HTTP 503", 503),
        ({"status": 401, "json": {"error": "bad token"}}, "HTTP 401", 401),
        ({"body": requests.ConnectTimeout("timed out")}, "ConnectTimeout", None),
        ({"body": requests.ConnectionError("refused")}, "ConnectionError", None),
        ({"body": "<html>ok</html>"}, "malformed: the answer is not JSON", 200),
        ({"json": {"name": "Ada"}}, "malformed: no vip_tier of a known tier", 200),
        ({"json": {"vip_tier": "diamond"}}, "malformed: no vip_tier of a known tier", 200),
        ({"json": ["gold"]}, "malformed: the answer is not a JSON object", 200),
        ({"status": 302, "headers": {"Location": "https://elsewhere.test/"}}, "HTTP 302", 302),
        # a record larger than any customer's: refused, never read whole into memory
        ({"body": '{"vip_tier": "gold", "x": "' + "x" * 70_000 + '"}'}, "AnswerTooLarge", None),
    ],
)
def test_any_failure_falls_back_to_local_data_recorded_and_not_cached(
    db_on, caplog, reply, error, http_status
):
    responses.get(f"{BASE}/customers/7", **reply)
    found = _lookup(7, tier="silver", kind="enterprise")
    assert (found.vip_tier, found.account_type, found.source) == ("silver", "enterprise", "local")
    assert found.record["status"] == "failed"
    assert found.record["error"].startswith(error)
    assert found.record.get("http_status") == http_status
    assert "Customer database lookup of customer 7 failed" in caplog.text
    assert "cdb-token" not in caplog.text
    _lookup(7)  # a failure is not cached: the next ticket asks again
    assert len(responses.calls) == 2


@responses.activate
def test_a_customer_the_database_does_not_know_keeps_local_data_and_is_cached(db_on):
    responses.get(f"{BASE}/customers/7", status=404, json={"error": "not found"})
    found = _lookup(7, tier="gold")
    assert (found.vip_tier, found.source, found.record["status"]) == ("gold", "local", "not_found")
    assert _lookup(7, tier="gold").record == {"status": "not_found", "cached": True}
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"vip_tier": "Platinum", "account_type": "ENTERPRISE"}, ("platinum", "enterprise")),
        ({"tier": "silver", "is_vip": False}, ("silver", "individual")),  # the tier wins
        ({"is_vip": True, "account_type": "reseller"}, ("gold", "individual")),  # unknown type
        ({"is_vip": False}, ("none", "individual")),
        # seed 004's event schema: customer_context {is_vip, account_type}
        ({"customer_context": {"is_vip": True, "account_type": "business"}}, ("gold", "business")),
        ({"vip_tier": "none", "customer_context": {"vip_tier": "gold"}}, ("none", "individual")),
    ],
)
def test_the_seeds_vip_fields_map_onto_the_tier(settings, body, expected):
    settings.ROUTING_CUSTOMER_DB_VIP_TIER = "gold"
    assert customer_db.customer_fields_map(body, local_account_type="individual") == expected
