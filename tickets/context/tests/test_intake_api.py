"""Machine intake: POST /api/customers/orders and /api/customers/interactions."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from support.models import ApiKeyRole, AuditLog
from support.services import api_key_create
from tickets import services as core
from tickets.context.intake import INTAKE_MAX_ITEMS
from tickets.context.models import Interaction, Order
from tickets.context.sentiment import Sentiment, register_analyser
from tickets.models import Customer

pytestmark = pytest.mark.django_db

ORDERS = "/api/customers/orders"
INTERACTIONS = "/api/customers/interactions"


def _key_client(user: Any, role: str = ApiKeyRole.INTEGRATION) -> APIClient:
    client = APIClient()
    raw = api_key_create(name=f"{user.username}-key", user=user, role=role)[1]
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


@pytest.fixture
def service(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="svc-crm")


@pytest.fixture
def crm(service: Any) -> APIClient:
    """An integration key (a CRM's machine credential) on a group-less service account."""
    return _key_client(service)


@pytest.fixture
def shop_customer(db: Any) -> Customer:
    return Customer.objects.create(name="Grace Hopper", external_id="CUST-42")


def _order(customer_id: Any, number: str = "SHOP-1", **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "number": number,
        "status": "paid",
        "total": "19.99",
        "placed_at": (timezone.now() - timedelta(days=2)).isoformat(),
        **extra,
    }


def _interaction(customer_id: Any, item_id: str = "act-1", **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "id": item_id,
        "occurred_at": (timezone.now() - timedelta(hours=3)).isoformat(),
        "channel": "phone",
        "kind": "note",
        "summary": "Asked about a late parcel.",
        **extra,
    }


def _post(client: APIClient, url: str, body: Any) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json")


# --- orders ---------------------------------------------------------------------------


def test_one_order_by_platform_id_is_created(crm, customer):
    response = _post(crm, ORDERS, _order(customer.pk, items=[{"sku": "A1", "quantity": 1}]))
    assert response.status_code == 201, response.json()
    assert response.json() == {"created": 1, "updated": 0}
    order = Order.objects.get()
    assert (order.customer_id, order.number, order.status) == (customer.pk, "SHOP-1", "paid")
    assert (order.total, order.currency, order.items) == (
        Decimal("19.99"),
        "USD",
        [{"sku": "A1", "quantity": 1}],
    )
    [audit] = AuditLog.objects.filter(action="customer_orders.intake")
    assert audit.object_type == "support.ApiKey"
    assert audit.details == {"created": 1, "updated": 0, "customer_ids": [customer.pk]}


def test_a_list_by_external_and_digit_ids_then_an_update(crm, customer, shop_customer):
    body = [
        _order("CUST-42", "SHOP-1"),
        _order(str(customer.pk), "SHOP-2", total=5, currency="eur"),
    ]
    response = _post(crm, ORDERS, body)
    assert (response.status_code, response.json()) == (201, {"created": 2, "updated": 0})
    assert dict(Order.objects.values_list("number", "customer_id")) == {
        "SHOP-1": shop_customer.pk,
        "SHOP-2": customer.pk,
    }
    assert Order.objects.get(number="SHOP-2").currency == "EUR"

    again = _post(crm, ORDERS, _order("CUST-42", "SHOP-1", status="shipped", total=21.5))
    assert (again.status_code, again.json()) == (200, {"created": 0, "updated": 1})
    order = Order.objects.get(number="SHOP-1")
    assert (order.status, order.total) == ("shipped", Decimal("21.50"))
    assert Order.objects.count() == 2


def test_any_bad_order_writes_nothing_and_names_each_item_and_field(crm, customer):
    body = [
        _order(customer.pk, "SHOP-1"),
        _order(customer.pk, "SHOP-2", total="12.345", status="lost"),
        _order(customer.pk, "SHOP-3", placed_at="2026-01-31T10:00:00"),
        "not an object",
        _order(customer.pk, "SHOP-1"),
    ]
    response = _post(crm, ORDERS, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"].startswith("Item 1: ")
    assert "nothing was written" in error["message"]
    items = error["details"]["items"]
    assert [(i["index"], sorted(i["errors"])) for i in items] == [
        (1, ["status", "total"]),
        (2, ["placed_at"]),
        (3, ["item"]),
        (4, ["number"]),
    ]
    assert items[1]["errors"]["placed_at"] == [
        "Needs a UTC offset (e.g. 2026-01-31T10:00:00Z or +02:00)."
    ]
    assert items[3]["errors"]["number"] == ["Also in item 0."]
    assert not Order.objects.exists()
    assert not AuditLog.objects.exists()


def test_unknown_customer_and_another_customers_number_are_item_errors(
    crm, customer, shop_customer
):
    Order.objects.create(
        customer=shop_customer,
        number="TAKEN",
        status="paid",
        total=1,
        placed_at=timezone.now(),
    )
    body = [
        _order(customer.pk, "TAKEN"),
        _order("NOBODY-1", "SHOP-9"),
        _order(99_999_999, "SHOP-8"),
        _order("9" * 30, "SHOP-7"),
        _order(True, "SHOP-6"),
    ]
    response = _post(crm, ORDERS, body)
    assert response.status_code == 400
    items = {i["index"]: i["errors"] for i in response.json()["error"]["details"]["items"]}
    assert items[0] == {"number": ["Order TAKEN belongs to another customer."]}
    assert list(items[1]) == list(items[2]) == list(items[3]) == ["customer_id"]
    assert items[1]["customer_id"][0].startswith("Unknown customer 'NOBODY-1'")
    assert list(items[4]) == ["customer_id"]
    assert Customer.objects.count() == 2  # none created
    assert Order.objects.count() == 1


# --- interactions ---------------------------------------------------------------------


def test_interactions_are_recorded_once_per_caller_id(crm, service, customer, shop_customer):
    body = [_interaction(customer.pk, "act-1"), _interaction("CUST-42", "act-2", kind="call")]
    response = _post(crm, INTERACTIONS, body)
    assert (response.status_code, response.json()) == (201, {"recorded": 2, "already_recorded": 0})
    rows = {row.source_key: row for row in Interaction.objects.all()}
    assert set(rows) == {f"crm:{service.pk}:act-1", f"crm:{service.pk}:act-2"}
    first = rows[f"crm:{service.pk}:act-1"]
    assert (first.customer_id, first.ticket_id, first.scope) == (customer.pk, None, "")
    assert (first.channel, first.kind, first.summary) == ("phone", "note", body[0]["summary"])
    assert first.sentiment_score is None  # no text, no score
    assert rows[f"crm:{service.pk}:act-2"].customer_id == shop_customer.pk

    retry = _post(crm, INTERACTIONS, body)
    assert (retry.status_code, retry.json()) == (200, {"recorded": 0, "already_recorded": 2})
    assert Interaction.objects.count() == 2
    assert AuditLog.objects.filter(action="customer_interactions.intake").count() == 2


def test_two_callers_ids_never_collide(crm, customer, django_user_model):
    other = _key_client(django_user_model.objects.create_user(username="svc-ops"))
    assert _post(crm, INTERACTIONS, _interaction(customer.pk, "42")).status_code == 201
    response = _post(other, INTERACTIONS, _interaction(customer.pk, "42"))
    assert response.json() == {"recorded": 1, "already_recorded": 0}
    assert Interaction.objects.count() == 2


def test_text_is_scored_through_the_redacting_path_and_not_stored(crm, customer, settings):
    seen: list[str] = []

    class Capture:
        name = "capture"
        sends_text = True  # an outside service: gets the text redacted

        def analyse(self, text: str) -> Sentiment:
            seen.append(text)
            return Sentiment(-0.8, "negative")

    register_analyser("capture", Capture)
    settings.SENTIMENT_BACKEND = "capture"
    text = "Ada Lovelace here, ada@example.com: this is the third time I ask!"
    response = _post(crm, INTERACTIONS, _interaction(customer.pk, text=text))
    assert response.status_code == 201
    [sent] = seen
    assert "Lovelace" not in sent
    assert "ada@example.com" not in sent
    row = Interaction.objects.get()
    assert (row.sentiment_score, row.sentiment_label) == (-0.8, "negative")
    assert "third time" not in row.summary


def test_bad_interactions_write_nothing(crm, customer):
    now = timezone.now()
    body = [
        _interaction(customer.pk, "ok"),
        _interaction(customer.pk, "a", occurred_at="yesterday"),
        _interaction(customer.pk, "b", occurred_at="2026-01-31T10:00:00"),
        _interaction(customer.pk, "c", kind="gossip", channel="pigeon"),
        _interaction(customer.pk, "d", ticket_id=1, scope="call:x"),
        _interaction(customer.pk, "e", summary="x" * 281),
        _interaction(customer.pk, "x" * 65),
        _interaction(customer.pk, "f", occurred_at=(now - timedelta(days=400)).isoformat()),
        _interaction(customer.pk, "g", occurred_at=(now + timedelta(days=3)).isoformat()),
        {"customer_id": customer.pk},
        _interaction(customer.pk, "ok"),
    ]
    response = _post(crm, INTERACTIONS, body)
    assert response.status_code == 400
    items = {i["index"]: i["errors"] for i in response.json()["error"]["details"]["items"]}
    assert {index: sorted(errors) for index, errors in items.items()} == {
        1: ["occurred_at"],
        2: ["occurred_at"],
        3: ["channel", "kind"],
        4: ["scope", "ticket_id"],
        5: ["summary"],
        6: ["id"],
        7: ["occurred_at"],
        8: ["occurred_at"],
        9: ["channel", "id", "kind", "occurred_at", "summary"],
        10: ["id"],
    }
    assert items[1]["occurred_at"][0].startswith("Not an ISO 8601 date-time")
    assert items[2]["occurred_at"] == ["Needs a UTC offset (e.g. 2026-01-31T10:00:00Z or +02:00)."]
    assert items[4]["ticket_id"][0].startswith("Not taken from outside systems")
    assert not Interaction.objects.exists()


def test_unknown_or_erased_customer_is_an_item_error(crm, customer, supervisor):
    from tickets.context.privacy import customer_erase

    erased = Customer.objects.create(name="Gone", email="gone@example.com")
    customer_erase(customer=erased, actor=supervisor, via="test")
    body = [_interaction("NOBODY", "a"), _interaction(erased.pk, "b"), _interaction(customer.pk)]
    response = _post(crm, INTERACTIONS, body)
    assert response.status_code == 400
    items = {i["index"]: i["errors"] for i in response.json()["error"]["details"]["items"]}
    assert sorted(items) == [0, 1]
    assert items[1]["customer_id"][0].startswith("This customer's data was erased")
    assert not Interaction.objects.exists()


def test_orders_of_an_erased_customer_are_refused(crm, customer, supervisor):
    """As for interactions: nothing more is recorded about a customer whose data was
    erased (an order names what they bought, for how much; before, it was stored and
    shown in the erased customer's context)."""
    from tickets.context.privacy import customer_erase

    erased = Customer.objects.create(name="Gone", email="gone@example.com")
    customer_erase(customer=erased, actor=supervisor, via="test")
    body = [_order(erased.pk, "SHOP-GONE"), _order(customer.pk, "SHOP-OK")]
    response = _post(crm, ORDERS, body)
    assert response.status_code == 400
    items = {i["index"]: i["errors"] for i in response.json()["error"]["details"]["items"]}
    assert sorted(items) == [0]
    assert items[0]["customer_id"][0].startswith("This customer's data was erased")
    assert not Order.objects.exists()


def test_recorded_interactions_show_in_the_context_of_an_agent_who_sees_the_customer(
    crm, customer, agent_client
):
    core.ticket_create(customer=customer, subject="Parcel", body="Where is it?")
    assert _post(crm, INTERACTIONS, _interaction(customer.pk, "act-9")).status_code == 201
    response = agent_client.get(f"/api/customers/{customer.pk}/context")
    assert response.status_code == 200
    recent = response.json()["interactions"]["recent"]
    assert [(i["kind"], i["channel"], i["summary"]) for i in recent if i["kind"] == "note"] == [
        ("note", "phone", "Asked about a late parcel.")
    ]


# --- the request as a whole -----------------------------------------------------------


@pytest.mark.parametrize("url", [ORDERS, INTERACTIONS])
def test_people_and_user_keys_are_refused(url, agent, agent_client, supervisor, customer):
    body = _order(customer.pk) if url == ORDERS else _interaction(customer.pk)
    assert _post(agent_client, url, body).status_code == 403
    supervisor_key = _key_client(supervisor, role=ApiKeyRole.USER)
    assert _post(supervisor_key, url, body).status_code == 403
    assert _post(_key_client(agent, role=ApiKeyRole.USER), url, body).status_code == 403
    assert _post(APIClient(), url, body).status_code == 401
    assert not Order.objects.exists()
    assert not Interaction.objects.exists()


@pytest.mark.parametrize("url", [ORDERS, INTERACTIONS])
@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        ("not json", "application/json"),
        ("{", "text/plain"),
        (b"\xff\xfe", "application/json"),
        ("42", "application/json"),
        ('"text"', "application/json"),
        ("[]", "application/json"),
        ("[" * 5000, "application/json"),
    ],
)
def test_a_body_that_is_not_an_object_or_list_is_a_400(crm, url, raw, content_type):
    response = crm.post(url, raw, content_type=content_type)
    assert response.status_code == 400
    assert response.json()["error"]["details"]["body"]


