"""Replies and the delivery retention (``support.delivery.services.deliveries_purge``): a
sent reply's delivery goes in time and the message keeps its own status; a reply whose
status update was given up keeps its delivery, so the reply sweep does not take it for a
reply never handed to the channel (it would mark it failed, "not sent in time") and the
supervisor can still run the update again. HTTP mocked with responses."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import responses
from django.db import OperationalError
from django.utils import timezone

from channels_app import services
from channels_app.services import outbound as outbound_module
from channels_app.tests.conftest import make_account
from channels_app.tests.test_reply_files import WA_MESSAGES
from support.delivery.models import Attempt, Delivery, OutcomeReplay
from support.delivery.services import deliveries_purge, outcome_replays_again
from tickets.models import Message, Ticket
from tickets.services import message_add

pytestmark = pytest.mark.django_db


@pytest.fixture
def wa_ticket(post_fixture: Any) -> Ticket:
    post_fixture(make_account("whatsapp"), "text_message")
    return Ticket.objects.get()


@responses.activate
def test_a_sent_reply_loses_its_delivery_in_time_a_reply_left_queued_keeps_it(
    wa_ticket: Ticket,
    agent: Any,
    supervisor: Any,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.SENT"}]})
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.BEHIND"}]})
    with django_capture_on_commit_callbacks(execute=True):
        sent = message_add(ticket=wa_ticket, body="On its way.", author_user=agent)
    original = outbound_module.ticket_services.message_delivery_update
    broken = True

    def fails(**kwargs: Any) -> None:
        if broken:
            raise OperationalError("the status update fails")
        original(**kwargs)

    monkeypatch.setattr(outbound_module.ticket_services, "message_delivery_update", fails)
    with django_capture_on_commit_callbacks(execute=True):
        behind = message_add(ticket=wa_ticket, body="And a refund.", author_user=agent)
    behind_delivery = Delivery.objects.get(idempotency_key=f"message:{behind.pk}")
    assert behind_delivery.status == "succeeded"
    # its replays were given up (what the reply sweep does after 5 failures), long ago
    long_ago = timezone.now() - timedelta(days=100)
    OutcomeReplay.objects.create(
        delivery=behind_delivery,
        attempts=5,
        attempted_at=long_ago,
        last_error="gave up after 5 re-drives: OperationalError: the status update fails",
        given_up_at=long_ago,
    )
    Message.objects.update(created_at=long_ago)
    Delivery.objects.update(created_at=long_ago, completed_at=long_ago)
    assert Attempt.objects.count() == 2

    assert deliveries_purge().deleted == 1

    assert list(Delivery.objects.values_list("pk", flat=True)) == [behind_delivery.pk]
    assert list(Attempt.objects.values_list("delivery_id", flat=True)) == [behind_delivery.pk]
    sent.refresh_from_db()  # the message keeps what its delivery said
    assert (sent.delivery_status, sent.channel_message_id) == ("sent", "wamid.SENT")

    # the reply left queued is neither failed nor sent again by the reply sweep
    services.outbound_replies_sweep(stale_seconds=0)
    behind.refresh_from_db()
    assert (behind.delivery_status, behind.delivery_error_code) == ("queued", "")
    assert len(responses.calls) == 2

    # and the supervisor can still put it right, from its delivery
    broken = False
    assert outcome_replays_again(delivery_ids=[behind_delivery.pk], actor=supervisor) == 1
    assert services.outbound_replies_sweep(stale_seconds=0) == 1
    behind.refresh_from_db()
    assert (behind.delivery_status, behind.channel_message_id) == ("sent", "wamid.BEHIND")
    assert len(responses.calls) == 2  # nothing sent twice
    # put right, it goes with the next purge (its replay succeeded)
    assert deliveries_purge().deleted == 1
    assert not Delivery.objects.exists()
