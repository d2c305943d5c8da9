"""Seed 001's account-less webhooks (``/api/webhooks/<platform>``) with several accounts
that share one secret: Meta signs with the app secret and X with the consumer secret, and
one app serves several numbers, pages and users, so the secret alone cannot tell them
apart. The account is the one the payload names (WhatsApp's
``metadata.phone_number_id``, Messenger's ``entry[].id``, X's ``for_user_id``) among those
whose secret verifies (``webhook_account_for_request``, docs/channels.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from channels_app.adapters.base import WebhookRequest, get_adapter
from channels_app.adapters.twitter.adapter import x_signature
from channels_app.fixtures import Fixture, fixture_load, signed_headers
from channels_app.models import ChannelAccount, InboundEvent
from channels_app.tests.conftest import TEST_SECRET, make_account

pytestmark = pytest.mark.django_db

# The account each fixture names (``make_account``'s defaults are these ids).
NAMED = {"whatsapp": "106540352242922", "messenger": "107240291734629", "twitter": "3001969357"}
PATHS = {"whatsapp": "/api/webhooks/whatsapp", "messenger": "/api/webhooks/facebook"}
PATHS["twitter"] = "/api/webhooks/twitter"
FIXTURES = {"whatsapp": "text_message", "messenger": "text_message", "twitter": "dm_message_create"}
LOGGER = "channels_app.api.views"
CRC_TOKEN = "NmY0ZDQ5ZjYtYTNlMi00ZTc2LWE5OTYtY2U4YjM2ZWIxMTNk"


def _naming(channel: str, platform_id: str) -> Fixture:
    """The channel's fixture, rewritten to be addressed to ``platform_id``."""
    fixture = fixture_load(channel, FIXTURES[channel])
    body = fixture.body.replace(NAMED[channel].encode(), platform_id.encode())
    return Fixture(headers=fixture.headers, body=body, session=fixture.session)


def _post(client: Client, channel: str, account: ChannelAccount, fixture: Fixture) -> Any:
    return client.post(
        PATHS[channel],
        fixture.body,
        content_type="application/json",
        headers=signed_headers(account, fixture),
    )


@pytest.mark.parametrize("channel", ["whatsapp", "messenger", "twitter"])
def test_shared_secret_delivery_goes_to_the_account_it_names(client: Client, channel: str) -> None:
    """Two accounts of one app (same secret): each delivery is filed under the account
    its payload names, the second as well as the first (before: always the first)."""
    first = make_account(channel, name="first", external_id="100000000000001")
    second = make_account(channel, name="second")  # the fixture's id
    assert first.pk < second.pk

    to_second = _post(client, channel, second, _naming(channel, NAMED[channel]))
    to_first = _post(client, channel, first, _naming(channel, first.external_id))

    assert to_second.status_code == 200, to_second.content
    assert to_first.status_code == 200, to_first.content
    assert InboundEvent.objects.get(pk=to_second.json()["id"]).account_id == second.pk
    assert InboundEvent.objects.get(pk=to_first.json()["id"]).account_id == first.pk
    assert InboundEvent.objects.count() == 2


def test_ambiguous_delivery_keeps_the_lowest_pk_and_says_so(client: Client, caplog: Any) -> None:
    """No verifying account has the id the payload names: nothing is lost (the lowest
    pk, as before) and a warning names the channel and the ids, never a secret or text."""
    first = make_account("whatsapp", name="first", external_id="1")
    make_account("whatsapp", name="second", external_id="2")
    fixture = fixture_load("whatsapp", "text_message")
    with caplog.at_level("WARNING", logger=LOGGER):
        response = _post(client, "whatsapp", first, fixture)
    assert response.status_code == 200, response.content
    assert InboundEvent.objects.get().account_id == first.pk
    [record] = [r for r in caplog.records if r.name == LOGGER]
    message = record.getMessage()
    assert "whatsapp" in message
    assert NAMED["whatsapp"] in message
    assert "'1'" in message
    assert "'2'" in message
    assert TEST_SECRET not in caplog.text
    assert "Does it come in another color" not in caplog.text


def test_two_verifying_accounts_with_the_named_id_keep_the_lowest_pk(
    client: Client, caplog: Any
) -> None:
    first = make_account("messenger", name="first")
    make_account("messenger", name="second")  # the same page id, configured twice
    fixture = fixture_load("messenger", "text_message")
    with caplog.at_level("WARNING", logger=LOGGER):
        response = _post(client, "messenger", first, fixture)
    assert response.status_code == 200, response.content
    assert InboundEvent.objects.get().account_id == first.pk
    assert [r.name for r in caplog.records if r.name == LOGGER] == [LOGGER]
    assert NAMED["messenger"] in caplog.text


