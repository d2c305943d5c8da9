"""X replies carrying video (MP4) and animated GIFs: X's chunked upload (initialize,
append per segment, finalize, then the status while X processes the media), each step
recorded on the reply so a retry resumes without sending a segment twice; X's processing
ends the attempt as retryable after the wait X asked for, and a media X could not process
fails the reply naming the file. Sizes per type refused when the agent sends. HTTP mocked
with responses (channels_app/tests/test_reply_files.py has the images)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pytest
import requests
import responses
from bs4 import BeautifulSoup
from django.test import Client

from channels_app import services
from channels_app.adapters.base import OutboundFile, get_adapter
from channels_app.adapters.limits import reply_limits_problems
from channels_app.adapters.twitter import adapter as x_adapter
from channels_app.adapters.twitter.oauth1 import signature
from channels_app.models import ChannelAccount
from channels_app.selectors import reply_parts_get
from channels_app.tests.conftest import make_account
from channels_app.tests.test_reply_files import a_file, body_json, multipart, retry
from support.delivery import services as engine
from support.delivery.models import Delivery
from support.errors import InvalidInput
from tickets.models import Customer, Message, Ticket
from tickets.reply_rules import ReplyFileInfo, reply_check
from tickets.services import message_add, ticket_create
from tickets.services.lifecycle import NewAttachment

pytestmark = pytest.mark.django_db

MB = 1_000_000
API = "https://api.x.com"
X_DM = f"{API}/2/dm_conversations/with/4337869213/messages"
INIT = f"{API}/2/media/upload/initialize"
MEDIA_ID = "1890000000000000001"
APPEND = f"{API}/2/media/upload/{MEDIA_ID}/append"
FINALIZE = f"{API}/2/media/upload/{MEDIA_ID}/finalize"
STATUS = f"{API}/2/media/upload?command=STATUS&media_id={MEDIA_ID}"
VIDEO = b"\x00\x00\x00\x18ftypmp42 a short clip"
GIF = b"GIF89a an animated picture"


@pytest.fixture
def x_ticket(post_fixture: Any) -> Ticket:
    account = make_account("twitter")
    post_fixture(account, "dm_message_create")
    return Ticket.objects.get()


def send_reply(ticket: Ticket, agent: Any, text: str = "The clip you asked for.") -> Delivery:
    message = message_add(ticket=ticket, body=text, author_user=agent)
    delivery = services.outbound_delivery_create(message_id=message.pk)
    assert delivery is not None
    engine.delivery_attempt(delivery_id=delivery.pk, expected_attempts=0)
    delivery.refresh_from_db()
    return delivery


def clip(content: bytes = VIDEO) -> OutboundFile:
    return a_file(901, "clip.mp4", "video/mp4", content, kind="video")


def x_dm(event_id: str) -> dict[str, Any]:
    return {"data": {"dm_conversation_id": "3001969357-4337869213", "dm_event_id": event_id}}


def initialized() -> dict[str, Any]:
    return {"data": {"id": MEDIA_ID, "media_key": f"7_{MEDIA_ID}", "expires_after_secs": 86399}}


def appended() -> dict[str, Any]:
    return {"data": {"expires_at": 1893456000}}


def processing(state: str, **more: Any) -> dict[str, Any]:
    return {
        "data": {
            "id": MEDIA_ID,
            "media_key": f"7_{MEDIA_ID}",
            "size": len(VIDEO),
            "expires_after_secs": 86400,
            "processing_info": {"state": state, **more},
        }
    }


def waited(delivery: Delivery) -> float:
    """Seconds between the attempt's record and the next attempt."""
    assert delivery.next_attempt_at is not None
    return (delivery.next_attempt_at - delivery.updated_at).total_seconds()


def recorded(delivery: Delivery) -> dict[str, Any]:
    return dict(reply_parts_get(message_id=delivery.payload["message_id"]).get("file:901", {}))


# --- video --------------------------------------------------------------------------------