@pytest.mark.parametrize("url", [ORDERS, INTERACTIONS])
def test_more_than_500_items_is_a_400(crm, customer, url):
    make = _order if url == ORDERS else _interaction
    body = [make(customer.pk, f"n-{i}") for i in range(INTAKE_MAX_ITEMS + 1)]
    response = _post(crm, url, body)
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"body": ["At most 500 items."]}
    assert not Order.objects.exists()
    assert not Interaction.objects.exists()


def test_500_items_are_written(crm, customer):
    body = [_interaction(customer.pk, f"n-{i}") for i in range(INTAKE_MAX_ITEMS)]
    response = _post(crm, INTERACTIONS, body)
    assert response.json() == {"recorded": 500, "already_recorded": 0}


@pytest.mark.parametrize("url", [ORDERS, INTERACTIONS])
def test_a_body_over_the_upload_limit_is_refused_not_a_500(crm, customer, url, settings):
    """An oversized body (Django's DATA_UPLOAD_MAX_MEMORY_SIZE) is refused before it is
    read as JSON, with a client error; nothing is written."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    make = _order if url == ORDERS else _interaction
    body = [make(customer.pk, f"n-{i}") for i in range(40)]
    response = _post(crm, url, body)
    assert 400 <= response.status_code < 500, response.status_code
    assert not Order.objects.exists()
    assert not Interaction.objects.exists()
