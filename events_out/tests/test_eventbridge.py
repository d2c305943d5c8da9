"""The EventBridge sink with moto: events put on the configured bus reach an SQS queue
through a rule (what a consumer of the bus would see); refused entries are classified."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws
from rest_framework.test import APIClient

from events_out.adapters.eventbridge import eventbridge_put
from events_out.services import EVENTBRIDGE_KIND
from support.delivery.models import Delivery
from support.errors import PermanentError, RetryableError, ThrottledError
from support.models import DeliveryStatus, OutboxEvent
from support.services import api_key_create
from tickets import services as ticket_services
from tickets.models import TicketStatus, VipTier

BUS = "ticket-routing-bus"
REGION = "us-east-1"


@pytest.fixture
def bus(settings: Any) -> Any:
    """A bus with a rule sending every event of our source to an SQS queue."""
    settings.AWS_REGION = REGION
    settings.EVENTS_EVENTBRIDGE_BUS = BUS
    with mock_aws():
        events = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        events.create_event_bus(Name=BUS)
        queue_url = sqs.create_queue(QueueName="ticket-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(
            Name="all-ticket-events",
            EventBusName=BUS,
            EventPattern=json.dumps({"source": ["support.ticketing"]}),
        )
        events.put_targets(
            Rule="all-ticket-events", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}]
        )

        def received() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            while True:
                batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
                messages = batch.get("Messages", [])
                if not messages:
                    return found
                for message in messages:
                    found.append(json.loads(message["Body"]))
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

        yield received


@pytest.mark.django_db(transaction=True)
def test_ticket_events_land_on_the_bus_in_seed_004s_shape(customer, bus):
    customer.vip_tier = VipTier.GOLD
    customer.account_type = "business"
    customer.save()

    ticket = ticket_services.ticket_create(
        customer=customer, subject="Router down", body="No internet since 9am, router blinks."
    )
    ticket_services.ticket_update(ticket=ticket, status=TicketStatus.RESOLVED)

    landed = bus()
    assert [(e["source"], e["detail-type"]) for e in landed] == [
        ("support.ticketing", "TicketReceived"),
        ("support.ticketing", "MessageCreated"),
        ("support.ticketing", "TicketUpdated"),
        ("support.ticketing", "TicketResolved"),
    ]
    received = landed[0]["detail"]
    created = OutboxEvent.objects.get(event_type="ticket.created")
    assert received == {
        "ticket_id": str(ticket.pk),
        "customer_id": str(customer.pk),
        "subject": "Router down",
        "description": "No internet since 9am, router blinks.",
        "timestamp": created.envelope()["timestamp"],
        "correlation_id": str(ticket.correlation_id),
        "customer_context": {"is_vip": True, "account_type": "business"},
        "submitted_by": None,
        "id": ticket.pk,
        "event_id": created.pk,
        "number": ticket.number,
        "priority": ticket.priority,
        "source": ticket.channel,
    }
    resolved = OutboxEvent.objects.get(event_type="ticket.resolved")
    assert landed[3]["detail"] == json.loads(json.dumps(resolved.envelope()))

    deliveries = Delivery.objects.filter(target_kind=EVENTBRIDGE_KIND).order_by("pk")
    assert [d.status for d in deliveries] == [DeliveryStatus.SUCCEEDED] * 4
    assert [d.idempotency_key for d in deliveries] == [
        f"event:{pk}" for pk in OutboxEvent.objects.order_by("pk").values_list("pk", flat=True)
    ]
    assert all(d.external_id and d.target_key == BUS for d in deliveries)


@pytest.mark.django_db(transaction=True)
def test_ticket_received_carries_the_ticket_id_post_tickets_answered(
    customer, supervisor, bus, settings
):
    """Seed 004: the ticketing system sends its ``ticket_id`` to ``POST /tickets`` and
    finds it again in ``TicketReceived``'s ``detail.ticket_id`` (before: the internal id,
    a number the ticketing system never saw); the internal id is ``detail.id``."""
    settings.ROUTING_ENABLED = False  # only the submission's own events
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key_create(name="ticketing", user=supervisor)[1])

    answer = client.post(
        "/tickets",
        {
            "ticket_id": "TKT-1001",
            "customer_id": str(customer.pk),
            "subject": "Internet down",
            "description": "No connection since this morning.",
        },
        format="json",
    )
    plain = client.post(
        "/tickets",
        {"customer_id": str(customer.pk), "subject": "Billing", "description": "Charged twice"},
        format="json",
    )

    assert (answer.status_code, plain.status_code) == (202, 202)
    received = [e["detail"] for e in bus() if e["detail-type"] == "TicketReceived"]
    assert [(d["ticket_id"], d["id"]) for d in received] == [
        (answer.json()["ticket_id"], answer.json()["id"]),
        (plain.json()["ticket_id"], plain.json()["id"]),
    ]
    assert received[0]["ticket_id"] == "TKT-1001"
    assert received[1]["ticket_id"] == str(plain.json()["id"])  # none sent: the internal id
    # a caller's id is unique per caller only: whose it is comes with it
    assert (received[0]["submitted_by"], received[1]["submitted_by"]) == (
        supervisor.get_username(),
        None,
    )
    assert received[0]["subject"] == "Internet down"
    assert received[0]["correlation_id"] == answer.json()["correlation_id"]


@pytest.mark.django_db(transaction=True)
def test_ticket_received_carries_the_customer_id_post_tickets_was_given(
    customer, supervisor, bus, settings
):
    """Seed 004: a ticketing system that names its customers by its own ids (``CUST-42``)
    finds that id in ``TicketReceived``'s ``customer_id``, as ``GET /tickets/{id}`` answers
    it (before: the internal customer id, which it never saw); a customer given by our id
    keeps it."""
    settings.ROUTING_ENABLED = False
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key_create(name="ticketing", user=supervisor)[1])

    external = client.post(
        "/tickets",
        {"customer_id": "CUST-42", "subject": "Internet down", "description": "No line."},
        format="json",
    )
    internal = client.post(
        "/tickets",
        {"customer_id": str(customer.pk), "subject": "Billing", "description": "Twice"},
        format="json",
    )

    assert (external.status_code, internal.status_code) == (202, 202)
    received = [e["detail"] for e in bus() if e["detail-type"] == "TicketReceived"]
    assert [d["customer_id"] for d in received] == ["CUST-42", str(customer.pk)]
    looked_up = client.get(f"/tickets/{external.json()['ticket_id']}")
    assert looked_up.json()["customer_id"] == "CUST-42"


@pytest.mark.django_db(transaction=True)
def test_a_bus_that_does_not_exist_gives_dead_letters(customer, bus, settings):
    settings.EVENTS_EVENTBRIDGE_BUS = "no-such-bus"

    ticket_services.ticket_create(customer=customer, subject="s", body="b")

    deliveries = Delivery.objects.filter(target_kind=EVENTBRIDGE_KIND)
    assert deliveries.count() == 2
    assert {d.status for d in deliveries} == {DeliveryStatus.DEAD}
    assert {d.attempts for d in deliveries} == {1}  # permanent: not retried
    assert bus() == []
    assert OutboxEvent.objects.filter(delivered_at__isnull=True).count() == 0


@pytest.mark.django_db(transaction=True)
def test_no_bus_configured_sends_nothing(customer, settings):
    settings.EVENTS_EVENTBRIDGE_BUS = ""
    ticket_services.ticket_create(customer=customer, subject="s", body="b")
    assert not Delivery.objects.filter(target_kind=EVENTBRIDGE_KIND).exists()


class FakeEvents:
    def __init__(self, code: str) -> None:
        self.code = code

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "FailedEntryCount": 1,
            "Entries": [{"ErrorCode": self.code, "ErrorMessage": "refused"}],
        }


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("ThrottlingException", ThrottledError),
        ("InternalFailure", RetryableError),
        ("AccessDeniedException", PermanentError),
        ("MalformedDetail", PermanentError),
    ],
)
def test_refused_entries_are_classified(code, error, settings):
    settings.EVENTS_EVENTBRIDGE_BUS = BUS
    with pytest.raises(error) as raised:
        eventbridge_put(entry={"Detail": "{}"}, client=FakeEvents(code))
    assert code in str(raised.value)
    if error is PermanentError:
        assert not isinstance(raised.value, RetryableError)
