from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from django.utils import timezone
from moto import mock_aws

from support.errors import InvalidInput
from tickets import services as core
from tickets.context import services
from tickets.context.interactions import (
    DynamoInteractionBackend,
    InteractionRecord,
    PostgresInteractionBackend,
    register_backend,
)
from tickets.context.models import Interaction
from tickets.context.selectors import customer_context_get
from tickets.models import Customer

pytestmark = pytest.mark.django_db


def _rows():
    return list(
        Interaction.objects.order_by("id").values_list(
            "source_key", "kind", "sentiment_label", "summary"
        )
    )


def test_inbound_message_is_logged_with_sentiment_once(
    customer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        ticket = core.ticket_create(
            customer=customer,
            subject="Late parcel",
            body="This is terrible, my parcel is two weeks late and nobody answers!",
            channel="email",
        )
    message = ticket.messages.get()
    assert _rows() == [
        (
            f"message:{message.pk}",
            "message",
            "negative",
            "This is terrible, my parcel is two weeks late and nobody answers!",
        )
    ]
    row = Interaction.objects.get()
    assert (row.customer_id, row.ticket_id, row.channel) == (customer.pk, ticket.pk, "email")
    assert row.sentiment_score is not None
    assert row.sentiment_score < -0.5
    assert row.expires_at - row.occurred_at == timedelta(days=180)
    # At-least-once delivery: recording again changes nothing.
    assert services.interaction_record_for_message(message_id=message.pk) is False
    assert Interaction.objects.count() == 1


def test_replies_and_notes_are_not_logged(customer, agent, django_capture_on_commit_callbacks):
    ticket = core.ticket_create(customer=customer, subject="Hello")
    with django_capture_on_commit_callbacks(execute=True):
        core.message_add(ticket=ticket, body="We are on it", author_user=agent)
        core.message_add(ticket=ticket, body="note", kind="internal_note", author_user=agent)
    assert _rows() == []


def test_reopening_a_resolved_ticket_is_logged(customer, django_capture_on_commit_callbacks):
    ticket = core.ticket_create(customer=customer, subject="Broken")
    core.ticket_update(ticket=ticket, status="resolved")
    with django_capture_on_commit_callbacks(execute=True):
        core.message_add(
            ticket=ticket, body="Still broken.", direction="inbound", author_customer=customer
        )
    kinds = sorted(k for _, k, _, _ in _rows())
    assert kinds == ["message", "ticket_reopened"]
    reopen = Interaction.objects.get(kind="ticket_reopened")
    assert reopen.summary == f"{ticket.number} reopened"


def test_purge_deletes_only_expired(customer):
    now = timezone.now()
    backend = PostgresInteractionBackend()
    for key, days_ago in (("old", 181), ("fresh", 10)):
        backend.record(
            InteractionRecord(
                customer_id=customer.pk,
                source_key=key,
                channel="email",
                kind="message",
                occurred_at=now - timedelta(days=days_ago),
            )
        )
    assert [r.source_key for r in backend.recent(customer.pk, limit=10)] == ["fresh"]
    assert services.interaction_purge() == 1
    assert list(Interaction.objects.values_list("source_key", flat=True)) == ["fresh"]


def test_purge_retires_the_cached_contexts_of_the_customers_it_purged(customer):
    """A context cached before an interaction expired listed it until the cache's TTL
    even after the purge deleted the row: the purge now renews the ``updated_at`` stamp
    of the customers it purged (the stamp a cached context is served with), and of no
    one else."""
    other = Customer.objects.create(name="Bob", email="bob@example.com")
    now = timezone.now()
    for who, key in ((customer, "soon"), (other, "later")):
        services.interaction_record(
            customer_id=who.pk,
            source_key=key,
            channel="email",
            kind="message",
            occurred_at=now - timedelta(days=1),
            summary=key,
        )
    Interaction.objects.filter(source_key="soon").update(expires_at=now + timedelta(minutes=1))

    def recent(who: Customer) -> list[str]:
        fresh = Customer.objects.get(pk=who.pk)  # as a request reads it
        return [i["summary"] for i in customer_context_get(fresh)["interactions"]["recent"]]

    assert (recent(customer), recent(other)) == (["soon"], ["later"])  # both cached now
    other_stamp = Customer.objects.get(pk=other.pk).updated_at
    assert services.interaction_purge(now=now + timedelta(minutes=2)) == 1
    assert recent(customer) == []
    assert recent(other) == ["later"]
    assert Customer.objects.get(pk=other.pk).updated_at == other_stamp


def test_purge_runs_in_batches_until_nothing_expired_is_left(customer, monkeypatch):
    monkeypatch.setattr(services, "PURGE_BATCH", 2)
    old = timezone.now() - timedelta(days=200)
    for n in range(5):
        services.interaction_record(
            customer_id=customer.pk,
            source_key=f"old:{n}",
            channel="email",
            kind="message",
            occurred_at=old,
        )
    assert services.interaction_purge() == 5
    assert not Interaction.objects.exists()


@mock_aws
def test_dynamodb_backend_records_once_with_ttl_and_reads_back(customer, settings):
    client = boto3.client("dynamodb", region_name="us-east-1")
    backend = DynamoInteractionBackend(client=client, table="interactions-test")
    backend.table_create()
    ttl = client.describe_time_to_live(TableName="interactions-test")
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
    now = timezone.now().replace(microsecond=0)
    items = [
        InteractionRecord(
            customer_id=customer.pk,
            source_key=f"message:{n}",
            channel="whatsapp",
            kind="message",
            occurred_at=now - timedelta(days=n),
            summary=f"message {n}",
            ticket_id=7,
            sentiment_score=-0.25 * n,
            sentiment_label="negative",
        )
        for n in range(3)
    ]
    assert [backend.record(i) for i in items] == [True, True, True]
    assert backend.record(items[0]) is False
    raw = client.get_item(
        TableName="interactions-test",
        Key={
            "customer_id": {"N": str(customer.pk)},
            "sk": {"S": items[1].occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "#message:1"},
        },
    )["Item"]
    assert int(raw["expires_at"]["N"]) == int(
        (items[1].occurred_at + timedelta(days=180)).timestamp()
    )
    recent = backend.recent(customer.pk, limit=2)
    assert [r.source_key for r in recent] == ["message:0", "message:1"]
    assert recent[1].sentiment_score == -0.25
    assert recent[1].ticket_id == 7
    window = backend.window(customer.pk, since=now - timedelta(days=1, hours=1))
    assert [(p.kind, p.score) for p in window] == [("message", -0.25), ("message", 0.0)]
    # An expired item that DynamoDB has not deleted yet is not served.
    backend.record(
        InteractionRecord(
            customer_id=customer.pk,
            source_key="old",
            channel="email",
            kind="message",
            occurred_at=now - timedelta(days=200),
        )
    )
    assert len(backend.for_customer(customer.pk)) == 4
    assert "old" not in [r.source_key for r in backend.recent(customer.pk, limit=10)]
    assert backend.erase_customer(customer.pk) == 4
    assert {r.summary for r in backend.for_customer(customer.pk)} == {"[erased]"}
    assert Interaction.objects.count() == 0


@mock_aws
def test_dynamodb_backend_selected_by_setting(
    customer, settings, django_capture_on_commit_callbacks
):
    settings.INTERACTIONS_BACKEND = "dynamodb-test"
    client = boto3.client("dynamodb", region_name="us-east-1")
    backend = DynamoInteractionBackend(client=client, table="interactions-setting")
    backend.table_create()
    register_backend("dynamodb-test", lambda: backend)
    with django_capture_on_commit_callbacks(execute=True):
        ticket = core.ticket_create(customer=customer, subject="Hi", body="Thanks a lot, great!")
    [item] = backend.recent(customer.pk, limit=5)
    assert (item.kind, item.sentiment_label, item.ticket_id) == ("message", "positive", ticket.pk)
    assert Interaction.objects.count() == 0


@mock_aws
def test_comprehend_backend_scores_messages_end_to_end(
    customer, settings, django_capture_on_commit_callbacks
):
    settings.SENTIMENT_BACKEND = "comprehend"
    with django_capture_on_commit_callbacks(execute=True):
        core.ticket_create(customer=customer, subject="Hi", body="I love it")
    row = Interaction.objects.get()
    # moto's canned DetectSentiment answer: NEUTRAL, Positive 0.0081 − Negative 0.0003.
    assert (row.sentiment_label, row.sentiment_score) == ("neutral", 0.0078)


def test_interaction_record_for_other_apps(customer):
    at = timezone.now()
    kwargs = dict(
        customer_id=customer.pk,
        source_key="call:CTR-1",
        channel="phone",
        kind="call",
        occurred_at=at,
        summary="Call about a refund",
        analyse_text="The agent was rude and unhelpful.",
    )
    assert services.interaction_record(**kwargs) is True
    assert services.interaction_record(**kwargs) is False
    row = Interaction.objects.get()
    assert (row.kind, row.channel, row.sentiment_label) == ("call", "phone", "negative")
    with pytest.raises(InvalidInput):
        services.interaction_record(**{**kwargs, "kind": "fax", "source_key": "x"})


@mock_aws
@pytest.mark.parametrize("backend_name", ["postgres", "dynamodb-replace"])
def test_interaction_record_replace_updates_the_one_entry(customer, settings, backend_name):
    """A call analysed again replaces its entry (both backends), never adds one."""
    if backend_name != "postgres":
        client = boto3.client("dynamodb", region_name="us-east-1")
        dynamo = DynamoInteractionBackend(client=client, table="interactions-replace")
        dynamo.table_create()
        register_backend(backend_name, lambda: dynamo)
    settings.INTERACTIONS_BACKEND = backend_name
    kwargs = dict(
        customer_id=customer.pk,
        source_key="call:CTR-2",
        channel="phone",
        kind="call",
        occurred_at=timezone.now(),
        summary="Phone call",
        analyse_text="Thanks, that was great.",
        replace=True,
    )
    assert services.interaction_record(**kwargs) is True
    assert services.interaction_record(**{**kwargs, "analyse_text": "This is awful."}) is False
    from tickets.context.interactions import get_backend

    [item] = get_backend().recent(customer.pk, limit=5)
    assert (item.source_key, item.sentiment_label) == ("call:CTR-2", "negative")


@mock_aws
@pytest.mark.parametrize("backend_name", ["postgres", "dynamodb-scope"])
def test_both_backends_keep_the_scope_and_scope_an_old_calls_entry_by_its_key(
    customer, settings, backend_name
):
    """An entry's scope (``tickets.context.scopes``) is stored and read back, in the list
    and in the window the figures are drawn from. An analysed call's entry written before
    there were scopes (a DynamoDB item, which no migration reaches; a row the previous
    release wrote during the deploy) is scoped by its key, ``call:<contact id>``; any other
    entry without one has none."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    dynamo = DynamoInteractionBackend(client=client, table="interactions-scope")
    if backend_name != "postgres":
        dynamo.table_create()
        register_backend(backend_name, lambda: dynamo)
    settings.INTERACTIONS_BACKEND = backend_name
    from tickets.context.interactions import get_backend

    backend = get_backend()
    now = timezone.now().replace(microsecond=0)

    def entry(key: str, kind: str, hours: int, scope: str = "") -> InteractionRecord:
        return InteractionRecord(
            customer_id=customer.pk,
            source_key=key,
            channel="phone",
            kind=kind,
            occurred_at=now - timedelta(hours=hours),
            sentiment_score=-0.5,
            scope=scope,
        )

    assert backend.record(entry("call:NEW", "call", 1, scope="call:NEW")) is True
    assert backend.record(entry("crm:1", "call", 2)) is True
    old_call = entry("call:OLD", "call", 3)
    if backend_name == "postgres":
        assert backend.record(old_call) is True
        Interaction.objects.filter(source_key="call:OLD").update(scope="")
    else:
        item = dynamo._to_item(old_call)
        del item["scope"]  # as written before there were scopes
        client.put_item(TableName="interactions-scope", Item=item)
    expected = {"call:NEW": "call:NEW", "crm:1": "", "call:OLD": "call:OLD"}
    recent = backend.recent(customer.pk, limit=5)
    assert {r.source_key: r.scope for r in recent} == expected
    assert [r.as_dict()["scope"] for r in recent] == ["call:NEW", "", "call:OLD"]
    window = backend.window(customer.pk, since=now - timedelta(days=1))
    assert [p.scope for p in window] == ["call:OLD", "", "call:NEW"]


def test_the_migration_scopes_the_calls_entries_already_there(customer):
    """Migration 0014's data step: the analysed calls' entries (kind ``call``, key
    ``call:<contact id>``) take their key as their scope; nothing else changes."""
    from importlib import import_module

    from django.apps import apps

    migration = import_module("tickets.migrations.0014_interaction_scope")
    for key, kind, scope in (
        ("call:C-1", "call", ""),
        ("call:C-2", "call", "call:C-2"),
        ("crm:7", "call", ""),
        ("message:1", "message", ""),
        ("call:typed-as-note", "note", ""),
    ):
        Interaction.objects.create(
            customer=customer,
            source_key=key,
            channel="phone",
            kind=kind,
            occurred_at=timezone.now(),
            scope=scope,
        )
    migration.call_entries_scope(apps, None)
    assert dict(Interaction.objects.values_list("source_key", "scope")) == {
        "call:C-1": "call:C-1",
        "call:C-2": "call:C-2",
        "crm:7": "",
        "message:1": "",
        "call:typed-as-note": "",
    }
