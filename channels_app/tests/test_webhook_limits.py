"""The Django webhook view: per-channel body caps, checks before the body is read, and
the subscription handshakes (X's CRC must not sign arbitrary text)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from django.test import Client, RequestFactory

from channels_app.adapters.twitter.adapter import x_signature
from channels_app.api import views
from channels_app.models import InboundEvent
from channels_app.tests.conftest import TEST_SECRET, make_account, post_raw, wa_body

pytestmark = pytest.mark.django_db

BODY = wa_body("34600000001", "wamid.limit1", "hola")


def _meta_signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(TEST_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": "sha256=" + digest, "Content-Type": "application/json"}


# --- body caps ------------------------------------------------------------------------


def test_a_json_channel_refuses_a_body_over_about_one_megabyte(client: Client) -> None:
    account = make_account("whatsapp")
    big = BODY + b" " * 1_500_000  # still valid JSON, correctly signed
    response = post_raw(client, account, big, _meta_signed(big))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert response.json()["error"]["details"] == {"max_bytes": 1_048_576}
    assert InboundEvent.objects.count() == 0
    # The same delivery within the cap is accepted.
    assert post_raw(client, account, BODY, _meta_signed(BODY)).status_code == 200


def test_email_keeps_a_larger_cap_of_its_own(client: Client, settings: Any) -> None:
    account = make_account("email")
    big = b"x" * 1_500_000
    response = post_raw(client, account, big, {"Content-Type": "text/plain"}, "?token=wrong")
    assert response.status_code == 403  # read and refused on its token, not on its size
    settings.CHANNELS_EMAIL_WEBHOOK_MAX_BYTES = 1_000_000
    response = post_raw(client, account, big, {"Content-Type": "text/plain"}, "?token=wrong")
    assert response.status_code == 413
    assert response.json()["error"]["details"] == {"max_bytes": 1_000_000}


class Unreadable:
    """A request body stream that must not be read."""

    def read(self, *args: Any) -> bytes:
        raise AssertionError("the body was read")

    readline = read


@pytest.mark.parametrize("case", ["unknown_token", "rate_limited", "oversize"])
def test_refusals_that_need_no_body_do_not_read_it(case: str, settings: Any) -> None:
    account = make_account("whatsapp")
    token = "nope" if case == "unknown_token" else account.webhook_token
    if case == "rate_limited":
        settings.CHANNELS_WEBHOOK_RATE_LIMIT_PER_MINUTE = 0
    request = RequestFactory().post(
        f"/api/webhooks/whatsapp/{token}", data=BODY, content_type="application/json"
    )
    if case == "oversize":
        request.META["CONTENT_LENGTH"] = "5000000"
    request._stream = Unreadable()  # type: ignore[assignment]
    response = views.webhook(request, channel="whatsapp", token=token)
    expected = {"unknown_token": 404, "rate_limited": 429, "oversize": 413}[case]
    assert response.status_code == expected


# --- X CRC: a signing oracle unless the token is the shape X sends ---------------------

# A crc_token as X sends it: base64 of a random UUID (seen in a published request log).
REAL_CRC_TOKEN = "M2RkODJkZmMtYjlkYi00NmQ4LTk0MGUtM2JjYzkwM2Q4MjQ0"


def test_x_crc_answers_a_real_shaped_token(client: Client) -> None:
    account = make_account("twitter")
    response = client.get(account.webhook_path, {"crc_token": REAL_CRC_TOKEN})
    assert response.status_code == 200
    expected = base64.b64encode(
        hmac.new(TEST_SECRET.encode(), REAL_CRC_TOKEN.encode(), hashlib.sha256).digest()
    ).decode()
    assert response.json() == {"response_token": "sha256=" + expected}


def test_x_crc_refuses_to_sign_a_json_body(client: Client) -> None:
    account = make_account("twitter")
    forged = json.dumps(
        {
            "for_user_id": "3001969357",
            "direct_message_events": [
                {
                    "type": "message_create",
                    "id": "1",
                    "message_create": {"sender_id": "42", "message_data": {"text": "hi"}},
                }
            ],
        }
    )
    response = client.get(account.webhook_path, {"crc_token": forged})
    assert response.status_code == 400
    # The answer would have been a valid x-twitter-webhooks-signature for that very body.
    assert x_signature(TEST_SECRET, forged.encode()) not in response.content.decode()
    assert "response_token" not in response.content.decode()


@pytest.mark.parametrize(
    "token",
    [
        "what do ya want for nothing?",  # spaces, punctuation
        "123",  # valid JSON (a number)
        "true",  # valid JSON
        "A" * 129,  # longer than any token X sends
        "abc\ndef",
        "",
    ],
)
def test_x_crc_refuses_tokens_of_another_shape(client: Client, token: str) -> None:
    account = make_account("twitter")
    response = client.get(account.webhook_path, {"crc_token": token})
    assert response.status_code == 400
    assert "response_token" not in response.content.decode()


def test_handshakes_are_rate_limited_per_ip_and_per_account(client: Client, settings: Any) -> None:
    settings.CHANNELS_HANDSHAKE_RATE_LIMIT_PER_MINUTE = 2
    account = make_account("twitter")
    codes = [
        client.get(account.webhook_path, {"crc_token": REAL_CRC_TOKEN}).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]
    # Another address, the same account: the account's own budget is spent too.
    other = client.get(
        account.webhook_path, {"crc_token": REAL_CRC_TOKEN}, REMOTE_ADDR="198.51.100.9"
    )
    assert other.status_code == 429
    assert int(other["Retry-After"]) >= 1
