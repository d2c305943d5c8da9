"""Replies with files on WhatsApp, Messenger, X and Instagram: the provider calls each one
takes (text, then per file an upload and a message), their request shapes, a retry after a
failed part that sends nothing twice, refusals in words. HTTP mocked with responses."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pytest
import responses
from django.utils import timezone

from channels_app import services
from channels_app.adapters.base import OutboundFile
from channels_app.adapters.twitter.oauth1 import signature
from channels_app.fixtures import fixture_load
from channels_app.models import ChannelAccount, InboundEvent
from channels_app.tests.conftest import make_account
from support.delivery import services as engine
from support.delivery.models import Delivery
from tickets.models import Message, Ticket
from tickets.services import message_add

pytestmark = pytest.mark.django_db

GRAPH = "https://graph.facebook.com/v21.0"
WA_MESSAGES = f"{GRAPH}/106540352242922/messages"
WA_MEDIA = f"{GRAPH}/106540352242922/media"
PDF = b"%PDF-1.4 a small invoice"
PNG = b"\x89PNG\r\n\x1a\n a small picture"


def a_file(
    attachment_id: int = 901,
    filename: str = "invoice.pdf",
    content_type: str = "application/pdf",
    content: bytes = PDF,
    *,
    size: int | None = None,
    url: str = "",
    kind: str = "document",
) -> OutboundFile:
    return OutboundFile(
        attachment_id=attachment_id,
        filename=filename,
        content_type=content_type,
        size=len(content) if size is None else size,
        kind=kind,
        read=lambda: content,
        public_url=lambda: url,
    )


def send_reply(ticket: Ticket, agent: Any, text: str = "Here is your invoice.") -> Delivery:
    """Queue a reply and make its first attempt."""
    message = message_add(ticket=ticket, body=text, author_user=agent)
    delivery = services.outbound_delivery_create(message_id=message.pk)
    assert delivery is not None
    engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    delivery.refresh_from_db()
    return delivery


def retry(delivery: Delivery) -> Delivery:
    engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=delivery.attempts)
    delivery.refresh_from_db()
    return delivery


def body_json(call: Any) -> Any:
    return json.loads(call.request.body or b"")


def multipart(call: Any) -> dict[str, bytes]:
    """The fields of a multipart/form-data request: name → value (a file's bytes, with its
    filename and type kept under ``<name>.filename`` / ``<name>.type``)."""
    content_type = call.request.headers["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    fields: dict[str, bytes] = {}
    for chunk in call.request.body.split(b"--" + boundary)[1:-1]:
        head, _, value = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        disposition = head.split(b"\r\n")[0].decode()
        name = disposition.split('name="', 1)[1].split('"', 1)[0]
        fields[name] = value
        if 'filename="' in disposition:
            filename = disposition.split('filename="', 1)[1].split('"')[0]
            fields[f"{name}.filename"] = filename.encode()
            for line in head.split(b"\r\n")[1:]:
                if line.lower().startswith(b"content-type:"):
                    fields[f"{name}.type"] = line.split(b":", 1)[1].strip()
    return fields


# --- WhatsApp ----------------------------------------------------------------------------


@pytest.fixture
def wa_ticket(post_fixture: Any) -> Ticket:
    account = make_account("whatsapp")
    post_fixture(account, "text_message")
    return Ticket.objects.get()


@responses.activate
def test_whatsapp_text_and_a_document_then_an_image(
    wa_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files += [a_file(), a_file(902, "photo.png", "image/png", PNG, kind="image")]
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.TEXT"}]})
    responses.post(WA_MEDIA, json={"id": "MEDIA-PDF"})
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.PDF"}]})
    responses.post(WA_MEDIA, json={"id": "MEDIA-PNG"})
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.PNG"}]})

    delivery = send_reply(wa_ticket, agent)

    assert [(c.request.method, c.request.url) for c in responses.calls] == [
        ("POST", WA_MESSAGES),
        ("POST", WA_MEDIA),
        ("POST", WA_MESSAGES),
        ("POST", WA_MEDIA),
        ("POST", WA_MESSAGES),
    ]
    to = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234"}
    assert body_json(responses.calls[0]) == {
        **to,
        "type": "text",
        "text": {"preview_url": False, "body": "Here is your invoice."},
    }
    upload = multipart(responses.calls[1])
    assert upload == {
        "messaging_product": b"whatsapp",
        "type": b"application/pdf",
        "file": PDF,
        "file.filename": b"invoice.pdf",
        "file.type": b"application/pdf",
    }
    assert responses.calls[1].request.headers["Authorization"] == "Bearer test-access-token"
    assert body_json(responses.calls[2]) == {
        **to,
        "type": "document",
        "document": {"id": "MEDIA-PDF", "filename": "invoice.pdf"},
    }
    assert multipart(responses.calls[3])["type"] == b"image/png"
    assert body_json(responses.calls[4]) == {**to, "type": "image", "image": {"id": "MEDIA-PNG"}}

    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert (message.delivery_status, message.channel_message_id) == ("sent", "wamid.TEXT")
    parts = message.metadata["reply_parts"]
    assert {part: record.get("id") for part, record in parts.items()} == {
        "text": "wamid.TEXT",
        "file:901": "wamid.PDF",
        "file:902": "wamid.PNG",
    }
    # one attempt, every call in its summary, never a file's bytes
    attempt = delivery.attempt_log.get()
    assert (attempt.outcome, attempt.http_status) == ("success", 200)
    logged = attempt.request_summary["parts"]
    assert [(p["part"], p["step"], p["http_status"]) for p in logged] == [
        ("text", "send", 200),
        ("file:901", "upload", 200),
        ("file:901", "send", 200),
        ("file:902", "upload", 200),
        ("file:902", "send", 200),
    ]
    assert logged[1]["request"]["file"] == {
        "attachment_id": 901,
        "filename": "invoice.pdf",
        "content_type": "application/pdf",
        "size": len(PDF),
    }
    assert "PDF-1.4" not in json.dumps(attempt.request_summary)


@responses.activate
def test_whatsapp_retry_after_a_failed_file_message_sends_nothing_twice(
    wa_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    """The text went out and the file was uploaded; the file's message failed (500). The
    retry sends that message only: no second text, no second upload."""
    files.append(a_file())
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.TEXT"}]})
    responses.post(WA_MEDIA, json={"id": "MEDIA-PDF"})
    responses.post(
        WA_MESSAGES, status=500, json={"error": {"message": "Service unavailable", "code": 2}}
    )
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.PDF"}]})

    delivery = send_reply(wa_ticket, agent)
    assert (delivery.status, delivery.attempts, delivery.last_http_status) == ("retrying", 1, 500)
    failed = delivery.attempt_log.get()
    assert (failed.outcome, failed.http_status) == ("retryable", 500)
    assert failed.error == (
        "WhatsApp did not take the message with the file “invoice.pdf” (HTTP 500): Service "
        "unavailable (WhatsApp error 2: a temporary failure). Already sent, not sent again: "
        "the text."
    )
    assert [(p["part"], p["step"]) for p in json.loads(failed.response_summary)] == [
        ("text", "send"),
        ("file:901", "upload"),
        ("file:901", "send"),
    ]
    assert len(responses.calls) == 3

    delivery = retry(delivery)
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert len(responses.calls) == 4
    assert responses.calls[3].request.url == WA_MESSAGES
    assert body_json(responses.calls[3])["document"] == {
        "id": "MEDIA-PDF",
        "filename": "invoice.pdf",
    }
    texts = [c for c in responses.calls if b'"type": "text"' in (c.request.body or b"")]
    assert len(texts) == 1
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert (message.delivery_status, message.channel_message_id) == ("sent", "wamid.TEXT")
    skipped = delivery.attempt_log.get(number=2).request_summary["parts"]
    assert [(p["part"], p.get("step"), p.get("skipped")) for p in skipped] == [
        ("text", None, "sent by an earlier attempt"),
        ("file:901", "upload", "uploaded before"),
        ("file:901", "send", None),
    ]


@responses.activate
def test_whatsapp_upload_refused_is_permanent_in_the_providers_words(
    wa_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(a_file())
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.TEXT"}]})
    responses.post(
        WA_MEDIA,
        status=400,
        json={
            "error": {
                "message": "(#131053) Media upload error",
                "error_user_msg": "The file type is not supported.",
                "code": 131053,
            }
        },
    )
    delivery = send_reply(wa_ticket, agent)
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("dead", 1, "http_400")
    assert len(responses.calls) == 2
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert (message.delivery_status, message.delivery_error_code) == ("failed", "http_400")
    assert message.delivery_error == (
        "WhatsApp refused the upload of the file “invoice.pdf” (HTTP 400): The file type is "
        "not supported. Already sent, not sent again: the text."
    )


@responses.activate
def test_whatsapp_refuses_a_file_it_cannot_take_before_sending_anything(
    wa_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files += [a_file(), a_file(902, "big.png", "image/png", PNG, size=6_000_000, kind="image")]
    delivery = send_reply(wa_ticket, agent)
    assert len(responses.calls) == 0
    # the check before the send reads WhatsApp's size for images (5 MB), as the
    # compose-time check does
    assert delivery.status == "dead"
    assert delivery.last_error == "WhatsApp images can be at most 5 MB; big.png is 6 MB."


@responses.activate
def test_whatsapp_files_follow_the_24_hour_window_like_text(
    wa_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(a_file())
    Message.objects.filter(ticket=wa_ticket, direction="inbound").update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    delivery = send_reply(wa_ticket, agent)
    assert len(responses.calls) == 0
    assert (delivery.status, delivery.error_code) == ("dead", "whatsapp_window_closed")


# --- Messenger ---------------------------------------------------------------------------

MESSENGER_SEND = f"{GRAPH}/me/messages"


@pytest.fixture
def messenger_ticket(post_fixture: Any) -> Ticket:
    account = make_account("messenger")
    post_fixture(account, "text_message")
    return Ticket.objects.get()


@responses.activate
def test_messenger_text_then_each_file_uploaded_with_its_message(
    messenger_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files += [a_file(), a_file(902, "photo.png", "image/png", PNG, kind="image")]
    for mid in ("m_TEXT", "m_PDF", "m_PNG"):
        responses.post(MESSENGER_SEND, json={"recipient_id": "6789012345678901", "message_id": mid})

    delivery = send_reply(messenger_ticket, agent)

    assert len(responses.calls) == 3
    assert body_json(responses.calls[0]) == {
        "recipient": {"id": "6789012345678901"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Here is your invoice."},
    }
    pdf = multipart(responses.calls[1])
    assert {k: v for k, v in pdf.items() if k != "message"} == {
        "recipient": b'{"id": "6789012345678901"}',
        "messaging_type": b"RESPONSE",
        "filedata": PDF,
        "filedata.filename": b"invoice.pdf",
        "filedata.type": b"application/pdf",
    }
    assert json.loads(pdf["message"]) == {
        "attachment": {"type": "file", "payload": {"is_reusable": False}}
    }
    png = multipart(responses.calls[2])
    assert json.loads(png["message"])["attachment"]["type"] == "image"
    assert (png["filedata"], png["filedata.type"]) == (PNG, b"image/png")
    assert responses.calls[2].request.headers["Authorization"] == "Bearer test-access-token"

    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert (message.delivery_status, message.channel_message_id) == ("sent", "m_TEXT")
    assert [
        (p["part"], p["step"], p["http_status"])
        for p in delivery.attempt_log.get().request_summary["parts"]
    ] == [("text", "send", 200), ("file:901", "send", 200), ("file:902", "send", 200)]


@responses.activate
def test_messenger_retry_after_the_second_file_failed_resends_only_that_file(
    messenger_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files += [a_file(), a_file(902, "photo.png", "image/png", PNG, kind="image")]
    responses.post(MESSENGER_SEND, json={"message_id": "m_TEXT"})
    responses.post(MESSENGER_SEND, json={"message_id": "m_PDF"})
    responses.post(MESSENGER_SEND, status=503, json={"error": {"message": "Please retry"}})
    responses.post(MESSENGER_SEND, json={"message_id": "m_PNG"})

    delivery = send_reply(messenger_ticket, agent)
    assert (delivery.status, delivery.last_http_status) == ("retrying", 503)
    assert delivery.last_error == (
        "Messenger did not take the message with the file “photo.png” (HTTP 503): Please "
        "retry. Already sent, not sent again: the text, the file “invoice.pdf”."
    )
    delivery = retry(delivery)
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert len(responses.calls) == 4
    assert multipart(responses.calls[3])["filedata.filename"] == b"photo.png"
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert {p: r["id"] for p, r in message.metadata["reply_parts"].items()} == {
        "text": "m_TEXT",
        "file:901": "m_PDF",
        "file:902": "m_PNG",
    }


@responses.activate
def test_messenger_file_refused_is_permanent_in_the_providers_words(
    messenger_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(a_file())
    responses.post(MESSENGER_SEND, json={"message_id": "m_TEXT"})
    responses.post(
        MESSENGER_SEND,
        status=400,
        json={"error": {"message": "(#100) Upload attachment failure.", "code": 100}},
    )
    delivery = send_reply(messenger_ticket, agent)
    assert (delivery.status, delivery.error_code) == ("dead", "http_400")
    assert delivery.last_error == (
        "Messenger refused the message with the file “invoice.pdf” (HTTP 400): (#100) Upload "
        "attachment failure. Already sent, not sent again: the text."
    )


# --- X -----------------------------------------------------------------------------------

X_DM = "https://api.x.com/2/dm_conversations/with/4337869213/messages"
X_UPLOAD = "https://api.x.com/2/media/upload"


@pytest.fixture
def x_ticket(post_fixture: Any) -> Ticket:
    account = make_account("twitter")
    post_fixture(account, "dm_message_create")
    return Ticket.objects.get()


def x_dm(event_id: str) -> dict[str, Any]:
    return {"data": {"dm_conversation_id": "3001969357-4337869213", "dm_event_id": event_id}}


def x_media(media_id: str) -> dict[str, Any]:
    return {"data": {"id": media_id, "media_key": f"3_{media_id}", "expires_after_secs": 86400}}


@responses.activate
def test_x_text_then_one_dm_per_image(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files += [
        a_file(901, "photo.png", "image/png", PNG, kind="image"),
        a_file(902, "receipt.jpg", "image/jpeg", b"\xff\xd8\xff jpeg", kind="image"),
    ]
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(X_UPLOAD, json=x_media("1880000000000000001"))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000002"))
    responses.post(X_UPLOAD, json=x_media("1880000000000000002"))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000003"))

    delivery = send_reply(x_ticket, agent, text="Your receipt and the photo.")

    assert [c.request.url for c in responses.calls] == [X_DM, X_UPLOAD, X_DM, X_UPLOAD, X_DM]
    assert body_json(responses.calls[0]) == {"text": "Your receipt and the photo."}
    assert multipart(responses.calls[1]) == {
        "media_category": b"dm_image",
        "media": PNG,
        "media.filename": b"photo.png",
        "media.type": b"image/png",
    }
    for call in responses.calls:
        assert call.request.headers["Authorization"] == "Bearer test-access-token"
    assert body_json(responses.calls[2]) == {"attachments": [{"media_id": "1880000000000000001"}]}
    assert body_json(responses.calls[4]) == {"attachments": [{"media_id": "1880000000000000002"}]}
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert (message.delivery_status, message.channel_message_id) == (
        "sent",
        "1700000000000000001",
    )


@responses.activate
def test_x_retry_after_a_failed_upload_does_not_resend_the_text(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(a_file(901, "photo.png", "image/png", PNG, kind="image"))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(X_UPLOAD, status=503, json={"title": "Service Unavailable"})
    responses.post(X_UPLOAD, json=x_media("1880000000000000001"))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000002"))

    delivery = send_reply(x_ticket, agent)
    assert (delivery.status, delivery.last_http_status) == ("retrying", 503)
    assert delivery.last_error == (
        "X did not take the upload of the file “photo.png” (HTTP 503): Service Unavailable. "
        "Already sent, not sent again: the text."
    )
    delivery = retry(delivery)
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert [c.request.url for c in responses.calls] == [X_DM, X_UPLOAD, X_UPLOAD, X_DM]
    assert body_json(responses.calls[3]) == {"attachments": [{"media_id": "1880000000000000001"}]}


@responses.activate
def test_x_upload_refused_is_permanent_in_xs_words(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(a_file(901, "photo.png", "image/png", PNG, kind="image"))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(
        X_UPLOAD,
        status=403,
        json={
            "title": "Forbidden",
            "detail": "The token is missing the media.write scope.",
            "status": 403,
        },
    )
    delivery = send_reply(x_ticket, agent)
    assert (delivery.status, delivery.error_code) == ("dead", "http_403")
    assert delivery.last_error == (
        "X refused the upload of the file “photo.png” (HTTP 403): The token is missing the "
        "media.write scope. Already sent, not sent again: the text."
    )
    assert len(responses.calls) == 2


@responses.activate
def test_x_takes_images_gifs_and_mp4_video_only(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(a_file())
    delivery = send_reply(x_ticket, agent)
    assert len(responses.calls) == 0
    # refused by the limits check before the adapter (channels_app.services.reply_limits)
    assert delivery.last_error == (
        "X (Twitter) replies can't carry invoice.pdf (application/pdf); they take JPG, PNG, "
        "WEBP, GIF, MP4."
    )


@responses.activate
def test_x_upload_with_send_auth_oauth1_is_signed_without_the_multipart_body(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    """OAuth 1.0a signs the method, URL and oauth_* values: a multipart body is not part of
    the signature base string (RFC 5849 3.4.1.3), so the upload verifies at X."""
    account = ChannelAccount.objects.get(channel="twitter")
    account.token_secret = "ts"
    account.settings = {"send_auth": "oauth1", "consumer_key": "ck", "oauth_token": "tok"}
    account.save()
    files.append(a_file(901, "photo.png", "image/png", PNG, kind="image"))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(X_UPLOAD, json=x_media("1880000000000000001"))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000002"))

    delivery = send_reply(x_ticket, agent)

    assert (delivery.status, [c.request.url for c in responses.calls]) == (
        "succeeded",
        [X_DM, X_UPLOAD, X_DM],
    )
    header = str(responses.calls[1].request.headers["Authorization"])
    assert header.startswith("OAuth ")
    params = {
        key: unquote(value.strip('"'))
        for key, _, value in (part.partition("=") for part in header[6:].split(", "))
    }
    signed = {k: v for k, v in params.items() if k != "oauth_signature"}
    assert params["oauth_signature"] == signature(
        "POST", X_UPLOAD, signed, account.consumer_secret, "ts"
    )


# --- Instagram ---------------------------------------------------------------------------

IG_SEND = f"{GRAPH}/17841405822304914/messages"
SIGNED = (
    "https://files.s3.eu-west-1.amazonaws.com/attachments/1/ab12/photo.png"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=600&X-Amz-Signature=0123abcd"
)


@pytest.fixture
def ig_ticket(post_fixture: Any) -> Ticket:
    account = make_account("instagram")
    post_fixture(account, "text_message")
    return Ticket.objects.get()


def ig_photo() -> OutboundFile:
    return a_file(901, "photo.png", "image/png", PNG, url=SIGNED, kind="image")


@responses.activate
def test_instagram_sends_a_file_by_its_signed_url_when_s3_is_on(
    ig_ticket: Ticket, agent: Any, files: list[OutboundFile], settings: Any
) -> None:
    settings.S3_ENABLED = True
    files.append(ig_photo())
    responses.post(IG_SEND, json={"recipient_id": "1784145963457001", "message_id": "ig_TEXT"})
    responses.post(IG_SEND, json={"recipient_id": "1784145963457001", "message_id": "ig_PNG"})

    delivery = send_reply(ig_ticket, agent)

    assert len(responses.calls) == 2
    assert body_json(responses.calls[0]) == {
        "recipient": {"id": "1784145963457001"},
        "message": {"text": "Here is your invoice."},
    }
    assert body_json(responses.calls[1]) == {
        "recipient": {"id": "1784145963457001"},
        "message": {"attachment": {"type": "image", "payload": {"url": SIGNED}}},
    }
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert (message.delivery_status, message.channel_message_id) == ("sent", "ig_TEXT")
    # the attempt's summary keeps the link without its signature
    logged = delivery.attempt_log.get().request_summary["parts"][1]["request"]
    assert logged["message"]["attachment"]["payload"]["url"] == SIGNED.split("?")[0]
    assert "X-Amz-Signature" not in json.dumps(delivery.attempt_log.get().request_summary)


@responses.activate
def test_instagram_retry_resends_only_the_file_and_a_refusal_is_in_instagrams_words(
    ig_ticket: Ticket, agent: Any, files: list[OutboundFile], settings: Any
) -> None:
    settings.S3_ENABLED = True
    files += [ig_photo(), a_file(902, "clip.mp4", "video/mp4", b"mp4", url=SIGNED, kind="video")]
    responses.post(IG_SEND, json={"message_id": "ig_TEXT"})
    responses.post(IG_SEND, status=500, json={"error": {"message": "An unknown error occurred"}})
    responses.post(IG_SEND, json={"message_id": "ig_PNG"})
    responses.post(
        IG_SEND,
        status=400,
        json={"error": {"message": "(#100) The media could not be fetched from this URI"}},
    )
    delivery = send_reply(ig_ticket, agent)
    assert (delivery.status, delivery.last_http_status) == ("retrying", 500)
    delivery = retry(delivery)
    assert (delivery.status, delivery.error_code) == ("dead", "http_400")
    assert len(responses.calls) == 4
    assert "text" not in body_json(responses.calls[2])["message"]
    assert body_json(responses.calls[3])["message"]["attachment"]["type"] == "video"
    assert delivery.last_error == (
        "Instagram refused the message with the file “clip.mp4” (HTTP 400): (#100) The media "
        "could not be fetched from this URI. Already sent, not sent again: the text, the file "
        "“photo.png”."
    )


@responses.activate
def test_instagram_takes_no_files_while_they_are_stored_on_this_server(
    ig_ticket: Ticket, agent: Any, files: list[OutboundFile], settings: Any
) -> None:
    settings.S3_ENABLED = False
    files.append(a_file(901, "photo.png", "image/png", PNG, kind="image"))
    delivery = send_reply(ig_ticket, agent)
    assert len(responses.calls) == 0
    # refused by the limits check before the adapter (channels_app.services.reply_limits)
    assert delivery.last_error == "Instagram replies can't carry files."
    # and with S3 on, a file that still has no link is refused before anything is sent
    settings.S3_ENABLED = True
    delivery.delete()
    delivery = send_reply(ig_ticket, agent)
    assert len(responses.calls) == 0
    assert delivery.last_error == (
        "Instagram fetches a file from a link, and “photo.png” is not reachable "
        "from outside (files are stored on this server: S3 is off)."
    )


# --- statuses and echoes of a file's own message -------------------------------------------


def fixture_with(channel: str, name: str, old: str, new: str) -> bytes:
    return fixture_load(channel, name).body.replace(old.encode(), new.encode())


@responses.activate
def test_whatsapp_status_of_a_files_message_is_the_replys(
    wa_ticket: Ticket, agent: Any, files: list[OutboundFile], post_fixture: Any
) -> None:
    """WhatsApp reports each message: a file that failed to reach the customer fails the
    reply (in WhatsApp's words), and its statuses are never left unmatched for retry."""
    files.append(a_file())
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.TEXT"}]})
    responses.post(WA_MEDIA, json={"id": "MEDIA-PDF"})
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.PDF"}]})
    delivery = send_reply(wa_ticket, agent)
    account = ChannelAccount.objects.get(channel="whatsapp")
    before = InboundEvent.objects.count()

    body = fixture_with("whatsapp", "status_failed", "wamid.OUTBOUND-FIXTURE-0001", "wamid.PDF")
    post_fixture(account, "status_failed", body=body)

    event = InboundEvent.objects.order_by("pk")[before]
    assert event.status == "processed"
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert (message.delivery_status, message.delivery_error_code) == ("failed", "131047")
    assert message.channel_message_id == "wamid.TEXT"


@responses.activate
def test_messenger_echo_and_delivery_of_a_files_message(
    messenger_ticket: Ticket, agent: Any, files: list[OutboundFile], post_fixture: Any
) -> None:
    """Meta echoes every message the Page sends: the echo of a file's message is part of
    the reply on the timeline (not a message from Meta's inbox), even without the
    account's app_id; its delivery receipt delivers the reply."""
    files.append(a_file())
    responses.post(MESSENGER_SEND, json={"message_id": "m_TEXT"})
    responses.post(MESSENGER_SEND, json={"message_id": "m_PDF"})
    delivery = send_reply(messenger_ticket, agent)
    account = ChannelAccount.objects.get(channel="messenger")
    messages = Message.objects.count()

    post_fixture(
        account, "echo", body=fixture_with("messenger", "echo", "m_ECHO_FIXTURE_0001", "m_PDF")
    )
    assert Message.objects.count() == messages

    body = fixture_with("messenger", "delivery", "m_OUTBOUND_FIXTURE_0001", "m_PDF")
    body = body.replace(b',"watermark":1749416429000', b"")
    post_fixture(account, "delivery", body=body)
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert message.delivery_status == "delivered"
    assert InboundEvent.objects.filter(status="retrying").count() == 0


@responses.activate
def test_x_read_receipt_of_the_last_image_reads_the_reply(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile], post_fixture: Any
) -> None:
    """X reports the last DM read: after a reply in parts that is a file's DM."""
    files.append(a_file(901, "photo.png", "image/png", PNG, kind="image"))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000011"))
    responses.post(X_UPLOAD, json=x_media("1880000000000000001"))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000012"))
    delivery = send_reply(x_ticket, agent)
    account = ChannelAccount.objects.get(channel="twitter")

    body = fixture_with("twitter", "mark_read", "1700000000000000001", "1700000000000000012")
    post_fixture(account, "mark_read", body=body)

    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert (message.channel_message_id, message.delivery_status) == (
        "1700000000000000011",
        "read",
    )


