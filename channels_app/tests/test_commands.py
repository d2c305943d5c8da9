from __future__ import annotations

import io
from typing import Any
from unittest import mock

import pytest
from django.core.management import CommandError, call_command

from channels_app.models import ChannelAccount, InboundEvent
from channels_app.tests.conftest import post_raw
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


def test_channel_account_create_creates_then_updates_and_prints_the_path_last() -> None:
    out = io.StringIO()
    call_command(
        "channel_account_create",
        "--channel",
        "whatsapp",
        "--name",
        "Main number",
        "--app-secret",
        "s1",
        "--verify-token",
        "v1",
        "--access-token",
        "a1",
        "--external-id",
        "106540352242922",
        stdout=out,
    )
    account = ChannelAccount.objects.get()
    assert (
        out.getvalue().strip().splitlines()[-1] == f"/api/webhooks/whatsapp/{account.webhook_token}"
    )
    assert (account.app_secret, account.verify_token, account.access_token) == ("s1", "v1", "a1")
    call_command(
        "channel_account_create",
        "--channel",
        "whatsapp",
        "--name",
        "Main number",
        "--app-secret",
        "s2",
        stdout=io.StringIO(),
    )
    account.refresh_from_db()
    assert (account.app_secret, account.verify_token, ChannelAccount.objects.count()) == (
        "s2",
        "v1",
        1,
    )
    with pytest.raises(CommandError, match="Unknown channel"):
        call_command(
            "channel_account_create", "--channel", "fax", "--name", "x", stdout=io.StringIO()
        )


def test_send_channel_fixture_sends_a_correctly_signed_delivery(
    client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    call_command(
        "channel_account_create",
        "--channel",
        "twitter",
        "--name",
        "x",
        "--consumer-secret",
        "cs",
        stdout=io.StringIO(),
    )
    account = ChannelAccount.objects.get()
    captured: dict[str, Any] = {}

    class FakeResponse(io.BytesIO):
        status = 200

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *args: Any) -> None:
            return None

    def fake_urlopen(request: Any, timeout: float) -> Any:
        captured["request"] = request
        return FakeResponse(b'{"status": "accepted"}')

    out = io.StringIO()
    with mock.patch("urllib.request.urlopen", fake_urlopen):
        call_command(
            "send_channel_fixture",
            "twitter",
            "dm_message_create",
            "--url",
            "http://127.0.0.1:9",
            stdout=out,
        )
    request = captured["request"]
    assert request.full_url == f"http://127.0.0.1:9{account.webhook_path}"
    assert "-> 200" in out.getvalue()
    # the same request, replayed into the app, is accepted and processed
    with django_capture_on_commit_callbacks(execute=True):
        response = post_raw(client, account, request.data, dict(request.header_items()))
    assert response.status_code == 200
    assert InboundEvent.objects.get().status == "processed"
    assert Ticket.objects.count() == 1


def test_send_channel_fixture_names_available_fixtures() -> None:
    call_command(
        "channel_account_create",
        "--channel",
        "whatsapp",
        "--name",
        "x",
        "--app-secret",
        "s",
        stdout=io.StringIO(),
    )
    with pytest.raises(CommandError, match="Available: contacts_message, image_message"):
        call_command("send_channel_fixture", "whatsapp", "nope", stdout=io.StringIO())
