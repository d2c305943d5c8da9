"""``Idempotency-Key`` on ``POST /api/tickets`` and ``POST /api/tickets/{id}/messages``
(``support.idempotency``): a client's retry of a request whose answer it lost creates
nothing more. Before, every retry opened another ticket or sent the customer the reply
again."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from support.idempotency import idempotency_keys_purge
from support.models import IdempotencyKey
from tickets import services
from tickets.models import Customer, Direction, Message, Team, Ticket

pytestmark = pytest.mark.django_db

CREATE = {
    "subject": "Refund please",
    "description": "I was charged twice",
    "customer": {"email": "bob@example.com", "name": "Bob"},
}
KEY = "6f1c9a52-7d4e-4b8a-9c1e-2f3a4b5c6d7e"


def _create(client: APIClient, body: dict[str, Any] = CREATE, key: str | None = KEY) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/api/tickets", body, format="json", headers=headers)


def test_a_retry_with_the_same_key_answers_with_the_first_ticket(agent_client: APIClient) -> None:
    first = _create(agent_client)
    assert first.status_code == 201, first.json()
    assert "Idempotent-Replayed" not in first
    again = _create(agent_client)
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Ticket.objects.count() == 1
    assert Message.objects.count() == 1


def test_without_a_key_each_request_creates(agent_client: APIClient) -> None:
    assert _create(agent_client, key=None).status_code == 201
    assert _create(agent_client, key=None).status_code == 201
    assert Ticket.objects.count() == 2
    assert not IdempotencyKey.objects.exists()


def test_the_same_key_with_another_request_is_refused(agent_client: APIClient) -> None:
    assert _create(agent_client).status_code == 201
    other = _create(agent_client, {**CREATE, "description": "Another problem"})
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in other.json()["error"]["details"]
    assert Ticket.objects.count() == 1


def test_a_refused_request_records_no_key(agent_client: APIClient) -> None:
    bad = _create(agent_client, {**CREATE, "priority": "whenever"})
    assert bad.status_code == 400
    assert not IdempotencyKey.objects.exists()
    fixed = _create(agent_client)  # corrected, the same key
    assert fixed.status_code == 201
    assert "Idempotent-Replayed" not in fixed
    assert Ticket.objects.count() == 1


def test_keys_are_per_user(agent_client: APIClient, supervisor_client: APIClient) -> None:
    assert _create(agent_client).status_code == 201
    theirs = _create(supervisor_client)
    assert theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs
    assert Ticket.objects.count() == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "clé", "a\tb"])
def test_a_malformed_key_is_a_400_naming_the_header(agent_client: APIClient, key: str) -> None:
    response = _create(agent_client, key=key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["message"]
    assert not Ticket.objects.exists()


def test_a_ticket_no_longer_visible_is_not_replayed(
    agent: Any, agent_client: APIClient, other_agent: Any
) -> None:
    ours = Team.objects.create(name="Ours", slug="ours")
    theirs = Team.objects.create(name="Theirs", slug="theirs")
    ours.members.add(agent)
    theirs.members.add(other_agent)
    first = _create(agent_client, {**CREATE, "team_id": ours.pk})
    assert first.status_code == 201
    services.ticket_update(ticket=Ticket.objects.get(), team=theirs)
    again = _create(agent_client, {**CREATE, "team_id": ours.pk})
    assert again.status_code == 409
    assert first.json()["number"] not in again.content.decode()
    assert Ticket.objects.count() == 1


@pytest.fixture
def ticket(agent: Any) -> Ticket:
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    return services.ticket_create(customer=customer, subject="Kettle", body="It leaks.")


def _reply(client: APIClient, ticket: Ticket, body: Any, *, fmt: str = "json") -> Any:
    return client.post(
        f"/api/tickets/{ticket.pk}/messages",
        body,
        format=fmt,
        headers={"Idempotency-Key": KEY},
    )


def test_a_reply_sent_again_with_the_key_is_sent_once(
    agent_client: APIClient, ticket: Ticket
) -> None:
    first = _reply(agent_client, ticket, {"body": "It ships today."})
    assert first.status_code == 201, first.json()
    again = _reply(agent_client, ticket, {"body": "It ships today."})
    assert (again.status_code, again["Idempotent-Replayed"]) == (201, "true")
    assert again.json()["id"] == first.json()["id"]
    assert ticket.messages.filter(direction=Direction.OUTBOUND, kind="public").count() == 1
    other = _reply(agent_client, ticket, {"body": "Something else."})
    assert other.status_code == 422


def test_files_are_part_of_the_request(agent_client: APIClient, ticket: Ticket) -> None:
    def form(content: bytes) -> dict[str, Any]:
        return {
            "body": "The label.",
            "files": [SimpleUploadedFile("label.txt", content, content_type="text/plain")],
        }

    first = _reply(agent_client, ticket, form(b"label one"), fmt="multipart")
    assert first.status_code == 201, first.json()
    stored = Message.objects.get(pk=first.json()["id"]).attachments.get()
    assert stored.file.read() == b"label one"  # the hash read it; the upload was rewound
    again = _reply(agent_client, ticket, form(b"label one"), fmt="multipart")
    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])
    other = _reply(agent_client, ticket, form(b"label two"), fmt="multipart")
    assert other.status_code == 422
    assert ticket.messages.filter(direction=Direction.OUTBOUND, kind="public").count() == 1


def test_old_keys_are_purged(agent_client: APIClient, settings: Any) -> None:
    settings.IDEMPOTENCY_KEY_RETENTION_HOURS = 24
    _create(agent_client)
    _create(agent_client, key="recent")
    IdempotencyKey.objects.filter(key=KEY).update(created_at=timezone.now() - timedelta(hours=25))
    assert idempotency_keys_purge() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["recent"]
    assert _create(agent_client).status_code == 201  # remembered no more: creates again
    assert Ticket.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_requests_at_once_create_one_ticket(agent: Any) -> None:
    """The second waits on the first's key (its row locked until the first commits), then
    answers with the first's ticket."""
    answers: list[Any] = []
    start = threading.Barrier(2)

    def send() -> None:
        client = APIClient()
        client.force_authenticate(agent)
        try:
            start.wait()
            answers.append(_create(client))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(a.status_code for a in answers) == [201, 201]
    assert len({a.json()["id"] for a in answers}) == 1
    assert Ticket.objects.count() == 1


def test_a_deleted_reply_is_a_409_not_an_error(agent_client: APIClient, ticket: Ticket) -> None:
    first = _reply(agent_client, ticket, {"body": "It ships today."})
    Message.objects.filter(pk=first.json()["id"]).delete()
    again = _reply(agent_client, ticket, {"body": "It ships today."})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"


def test_repeated_fields_in_another_order_are_another_request(
    agent_client: APIClient, ticket: Ticket
) -> None:
    """The last of a repeated field is the one read: its order is part of the request."""
    from django.test.client import encode_multipart

    def send(*bodies: str) -> Any:
        return agent_client.post(
            f"/api/tickets/{ticket.pk}/messages",
            encode_multipart("BoUnDaRy", {"body": list(bodies)}),
            content_type="multipart/form-data; boundary=BoUnDaRy",
            headers={"Idempotency-Key": KEY},
        )

    first = send("first A", "first B")
    assert first.status_code == 201, first.json()
    assert first.json()["body_text"] == "first B"
    assert send("first B", "first A").status_code == 422