@responses.activate
def test_an_upload_the_provider_no_longer_keeps_is_uploaded_again(
    wa_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    """A re-driven reply whose file was uploaded 30 days ago (WhatsApp keeps media 30
    days): the old media id is not reused."""
    files.append(a_file())
    message = message_add(ticket=wa_ticket, body="Here is your invoice.", author_user=agent)
    old = (timezone.now() - timedelta(days=30)).isoformat()
    Message.objects.filter(pk=message.pk).update(
        metadata={
            "reply_parts": {
                "text": {"id": "wamid.TEXT"},
                "file:901": {"media_id": "MEDIA-OLD", "uploaded_at": old},
            }
        }
    )
    responses.post(WA_MEDIA, json={"id": "MEDIA-NEW"})
    responses.post(WA_MESSAGES, json={"messages": [{"id": "wamid.PDF"}]})
    delivery = services.outbound_delivery_create(message_id=message.pk)
    assert delivery is not None
    engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)

    assert [c.request.url for c in responses.calls] == [WA_MEDIA, WA_MESSAGES]
    assert body_json(responses.calls[1])["document"]["id"] == "MEDIA-NEW"
    message.refresh_from_db()
    assert message.channel_message_id == "wamid.TEXT"
    assert message.metadata["reply_parts"]["file:901"]["media_id"] == "MEDIA-NEW"


@responses.activate
def test_x_upload_refused_token_keeps_the_account_and_the_fix(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(a_file(901, "photo.png", "image/png", PNG, kind="image"))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(X_UPLOAD, status=401, json={"title": "Unauthorized", "status": 401})
    delivery = send_reply(x_ticket, agent)
    assert (delivery.status, delivery.error_code) == ("dead", "x_unauthorized")
    assert delivery.last_error.startswith(
        'X refused the upload of the file “photo.png” (HTTP 401): X account "main" (channel '
    )
    assert "channel_account_create --channel twitter" in delivery.last_error
    assert delivery.last_error.endswith("Already sent, not sent again: the text.")
