"""A media download that failed for good is downloaded again by a supervisor from the
Attachments admin ("Download again"), audited, as the other dead letters are re-driven.

Before, a download that gave up after its retries ("gave up after 6 attempts: WhatsApp
answered HTTP 503") stayed failed for ever: the sweep takes only pending ones and the
page had no action, though a WhatsApp media id lasts 30 days."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.utils import timezone

from channels_app import tasks
from support.auth.roles import AGENTS_GROUP
from support.models import AuditLog
from tickets.models import (
    NOTHING_TO_FETCH,
    Attachment,
    Customer,
    DownloadStatus,
    Message,
    Team,
    Ticket,
)

pytestmark = pytest.mark.django_db

URL = "/admin/tickets/attachment/"
GAVE_UP = "gave up after 6 attempts: WhatsApp answered HTTP 503"


@pytest.fixture
def team() -> Team:
    return Team.objects.create(name="Ours", slug="ours")


@pytest.fixture
def message(team: Team) -> Message:
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    ticket = Ticket.objects.create(
        customer=customer, subject="Photo", team=team, channel="whatsapp"
    )
    return Message.objects.create(
        ticket=ticket, direction="inbound", kind="public", channel="whatsapp", body_text="see"
    )


def _attachment(
    message: Message,
    *,
    status: str = DownloadStatus.FAILED,
    error: str = GAVE_UP,
    media_id: str = "wamid-media-1",
    age: timedelta = timedelta(days=2),
) -> Attachment:
    attachment = Attachment.objects.create(
        message=message,
        filename="photo.jpg",
        kind="image",
        external_media_id=media_id,
        download_status=status,
        download_error=error,
    )
    Attachment.objects.filter(pk=attachment.pk).update(created_at=timezone.now() - age)
    return attachment


def _download_again(user: Any, *attachments: Attachment, capture: Any) -> tuple[str, Any]:
    client = Client()
    client.force_login(user)
    with (
        mock.patch.object(tasks.attachment_download_task, "delay") as delay,
        capture(execute=True),
    ):
        response = client.post(
            URL,
            {"action": "download_again", "_selected_action": [a.pk for a in attachments]},
            follow=True,
        )
    assert response.status_code == 200
    return response.content.decode(), delay


def test_a_supervisor_downloads_a_failed_download_again(
    supervisor: Any, message: Message, django_capture_on_commit_callbacks: Any
) -> None:
    """Pending again, its error cleared, queued after the commit as a new download is (a
    new task: its retries start again), claimed for the sweep, and audited."""
    failed = _attachment(message)
    page, delay = _download_again(supervisor, failed, capture=django_capture_on_commit_callbacks)
    assert "1 download(s) queued again." in page
    assert delay.call_args_list == [mock.call(failed.pk)]
    failed.refresh_from_db()
    assert (failed.download_status, failed.download_error) == (DownloadStatus.PENDING, "")
    assert failed.download_attempted_at is not None  # the sweep leaves it to its task
    audit = AuditLog.objects.get()
    assert (audit.actor, audit.action, audit.object_type, audit.object_id) == (
        supervisor,
        "attachment.download_redrive",
        "attachment",
        str(failed.pk),
    )
    assert audit.details == {"channel": "whatsapp", "error": GAVE_UP}


def test_others_are_left_alone_and_counted(
    supervisor: Any, message: Message, django_capture_on_commit_callbacks: Any
) -> None:
    """Pending, stored, nothing to fetch (no reference), past the channel's reference
    lifetime (WhatsApp: 30 days): left as they were, and the message says so."""
    failed = _attachment(message)
    pending = _attachment(message, status=DownloadStatus.PENDING, error="")
    stored = _attachment(message, status=DownloadStatus.STORED, error="")
    nothing = _attachment(message, error=NOTHING_TO_FETCH, media_id="")
    expired = _attachment(message, age=timedelta(days=31))
    others = (pending, stored, nothing, expired)
    before = {a.pk: (a.download_status, a.download_error) for a in others}
    page, delay = _download_again(
        supervisor, failed, *others, capture=django_capture_on_commit_callbacks
    )
    assert (
        "1 download(s) queued again; 1 left failed: past their channel&#x27;s reference "
        "lifetime (the channel no longer keeps the file); 3 left as they were (not failed, "
        "or nothing to fetch)."
    ) in page
    assert delay.call_args_list == [mock.call(failed.pk)]
    after = {
        a.pk: (a.download_status, a.download_error)
        for a in Attachment.objects.filter(pk__in=before)
    }
    assert after == before
    assert list(AuditLog.objects.values_list("object_id", flat=True)) == [str(failed.pk)]


def test_a_staff_agent_downloads_nothing_again(
    django_user_model: Any,
    team: Team,
    message: Message,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """A staff agent given the attachments' Django permissions sees the ticket's files,
    and downloads none again: the supervisors' re-drive, as the other dead letters'."""
    staff = django_user_model.objects.create_user(
        "staff-agent", password="pw-for-tests-1", is_staff=True
    )
    staff.groups.add(Group.objects.get_or_create(name=AGENTS_GROUP)[0])
    team.members.add(staff)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=("view_attachment", "change_attachment"))
    )
    failed = _attachment(message)
    page, delay = _download_again(staff, failed, capture=django_capture_on_commit_callbacks)
    assert "Only supervisors can download again." in page
    assert delay.call_count == 0
    failed.refresh_from_db()
    assert (failed.download_status, failed.download_error) == (DownloadStatus.FAILED, GAVE_UP)
    assert not AuditLog.objects.exists()
