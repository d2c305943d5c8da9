"""A raw event selected for purging that changes before its batch is deleted (an event
re-driven meanwhile: no longer done with) is kept: the delete goes through the purger's
own queryset, so its conditions are checked again. Before, the batch was deleted by
primary key alone, whatever its rows had become, and their staged files with them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from calls.models import CallEvent, EventStatus
from calls.retention import call_events_purge
from channels_app.models import InboundEvent, InboundStatus
from channels_app.retention import inbound_events_purge
from channels_app.tests.conftest import make_account
from support import retention

pytestmark = pytest.mark.django_db

OLD = timedelta(days=40)


def _inbound(account: Any, key: str) -> int:
    event = InboundEvent.objects.create(
        channel=account.channel,
        account=account,
        external_id=key,
        body=b"{}",
        status=InboundStatus.PROCESSED,
    )
    at = timezone.now() - OLD
    InboundEvent.objects.filter(pk=event.pk).update(received_at=at, processed_at=at)
    return event.pk


def _changed_before_each_batch(monkeypatch: Any, change: Any) -> None:
    """Run ``change`` after a batch's rows are selected, before its transaction."""

    @contextmanager
    def atomic() -> Iterator[None]:
        change()
        with transaction.atomic():
            yield

    monkeypatch.setattr(retention, "transaction", SimpleNamespace(atomic=atomic))


def test_an_inbound_event_re_driven_meanwhile_is_not_purged(monkeypatch: Any) -> None:
    account = make_account("whatsapp")
    purged, redriven = _inbound(account, "a"), _inbound(account, "b")
    handed: list[list[int]] = []
    monkeypatch.setattr(
        "channels_app.retention._staged_files_after_commit", lambda ids: handed.append(ids)
    )
    _changed_before_each_batch(
        monkeypatch,
        lambda: InboundEvent.objects.filter(pk=redriven).update(
            status=InboundStatus.RECEIVED, processed_at=None
        ),
    )
    result = inbound_events_purge(timezone.now() - timedelta(days=30), 1000, 10)
    assert result.deleted == 1
    assert list(InboundEvent.objects.values_list("pk", "status")) == [
        (redriven, InboundStatus.RECEIVED)
    ]
    assert not InboundEvent.objects.filter(pk=purged).exists()
    assert handed == [[purged]]  # its staged files are not removed either


def test_a_call_event_re_driven_meanwhile_is_not_purged(monkeypatch: Any) -> None:
    event = CallEvent.objects.create(
        source="ctr", external_id="k1", payload={}, status=EventStatus.PROCESSED
    )
    at = timezone.now() - OLD
    CallEvent.objects.filter(pk=event.pk).update(created_at=at, processed_at=at)
    _changed_before_each_batch(
        monkeypatch,
        lambda: CallEvent.objects.filter(pk=event.pk).update(
            status=EventStatus.RECEIVED, processed_at=None
        ),
    )
    assert call_events_purge(timezone.now() - timedelta(days=30), 1000, 10).deleted == 0
    assert CallEvent.objects.get().status == EventStatus.RECEIVED
