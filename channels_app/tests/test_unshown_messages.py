"""Customer messages the adapters have no case for still reach an agent, in words.

WhatsApp message types the parser does not read (``order``, ``unsupported``, ``system``,
``request_welcome``, anything new) used to end as an ignored ``UnknownEvent``: no ticket,
no message, the raw body purged after 30 days. Instagram/Messenger attachments that are
not files (a shared post, a story mention, a reel, a link) were kept only in metadata and
the message read "(empty message)"; a Messenger ``message_edit`` was ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from django.test import Client

from channels_app import services
from channels_app.models import ChannelAccount, InboundEvent, InboundStatus
from channels_app.tests.conftest import TEST_SECRET, make_account, wa_body
from tickets.models import Attachment, Message, Ticket

pytestmark = pytest.mark.django_db

CUSTOMER = "34600000009"
PAGE = "107240291734629"  # make_account("messenger")
IG = "17841405822304914"  # make_account("instagram")


def post(client: Client, account: ChannelAccount, payload: dict[str, Any]) -> int:
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(TEST_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = client.generic(
        "POST",
        account.webhook_path,
        data=body,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=sig,
    )
    assert response.status_code == 200, response.content
    return int(response.json()["id"])


def wa_payload(message_id: str, kind: str, part: dict[str, Any]) -> dict[str, Any]:
    payload = json.loads(wa_body(CUSTOMER, message_id, "x"))
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message["type"] = kind
    message.update(part)
    return payload


def drain(account: ChannelAccount) -> None:
    services.inbound_events_drain(account_id=account.pk)


ORDER = {
    "catalog_id": "194836987003835",
    "text": "Love these!",
    "product_items": [
        {"product_retailer_id": "di9ozbzfi4", "quantity": 2, "item_price": 30, "currency": "USD"},
        {"product_retailer_id": "nqryix03ez", "quantity": 1, "item_price": 25, "currency": "USD"},
    ],
}

# kind, the part as WhatsApp's webhook reference shows it, the body an agent reads
WHATSAPP_CASES = [
    (
        "order",
        {"order": ORDER},
        "(a WhatsApp order from catalog 194836987003835: 3 items: 2 × di9ozbzfi4 at 30 USD "
        "each; 1 × nqryix03ez at 25 USD each)\nLove these!",
    ),
    (
        "unsupported",
        {
            "errors": [
                {
                    "code": 131051,
                    "title": "Message type unknown",
                    "message": "Message type unknown",
                    "error_data": {"details": "Message type is currently not supported."},
                }
            ],
            "unsupported": {"type": "poll"},
        },
        "(a message WhatsApp could not show: Message type unknown; its type: poll)",
    ),
    (
        "system",
        {
            "system": {
                "body": "User A changed from 34600000009 to 34600000010",
                "new_wa_id": "34600000010",
                "type": "user_changed_number",
            }
        },
        "(a WhatsApp notice: User A changed from 34600000009 to 34600000010)",
    ),
    (
        "request_welcome",
        {},
        "(opened a WhatsApp chat with the business for the first time; no text yet)",
    ),
    (
        "hologram",
        {"hologram": {"id": "h-1"}},
        "(a WhatsApp hologram message this desk cannot show)",
    ),
]


@pytest.mark.parametrize(("kind", "part", "text"), WHATSAPP_CASES)
def test_whatsapp_message_of_another_type_becomes_a_customer_message(
    client: Client, kind: str, part: dict[str, Any], text: str
) -> None:
    account = make_account("whatsapp")
    event_id = post(client, account, wa_payload(f"wamid.{kind}", kind, part))
    drain(account)
    event = InboundEvent.objects.get(pk=event_id)
    assert event.status == InboundStatus.PROCESSED
    assert event.summary["created_messages"] == 1
    assert event.summary["unknown"] == 0
    message = Message.objects.get()
    assert (message.channel_message_id, message.direction, message.kind) == (
        f"wamid.{kind}",
        "inbound",
        "public",
    )
    assert message.body_text == text
    assert message.metadata["whatsapp_type"] == kind
    # the part as it came, for whoever needs more than the line
    assert message.metadata["whatsapp_part"] == part
    ticket = Ticket.objects.get()
    assert ticket.customer.phone == f"+{CUSTOMER}"
    assert ticket.subject == text.splitlines()[0][:120]
    assert not Attachment.objects.exists()


def test_whatsapp_order_redelivered_in_another_delivery_is_one_message(client: Client) -> None:
    account = make_account("whatsapp")
    post(client, account, wa_payload("wamid.order1", "order", {"order": ORDER}))
    drain(account)
    # the same message again in a delivery of its own (another body: a new delivery id),
    # once through the bulk path and once one by one
    again = wa_payload("wamid.order1", "order", {"order": ORDER})
    again["entry"][0]["id"] = "waba-redelivery"
    second = post(client, account, again)
    drain(account)
    third = wa_payload("wamid.order1", "order", {"order": ORDER})
    third["entry"][0]["id"] = "waba-third"
    event_id = post(client, account, third)
    services.inbound_event_process(event_id=event_id)
    assert Message.objects.filter(channel_message_id="wamid.order1").count() == 1
    for pk in (second, event_id):
        assert InboundEvent.objects.get(pk=pk).summary["created_messages"] == 0


def test_whatsapp_order_line_is_bounded(client: Client) -> None:
    account = make_account("whatsapp")
    items = [
        {"product_retailer_id": f"sku-{i}", "quantity": 1, "item_price": 1, "currency": "EUR"}
        for i in range(45)
    ]
    post(client, account, wa_payload("wamid.big", "order", {"order": {"product_items": items}}))
    drain(account)
    body = Message.objects.get().body_text
    assert body.startswith("(a WhatsApp order: 45 items: 1 × sku-0 at 1 EUR each; ")
    assert "sku-29 at" in body
    assert "sku-30 " not in body
    assert body.endswith("; and 15 more products)")


def test_whatsapp_interactive_reply_of_another_kind_is_not_an_empty_message(
    client: Client,
) -> None:
    account = make_account("whatsapp")
    part = {"interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent"}}}
    post(client, account, wa_payload("wamid.flow", "interactive", part))
    drain(account)
    message = Message.objects.get()
    assert message.body_text == "(a WhatsApp interactive nfm_reply message this desk cannot show)"
    assert message.metadata["interactive"] == part["interactive"]


def test_whatsapp_statuses_and_other_fields_stay_unknown(client: Client) -> None:
    account = make_account("whatsapp")
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "waba", "changes": [{"field": "account_update", "value": {}}]}],
    }
    event_id = post(client, account, payload)
    drain(account)
    assert InboundEvent.objects.get(pk=event_id).status == InboundStatus.IGNORED
    assert not Message.objects.exists()


def meta_payload(obj: str, business: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": obj,
        "entry": [{"id": business, "time": 1764100000000, "messaging": events}],
    }


def ig_message(mid: str, **message: Any) -> dict[str, Any]:
    return {
        "sender": {"id": "IGSID-1"},
        "recipient": {"id": IG},
        "timestamp": 1764100000000,
        "message": {"mid": mid, **message},
    }


POST_URL = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1&signature=s"
STORY_URL = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=2&signature=s"
REEL_URL = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=3&signature=s"


def test_instagram_shared_post_story_mention_and_reel_are_written_in_the_body(
    client: Client,
) -> None:
    account = make_account("instagram")
    attachments = [
        {"type": "share", "payload": {"url": POST_URL}},
        {"type": "story_mention", "payload": {"url": STORY_URL}},
        {
            "type": "ig_reel",
            "payload": {"url": REEL_URL, "title": "Unboxing", "reel_video_id": "9"},
        },
    ]
    post(
        client,
        account,
        meta_payload("instagram", IG, [ig_message("ig-mid-1", attachments=attachments)]),
    )
    drain(account)
    message = Message.objects.get(channel_message_id="ig-mid-1")
    assert message.body_text == (
        f"Shared a post: {POST_URL}\n"
        f"Mentioned you in a story: {STORY_URL}\n"
        f"Shared a reel: Unboxing {REEL_URL}"
    )
    assert message.metadata["other_attachments"] == attachments
    assert not Attachment.objects.exists()


def test_instagram_post_shared_as_share_and_ig_post_is_one_line_after_the_text(
    client: Client,
) -> None:
    account = make_account("instagram")
    payload = {
        "ig_post_media_id": "18139494541428835",
        "title": "New  desk\nsetup",
        "url": POST_URL,
    }
    attachments = [
        {"type": "share", "payload": payload},
        {"type": "ig_post", "payload": {**payload, "url": POST_URL + "&v=2"}},
    ]
    post(
        client,
        account,
        meta_payload(
            "instagram",
            IG,
            [ig_message("ig-mid-2", text="Is this in stock?", attachments=attachments)],
        ),
    )
    drain(account)
    message = Message.objects.get()
    assert message.body_text == f"Is this in stock?\nShared a post: New desk setup {POST_URL}"
    assert Ticket.objects.get().subject == "Is this in stock?"


def test_instagram_story_reply_and_unsupported_message(client: Client) -> None:
    account = make_account("instagram")
    reply = ig_message(
        "ig-mid-3", text="Love it", reply_to={"story": {"url": STORY_URL, "id": "st-1"}}
    )
    unsupported = ig_message("ig-mid-4", is_unsupported=True)
    post(client, account, meta_payload("instagram", IG, [reply, unsupported]))
    drain(account)
    bodies = dict(Message.objects.values_list("channel_message_id", "body_text"))
    assert bodies == {
        "ig-mid-3": f"Love it\nReplied to your story: {STORY_URL}",
        "ig-mid-4": "(a message Instagram could not show)",
    }
    story = Message.objects.get(channel_message_id="ig-mid-3").metadata["reply_to_story"]
    assert story == {"url": STORY_URL, "id": "st-1"}


def messenger_event(**event: Any) -> dict[str, Any]:
    return {
        "sender": {"id": "PSID-1"},
        "recipient": {"id": PAGE},
        "timestamp": 1764100000000,
        **event,
    }


def test_messenger_fallback_template_and_urlless_attachments_are_written_in_the_body(
    client: Client,
) -> None:
    account = make_account("messenger")
    attachments = [
        {
            "type": "fallback",
            "title": "Spring sale",
            "url": "https://shop.example/sale",
            "payload": None,
        },
        {
            "type": "template",
            "payload": {
                "template_type": "generic",
                "elements": [
                    {
                        "title": "Blue jacket",
                        "subtitle": "49 EUR",
                        "default_action": {"type": "web_url", "url": "https://shop.example/j"},
                    }
                ],
            },
        },
        {"type": "image", "payload": {}},
        {"type": "poll", "payload": {"url": "https://cdn.fbsbx.com/p"}},
        {"type": "sticker_pack", "payload": "not an object"},
    ]
    event = messenger_event(message={"mid": "m-1", "attachments": attachments})
    post(client, account, meta_payload("page", PAGE, [event]))
    drain(account)
    message = Message.objects.get()
    assert message.body_text == (
        "Shared a link: Spring sale https://shop.example/sale\n"
        "Shared: Blue jacket 49 EUR https://shop.example/j\n"
        "(an attachment of type image this desk cannot show)\n"
        "(an attachment of type poll this desk cannot show) https://cdn.fbsbx.com/p\n"
        "(an attachment of type sticker_pack this desk cannot show)"
    )
    assert message.metadata["other_attachments"] == attachments


def test_messenger_message_edit_is_recorded_once_per_edit(client: Client) -> None:
    account = make_account("messenger")
    post(
        client,
        account,
        meta_payload("page", PAGE, [messenger_event(message={"mid": "m-2", "text": "Order 1243"})]),
    )
    edit = messenger_event(message_edit={"mid": "m-2", "text": "Order 1234, sorry", "num_edit": 1})
    first = post(client, account, meta_payload("page", PAGE, [edit]))
    drain(account)
    # the same edit delivered again (another delivery), then a second edit
    again = meta_payload("page", PAGE, [edit])
    again["entry"][0]["time"] += 1
    post(client, account, again)
    second_edit = messenger_event(message_edit={"mid": "m-2", "text": "Order 1234!", "num_edit": 2})
    post(client, account, meta_payload("page", PAGE, [second_edit]))
    drain(account)
    assert InboundEvent.objects.get(pk=first).status == InboundStatus.PROCESSED
    messages = list(
        Message.objects.order_by("id").values_list("channel_message_id", "body_text", "metadata")
    )
    assert [(m[0], m[1]) for m in messages] == [
        ("m-2", "Order 1243"),
        ("edit-m-2-1", "(edited) Order 1234, sorry"),
        ("edit-m-2-2", "(edited) Order 1234!"),
    ]
    assert messages[1][2]["reply_to"] == "m-2"
    assert messages[1][2]["message_edit"] == edit["message_edit"]
    assert Ticket.objects.count() == 1


def test_messenger_edit_by_the_page_is_not_a_customer_message(client: Client) -> None:
    account = make_account("messenger")
    edit = {
        "sender": {"id": PAGE},
        "recipient": {"id": "PSID-1"},
        "timestamp": 1764100000000,
        "message_edit": {"mid": "m-9", "text": "typo fixed", "num_edit": 1},
    }
    event_id = post(client, account, meta_payload("page", PAGE, [edit]))
    drain(account)
    assert InboundEvent.objects.get(pk=event_id).status == InboundStatus.IGNORED
    assert not Message.objects.exists()
