"""A web chat visitor's file waits in storage ("staged", ``webchat-uploads/…``) from its
202 until the drain makes it an attachment. When its event never gets there (erased,
purged, discarded) the staged copy goes with it, after the commit; what still slips
through (a failed delete, a lost account) is deleted by the hourly staged uploads purge
once no pending event names it. A failure to delete is logged, never the file, and never
stops the purge."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from channels_app.adapters.webchat.adapter import UPLOAD_ROOT, session_issue
from channels_app.models import ChannelAccount, InboundEvent, InboundStatus
from channels_app.tests.conftest import make_account
from support.celery import app
from support.retention import raw_events_purge
from tickets.context import privacy
from tickets.models import Customer

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def account(settings: Any, tmp_path: Path) -> ChannelAccount:
    settings.MEDIA_ROOT = tmp_path
    return make_account("webchat")


def new_session(account: ChannelAccount, name: str = "Vera") -> str:
    return str(session_issue(account, name=name, email=f"{name.lower()}@example.com")["session"])


def upload(
    client: Client,
    account: ChannelAccount,
    session: str,
    *,
    name: str = "kettle.png",
    client_id: str = "client-file-0001",
) -> InboundEvent:
    """Upload a file; its event is recorded, not drained (on-commit callbacks not run)."""
    response = client.post(
        f"/api/webchat/{account.webhook_token}/files",
        {"file": SimpleUploadedFile(name, PNG), "text": "", "client_id": client_id},
        HTTP_X_WEBCHAT_SESSION=session,
    )
    assert response.status_code == 202, response.content
    return InboundEvent.objects.get(pk=response.json()["id"])


def staged_key(event: InboundEvent) -> str:
    return str(json.loads(bytes(event.body))["file"]["key"])


def staged(root: Path) -> set[str]:
    """The staged uploads in storage, as storage names."""
    return {p.relative_to(root).as_posix() for p in (root / UPLOAD_ROOT).rglob("*") if p.is_file()}


def age(root: Path, name: str, hours: float) -> None:
    when = time.time() - hours * 3600
    os.utime(root / name, (when, when))


def test_erasing_a_visitor_deletes_their_undrained_files_and_only_theirs(
    client: Client,
    account: ChannelAccount,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    vera = new_session(account)
    with django_capture_on_commit_callbacks(execute=True):
        upload(client, account, vera, client_id="client-file-0001")  # drained: a customer
    customer = Customer.objects.get()
    dead = upload(client, account, vera, name="passport.png", client_id="client-file-0002")
    InboundEvent.objects.filter(pk=dead.pk).update(status=InboundStatus.DEAD)
    # another visitor's file, waiting for the drain; and a message Vera posted straight to
    # the webhook naming it: erasing Vera must not delete Eve's file
    eve = new_session(account, "Eve")
    eves = staged_key(upload(client, account, eve, name="eve.png", client_id="client-eve-0001"))
    forged = client.post(
        f"/api/webhooks/webchat/{account.webhook_token}",
        {"client_id": "client-forged-01", "text": "", "file": {"key": eves, "name": "x.png"}},
        content_type="application/json",
        HTTP_X_WEBCHAT_SESSION=vera,
    )
    assert forged.status_code == 200
    assert staged(tmp_path) == {staged_key(dead), eves}

    with django_capture_on_commit_callbacks(execute=True):
        privacy.customer_erase(customer=customer, actor=None, via="test")

    dead.refresh_from_db()
    assert (dead.status, bytes(dead.body)) == (InboundStatus.IGNORED, b"")
    assert staged(tmp_path) == {eves}


def test_the_retention_purge_deletes_the_staged_files_of_the_events_it_deletes(
    client: Client,
    account: ChannelAccount,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = new_session(account)
    purged = upload(client, account, session, client_id="client-file-0001")
    kept = upload(client, account, session, name="kept.png", client_id="client-file-0002")
    old = timezone.now() - timedelta(days=django_settings.RAW_EVENT_RETENTION_DAYS + 1)
    InboundEvent.objects.filter(pk=purged.pk).update(
        status=InboundStatus.IGNORED, received_at=old, processed_at=old
    )
    InboundEvent.objects.filter(pk=kept.pk).update(received_at=old)  # received: never purged

    with django_capture_on_commit_callbacks(execute=True):
        assert raw_events_purge()["channels_inbound_events"] == 1

    assert list(InboundEvent.objects.values_list("pk", flat=True)) == [kept.pk]
    assert staged(tmp_path) == {staged_key(kept)}


def test_discarding_events_in_the_admin_deletes_their_staged_files(
    client: Client,
    account: ChannelAccount,
    tmp_path: Path,
    admin_client: Client,
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = new_session(account)
    one = upload(client, account, session, client_id="client-file-0001")
    two = upload(client, account, session, name="two.png", client_id="client-file-0002")
    three = upload(client, account, session, name="three.png", client_id="client-file-0003")
    InboundEvent.objects.update(status=InboundStatus.DEAD)

    with django_capture_on_commit_callbacks(execute=True):
        page = admin_client.post(
            f"/admin/channels_app/inboundevent/{one.pk}/delete/", {"post": "yes"}
        )
    assert page.status_code == 302
    with django_capture_on_commit_callbacks(execute=True):
        listing = admin_client.post(
            "/admin/channels_app/inboundevent/",
            {"action": "delete_selected", "_selected_action": [two.pk], "post": "yes"},
        )
    assert listing.status_code == 302

    assert list(InboundEvent.objects.values_list("pk", flat=True)) == [three.pk]
    assert staged(tmp_path) == {staged_key(three)}


def test_the_hourly_purge_deletes_old_staged_files_no_pending_event_names(
    client: Client,
    account: ChannelAccount,
    tmp_path: Path,
    settings: Any,
) -> None:
    settings.WEBCHAT_STAGED_UPLOAD_MAX_AGE_HOURS = 2
    session = new_session(account)
    dead = staged_key(upload(client, account, session, client_id="client-file-0001"))
    InboundEvent.objects.update(status=InboundStatus.DEAD)  # awaits a re-drive: kept
    processed = upload(client, account, session, name="done.png", client_id="client-file-0002")
    # processed, but the delete after its drain failed: the attachment has its own copy
    InboundEvent.objects.filter(pk=processed.pk).update(status=InboundStatus.PROCESSED)
    orphan = f"{UPLOAD_ROOT}/{account.pk}/v_0a1b2c/{'f' * 24}/lost.png"  # its event is gone
    recent = f"{UPLOAD_ROOT}/{account.pk}/v_0a1b2c/{'e' * 24}/new.png"  # being recorded
    outside = "attachments/2026/12/kettle.png"  # not a staged upload: never touched
    for name in (orphan, recent, outside):
        default_storage.save(name, SimpleUploadedFile("x", PNG))
    for name in (dead, staged_key(processed), orphan, outside):
        age(tmp_path, name, hours=3)

    entry = django_settings.CELERY_BEAT_SCHEDULE["webchat-uploads-purge"]
    assert entry["schedule"] == 3600.0
    assert entry["task"] in app.tasks
    assert app.tasks[str(entry["task"])].delay().get() == 2

    assert staged(tmp_path) == {dead, recent}
    assert (tmp_path / outside).read_bytes() == PNG
    assert app.tasks[str(entry["task"])].delay().get() == 0  # nothing more


def test_a_failed_delete_is_logged_without_the_file_and_the_purge_goes_on(
    client: Client,
    account: ChannelAccount,
    tmp_path: Path,
    caplog: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = new_session(account)
    first = upload(client, account, session, name="passport-vera.png", client_id="c-file-01")
    second = upload(client, account, session, name="second.png", client_id="c-file-02")
    old = timezone.now() - timedelta(days=django_settings.RAW_EVENT_RETENTION_DAYS + 1)
    InboundEvent.objects.update(status=InboundStatus.IGNORED, received_at=old, processed_at=old)
    real_delete = default_storage.delete

    def delete(name: str) -> None:
        if name == staged_key(first):
            raise PermissionError(13, "Permission denied", str(tmp_path / name))
        real_delete(name)

    caplog.set_level(logging.WARNING)
    with (
        mock.patch.object(default_storage, "delete", side_effect=delete),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert raw_events_purge()["channels_inbound_events"] == 2

    assert not InboundEvent.objects.exists()
    assert staged(tmp_path) == {staged_key(first)}  # left for the hourly purge
    [record] = [r for r in caplog.records if "staged" in r.getMessage()]
    assert record.levelno == logging.WARNING
    logged = record.getMessage() + str(record.exc_info or "") + str(record.exc_text or "")
    assert "PermissionError" in logged
    assert "passport" not in logged
    assert "vera" not in logged.lower()
    assert staged_key(second) not in logged


def test_someone_elses_pending_file_survives_an_erasure_of_a_visitor_it_names(
    client: Client,
    account: ChannelAccount,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Erasing Vera leaves another visitor's pending message that only has her name in it
    ("vera-kettle.png") as it is: a name word is not hers, and Eve's delivery holds none
    of Vera's identifiers (before 2026-12-07 it was redacted, and before that its file's
    storage key with it, so the message arrived without its file and the hourly purge then
    deleted it)."""
    from channels_app.services.drain import inbound_event_process

    vera = new_session(account)
    with django_capture_on_commit_callbacks(execute=True):
        upload(client, account, vera, client_id="client-file-0001")
    customer = Customer.objects.get()
    eve = new_session(account, "Eve")
    pending = upload(client, account, eve, name="vera-kettle.png", client_id="client-eve-0001")
    key = staged_key(pending)
    assert "vera" in key
    before = bytes(pending.body)

    with django_capture_on_commit_callbacks(execute=True):
        privacy.customer_erase(customer=customer, actor=None, via="test")
    pending.refresh_from_db()
    assert pending.status == InboundStatus.RECEIVED  # still to be delivered
    assert bytes(pending.body) == before  # Eve's, untouched
    assert json.loads(before)["file"]["key"] == key

    with django_capture_on_commit_callbacks(execute=True):
        inbound_event_process(event_id=pending.pk)
    pending.refresh_from_db()
    assert pending.status == InboundStatus.PROCESSED
    eves = Customer.objects.exclude(pk=customer.pk).get()
    attachment = eves.tickets.get().messages.get().attachments.get()
    assert attachment.file.read() == PNG
