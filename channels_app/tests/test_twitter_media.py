"""X DM media: OAuth 1.0a signing (published test vectors) and the download task."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from channels_app.adapters.twitter.oauth1 import authorization_header, signature
from channels_app.tests.conftest import make_account
from tickets.models import Attachment

MEDIA_URL = (
    "https://ton.twitter.com/1.1/ton/data/dm/954491830116155397/954491826446155776/receipt.jpg"
)


def test_signature_matches_published_examples() -> None:
    # X's "Creating a signature" page (query and body parameters, with a token secret)
    doc = {
        "status": "Hello Ladies + Gentlemen, a signed OAuth request!",
        "oauth_consumer_key": "xvz1evFS4wEEPTGEFPHBog",
        "oauth_nonce": "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": "1318622958",
        "oauth_token": "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
        "oauth_version": "1.0",
    }
    assert (
        signature(
            "POST",
            "https://api.twitter.com/1.1/statuses/update.json?include_entities=true",
            doc,
            "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
            "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
        )
        == "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
    )
    # the request-token example of Twitter's OAuth guide (no token secret yet)
    request_token = {
        "oauth_callback": "http://localhost:3005/the_dance/process_callback?service_provider_id=11",
        "oauth_consumer_key": "GDdmIQH6jhtmLUypg82g",
        "oauth_nonce": "QP70eNmVz8jvdPevU3oJD2AfF7R7odC2XJcn4XlZJqk",
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": "1272323042",
        "oauth_version": "1.0",
    }
    assert (
        signature(
            "POST",
            "https://api.twitter.com/oauth/request_token",
            request_token,
            "MCD8BKwGdgPHvAuvgvz4EQpqDAtx89grbuNMRd7Eh98",
        )
        == "8wUi7m5HFQy76nowoCThusfgB+Q="
    )


def test_authorization_header_carries_every_oauth_parameter() -> None:
    header = authorization_header(
        "GET",
        MEDIA_URL,
        consumer_key="ck",
        consumer_secret="cs",
        token="tok",
        token_secret="ts",
        nonce="abc",
        timestamp=1700000000,
    )
    assert header.startswith("OAuth ")
    for part in (
        'oauth_consumer_key="ck"',
        'oauth_nonce="abc"',
        'oauth_signature_method="HMAC-SHA1"',
        'oauth_timestamp="1700000000"',
        'oauth_token="tok"',
        'oauth_version="1.0"',
        "oauth_signature=",
    ):
        assert part in header


@pytest.mark.django_db
@responses.activate
def test_dm_media_is_downloaded_with_oauth1_into_storage(
    post_fixture: Any, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    account = make_account("twitter", token_secret="token-secret")
    account.settings = {"consumer_key": "consumer-key", "oauth_token": "1-token"}
    account.save()
    seen: list[str] = []

    def media(request: Any) -> tuple[int, dict[str, str], bytes]:
        seen.append(request.headers["Authorization"])
        return 200, {"Content-Type": "image/jpeg"}, b"\xff\xd8receipt"

    responses.add_callback(responses.GET, MEDIA_URL, callback=media)
    post_fixture(account, "dm_with_media")
    attachment = Attachment.objects.get()
    assert attachment.file.read() == b"\xff\xd8receipt"
    assert attachment.content_type == "image/jpeg"
    assert len(seen) == 1
    assert seen[0].startswith("OAuth ")
    assert 'oauth_consumer_key="consumer-key"' in seen[0]
    assert 'oauth_token="1-token"' in seen[0]


@pytest.mark.django_db
@responses.activate
def test_without_oauth1_credentials_the_media_stays_by_reference(
    post_fixture: Any, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    account = make_account("twitter")
    post_fixture(account, "dm_with_media")
    attachment = Attachment.objects.get()
    assert not attachment.file
    assert attachment.external_url == MEDIA_URL
    assert len(responses.calls) == 0
