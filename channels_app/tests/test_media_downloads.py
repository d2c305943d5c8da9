"""Media downloads: only from the channel's CDN hosts (redirects too), streamed with a cap."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import requests
import responses
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerDown

from channels_app import tasks
from channels_app.adapters import base
from channels_app.adapters.whatsapp.adapter import WhatsAppAdapter
from channels_app.fixtures import fixture_load
from channels_app.services import media
from channels_app.services.media import media_error_words
from channels_app.tests.conftest import make_account
from support.celery import ON_CONNECT_TASKS
from support.errors import PermanentError, RetryableError
from support.redis_client import Lease
from tickets.models import Attachment, DownloadStatus, Message

pytestmark = pytest.mark.django_db

CDN_URL = "https://scontent.xx.fbcdn.net/v/t1.15752-9/photo.jpg?_nc_cat=1&oh=abc"


def _replace(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {k: _replace(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, old, new) for v in node]
    return new if node == old else node


def _post_messenger_image(post_fixture: Any, url: str) -> Attachment:
    """The recorded Messenger image delivery, its attachment URL set to ``url``."""
    account = make_account("messenger")
    data = json.loads(fixture_load("messenger", "image_attachment").body)
    body = json.dumps(_replace(data, CDN_URL, url)).encode()
    assert url.encode() in body
    post_fixture(account, "image_attachment", body=body)
    return Attachment.objects.get()


@pytest.fixture
def media_root(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = str(tmp_path)


def test_hosts_match_whole_labels() -> None:
    allowed = ("fbcdn.net", "ton.twitter.com")
    assert base.host_allowed("scontent.xx.fbcdn.net", allowed)
    assert base.host_allowed("FBCDN.NET.", allowed)
    assert base.host_allowed("ton.twitter.com", allowed)
    assert not base.host_allowed("evilfbcdn.net", allowed)
    assert not base.host_allowed("fbcdn.net.evil.example", allowed)
    assert not base.host_allowed("twitter.com", allowed)
    assert not base.host_allowed("", allowed)


@responses.activate
def test_a_media_url_off_the_allow_list_is_never_fetched(
    post_fixture: Any, media_root: None
) -> None:
    url = "https://metadata.internal.example/latest/secret.jpg"
    responses.get(url, body=b"internal", content_type="image/jpeg")
    attachment = _post_messenger_image(post_fixture, url)
    assert not attachment.file  # kept by reference only
    assert attachment.external_url == url
    assert len(responses.calls) == 0


@responses.activate
def test_a_redirect_to_another_host_is_refused(post_fixture: Any, media_root: None) -> None:
    responses.get(CDN_URL, status=302, headers={"Location": "https://evil.example/x.jpg"})
    responses.get("https://evil.example/x.jpg", body=b"evil", content_type="image/jpeg")
    attachment = _post_messenger_image(post_fixture, CDN_URL)
    assert not attachment.file
    assert [c.request.url for c in responses.calls] == [CDN_URL]


@responses.activate
def test_a_redirect_within_the_allow_list_is_followed(post_fixture: Any, media_root: None) -> None:
    target = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1"
    responses.get(CDN_URL, status=302, headers={"Location": target})
    responses.get(target, body=b"png!", content_type="image/png")
    attachment = _post_messenger_image(post_fixture, CDN_URL)
    assert attachment.file.read() == b"png!"


@responses.activate
def test_extra_hosts_extend_one_channel(post_fixture: Any, media_root: None, settings: Any) -> None:
    settings.CHANNELS_MEDIA_EXTRA_HOSTS = ["messenger:media.example.net", "twitter:x.example"]
    url = "https://cdn.media.example.net/a.png"
    responses.get(url, body=b"png!", content_type="image/png")
    attachment = _post_messenger_image(post_fixture, url)
    assert attachment.file.read() == b"png!"


@responses.activate
def test_media_over_the_size_cap_is_not_stored(
    post_fixture: Any, media_root: None, settings: Any
) -> None:
    settings.CHANNELS_MEDIA_MAX_BYTES = 1000
    responses.get(CDN_URL, body=b"x" * 5000, content_type="image/png")
    attachment = _post_messenger_image(post_fixture, CDN_URL)
    assert not attachment.file
    assert attachment.external_url == CDN_URL


@responses.activate
def test_whatsapp_refuses_a_download_url_off_its_hosts(post_fixture: Any, media_root: None) -> None:
    account = make_account("whatsapp")
    responses.get(
        "https://graph.facebook.com/v21.0/1003383421387256",
        json={"url": "https://attacker.example/m", "mime_type": "image/jpeg"},
    )
    responses.get("https://attacker.example/m", body=b"nope")
    post_fixture(account, "image_message")
    assert not Attachment.objects.get().file
    assert len(responses.calls) == 1  # the Graph lookup only


class EndlessBody:
    """A response whose body never ends and has no Content-Length."""

    status_code = 200
    headers = {"Content-Type": "video/mp4"}
    text = ""

    def __init__(self) -> None:
        self.chunks_read = 0
        self.raw = self  # read as support.outbound.body_read_bounded reads: raw.read1

    def read1(self, amount: int, decode_content: bool = False) -> bytes:
        self.chunks_read += 1
        return b"\0" * amount

    def __enter__(self) -> EndlessBody:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_the_body_is_streamed_and_cut_at_the_cap(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.CHANNELS_MEDIA_MAX_BYTES = 1_000_000
    endless = EndlessBody()
    seen: dict[str, Any] = {}

    def fake_get(url: str, **kwargs: Any) -> EndlessBody:
        seen.update(kwargs)
        return endless

    monkeypatch.setattr(requests, "get", fake_get)
    with pytest.raises(PermanentError, match="larger than 1000000 bytes"):
        base.media_download("https://video.twimg.com/v.mp4", allowed_hosts=("twimg.com",))
    assert seen["stream"] is True
    assert seen["allow_redirects"] is False
    assert endless.chunks_read == 62  # 62 × 16 KiB passes 1 MB; nothing more is read


def test_plain_http_is_refused() -> None:
    with pytest.raises(PermanentError, match="allow-list"):
        base.media_download(
            "http://ton.twitter.com/1.1/ton/data/dm/1/2/a.jpg", allowed_hosts=("ton.twitter.com",)
        )


# --- what became of a download: stored, pending, failed (and why) -----------------------

GRAPH_MEDIA = "https://graph.facebook.com/v21.0/1003383421387256"
LOOKASIDE = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1003383421387256&ext=1&hash=SIGNATURE"


def _whatsapp_image(post_fixture: Any) -> Attachment:
    """The recorded WhatsApp image delivery; its download (no Graph answer: the network is
    blocked) fails for now and is left pending."""
    post_fixture(make_account("whatsapp"), "image_message")
    return Attachment.objects.get()


def _graph_serves_the_image() -> None:
    responses.get(GRAPH_MEDIA, json={"url": LOOKASIDE, "mime_type": "image/jpeg"})
    responses.get(LOOKASIDE, body=b"\xff\xd8jpeg", content_type="image/jpeg")


def _message_state(attachment: Attachment) -> tuple[Any, ...]:
    message = Message.objects.get(pk=attachment.message_id)
    return (message.body_text, message.metadata, message.ticket_id, message.channel_message_id)


@responses.activate
def test_a_download_that_fails_for_now_stays_pending(post_fixture: Any, media_root: None) -> None:
    attachment = _whatsapp_image(post_fixture)
    assert attachment.download_status == DownloadStatus.PENDING
    assert (attachment.file, attachment.download_error) == ("", "")
    assert attachment.download_attempted_at is not None
    assert Message.objects.get().body_text == "The box arrived damaged"


@responses.activate
def test_a_stored_download_says_so(post_fixture: Any, media_root: None) -> None:
    _graph_serves_the_image()
    attachment = _whatsapp_image(post_fixture)
    assert attachment.download_status == DownloadStatus.STORED
    assert attachment.file.read() == b"\xff\xd8jpeg"


def test_a_permanent_failure_is_recorded_with_its_reason(
    post_fixture: Any, media_root: None
) -> None:
    with responses.RequestsMock() as mocked:
        mocked.get(
            GRAPH_MEDIA,
            status=400,
            json={"error": {"message": "(#131052) Media download error", "code": 131052}},
        )
        attachment = _whatsapp_image(post_fixture)
    message_before = _message_state(attachment)
    attachment.refresh_from_db()
    assert attachment.download_status == DownloadStatus.FAILED
    assert attachment.download_error == (
        "WhatsApp answered HTTP 400: (#131052) Media download error"
    )
    assert not attachment.file
    assert attachment.external_media_id == "1003383421387256"  # the reference is kept
    assert _message_state(attachment) == message_before
    assert Message.objects.count() == 1


@responses.activate
def test_retries_running_out_mark_the_download_failed(post_fixture: Any, media_root: None) -> None:
    attachment = _whatsapp_image(post_fixture)
    message_before = _message_state(attachment)
    error = RetryableError(f"ConnectionError: Max retries exceeded with url: {LOOKASIDE}")
    with mock.patch.object(WhatsAppAdapter, "fetch_media", side_effect=error) as fetch:
        # an attempt with retries left keeps it pending (eager: the sweep queues it again)
        tasks.attachment_download_task.apply(args=(attachment.pk,), retries=4)
        attachment.refresh_from_db()
        assert attachment.download_status == DownloadStatus.PENDING
        # the last one (retries == max_retries) gives up, saying why
        tasks.attachment_download_task.apply(args=(attachment.pk,), retries=5)
        assert fetch.call_count == 2
    attachment.refresh_from_db()
    assert attachment.download_status == DownloadStatus.FAILED
    assert attachment.download_error == (
        "gave up after 6 attempts: ConnectionError: Max retries exceeded with url: <address>"
    )
    assert "SIGNATURE" not in attachment.download_error
    assert _message_state(attachment) == message_before
    # failed is final: a later task (a duplicate, the sweep's) does not fetch again
    with mock.patch.object(WhatsAppAdapter, "fetch_media") as fetch:
        tasks.attachment_download_task.apply(args=(attachment.pk,))
    assert fetch.call_count == 0


def test_error_words_never_carry_an_address() -> None:
    assert (
        media_error_words(PermanentError(f"Could not read {CDN_URL} (oh=abc)"))
        == "Could not read <address> (oh=abc)"
    )
    exc = RetryableError("HTTPSConnectionPool: url: /v/t1/photo.jpg?oh=abc&oe=1 (timeout)")
    assert media_error_words(exc) == "HTTPSConnectionPool: url: <address> (timeout)"
    assert media_error_words(RetryableError("x" * 400)) == "x" * 299 + "…"


@responses.activate
def test_the_broker_down_at_the_commit_loses_nothing(
    post_fixture: Any, media_root: None, django_capture_on_commit_callbacks: Any
) -> None:
    with mock.patch.object(
        tasks.attachment_download_task, "delay", side_effect=BrokerDown("broker down")
    ):
        attachment = _whatsapp_image(post_fixture)  # the webhook is answered all the same
    assert attachment.download_status == DownloadStatus.PENDING
    assert attachment.download_attempted_at is None  # never started
    assert Message.objects.count() == 1
    # the sweep leaves it alone for a few minutes (its task may still be on its way) …
    assert media.attachment_downloads_sweep() == 0
    # … then queues it again, and it is stored
    _graph_serves_the_image()
    Attachment.objects.filter(pk=attachment.pk).update(
        created_at=timezone.now() - timedelta(minutes=11)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.attachment_downloads_sweep_task.apply().get() == 1
    attachment.refresh_from_db()
    assert attachment.download_status == DownloadStatus.STORED
    assert attachment.file.read() == b"\xff\xd8jpeg"
    with django_capture_on_commit_callbacks(execute=True):
        assert media.attachment_downloads_sweep(stale_seconds=0) == 0  # nothing left


@responses.activate
def test_the_sweep_claims_what_it_queues_and_leaves_a_download_in_progress(
    post_fixture: Any, media_root: None, django_capture_on_commit_callbacks: Any
) -> None:
    attachment = _whatsapp_image(post_fixture)
    eleven_minutes_ago = timezone.now() - timedelta(minutes=11)
    Attachment.objects.filter(pk=attachment.pk).update(
        created_at=eleven_minutes_ago, download_attempted_at=timezone.now()
    )
    # its last attempt started just now (a task running, or waiting for its retry)
    assert media.attachment_downloads_sweep() == 0
    Attachment.objects.filter(pk=attachment.pk).update(download_attempted_at=eleven_minutes_ago)
    with (
        mock.patch.object(tasks.attachment_download_task, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert media.attachment_downloads_sweep() == 1
        assert media.attachment_downloads_sweep() == 0  # claimed: not queued twice
    assert delay.call_args_list == [mock.call(attachment.pk)]
    attachment.refresh_from_db()
    assert attachment.download_attempted_at is not None
    assert attachment.download_attempted_at > eleven_minutes_ago


@responses.activate
def test_one_download_of_an_attachment_at_a_time(post_fixture: Any, media_root: None) -> None:
    attachment = _whatsapp_image(post_fixture)
    _graph_serves_the_image()
    held = Lease(media.DOWNLOAD_LEASE.format(attachment_id=attachment.pk), 60)
    assert held.take()
    calls = len(responses.calls)  # the first attempt's (no answer)
    try:
        assert media.attachment_download(attachment_id=attachment.pk) is False
        assert len(responses.calls) == calls  # not fetched while another task is at it
    finally:
        held.release()
    assert media.attachment_download(attachment_id=attachment.pk) is True
    attachment.refresh_from_db()
    assert attachment.download_status == DownloadStatus.STORED


@responses.activate
def test_a_reference_past_the_channels_lifetime_is_marked_expired(
    post_fixture: Any, media_root: None
) -> None:
    attachment = _whatsapp_image(post_fixture)
    message_before = _message_state(attachment)
    Attachment.objects.filter(pk=attachment.pk).update(
        created_at=timezone.now() - timedelta(days=31)
    )
    with mock.patch.object(tasks.attachment_download_task, "delay") as delay:
        assert media.attachment_downloads_sweep() == 1
    assert delay.call_count == 0  # not queued: WhatsApp no longer has it
    attachment.refresh_from_db()
    assert attachment.download_status == DownloadStatus.FAILED
    assert attachment.download_error == ("the file expired at WhatsApp before it could be fetched")
    assert _message_state(attachment) == message_before
    assert media.attachment_downloads_sweep() == 0


@responses.activate
def test_a_task_for_an_expired_reference_does_not_fetch(
    post_fixture: Any, media_root: None
) -> None:
    attachment = _post_messenger_image(post_fixture, CDN_URL)  # Meta CDN: days, not weeks
    Attachment.objects.filter(pk=attachment.pk).update(
        created_at=timezone.now() - timedelta(days=4),
        download_status=DownloadStatus.PENDING,
        download_error="",
    )
    calls = len(responses.calls)
    tasks.attachment_download_task.apply(args=(attachment.pk,))
    assert len(responses.calls) == calls
    attachment.refresh_from_db()
    assert (attachment.download_status, attachment.download_error) == (
        DownloadStatus.FAILED,
        "the file expired at Messenger before it could be fetched",
    )


def test_workers_run_the_media_sweep_on_connect_and_the_beat_every_minute(
    settings: Any,
) -> None:
    assert ("channels_app.tasks.attachment_downloads_sweep_task", {"stale_seconds": 0}) in (
        ON_CONNECT_TASKS
    )
    entry = settings.CELERY_BEAT_SCHEDULE["channels-media-sweep"]
    assert entry == {
        "task": "channels_app.tasks.attachment_downloads_sweep_task",
        "schedule": 60.0,
    }
