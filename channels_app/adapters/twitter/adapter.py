"""X (Twitter): Account Activity API webhooks in (DMs, read receipts), DM API v2 out."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import requests
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels_app.adapters.base import (
    ChannelAdapter,
    Event,
    FetchedMedia,
    InboundMessage,
    MalformedPayload,
    MediaRef,
    OutboundFile,
    OutboundRequest,
    ReplyLimits,
    SendResult,
    SignatureError,
    StatusUpdate,
    UnknownEvent,
    WebhookRequest,
    constant_time_equal,
    epoch_to_datetime,
    hmac_sha256,
    http_call,
    json_body,
    json_body_or_none,
    media_download,
    media_hosts,
    platform_id,
)
from channels_app.adapters.parts import (
    PartRequest,
    ReplyParts,
    file_summary,
    files_check,
)
from channels_app.adapters.twitter import tokens
from channels_app.adapters.twitter.oauth1 import authorization_header
from support.errors import PendingError, PermanentError, RetryableError

if TYPE_CHECKING:
    from channels_app.models import ChannelAccount

MEDIA_KINDS = {"photo": "image", "video": "video", "animated_gif": "video"}
MB = 1_000_000
# Files a reply may carry, within X's limits for direct messages (docs.x.com, media
# "Best practices" and POST /2/media/upload/initialize; default accounts: X Premium's
# larger video is not known here): images up to 5 MB by the one-request upload
# (``dm_image``); animated GIFs up to 15 MB (``dm_gif``) and MP4 video up to 512 MB
# (``dm_video``, 0.5 to 140 seconds) by the chunked upload and X's processing.
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
GIF_TYPE = "image/gif"
VIDEO_TYPES = ("video/mp4",)
MEDIA_CATEGORY = "dm_image"
CHUNKED_CATEGORIES = {GIF_TYPE: "dm_gif", "video/": "dm_video"}
# A finalized upload is usable for 24 hours: a retry reuses it for less than that.
MEDIA_KEPT = timedelta(hours=23)
# The chunked upload: segments of at most 5 MB (X's advice; its server takes 8 MB), read
# when called so a test can make them small; an initialized upload X keeps
# ``expires_after_secs`` (an hour when it does not say) is resumed by a retry while
# at least this margin is left of it.
SEGMENT_BYTES = 4 * 1024 * 1024
UPLOAD_KEPT_DEFAULT = timedelta(hours=1)
UPLOAD_MARGIN = timedelta(minutes=5)
# X's processing of a finalized upload (``processing_info.state``).
PROCESSING_DONE, PROCESSING_FAILED = "succeeded", "failed"
PROCESSING_CODE = "x_media_processing"
# How long X may process one finalized upload before the reply fails saying so (X gives
# no bound; a 512 MB video takes minutes). The waits in between are the delivery engine's
# ``pending`` outcome: they use no attempt and are no failure of the account.
PROCESSING_MAX = timedelta(minutes=30)
PROCESSING_TOO_LONG_CODE = "x_media_processing_too_long"
PROCESSING_FAILED_CODE = "x_media_failed"
# A finalize whose answer never came (a timeout, a reset connection, a 5xx) may have been
# taken by X, and X documents no answer to a second finalize of the same media id: the next
# attempt asks the status instead of finalizing again. A media X then says it does not know
# (400 "BadRequest: Not found" or 404: the finalize never reached it, or the upload expired)
# is uploaded afresh from the initialize, at most this many times for one file.
UPLOAD_RESTARTS_MAX = 2
UPLOAD_LOST_CODE = "x_media_upload_lost"
MEDIA_UNKNOWN_STATUSES = (400, 404)

logger = logging.getLogger(__name__)


# What X sends as crc_token: base64 text (in practice the base64 of a random UUID,
# 48 characters). The answer is HMAC(consumer secret, token), exactly the signature a
# POST whose body equals the token would carry, so anything that could be a delivery
# body (JSON above all) is refused instead of signed.
CRC_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{1,128}={0,2}")


def crc_token_acceptable(token: str) -> bool:
    """Whether ``token`` has the shape of X's CRC tokens (and is not JSON)."""
    if not CRC_TOKEN.fullmatch(token):
        return False
    try:
        json.loads(token)  # "123", "true", "null" are base64-alphabet JSON
    except ValueError:
        return True
    return False


