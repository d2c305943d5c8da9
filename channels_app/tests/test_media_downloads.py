"""Media downloads: only from the channel's CDN hosts (redirects too), streamed with a cap."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses

from channels_app.adapters import base
from channels_app.fixtures import fixture_load
from channels_app.tests.conftest import make_account
from support.errors import PermanentError
from tickets.models import Attachment

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
