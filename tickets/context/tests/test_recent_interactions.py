"""An agent's "recent interactions" are the most recent it may see, not the whole
customer's most recent filtered afterwards (audit: an agent saw 0-9 entries while older
entries it may see existed, and the shortfall hinted at another team's activity)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest
from django.utils import timezone
from moto import mock_aws

from tickets import services as core
from tickets.context.interactions import (
    DynamoInteractionBackend,
    InteractionRecord,
    get_backend,
    register_backend,
)
from tickets.context.models import Interaction
from tickets.context.selectors import RECENT_INTERACTIONS, customer_context_for
from tickets.models import Customer, Team

pytestmark = pytest.mark.django_db


@mock_aws
@pytest.mark.parametrize("backend_name", ["postgres", "dynamodb-recent"])
def test_an_agent_gets_the_most_recent_entries_it_may_see(
    agent: Any, supervisor: Any, settings: Any, backend_name: str
) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    dynamo = DynamoInteractionBackend(client=client, table="interactions-recent")
    if backend_name != "postgres":
        dynamo.table_create()
        register_backend(backend_name, lambda: dynamo)
    settings.INTERACTIONS_BACKEND = backend_name
    backend = get_backend()
    billing = Team.objects.create(name="Billing", slug="billing")
    shipping = Team.objects.create(name="Shipping", slug="shipping")
    billing.members.add(agent)
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    mine = core.ticket_create(customer=customer, subject="Mine", body="x", team=billing)
    theirs = core.ticket_create(customer=customer, subject="Theirs", body="x", team=shipping)
    now = timezone.now().replace(microsecond=0)

    def entry(key: str, days_ago: int, **fields: Any) -> InteractionRecord:
        return InteractionRecord(
            customer_id=customer.pk,
            source_key=key,
            channel="email",
            kind=fields.pop("kind", "message"),
            occurred_at=now - timedelta(days=days_ago),
            summary=key,
            **fields,
        )

    # older: three on the agent's ticket and one of no ticket (a CRM's)
    for n in range(3):
        backend.record(entry(f"mine {n}", 30 - n, ticket_id=mine.pk))
    backend.record(entry("crm", 27))
    # newer: more than a page of entries the agent may not see
    for n in range(10):
        backend.record(entry(f"theirs {n}", 20 - n, ticket_id=theirs.pk))
    backend.record(entry("call:HIDDEN", 5, kind="call", scope="call:HIDDEN"))
    legacy = entry("call:LEGACY", 4, kind="call")  # an analysed call's, before scopes
    if backend_name == "postgres":
        backend.record(legacy)
        Interaction.objects.filter(source_key="call:LEGACY").update(scope="")
    else:
        item = dynamo._to_item(legacy)
        del item["scope"]
        client.put_item(TableName="interactions-recent", Item=item)

    def recent(user: Any) -> list[str]:
        context = customer_context_for(Customer.objects.get(pk=customer.pk), user=user)
        return [i["summary"] for i in context["interactions"]["recent"]]

    assert recent(agent) == ["crm", "mine 2", "mine 1", "mine 0"]
    whole = ["call:LEGACY", "call:HIDDEN", *(f"theirs {n}" for n in range(9, 1, -1))]
    assert recent(supervisor) == whole
    assert len(whole) == RECENT_INTERACTIONS