def test_a_batch_naming_several_pages_is_recorded_once_with_a_warning(
    client: Client, caplog: Any
) -> None:
    """Meta may batch entries of several pages of one app into one POST: the delivery is
    recorded once, under the lowest pk of the pages it names, and a warning says so."""
    other = make_account("messenger", name="other", external_id="200000000000002")
    page = make_account("messenger", name="page")
    data = json.loads(fixture_load("messenger", "text_message").body)
    second_entry = json.loads(
        json.dumps(data["entry"][0]).replace(NAMED["messenger"], other.external_id)
    )
    second_entry["messaging"][0]["message"]["mid"] = "m_second"
    data["entry"].append(second_entry)
    fixture = Fixture(headers={}, body=json.dumps(data).encode())
    with caplog.at_level("WARNING", logger=LOGGER):
        response = _post(client, "messenger", page, fixture)
    assert response.status_code == 200, response.content
    assert InboundEvent.objects.get().account_id == other.pk
    assert other.external_id in caplog.text
    assert NAMED["messenger"] in caplog.text
    assert "Hi, where is my order" not in caplog.text


def test_x_crc_with_different_consumer_secrets_answers_as_the_oldest(
    client: Client, caplog: Any
) -> None:
    """Every X account answers the CRC: with different consumer secrets the oldest
    (lowest pk) answers, as before 2026-12-07 (right when X's webhook is that account's;
    a 409 failed X's hourly CRC and X disabled the webhook), and a warning names the
    accounts (ids only) and the account's own path."""
    first = make_account("twitter", name="first", consumer_secret="first-secret")
    second = make_account(
        "twitter", name="second", consumer_secret="second-secret", external_id="9"
    )
    assert first.pk < second.pk
    with caplog.at_level("WARNING", logger=LOGGER):
        response = client.get("/api/webhooks/twitter", {"crc_token": CRC_TOKEN})
    assert response.status_code == 200, response.content
    assert response.json() == {"response_token": x_signature("first-secret", CRC_TOKEN.encode())}
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelname == "WARNING"
    message = record.getMessage()
    assert f"accounts {first.pk}, {second.pk} answer it differently" in message
    assert f"answered as account {first.pk}" in message
    assert "/api/webhooks/twitter/<webhook token>" in message
    assert "first-secret" not in caplog.text
    assert "second-secret" not in caplog.text


def test_x_crc_with_one_shared_consumer_secret_is_answered(client: Client) -> None:
    """A guard (the answer was right before too): one app, two X users."""
    make_account("twitter", name="first")
    make_account("twitter", name="second", external_id="9")
    response = client.get("/api/webhooks/twitter", {"crc_token": CRC_TOKEN})
    assert response.status_code == 200, response.content
    assert response.json() == {"response_token": x_signature(TEST_SECRET, CRC_TOKEN.encode())}


ODD_BODIES = [
    b"",
    b"not json",
    b"[]",
    b"null",
    b'"text"',
    b'{"entry": "x", "for_user_id": {"a": 1}}',
    b'{"entry": [1, null, [], {"id": {"x": 1}}, {"changes": "x"}, {"changes": [null, 1, '
    b'{"value": []}, {"value": {"metadata": []}}, {"value": {"metadata": {"phone_number_id":'
    b" [1]}}}]}]}",
    b'{"for_user_id": true}',
    b"\xff\xfe",
    b'{"for_user_id": ' + b"1" * 5000 + b"}",  # json.loads: a plain ValueError
    b"[" * 200 + b"]" * 200,
]


@pytest.mark.parametrize("channel", ["whatsapp", "messenger", "instagram", "twitter"])
@pytest.mark.parametrize("body", ODD_BODIES)
def test_addressed_to_never_raises(channel: str, body: bytes) -> None:
    assert get_adapter(channel).addressed_to(WebhookRequest(headers={}, body=body)) == (frozenset())


@pytest.mark.parametrize(
    ("channel", "body", "expected"),
    [
        (
            "whatsapp",
            b'{"entry": [{"changes": [{"value": {"metadata": {"phone_number_id": "1"}}}, '
            b'{"value": {"metadata": {"phone_number_id": 2}}}]}, {"changes": [{"value": '
            b'{"metadata": {"phone_number_id": "3"}}}]}, {"changes": "x"}]}',
            {"1", "2", "3"},
        ),
        ("messenger", b'{"entry": [{"id": "10"}, {"id": 11}, {"id": null}, 5]}', {"10", "11"}),
        ("instagram", b'{"entry": [{"id": "17841405822304914"}]}', {"17841405822304914"}),
        ("twitter", b'{"for_user_id": "3001969357"}', {"3001969357"}),
        ("twitter", b'{"for_user_id": 3001969357}', {"3001969357"}),
        ("email", b'{"for_user_id": "1", "entry": [{"id": "2"}]}', set()),
    ],
)
def test_addressed_to_reads_the_named_ids(channel: str, body: bytes, expected: set[str]) -> None:
    assert get_adapter(channel).addressed_to(WebhookRequest(headers={}, body=body)) == expected
