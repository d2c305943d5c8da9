"""Erasure reaches the event copies that events-out deliveries hold; the documented receiver
snippet (docs/api.md) verifies our signature."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from events_out.models import OutgoingWebhook
from events_out.services import WEBHOOK_KIND
from events_out.signing import signature_header
from support.delivery.models import Delivery
from tickets import services as ticket_services
from tickets.context.privacy import customer_erase


@pytest.mark.django_db
def test_customer_erasure_redacts_queued_event_copies(customer, supervisor, settings):
    settings.OUTGOING_WEBHOOKS_ENABLED = True
    OutgoingWebhook.objects.create(
        name="CRM",
        url="https://hooks.example.com/x",
        event_types=["message.created"],
        secret="s" * 20,
    )
    ticket = ticket_services.ticket_create(
        customer=customer, subject="Router down", body="Ada Lovelace here, router is down."
    )
    from support.services import outbox_relay

    outbox_relay()  # enqueues; the sends (after commit) are not run in this test
    delivery = Delivery.objects.get(target_kind=WEBHOOK_KIND)
    assert "Ada Lovelace" in delivery.payload["event"]["preview"]
    assert delivery.subject_id == str(ticket.pk)

    customer_erase(customer=customer, actor=supervisor, via="test")

    delivery.refresh_from_db()
    assert "Ada" not in str(delivery.payload)
    assert "Lovelace" not in str(delivery.payload)


def test_the_documented_receiver_snippet_verifies_our_signature():
    page = (Path(django_settings.BASE_DIR) / "docs" / "api.md").read_text()
    section = page[page.index("**Verify the signature**") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict = {}
    exec(code.group(1), namespace)  # noqa: S102 - our own documentation
    body = b'{"id":1,"event_type":"ticket.created"}'
    header = signature_header(secret="whsec_doc", body=body)
    assert namespace["verify"]("whsec_doc", header, body)
    assert not namespace["verify"]("whsec_doc", header, body + b"x")
    assert not namespace["verify"]("other", header, body)
    # A forged or garbled header is refused, never an exception (a 500 at the receiver).
    for garbled in [
        "t=abc,v1=00",
        "t=,v1=00",
        "t=1e3,v1=00",
        "v1=00",
        "",
        "t=99999999999999999999",
    ]:
        assert namespace["verify"]("whsec_doc", garbled, body) is False
