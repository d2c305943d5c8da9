from __future__ import annotations

import pytest
from django.test import Client

from tickets import services
from tickets.models import Attachment

pytestmark = pytest.mark.django_db


@pytest.fixture
def attachment(customer, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    ticket = services.ticket_create(
        customer=customer,
        subject="Photo",
        body="see attached",
        attachments=[
            services.NewAttachment(
                filename="receipt.pdf",
                content=b"%PDF-1.4 demo",
                content_type="application/pdf",
                kind="document",
            )
        ],
    )
    return Attachment.objects.get(message__ticket=ticket)


def test_agents_download_attachments(attachment, agent):
    client = Client()
    client.force_login(agent)
    response = client.get(f"/attachments/{attachment.pk}")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"%PDF-1.4 demo"  # type: ignore[attr-defined]
    assert response["Content-Disposition"].startswith("attachment;")
    assert attachment.size == len(b"%PDF-1.4 demo")


def test_others_cannot_download(attachment, outsider):
    anonymous = Client().get(f"/attachments/{attachment.pk}")
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")
    client = Client()
    client.force_login(outsider)
    assert client.get(f"/attachments/{attachment.pk}").status_code == 403


def test_api_shows_the_protected_download_url(attachment, agent_client):
    ticket_id = attachment.message.ticket_id
    body = agent_client.get(f"/api/tickets/{ticket_id}").json()
    [message] = body["messages"]
    assert message["attachments"][0]["url"] == f"/attachments/{attachment.pk}"


def test_attachment_of_an_invisible_ticket_is_404(attachment, agent, other_agent, supervisor):
    """The ticket rule applies before anything is streamed or redirected to."""
    from tickets.models import Team

    billing = Team.objects.create(name="Billing", slug="billing")
    billing.members.add(agent)
    ticket = attachment.message.ticket
    ticket.team = billing
    ticket.save(update_fields=["team"])
    client = Client()
    client.force_login(other_agent)
    hidden = client.get(f"/attachments/{attachment.pk}")
    assert hidden.status_code == 404
    assert client.get("/attachments/999999").status_code == 404
    for user in (agent, supervisor):
        client.force_login(user)
        assert client.get(f"/attachments/{attachment.pk}").status_code == 200


def test_signed_s3_redirect_also_needs_a_visible_ticket(attachment, other_agent, settings):
    from tickets.models import Team

    settings.S3_ENABLED = True
    ticket = attachment.message.ticket
    ticket.team = Team.objects.create(name="Billing", slug="billing")
    ticket.save(update_fields=["team"])
    client = Client()
    client.force_login(other_agent)
    assert client.get(f"/attachments/{attachment.pk}").status_code == 404


@pytest.mark.parametrize(
    ("filename", "content_type", "inline"),
    [
        ("page.html", "text/html", False),  # would open as a page on the bucket's origin
        ("logo.svg", "image/svg+xml", False),  # a picture that can carry script
        ("photo.png", "image/png", True),
        ("note.txt", "", False),
    ],
)
def test_the_signed_s3_url_names_our_disposition_and_type(
    customer, agent, settings, tmp_path, monkeypatch, filename, content_type, inline
):
    """S3 answers a signed URL with the type the object was stored under, so the redirect
    asks it for the same disposition the local download gives (attachment unless a picture,
    sound or video) and the attachment's own type."""
    from urllib.parse import parse_qs, urlsplit

    from moto import mock_aws

    from support.storage import S3Storage

    settings.MEDIA_ROOT = tmp_path
    ticket = services.ticket_create(
        customer=customer,
        subject="Files",
        body="see attached",
        attachments=[
            services.NewAttachment(
                filename=filename,
                content=b"<script>x</script>",
                content_type=content_type,
                kind="document",
            )
        ],
    )
    attachment = Attachment.objects.get(message__ticket=ticket)
    settings.S3_ENABLED = True
    with mock_aws():
        monkeypatch.setattr(
            Attachment._meta.get_field("file"), "storage", S3Storage(bucket_name="files")
        )
        client = Client()
        client.force_login(agent)
        response = client.get(f"/attachments/{attachment.pk}")
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    disposition = query["response-content-disposition"][0]
    assert disposition.startswith("inline" if inline else "attachment")
    assert filename in disposition
    assert query["response-content-type"] == [content_type or "application/octet-stream"]
    assert "Signature" in response["Location"] or "X-Amz-Signature" in response["Location"]
