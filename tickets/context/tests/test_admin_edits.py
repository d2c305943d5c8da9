"""Orders and interactions changed in the admin retire cached contexts, as the services'
writes do (``RenewsContextMixin``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from tickets.context import services
from tickets.context.models import Interaction, Order
from tickets.context.selectors import customer_context_get
from tickets.models import Customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(django_user_model: Any) -> Client:
    client = Client()
    client.force_login(
        django_user_model.objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
    )
    return client


def _seen(customer: Customer) -> tuple[list[str], list[str]]:
    fresh = Customer.objects.get(pk=customer.pk)  # as a request reads it
    context = customer_context_get(fresh)
    return (
        [o["number"] for o in context["orders"]["recent"]],
        [i["summary"] for i in context["interactions"]["recent"]],
    )


def test_an_interaction_deleted_in_the_admin_leaves_the_cached_context(root, customer):
    services.interaction_record(
        customer_id=customer.pk,
        source_key="k1",
        channel="email",
        kind="message",
        occurred_at=timezone.now() - timedelta(hours=1),
        summary="asked about a refund",
    )
    assert _seen(customer)[1] == ["asked about a refund"]  # cached now
    row = Interaction.objects.get()
    response = root.post(f"/admin/tickets/interaction/{row.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert _seen(customer)[1] == []


def test_orders_deleted_or_moved_in_the_admin_leave_the_cached_contexts(root, customer):
    other = Customer.objects.create(name="Bob", email="bob@example.com")
    placed = timezone.now() - timedelta(days=2)
    for number in ("A-1", "A-2"):
        Order.objects.create(
            customer=customer, number=number, status="delivered", total=10, placed_at=placed
        )
    assert _seen(customer)[0] == ["A-2", "A-1"]
    assert _seen(other)[0] == []
    first = Order.objects.get(number="A-1")
    response = root.post(
        "/admin/tickets/order/",
        {"action": "delete_selected", "_selected_action": [first.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert _seen(customer)[0] == ["A-2"]
    moved = Order.objects.get(number="A-2")
    form = {
        "customer": other.pk,
        "number": "A-2",
        "status": "delivered",
        "currency": "USD",
        "total": "10.00",
        "refunded_amount": "0",
        "items": "[]",
        "placed_at_0": placed.strftime("%Y-%m-%d"),
        "placed_at_1": placed.strftime("%H:%M:%S"),
    }
    response = root.post(f"/admin/tickets/order/{moved.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert (_seen(customer)[0], _seen(other)[0]) == ([], ["A-2"])