@responses.activate
def test_a_video_goes_by_the_chunked_upload_and_the_dm_carries_its_media_id(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(clip())
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(INIT, json=initialized())
    responses.post(APPEND, json=appended())
    responses.post(FINALIZE, json=processing("pending", check_after_secs=1))
    responses.get(STATUS, json=processing("succeeded", progress_percent=100))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000002"))

    delivery = send_reply(x_ticket, agent)
    assert (delivery.status, delivery.error_code) == ("retrying", "x_media_processing")
    delivery = retry(delivery)

    # the wait used no attempt (outcome "pending": X answered, nothing failed)
    assert (delivery.status, delivery.attempts, delivery.total_attempts) == ("succeeded", 1, 2)
    assert list(delivery.attempt_log.order_by("number").values_list("outcome", flat=True)) == [
        "pending",
        "success",
    ]
    assert [(c.request.method, c.request.url) for c in responses.calls] == [
        ("POST", X_DM),
        ("POST", INIT),
        ("POST", APPEND),
        ("POST", FINALIZE),
        ("GET", STATUS),
        ("POST", X_DM),
    ]
    assert body_json(responses.calls[0]) == {"text": "The clip you asked for."}
    assert body_json(responses.calls[1]) == {
        "media_type": "video/mp4",
        "total_bytes": len(VIDEO),
        "media_category": "dm_video",
    }
    assert multipart(responses.calls[2]) == {
        "segment_index": b"0",
        "media": VIDEO,
        "media.filename": b"blob",
        "media.type": b"application/octet-stream",
    }
    # finalize: an empty JSON object (X refuses a finalize without a JSON body)
    assert responses.calls[3].request.headers["Content-Type"] == "application/json"
    assert body_json(responses.calls[3]) == {}
    assert body_json(responses.calls[5]) == {"attachments": [{"media_id": MEDIA_ID}]}
    for call in responses.calls:
        assert call.request.headers["Authorization"] == "Bearer test-access-token"
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert (message.delivery_status, message.channel_message_id) == (
        "sent",
        "1700000000000000001",
    )
    # every call of each attempt is on the attempt (the one that ended retryable: as its
    # response summary), the file named but never its bytes
    first, second = delivery.attempt_log.order_by("number")
    calls = json.loads(first.response_summary)
    assert [(c["part"], c["step"]) for c in calls] == [
        ("text", "send"),
        ("file:901", "initialize"),
        ("file:901", "append"),
        ("file:901", "finalize"),
    ]
    assert calls[1]["request"]["media"] == {
        "attachment_id": 901,
        "filename": "clip.mp4",
        "content_type": "video/mp4",
        "size": len(VIDEO),
    }
    assert calls[2]["request"] == {"url": APPEND, "segment_index": 0, "bytes": len(VIDEO)}
    assert "ftypmp42" not in first.response_summary + str(second.request_summary)
    assert [(c["part"], c.get("step")) for c in second.request_summary["parts"]] == [
        ("text", None),  # sent by the first attempt
        ("file:901", "status"),
        ("file:901", "send"),
    ]


@responses.activate
def test_a_large_file_goes_in_segments_and_a_retry_sends_only_those_x_lacks(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(x_adapter, "SEGMENT_BYTES", 8)
    content = b"0123456789abcdefXYZ"  # 19 bytes: segments of 8, 8 and 3
    files.append(clip(content))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(INIT, json=initialized())
    responses.post(APPEND, json=appended())
    responses.post(APPEND, status=503, json={"title": "Service Unavailable"})
    responses.post(APPEND, json=appended())
    responses.post(APPEND, json=appended())
    # finalize without processing_info: the media is ready at once
    ready = processing("succeeded")
    del ready["data"]["processing_info"]
    responses.post(FINALIZE, json=ready)
    responses.post(X_DM, status=201, json=x_dm("1700000000000000002"))

    delivery = send_reply(x_ticket, agent)
    assert (delivery.status, delivery.last_http_status) == ("retrying", 503)
    assert delivery.last_error == (
        "X did not take the upload of the file “clip.mp4” (HTTP 503): Service Unavailable. "
        "Already sent, not sent again: the text."
    )
    assert recorded(delivery)["segments"] == "1"
    delivery = retry(delivery)

    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert [c.request.url for c in responses.calls] == [
        X_DM,
        INIT,
        APPEND,
        APPEND,  # 503
        APPEND,  # the retry: segment 1 again, not segment 0, no second initialize
        APPEND,
        FINALIZE,
        X_DM,
    ]
    segments = [multipart(responses.calls[i]) for i in (2, 3, 4, 5)]
    assert [(s["segment_index"], s["media"]) for s in segments] == [
        (b"0", b"01234567"),
        (b"1", b"89abcdef"),
        (b"1", b"89abcdef"),
        (b"2", b"XYZ"),
    ]
    assert body_json(responses.calls[1])["total_bytes"] == 19
    assert body_json(responses.calls[7]) == {"attachments": [{"media_id": MEDIA_ID}]}


@responses.activate
def test_while_x_processes_the_attempt_ends_retryable_after_xs_wait_and_the_next_resumes(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(clip())
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(INIT, json=initialized())
    responses.post(APPEND, json=appended())
    responses.post(FINALIZE, json=processing("pending", check_after_secs=7))
    responses.get(STATUS, json=processing("in_progress", check_after_secs=11, progress_percent=40))
    responses.get(STATUS, json=processing("succeeded", progress_percent=100))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000002"))

    delivery = send_reply(x_ticket, agent)
    # the engine's retry, after the 7 s X asked for (longer than its own first backoff)
    assert (delivery.status, delivery.error_code, delivery.last_http_status) == (
        "retrying",
        "x_media_processing",
        None,
    )
    assert abs(waited(delivery) - 7) < 0.5
    assert delivery.last_error == (
        "X is still processing the file “clip.mp4” (pending); its status is checked again "
        "in 7 s, as X asked. Already sent, not sent again: the text."
    )
    # the media id is recorded at once: the next attempt asks its status, uploads nothing
    kept = recorded(delivery)
    assert (kept["upload_id"], kept["segments"], bool(kept["finalized_at"])) == (
        MEDIA_ID,
        "1",
        True,
    )
    assert not {"id", "media_id"} & set(kept)  # not sent, not usable yet
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert message.delivery_status == "queued"

    delivery = retry(delivery)
    assert (delivery.status, delivery.attempts, delivery.total_attempts) == ("retrying", 0, 2)
    assert abs(waited(delivery) - 11) < 0.5
    assert delivery.last_error.startswith(
        "X is still processing the file “clip.mp4” (in_progress, 40% done); its status is "
        "checked again in 11 s"
    )

    delivery = retry(delivery)
    assert (delivery.status, delivery.attempts, delivery.total_attempts) == ("succeeded", 1, 3)
    assert [(c.request.method, c.request.url) for c in responses.calls] == [
        ("POST", X_DM),
        ("POST", INIT),
        ("POST", APPEND),
        ("POST", FINALIZE),
        ("GET", STATUS),
        ("GET", STATUS),
        ("POST", X_DM),
    ]
    assert body_json(responses.calls[6]) == {"attachments": [{"media_id": MEDIA_ID}]}
    assert recorded(delivery)["id"] == "1700000000000000002"


@responses.activate
def test_a_video_x_processes_for_too_long_fails_the_reply_saying_so(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    files.append(clip())
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(INIT, json=initialized())
    responses.post(APPEND, json=appended())
    responses.post(FINALIZE, json=processing("pending", check_after_secs=5))
    responses.get(STATUS, json=processing("in_progress", check_after_secs=5))
    delivery = send_reply(x_ticket, agent)
    assert delivery.status == "retrying"
    # X's processing has outlasted the bound by the next check (waits use no attempt, so
    # without it a stuck upload would be asked about for as long as the engine allows)
    monkeypatch.setattr(x_adapter, "PROCESSING_MAX", timedelta(0))
    delivery = retry(delivery)
    assert (delivery.status, delivery.error_code) == ("dead", "x_media_processing_too_long")
    assert delivery.last_error == (
        "X was still processing the file “clip.mp4” after 0 minutes; not sent. "
        "Already sent, not sent again: the text."
    )
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert message.delivery_status == "failed"


@responses.activate
def test_a_video_x_could_not_process_fails_the_reply_naming_the_file(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(clip())
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(INIT, json=initialized())
    responses.post(APPEND, json=appended())
    responses.post(FINALIZE, json=processing("pending", check_after_secs=1))
    responses.get(
        STATUS,
        json=processing(
            "failed",
            progress_percent=12,
            error={"code": 1, "name": "InvalidMedia", "message": "Unsupported video format"},
        ),
    )
    delivery = send_reply(x_ticket, agent)
    delivery = retry(delivery)

    assert (delivery.status, delivery.error_code) == ("dead", "x_media_failed")
    error = (
        "X could not process the file “clip.mp4”: Unsupported video format. Already sent, "
        "not sent again: the text."
    )
    assert delivery.last_error == error
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert (message.delivery_status, message.delivery_error) == ("failed", error)
    assert len(responses.calls) == 5  # no DM for the file
    last = delivery.attempt_log.order_by("number").last()
    assert last is not None
    assert "Unsupported video format" in json.loads(last.response_summary)[1]["response"]


@responses.activate
def test_an_initialize_answered_without_a_numeric_media_id_fails_at_once(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(clip())
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(INIT, json={"data": {"id": "../../2/users/me"}})
    delivery = send_reply(x_ticket, agent)
    assert delivery.status == "dead"
    assert delivery.last_error.startswith("X answered the upload of “clip.mp4” without a media id")
    assert [c.request.url for c in responses.calls] == [X_DM, INIT]


@responses.activate
def test_the_status_is_signed_as_a_get_with_its_query_under_oauth1(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    account = ChannelAccount.objects.get(channel="twitter")
    account.token_secret = "ts"
    account.settings = {"send_auth": "oauth1", "consumer_key": "ck", "oauth_token": "tok"}
    account.save()
    files.append(clip())
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(INIT, json=initialized())
    responses.post(APPEND, json=appended())
    responses.post(FINALIZE, json=processing("in_progress", check_after_secs=1))
    responses.get(STATUS, json=processing("succeeded"))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000002"))

    delivery = retry(send_reply(x_ticket, agent))

    assert delivery.status == "succeeded"
    status_call = responses.calls[4]
    assert (status_call.request.method, status_call.request.url) == ("GET", STATUS)
    header = str(status_call.request.headers["Authorization"])
    params = {
        key: unquote(value.strip('"'))
        for key, _, value in (part.partition("=") for part in header[6:].split(", "))
    }
    signed = {k: v for k, v in params.items() if k != "oauth_signature"}
    assert params["oauth_signature"] == signature(
        "GET", STATUS, signed, account.consumer_secret, "ts"
    )


# --- a finalize whose answer was lost ---------------------------------------------------

MEDIA_ID_2 = "1890000000000000002"
APPEND_2 = f"{API}/2/media/upload/{MEDIA_ID_2}/append"
FINALIZE_2 = f"{API}/2/media/upload/{MEDIA_ID_2}/finalize"
# What X's v2 STATUS answers for a media id it does not know (xdevplatform/xurl issue 18)
NOT_FOUND = {
    "errors": [{"message": "BadRequest: Not found"}],
    "title": "Invalid Request",
    "detail": "One or more parameters to your request was invalid.",
    "type": "https://api.twitter.com/2/problems/invalid-request",
}
LOST = {"body": requests.ReadTimeout("Read timed out. (read timeout=10)")}


@responses.activate
@pytest.mark.parametrize(
    "lost",
    [
        LOST,
        {"body": requests.ConnectionError("Connection reset by peer")},
        {"status": 503, "json": {"title": "Service Unavailable"}},
    ],
    ids=["timeout", "reset", "503"],
)
def test_after_a_finalize_whose_answer_was_lost_the_status_is_asked_not_a_second_finalize(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile], lost: dict[str, Any]
) -> None:
    files.append(clip())
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(INIT, json=initialized())
    responses.post(APPEND, json=appended())
    responses.post(FINALIZE, **lost)
    # X had taken the finalize: it knows the media and is processing it
    responses.get(STATUS, json=processing("in_progress", check_after_secs=3))
    responses.get(STATUS, json=processing("succeeded", progress_percent=100))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000002"))

    delivery = send_reply(x_ticket, agent)
    assert (delivery.status, delivery.attempts) == ("retrying", 1)
    kept = recorded(delivery)
    # the finalize was sent but X's answer is unknown: not recorded as finalized
    assert (kept["upload_id"], kept["finalized_at"]) == (MEDIA_ID, "")

    delivery = retry(delivery)  # the status, not a second finalize: X is processing
    assert (delivery.status, delivery.error_code) == ("retrying", "x_media_processing")
    # the finalize counts from when it was sent (recorded before it went)
    assert kept.get("finalize_sent_at")
    assert recorded(delivery)["finalized_at"] == kept["finalize_sent_at"]
    delivery = retry(delivery)

    assert (delivery.status, delivery.attempts, delivery.total_attempts) == ("succeeded", 2, 3)
    assert [(c.request.method, c.request.url) for c in responses.calls] == [
        ("POST", X_DM),
        ("POST", INIT),
        ("POST", APPEND),
        ("POST", FINALIZE),  # its answer lost
        ("GET", STATUS),
        ("GET", STATUS),
        ("POST", X_DM),
    ]
    assert body_json(responses.calls[6]) == {"attachments": [{"media_id": MEDIA_ID}]}
    # every call is on its attempt, the lost finalize too
    first, second, _ = delivery.attempt_log.order_by("number")
    calls = json.loads(first.response_summary)
    assert [(c["part"], c["step"], c["http_status"]) for c in calls] == [
        ("text", "send", 201),
        ("file:901", "initialize", 200),
        ("file:901", "append", 200),
        ("file:901", "finalize", lost.get("status")),
    ]
    assert [(c["part"], c.get("step")) for c in json.loads(second.response_summary)] == [
        ("text", None),
        ("file:901", "status"),
    ]


@responses.activate
def test_a_finalize_x_answered_with_429_is_sent_again_without_asking_the_status(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(clip())
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(INIT, json=initialized())
    responses.post(APPEND, json=appended())
    # X answered: it did not take this finalize
    responses.post(FINALIZE, status=429, json={"title": "Too Many Requests"})
    responses.post(FINALIZE, json=processing("succeeded"))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000002"))

    delivery = retry(send_reply(x_ticket, agent))

    assert delivery.status == "succeeded"
    assert [c.request.url for c in responses.calls] == [
        X_DM,
        INIT,
        APPEND,
        FINALIZE,
        FINALIZE,
        X_DM,
    ]


@responses.activate
def test_after_a_lost_finalize_of_a_media_x_does_not_know_the_file_is_uploaded_afresh(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(clip())
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(INIT, json=initialized())
    responses.post(APPEND, json=appended())
    responses.post(FINALIZE, **LOST)
    responses.get(STATUS, status=400, json=NOT_FOUND)
    responses.post(INIT, json={"data": {"id": MEDIA_ID_2, "expires_after_secs": 86399}})
    responses.post(APPEND_2, json=appended())
    responses.post(FINALIZE_2, json=processing("succeeded"))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000002"))

    delivery = retry(send_reply(x_ticket, agent))

    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert [(c.request.method, c.request.url) for c in responses.calls] == [
        ("POST", X_DM),
        ("POST", INIT),
        ("POST", APPEND),
        ("POST", FINALIZE),  # its answer lost
        ("GET", STATUS),  # 400: X does not know the media
        ("POST", INIT),  # a fresh upload, all its segments
        ("POST", APPEND_2),
        ("POST", FINALIZE_2),
        ("POST", X_DM),
    ]
    assert multipart(responses.calls[6])["media"] == VIDEO
    assert body_json(responses.calls[8]) == {"attachments": [{"media_id": MEDIA_ID_2}]}
    kept = recorded(delivery)
    assert (kept["upload_id"], kept["restarts"], kept["finalize_sent_at"]) == (
        MEDIA_ID_2,
        "1",
        "",
    )
    second = delivery.attempt_log.order_by("number").last()
    assert second is not None
    steps = [
        (c["part"], c.get("step"), c.get("http_status")) for c in second.request_summary["parts"]
    ]
    assert steps == [
        ("text", None, None),
        ("file:901", "status", 400),
        ("file:901", "initialize", 200),
        ("file:901", "append", 200),
        ("file:901", "finalize", 200),
        ("file:901", "send", 201),
    ]


@responses.activate
def test_finalizes_lost_again_and_again_fail_the_reply_after_a_bounded_number_of_uploads(
    x_ticket: Ticket,
    agent: Any,
    files: list[OutboundFile],
    django_capture_on_commit_callbacks: Any,
) -> None:
    files.append(clip())
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(INIT, json=initialized())
    responses.post(APPEND, json=appended())
    responses.post(FINALIZE, **LOST)
    responses.get(STATUS, status=400, json=NOT_FOUND)

    delivery = send_reply(x_ticket, agent)
    for _ in range(2):  # the finalize lost, X does not know the media: a fresh upload
        assert delivery.status == "retrying"
        delivery = retry(delivery)

    assert delivery.status == "retrying"
    delivery = retry(delivery)
    assert (delivery.status, delivery.error_code) == ("dead", "x_media_upload_lost")
    error = (
        "X lost the file “clip.mp4”: the answer to its upload's finalize never came and X "
        "no longer knows the media, 3 times; not sent. Already sent, not sent again: the text."
    )
    assert delivery.last_error == error
    assert delivery.attempts == 4
    message = Message.objects.get(pk=delivery.payload["message_id"])
    assert (message.delivery_status, message.delivery_error) == ("failed", error)
    # one upload, then UPLOAD_RESTARTS_MAX (2) fresh ones, then the last status: no more
    assert getattr(x_adapter, "UPLOAD_RESTARTS_MAX", None) == 2
    urls = [c.request.url for c in responses.calls]
    assert (urls.count(INIT), urls.count(FINALIZE), urls.count(STATUS)) == (3, 3, 3)
    assert urls[-1] == STATUS
    assert urls.count(X_DM) == 1  # the text only

    # staff re-drive the dead letter once X answers again: a fresh upload, no status
    responses.replace(responses.POST, FINALIZE, json=processing("succeeded"))
    responses.post(X_DM, status=201, json=x_dm("1700000000000000002"))
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.delivery_redrive(delivery_ids=[delivery.pk], actor=agent) == 1
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert [c.request.url for c in responses.calls][len(urls) :] == [INIT, APPEND, FINALIZE, X_DM]


# --- GIF ----------------------------------------------------------------------------------


@responses.activate
def test_an_animated_gif_goes_by_the_chunked_upload_as_dm_gif(
    x_ticket: Ticket, agent: Any, files: list[OutboundFile]
) -> None:
    files.append(a_file(902, "party.gif", "image/gif", GIF, kind="image"))
    gif_id = "1890000000000000009"
    responses.post(X_DM, status=201, json=x_dm("1700000000000000001"))
    responses.post(INIT, json={"data": {"id": gif_id, "expires_after_secs": 86399}})
    responses.post(f"{API}/2/media/upload/{gif_id}/append", status=204)
    responses.post(
        f"{API}/2/media/upload/{gif_id}/finalize",
        json={"data": {"id": gif_id, "processing_info": {"state": "succeeded"}}},
    )
    responses.post(X_DM, status=201, json=x_dm("1700000000000000002"))

    delivery = send_reply(x_ticket, agent)

    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert body_json(responses.calls[1]) == {
        "media_type": "image/gif",
        "total_bytes": len(GIF),
        "media_category": "dm_gif",
    }
    assert multipart(responses.calls[2])["media"] == GIF
    assert body_json(responses.calls[4]) == {"attachments": [{"media_id": gif_id}]}
    assert len(responses.calls) == 5  # never the one-request upload (images only)


# --- sizes per type, when the agent sends -------------------------------------------------


def test_x_holds_each_type_to_its_own_size() -> None:
    limits = get_adapter("twitter").reply_limits
    ok = [
        ReplyFileInfo("photo.png", "image/png", 5 * MB),
        ReplyFileInfo("party.gif", "image/gif", 15 * MB),
        ReplyFileInfo("clip.mp4", "video/mp4", 512 * MB),
    ]
    assert reply_limits_problems(limits, label="X", text="", files=ok) == {}
    over = [
        ReplyFileInfo("photo.png", "image/png", 6 * MB),
        ReplyFileInfo("party.gif", "image/gif", 16 * MB),
        ReplyFileInfo("clip.mp4", "video/mp4", 513 * MB),
        ReplyFileInfo("clip.mov", "video/quicktime", 1 * MB),
    ]
    assert reply_limits_problems(limits, label="X", text="", files=over) == {
        "files": [
            "X images can be at most 5 MB; photo.png is 6 MB.",
            "X GIFs can be at most 15 MB; party.gif is 16 MB.",
            "X video can be at most 512 MB; clip.mp4 is 513 MB.",
            "X replies can't carry clip.mov (video/quicktime); they take JPG, PNG, WEBP, GIF, MP4.",
        ]
    }


def test_a_video_too_large_for_x_is_refused_when_the_agent_sends(
    customer: Customer, agent: Any, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path
    make_account("twitter")
    ticket = ticket_create(customer=customer, subject="DM", body="Hi", channel="twitter")
    with pytest.raises(InvalidInput) as refused:
        reply_check(
            ticket=ticket,
            channel="twitter",
            body="The clip",
            files=[ReplyFileInfo("clip.mp4", "video/mp4", 513 * MB)],
        )
    assert refused.value.details == {
        "files": ["X (Twitter) video can be at most 512 MB; clip.mp4 is 513 MB."]
    }
    # a GIF over X's 15 MB (under the project's 20 MB a message): refused by message_add
    big = NewAttachment("party.gif", "image/gif", b"GIF89a" + b"\0" * 15_500_000, kind="image")
    with pytest.raises(InvalidInput) as refused:
        message_add(ticket=ticket, body="The GIF", author_user=agent, attachments=[big])
    assert refused.value.details == {
        "files": ["X (Twitter) GIFs can be at most 15 MB; party.gif is 15.5 MB."]
    }
    assert not Message.objects.filter(body_text="The GIF").exists()
    small = NewAttachment("clip.mp4", "video/mp4", VIDEO, kind="video")
    message_add(ticket=ticket, body="The clip", author_user=agent, attachments=[small])


def test_the_reply_box_takes_what_x_takes(
    customer: Customer, agent: Any, client: Client, settings: Any
) -> None:
    settings.TICKET_REPLY_FILES_MAX_BYTES = 20 * MB
    make_account("twitter")
    ticket = ticket_create(customer=customer, subject="DM", body="Hi", channel="twitter")
    client.force_login(agent)
    page = BeautifulSoup(client.get(f"/tickets/{ticket.number}/").content, "html.parser")
    files, hint = page.select_one("#composer-files"), page.select_one("#composer-files-hint")
    assert files is not None and hint is not None  # noqa: PT018
    assert files["data-accept"] == "image/jpeg,image/png,image/webp,image/gif,video/mp4"
    # X takes video up to 512 MB, but no message here carries more than 20 MB of files
    assert hint.get_text().startswith(
        "Files on X (Twitter): JPG, PNG, WEBP, GIF, MP4, GIFs up to 15 MB, images up to 5 MB, "
        "video up to 20 MB, 10 files at most; internal notes take any file."
    )
