from __future__ import annotations

import time

import pytest
from django.test import Client

from tickets import services
from tickets.models import Attachment, DownloadStatus

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
    # a file only some agents may see: no cache keeps it (as the visitor's and bot's)
    assert response["Cache-Control"] == "private, no-store"
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
    # short-lived (AWS_QUERYSTRING_EXPIRE, 120 s; django-storages' default was an hour),
    # and no cache keeps the redirect that carries it
    if "X-Amz-Expires" in query:  # signature version 4
        lifetime = int(query["X-Amz-Expires"][0])
    else:  # version 2 (moto's default here): the time it ends
        lifetime = int(query["Expires"][0]) - int(time.time())
    assert 110 <= lifetime <= 120, lifetime
    assert response["Cache-Control"] == "private, no-store"


# --- a channel's file still coming, or that will not come --------------------------------


@pytest.fixture
def referenced(customer):
    """A WhatsApp image recorded by reference (its media id), its download to come."""
    ticket = services.ticket_create(
        customer=customer,
        subject="Photo",
        body="the box arrived damaged",
        channel="whatsapp",
        attachments=[
            services.NewAttachment(
                filename="photo.jpg",
                content_type="image/jpeg",
                external_media_id="1003383421387256",
                kind="image",
            )
        ],
    )
    return Attachment.objects.get(message__ticket=ticket)


def _timeline_of(attachment, agent) -> str:
    from django.urls import reverse

    client = Client()
    client.force_login(agent)
    ticket = attachment.message.ticket
    response = client.get(reverse("ticket", kwargs={"ref": ticket.number}))
    assert response.status_code == 200
    return response.content.decode()


def test_the_ticket_page_says_a_channels_file_is_downloading(referenced, agent):
    assert referenced.download_status == DownloadStatus.PENDING
    page = _timeline_of(referenced, agent)
    assert 'photo.jpg <span class="muted download-pending">downloading…</span>' in page
    assert "could not be downloaded" not in page


def test_the_ticket_page_says_why_a_file_could_not_be_downloaded(referenced, agent):
    assert services.attachment_download_fail(
        attachment_id=referenced.pk,
        error="the file expired at WhatsApp before it could be fetched",
    )
    page = _timeline_of(referenced, agent)
    assert (
        'photo.jpg <span class="download-failed" role="note">could not be downloaded: '
        "the file expired at WhatsApp before it could be fetched</span>"
    ) in page
    assert "downloading…" not in page
    assert f"/attachments/{referenced.pk}" not in page  # no link to a file we do not have


def test_a_stored_file_wins_over_an_earlier_failure(referenced, agent, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    services.attachment_download_fail(attachment_id=referenced.pk, error="timeout")
    services.attachment_content_store(attachment=referenced, content=b"jpeg")
    referenced.refresh_from_db()
    assert (referenced.download_status, referenced.download_error) == (
        DownloadStatus.STORED,
        "",
    )
    # and a late failure does not undo a stored file
    assert not services.attachment_download_fail(attachment_id=referenced.pk, error="late")
    page = _timeline_of(referenced, agent)
    assert f'<a href="/attachments/{referenced.pk}" download>photo.jpg</a>' in page
    assert "downloading…" not in page
    assert "could not be downloaded" not in page


def test_the_api_gives_each_attachments_download_status(attachment, referenced, agent_client):
    body = agent_client.get(f"/api/tickets/{attachment.message.ticket_id}").json()
    [stored] = body["messages"][0]["attachments"]
    assert (stored["download_status"], stored["download_error"]) == ("stored", "")
    services.attachment_download_fail(attachment_id=referenced.pk, error="HTTP 404")
    body = agent_client.get(f"/api/tickets/{referenced.message.ticket_id}").json()
    [failed] = body["messages"][0]["attachments"]
    assert failed == {
        "id": referenced.pk,
        "filename": "photo.jpg",
        "content_type": "image/jpeg",
        "size": 0,
        "kind": "image",
        "url": "",
        "download_status": "failed",
        "download_error": "HTTP 404",
    }


def test_a_channels_file_with_no_address_is_failed_at_once(customer):
    ticket = services.ticket_create(
        customer=customer,
        subject="Photo",
        body="see attached",
        attachments=[services.NewAttachment(filename="photo.jpg", external_url="ftp://x/y")],
    )
    attachment = Attachment.objects.get(message__ticket=ticket)
    assert (attachment.download_status, attachment.download_error) == (
        DownloadStatus.FAILED,
        "the channel gave no address to download it from",
    )
