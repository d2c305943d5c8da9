"""Deliveries a supervisor closed unprocessed have a status of their own, ``closed``: not
``ignored``, which is an unknown event type (the admin's filter, the intake metric and the
retention tell them apart)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.apps import apps

from channels_app import services
from channels_app.models import InboundEvent, InboundStatus
from channels_app.tests.conftest import make_account, wa_body
from support.models import AuditLog
from tickets.models import Message

pytestmark = pytest.mark.django_db

MIGRATION = "channels_app.migrations.0010_inbound_event_closed"


def _event(account: Any, key: str, status: str, **fields: Any) -> InboundEvent:
    return InboundEvent.objects.create(
        channel="whatsapp",
        account=account,
        external_id=key,
        body=wa_body("34600000001", key, "hello"),
        status=status,
        **fields,
    )


def test_a_closed_delivery_is_never_processed_later(supervisor: Any) -> None:
    """A task queued before the close (or any stray one) finds it done, like an ignored
    one: closing means nobody's message is created from it."""
    dead = _event(make_account("whatsapp"), "wamid.c1", InboundStatus.DEAD)
    assert services.inbound_event_close(event=dead, actor=supervisor)
    dead.refresh_from_db()
    assert dead.status == InboundStatus.CLOSED
    assert services.inbound_event_process(event_id=dead.pk) is None
    dead.refresh_from_db()
    assert (dead.status, Message.objects.count()) == (InboundStatus.CLOSED, 0)


def test_the_migration_moves_deliveries_closed_before_and_only_them() -> None:
    """Closed before this status existed: ``ignored`` with ``closed_by`` in the summary
    (written by the close, and only by it; a later drain of the row rewrites the summary).
    Others stay as they are, an erased one included: the erasure blanked the summary, and
    the close's audit entry alone does not prove the row is still closed (Re-process takes
    any row)."""
    account = make_account("whatsapp")
    closed_by = {"closed_by": "sam", "closed_from": "dead", "created_messages": 0}
    closed = _event(account, "wamid.m1", InboundStatus.IGNORED, summary=closed_by)
    unknown = _event(account, "wamid.m2", InboundStatus.IGNORED, summary={"unknown": 1})
    erased = _event(account, "wamid.m3", InboundStatus.IGNORED, summary={})
    AuditLog.objects.create(
        action="inbound_event.close",
        object_type="channels_app.InboundEvent",
        object_id=str(erased.pk),
    )
    # closed, re-processed, then dead again: a dead letter, whatever its summary says
    redriven = _event(account, "wamid.m4", InboundStatus.DEAD, summary=closed_by)
    migration = importlib.import_module(MIGRATION)

    migration.closed_events_restatus(apps, None)
    statuses = dict(InboundEvent.objects.values_list("pk", "status"))
    assert statuses == {
        closed.pk: "closed",
        unknown.pk: "ignored",
        erased.pk: "ignored",
        redriven.pk: "dead",
    }
    # and back (migrating backwards): closed ones read ignored again, as they were stored
    migration.closed_events_unstatus(apps, None)
    statuses = dict(InboundEvent.objects.values_list("pk", "status"))
    assert statuses[closed.pk] == "ignored"
    assert statuses[redriven.pk] == "dead"