def x_signature(consumer_secret: str, data: bytes) -> str:
    """``sha256=`` + base64 HMAC-SHA256, used for both CRC and webhook signatures."""
    return "sha256=" + base64.b64encode(hmac_sha256(consumer_secret, data)).decode("ascii")


class TwitterAdapter(ChannelAdapter):
    channel = "twitter"
    kept_headers = ("content-type", "user-agent", "x-twitter-webhooks-signature")
    media_hosts: tuple[str, ...] = ("ton.twitter.com", "ton.x.com", "twimg.com")
    # A direct message's text: at most 10,000 characters; one media per direct message,
    # sizes per type (docs/channels.md).
    reply_limits = ReplyLimits(
        text_max_chars=10_000,
        files=True,
        files_max_count=10,
        file_max_bytes_by_type=((GIF_TYPE, 15 * MB), ("image/", 5 * MB), ("video/", 512 * MB)),
        file_types=(*IMAGE_TYPES, GIF_TYPE, *VIDEO_TYPES),
    )

    def reply_limits_for(self, account: ChannelAccount | None) -> ReplyLimits:
        """No files through an account whose token X granted without ``media.write`` (its
        scopes as X returned them with the last token, ``tokens.granted_scopes``): X would
        refuse the upload with a 403. Scopes unknown (a token from before they were
        kept): the channel's limits, and a 403 names the fix."""
        scopes = tokens.granted_scopes(account) if account is not None else None
        if scopes is None or tokens.MEDIA_SCOPE in scopes:
            return self.reply_limits
        return replace(
            self.reply_limits,
            files=False,
            files_refusal=(
                "This X account was connected without permission to upload media; connect "
                f"it again (OAuth 2.0 scopes: {tokens.SCOPES}) to send files."
            ),
        )

    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        given = request.header("x-twitter-webhooks-signature")
        if not given:
            raise SignatureError("Missing x-twitter-webhooks-signature header.", status=401)
        if not account.consumer_secret:
            raise SignatureError("This account has no consumer secret configured.", status=403)
        if not constant_time_equal(given, x_signature(account.consumer_secret, request.body)):
            raise SignatureError("x-twitter-webhooks-signature does not match.", status=403)

    def handshake(self, account: ChannelAccount, query: Mapping[str, str]) -> tuple[int, str, str]:
        token = query.get("crc_token", "")
        if not token:
            return 400, "Expected crc_token.", "text/plain"
        if not crc_token_acceptable(token):
            return (
                400,
                "crc_token must be base64 text of at most 128 characters, as X sends it.",
                "text/plain",
            )
        if not account.consumer_secret:
            return 403, "This account has no consumer secret configured.", "text/plain"
        body = json.dumps(
            {"response_token": x_signature(account.consumer_secret, token.encode("utf-8"))}
        )
        return 200, body, "application/json"

    def check_well_formed(self, request: WebhookRequest) -> None:
        data = json_body(request.body)
        if not isinstance(data, dict):
            raise MalformedPayload("Expected a JSON object.")

    def addressed_to(self, request: WebhookRequest) -> frozenset[str]:
        """The top-level ``for_user_id``: the X user the activity is for. One X app
        signs for every user subscribed to its webhook with its consumer secret."""
        data = json_body_or_none(request.body)
        user = platform_id(data.get("for_user_id")) if isinstance(data, dict) else ""
        return frozenset({user} - {""})

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[Event]:
        data = json_body(request.body)
        me = str(data.get("for_user_id", ""))
        users = data.get("users", {}) or {}
        events: list[Event] = []
        for dm in data.get("direct_message_events", []):
            events.append(self._dm(dm, me, users))
        for read in data.get("direct_message_mark_read_events", []):
            if read.get("sender_id") == me:
                events.append(UnknownEvent("read receipt by the business account"))
                continue
            events.append(
                StatusUpdate(
                    external_message_id=str(read.get("last_read_event_id", "")),
                    status="read",
                    timestamp=epoch_to_datetime(read.get("created_timestamp"), millis=True),
                    recipient_id=str(read.get("sender_id", "")),  # the customer who read
                )
            )
        known = {
            "for_user_id",
            "users",
            "apps",
            "direct_message_events",
            "direct_message_mark_read_events",
        }
        for key in sorted(set(data) - known):
            events.append(UnknownEvent(key))
        return events

    def _dm(self, dm: dict[str, Any], me: str, users: dict[str, Any]) -> Event:
        if dm.get("type") != "message_create":
            return UnknownEvent(f"direct message event type {dm.get('type')!r}")
        create = dm.get("message_create", {})
        sender = str(create.get("sender_id", ""))
        recipient = str(create.get("target", {}).get("recipient_id", ""))
        is_echo = bool(me) and sender == me
        customer = recipient if is_echo else sender
        data = create.get("message_data", {})
        media: list[MediaRef] = []
        attachment = data.get("attachment") or {}
        if attachment.get("type") == "media":
            item = attachment.get("media", {})
            media.append(
                MediaRef(
                    kind=MEDIA_KINDS.get(item.get("type", ""), "other"),
                    media_id=str(item.get("id_str") or item.get("id") or ""),
                    url=item.get("media_url_https", ""),
                    filename=(item.get("media_url_https", "") or "media").rsplit("/", 1)[-1],
                )
            )
        meta: dict[str, Any] = {}
        if "quick_reply_response" in data:
            meta["quick_reply"] = data["quick_reply_response"]
        if is_echo:
            meta["echo"] = True
            meta["app_id"] = str(create.get("source_app_id", ""))
        profile = users.get(customer, {})
        return InboundMessage(
            external_message_id=str(dm.get("id", "")),
            sender_id=customer,
            sender_name=profile.get("name", "") or profile.get("screen_name", ""),
            text=data.get("text", ""),
            media=tuple(media),
            is_echo=is_echo,
            timestamp=epoch_to_datetime(dm.get("created_timestamp"), millis=True),
            metadata=meta,
        )

    def send(self, account: ChannelAccount, outbound: OutboundRequest) -> SendResult:
        """DM API v2. OAuth 2.0 user context by default: the access token is refreshed
        first when it expires within the margin, and once more when X answers 401, then
        the send is retried once (``tokens``). ``settings.send_auth = "oauth1"`` signs
        with the OAuth 1.0a user context instead (the media download credentials)."""
        url = self._dm_url(outbound)
        body = {"text": outbound.text}
        self._send_auth(account)
        if outbound.files:
            return self._send_parts(account, outbound)
        response = self._authorized(account, url, partial(_post_json, url, body))
        # read defensively: X took the DM (2xx), whatever its answer says
        return SendResult(
            external_message_id=_dm_event_id(response),
            http_status=response.status_code,
            request_body=body,
            response_body=response.text[:2000],
        )

    def _dm_url(self, outbound: OutboundRequest) -> str:
        return f"{tokens.api_base()}/2/dm_conversations/with/{outbound.recipient_id}/messages"

    def _send_auth(self, account: ChannelAccount) -> str:
        mode = str(account.settings.get("send_auth", "") or "oauth2")
        if mode not in ("oauth1", "oauth2"):
            raise PermanentError(
                f"{tokens.account_label(account)}: setting send_auth must be oauth2 or "
                f"oauth1, not {mode!r}."
            )
        return mode

    def _send_parts(self, account: ChannelAccount, outbound: OutboundRequest) -> SendResult:
        """A reply with files: the text as a DM of its own, then per file an upload and a
        DM with ``attachments: [{"media_id": …}]`` (X takes one media per DM). An image
        goes in one request (:meth:`_upload`); a GIF or a video by the chunked upload and
        X's processing (:meth:`_upload_chunked`), which may end the attempt as retryable
        while X processes it. Parts sent by an earlier attempt are skipped, an upload
        younger than a day is reused (``adapters.parts``)."""
        files_check("X", outbound.files, self.reply_limits_for(account))
        parts = ReplyParts("X", outbound)
        url = self._dm_url(outbound)

        def dm(body: dict[str, Any]) -> PartRequest:
            return body, partial(self._authorized, account, url, partial(_post_json, url, body))

        def file_dm(file: OutboundFile, part: str, what: str) -> PartRequest:
            uploader = self._upload_chunked if _chunked_category(file) else self._upload
            upload = partial(uploader, account, file, parts, part, what)
            media_id = parts.media_id(part, kept_for=MEDIA_KEPT, upload=upload)
            return dm({"attachments": [{"media_id": media_id}]})

        return parts.send_each(
            outbound, text=lambda: dm({"text": outbound.text}), file=file_dm, sent_id=_dm_event_id
        )

    def _upload(
        self, account: ChannelAccount, file: OutboundFile, parts: ReplyParts, part: str, what: str
    ) -> str:
        url = f"{tokens.api_base()}/2/media/upload"
        fields = {"media_category": MEDIA_CATEGORY}

        def upload(authorization: str) -> requests.Response:
            return http_call(
                "POST",
                url,
                data=fields,
                files={"media": (file.filename, file.read(), file.content_type)},
                headers={"Authorization": authorization},
            )

        response = parts.call(
            part,
            "upload",
            what,
            {"url": url, **fields, "media": file_summary(file)},
            partial(self._authorized, account, url, upload),
        )
        data = _json(response).get("data")
        media_id = str(data.get("id", "")) if isinstance(data, dict) else ""
        if not media_id:
            raise PermanentError(
                f"X answered the upload of “{file.filename}” without a media id: "
                f"{response.text[:200]}"
            )
        return media_id

    def _upload_chunked(
        self, account: ChannelAccount, file: OutboundFile, parts: ReplyParts, part: str, what: str
    ) -> str:
        """A GIF or a video by X's chunked upload: ``POST /2/media/upload/initialize``
        (JSON ``media_type``, ``total_bytes``, ``media_category`` ``dm_gif`` / ``dm_video``;
        answer ``{"data": {"id", "expires_after_secs"}}``), ``POST …/{id}/append`` per
        segment (multipart ``segment_index``, ``media``), ``POST …/{id}/finalize``, then,
        while the answer's ``processing_info.state`` is ``pending`` or ``in_progress``,
        ``GET /2/media/upload?command=STATUS&media_id=…`` until ``succeeded``.

        Each step is recorded on the part as soon as X took it (``ReplyParts.record``:
        ``upload_id`` and ``upload_until`` after the initialize, ``segments`` after each
        append, ``finalized_at``), so a retry resumes where the last attempt stopped and
        never sends a segment X has. ``finalize_sent_at`` is recorded before the finalize
        goes: a finalize whose answer never came is followed by the status, never by a
        second finalize (:meth:`_media_after_lost_finalize`). While X processes the media
        the attempt ends at once as retryable after the ``check_after_secs`` X asked for
        (``RetryableError`` with ``retry_after``: the delivery engine's retry, never a wait
        in the worker); the next attempt asks the status and goes on. ``failed`` fails the
        reply in words naming the file."""
        category = _chunked_category(file)
        done = parts.progress(part)
        now = timezone.now()
        upload_id = done.get("upload_id", "")
        finalized = _when(done.get("finalized_at"))
        until = _when(done.get("upload_until"))
        info: dict[str, Any] | None = None
        sent_at = done.get("finalize_sent_at", "")
        if upload_id and finalized is None and sent_at:
            info = self._media_after_lost_finalize(account, parts, part, what, upload_id, done)
            if info is None:  # X does not know it: a fresh upload
                upload_id = ""
            else:
                finalized = _when(sent_at)
        if upload_id and finalized is not None and now - finalized <= MEDIA_KEPT:
            if info is None:
                info = self._media_status(account, parts, part, what, upload_id)
            if now - finalized > PROCESSING_MAX and _processing(info):
                late = PermanentError(
                    f"still {_processing(info)} after {PROCESSING_MAX}",
                    error_code=PROCESSING_TOO_LONG_CODE,
                )
                minutes = int(PROCESSING_MAX.total_seconds() // 60)
                raise parts.told(
                    late, f"X was still processing {what} after {minutes} minutes; not sent."
                )
        else:
            content = file.read()
            if not (upload_id and finalized is None and until and now < until - UPLOAD_MARGIN):
                upload_id = self._media_initialize(
                    account, file, parts, part, what, category, len(content)
                )
                done = parts.progress(part)
            self._media_append(account, parts, part, what, upload_id, content, done)
            info = self._media_finalize(account, parts, part, what, upload_id)
        return self._media_ready(parts, what, upload_id, info)

    def _media_initialize(
        self,
        account: ChannelAccount,
        file: OutboundFile,
        parts: ReplyParts,
        part: str,
        what: str,
        category: str,
        total_bytes: int,
    ) -> str:
        url = f"{tokens.api_base()}/2/media/upload/initialize"
        body = {
            "media_type": _base_type(file.content_type),
            "total_bytes": total_bytes,
            "media_category": category,
        }
        response = parts.call(
            part,
            "initialize",
            what,
            {"url": url, **body, "media": file_summary(file)},
            partial(self._authorized, account, url, partial(_post_json, url, body)),
        )
        data = _data(response)
        upload_id = str(data.get("id", ""))
        if not upload_id.isdigit():  # X's media ids are numbers; this one goes in URLs
            raise PermanentError(
                f"X answered the upload of “{file.filename}” without a media id: "
                f"{response.text[:200]}"
            )
        kept = _seconds(data.get("expires_after_secs"))
        until = timezone.now() + (timedelta(seconds=kept) if kept else UPLOAD_KEPT_DEFAULT)
        parts.record(
            part,
            upload_id=upload_id,
            upload_until=until.isoformat(),
            segments="0",
            finalized_at="",
            finalize_sent_at="",
        )
        return upload_id

    def _media_append(
        self,
        account: ChannelAccount,
        parts: ReplyParts,
        part: str,
        what: str,
        upload_id: str,
        content: bytes,
        done: Mapping[str, str],
    ) -> None:
        """The segments X does not have yet (an earlier attempt's are skipped)."""
        url = f"{tokens.api_base()}/2/media/upload/{upload_id}/append"
        size = SEGMENT_BYTES
        taken = int(done.get("segments") or 0)
        for index, start in enumerate(range(0, len(content), size)):
            if index < taken:
                continue
            segment = content[start : start + size]
            parts.call(
                part,
                "append",
                what,
                {"url": url, "segment_index": index, "bytes": len(segment)},
                partial(self._authorized, account, url, partial(_append, url, index, segment)),
            )
            parts.record(part, segments=str(index + 1))

    def _media_finalize(
        self, account: ChannelAccount, parts: ReplyParts, part: str, what: str, upload_id: str
    ) -> dict[str, Any]:
        url = f"{tokens.api_base()}/2/media/upload/{upload_id}/finalize"
        # An empty JSON object as the body: X refuses a finalize without one ("Request body
        # must be a JSON object.", a 400 that failed the reply).
        finalize = partial(_post_json, url, {})
        # Recorded before it goes: if its answer never comes (or the worker dies), the next
        # attempt knows X may have taken it and asks the status instead of finalizing again.
        parts.record(part, finalize_sent_at=timezone.now().isoformat())
        try:
            response = parts.call(
                part,
                "finalize",
                what,
                {"url": url},
                partial(self._authorized, account, url, finalize),
            )
        except (RetryableError, PermanentError) as exc:
            status = getattr(exc, "http_status", None)
            if status is not None and status < 500:
                # X answered (a 4xx refusal, a 429): it did not take this finalize
                parts.record(part, finalize_sent_at="")
            raise
        parts.record(part, finalized_at=timezone.now().isoformat(), finalize_sent_at="")
        return _data(response)

    def _media_after_lost_finalize(
        self,
        account: ChannelAccount,
        parts: ReplyParts,
        part: str,
        what: str,
        upload_id: str,
        done: Mapping[str, str],
    ) -> dict[str, Any] | None:
        """After a finalize whose answer never came: X's status of the media. Known to X
        (processing, succeeded, failed): it took the finalize, recorded as finalized when it
        was sent, and its answer is returned. Unknown to X (400 / 404): ``None`` after
        recording a fresh start (the caller uploads the file again from the initialize),
        or a permanent error (``x_media_upload_lost``) once ``UPLOAD_RESTARTS_MAX`` fresh
        uploads were lost the same way (a re-drive then starts afresh). Any other failure
        of the status keeps its kind, and the next attempt asks again."""
        try:
            info = self._media_status(account, parts, part, what, upload_id)
        except PermanentError as exc:
            if getattr(exc, "http_status", None) not in MEDIA_UNKNOWN_STATUSES:
                raise
        else:
            parts.record(part, finalized_at=done["finalize_sent_at"], finalize_sent_at="")
            return info
        restarts = int(done.get("restarts") or 0)
        if restarts >= UPLOAD_RESTARTS_MAX:
            # forgotten, so that a re-drive of the dead letter uploads the file afresh
            parts.record(part, restarts="0", upload_id="", segments="0", finalize_sent_at="")
            lost = PermanentError(
                f"media {upload_id} unknown to X after a lost finalize", error_code=UPLOAD_LOST_CODE
            )
            raise parts.told(
                lost,
                f"X lost {what}: the answer to its upload's finalize never came and X no "
                f"longer knows the media, {restarts + 1} times; not sent.",
            )
        logger.info(
            "X does not know media %s of message %s after a lost finalize: uploading again",
            upload_id,
            parts.message_id,
        )
        parts.record(
            part, restarts=str(restarts + 1), upload_id="", segments="0", finalize_sent_at=""
        )
        return None

    def _media_status(
        self, account: ChannelAccount, parts: ReplyParts, part: str, what: str, upload_id: str
    ) -> dict[str, Any]:
        url = f"{tokens.api_base()}/2/media/upload?command=STATUS&media_id={upload_id}"

        def status(authorization: str) -> requests.Response:
            return http_call("GET", url, headers={"Authorization": authorization})

        response = parts.call(
            part,
            "status",
            what,
            {"url": url},
            partial(self._authorized, account, url, status, method="GET"),
        )
        return _data(response)

    def _media_ready(
        self,
        parts: ReplyParts,
        what: str,
        upload_id: str,
        data: Mapping[str, Any],
    ) -> str:
        """``upload_id`` once X's answer (finalize or status) says the media is usable: no
        ``processing_info``, or ``succeeded``. Still processing: a retryable error after
        the ``check_after_secs`` X asked for; ``failed``: a permanent one, in words."""
        info = data.get("processing_info")
        if not isinstance(info, dict) or info.get("state") == PROCESSING_DONE:
            return upload_id
        state = str(info.get("state", ""))
        if state == PROCESSING_FAILED:
            error = info.get("error")
            if not isinstance(error, dict):
                error = {}
            reason = str(error.get("message") or error.get("name") or "no reason given")
            failed = PermanentError(reason, error_code=PROCESSING_FAILED_CODE)
            raise parts.told(failed, f"X could not process {what}: {reason.strip().rstrip('.')}.")
        wait = _seconds(info.get("check_after_secs"))
        progress = info.get("progress_percent")
        done = f", {progress}% done" if isinstance(progress, int) else ""
        when = f"in {wait} s, as X asked" if wait else "at the next attempt"
        pending = PendingError(
            state or "processing",
            retry_after=float(wait) if wait else None,
            error_code=PROCESSING_CODE,
        )
        logger.info(
            "X media %s of message %s still %s: checked again %s",
            upload_id,
            parts.message_id,
            state,
            when,
        )
        raise parts.told(
            pending,
            f"X is still processing {what} ({state or 'no state given'}{done}); its status "
            f"is checked again {when}.",
        )

    def _authorized(
        self,
        account: ChannelAccount,
        url: str,
        request: Callable[[str], requests.Response],
        *,
        method: str = "POST",
    ) -> requests.Response:
        """Make ``request`` (given the ``Authorization`` header) with the account's send
        credentials: OAuth 1.0a (signing ``method`` and ``url`` with its query), or the
        OAuth 2.0 token refreshed and tried once more on 401 (``tokens``)."""
        if self._send_auth(account) == "oauth1":
            return self._guarded(account, request, self._oauth1_header(account, url, method))
        token = tokens.access_token_for_send(account)
        try:
            return self._guarded(account, request, f"Bearer {token}")
        except PermanentError as exc:
            if getattr(exc, "http_status", None) != 401 or not tokens.refreshable(account):
                raise
            logger.info(
                "X refused the access token of %s (401): refreshing it",
                tokens.account_label(account),
            )
        token = tokens.access_token_refresh(account, rejected=token)
        return self._guarded(account, request, f"Bearer {token}", after_refresh=True)

    def _guarded(
        self,
        account: ChannelAccount,
        request: Callable[[str], requests.Response],
        authorization: str,
        *,
        after_refresh: bool = False,
    ) -> requests.Response:
        try:
            return request(authorization)
        except PermanentError as exc:
            if getattr(exc, "http_status", None) != 401:
                raise
            raise _unauthorized(account, exc, after_refresh=after_refresh) from exc

    def _oauth1_header(self, account: ChannelAccount, url: str, method: str = "POST") -> str:
        consumer_key = str(account.settings.get("consumer_key", ""))
        token = str(account.settings.get("oauth_token", ""))
        if not (consumer_key and token and account.consumer_secret and account.token_secret):
            raise PermanentError(
                f"{tokens.account_label(account)}: send_auth oauth1 needs the OAuth 1.0a "
                "credentials: settings consumer_key and oauth_token, and the consumer_secret "
                "and token_secret of the account."
            )
        # A JSON or multipart body is not part of the OAuth 1.0a signature base string (RFC
        # 5849 3.4.1.3); a query string is (taken from ``url``).
        return authorization_header(
            method,
            url,
            consumer_key=consumer_key,
            consumer_secret=account.consumer_secret,
            token=token,
            token_secret=account.token_secret,
        )

    def fetch_media(self, account: ChannelAccount, media: MediaRef) -> FetchedMedia:
        """DM media URLs (``ton.x.com``) only answer OAuth 1.0a user-context requests: the
        app's consumer key and secret and the account's access token and its secret."""
        consumer_key = str(account.settings.get("consumer_key", ""))
        token = str(account.settings.get("oauth_token", ""))
        if not (consumer_key and token and account.consumer_secret and account.token_secret):
            raise PermanentError(
                "X media download needs OAuth 1.0a credentials: settings consumer_key and "
                "oauth_token, and the consumer_secret and token_secret of the account."
            )
        if not media.url.startswith("https://"):
            raise PermanentError(f"X media {media.media_id or '?'} has no https URL.")
        header = authorization_header(
            "GET",
            media.url,
            consumer_key=consumer_key,
            consumer_secret=account.consumer_secret,
            token=token,
            token_secret=account.token_secret,
        )
        content, content_type = media_download(
            media.url, allowed_hosts=media_hosts(self), headers={"Authorization": header}
        )
        return FetchedMedia(
            content=content,
            content_type=content_type or media.mime_type or "application/octet-stream",
            filename=media.filename or media.url.rsplit("/", 1)[-1] or "media",
        )


def _post_json(url: str, body: dict[str, Any], authorization: str) -> requests.Response:
    return http_call("POST", url, json=body, headers={"Authorization": authorization})


def _append(url: str, index: int, segment: bytes, authorization: str) -> requests.Response:
    return http_call(
        "POST",
        url,
        data={"segment_index": str(index)},
        files={"media": ("blob", segment, "application/octet-stream")},
        headers={"Authorization": authorization},
    )


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _data(response: requests.Response) -> dict[str, Any]:
    data = _json(response).get("data")
    return data if isinstance(data, dict) else {}


def _base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _chunked_category(file: OutboundFile) -> str:
    """The media category of a file X takes by the chunked upload (GIF, video); "" for
    an image (the one-request upload)."""
    kind = _base_type(file.content_type)
    for prefix, category in CHUNKED_CATEGORIES.items():
        if kind.startswith(prefix) if prefix.endswith("/") else kind == prefix:
            return category
    return ""


def _seconds(value: Any) -> int:
    """A whole number of seconds X gave (``check_after_secs``, ``expires_after_secs``);
    0 when it gave none."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _processing(data: Mapping[str, Any]) -> str:
    """The processing state of X's answer while the media is not usable yet ("" when it is:
    no ``processing_info``, ``succeeded``, or ``failed``, which ``_media_ready`` tells)."""
    info = data.get("processing_info")
    if not isinstance(info, dict):
        return ""
    state = str(info.get("state", ""))
    return "" if state in (PROCESSING_DONE, PROCESSING_FAILED) else (state or "processing")


def _when(value: str | None) -> datetime | None:
    return parse_datetime(value) if value else None


def _dm_event_id(response: requests.Response) -> str:
    """The DM's id in X's answer to a send, "" when it names none (or is not JSON)."""
    return platform_id(_data(response).get("dm_event_id"))


def _unauthorized(
    account: ChannelAccount, exc: PermanentError, *, after_refresh: bool
) -> PermanentError:
    """X answered 401 to a send: say which account and what to do (same error kind, same
    HTTP status and body on the attempt)."""
    label = tokens.account_label(account)
    if account.settings.get("send_auth") == "oauth1":
        why = "X refused its OAuth 1.0a credentials (consumer key/secret, access token/secret)"
    elif after_refresh:
        why = "X refused the access token it had just issued by a refresh"
    elif tokens.refreshable(account):
        why = "X refused the access token"  # the caller refreshes and retries once
    else:
        why = "X refused the access token and the account has no refresh token and client id"
    error = PermanentError(
        f"{label}: {why} ({exc}). {tokens.fix_hint(account)}",
        http_status=401,
        response_text=getattr(exc, "response_text", ""),
        error_code=tokens.UNAUTHORIZED,
    )
    return error
