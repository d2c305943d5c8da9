"""A channel attachment's external URL is a link only when it is http(s) (issue #13, 7)."""

from __future__ import annotations

import pytest
from django.test import Client

from tickets import services
from tickets.models import Attachment

pytestmark = pytest.mark.django_db


def _ticket_with_link(customer, url: str):
    return services.ticket_create(
        customer=customer,
        subject="Media",
        body="see attached",
        attachments=[services.NewAttachment(filename="photo.jpg", external_url=url, kind="image")],
    )


def test_javascript_attachment_url_is_refused_at_ingestion_and_render(customer, supervisor):
    ticket = _ticket_with_link(customer, "javascript:alert(document.cookie)")
    attachment = Attachment.objects.get(message__ticket=ticket)
    assert attachment.external_url == ""  # refused when stored
    Attachment.objects.filter(pk=attachment.pk).update(external_url="javascript:alert(1)")
    client = Client()
    client.force_login(supervisor)
    page = client.get(f"/tickets/{ticket.number}/").content.decode()
    assert "photo.jpg" in page  # still shown, as text
    assert "javascript:" not in page


def test_https_attachment_url_stays_a_link(customer, supervisor):
    ticket = _ticket_with_link(customer, "https://media.example.com/p/1.jpg")
    client = Client()
    client.force_login(supervisor)
    page = client.get(f"/tickets/{ticket.number}/").content.decode()
    assert (
        '<a href="https://media.example.com/p/1.jpg" rel="noopener noreferrer">photo.jpg</a>'
        in (page)
    )
