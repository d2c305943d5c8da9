"""Webhook endpoints (verify → record → acknowledge), the chatbot hand-off and the
web chat widget's endpoints. Thin: each calls one service.

Over ~500 lines on purpose: one thin view per endpoint of the one public HTTP surface of
the channels (webhooks, hand-off, widget), kept together so its checks (size caps, rate
limits, signatures, CORS of the widget) read side by side; no logic to split out."""

from __future__ import annotations

import functools
import logging
import secrets
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied, Throttled
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app import selectors, services, verification
from channels_app.adapters.base import (
    ChannelAdapter,
    MalformedPayload,
    SignatureError,
    WebhookRequest,
    get_adapter,
    registered_channels,
)
from channels_app.adapters.webchat.adapter import (
    MAX_TEXT,
    SESSION_HEADER,
    WEBCHAT_MESSAGE_MAX_BYTES,
    SessionExpired,
    client_id_problem,
    session_issue,
    session_read,
    visitor_send_wait,
)
from channels_app.models import ChannelAccount
from channels_app.services import handoff
from channels_app.services.survey_link import SURVEY_METADATA_KEY, survey_text_with_link
from channels_app.services.webchat_uploads import WebchatUpload, webchat_upload_receive
from support.auth.authentication import ApiKeyAuthentication
from support.auth.roles import is_agent
from support.errors import ApplicationError, NotFound, error_body
from support.parsing import UnreadableJson, contains_nul, content_length, json_loads, parse_id
from support.throttling import PerIPRateThrottle, client_ip, failures_from, hit
from tickets.attachments import attachment_file_response
from tickets.models import EMAIL_MAX_LENGTH
from tickets.selectors import message_written_on_ticket_get
from tickets.status_access import StatusGrant

logger = logging.getLogger(__name__)


class WebhookRateThrottle(PerIPRateThrottle):
    limit_setting = "CHANNELS_WEBHOOK_RATE_LIMIT_PER_MINUTE"


def _error(code: str, message: str, http_status: int) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=http_status)


def _account(channel: str, token: str) -> ChannelAccount | JsonResponse:
    if channel not in registered_channels():
        return _error("not_found", f"Unknown channel {channel!r}.", 404)
    try:
        return selectors.channel_account_get_cached(channel=channel, webhook_token=token)
    except NotFound as exc:
        return _error("not_found", exc.message, 404)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def webhook(request: HttpRequest, channel: str, token: str) -> HttpResponse:
    """``GET``: the channel's subscription handshake. ``POST``: one delivery.

    A plain Django view (not DRF) because it is the hot path: verify the signature on
    the raw body, store it, answer 200. Processing happens in a task. (Under ASGI the
    POSTs of most channels take ``channels_app.api.fastpath`` instead, the same code
    without Django's request handling.)

    A POST is refused on its ``Content-Length`` before anything else (413), then rate
    limited and matched to its account, and only then is the body read, never more than
    the channel's cap (``webhook_body_limit``).
    """
    ip = client_ip(request)  # type: ignore[arg-type]
    if request.method == "POST":
        code, payload, extra = _webhook_post_request(request, channel, token, ip)
        response = JsonResponse(payload, status=code)
        for name, value in extra.items():
            response[name] = value
        return response
    wait = _handshake_rate_limited(f"ip:{ip}")
    if wait is not None:
        return _too_many(wait)
    account = _account(channel, token)
    if isinstance(account, JsonResponse):
        return account
    wait = _handshake_rate_limited(f"account:{account.pk}")
    if wait is not None:
        return _too_many(wait)
    code, body, content_type = get_adapter(channel).handshake(account, request.GET.dict())
    return HttpResponse(body, status=code, content_type=content_type)


def webhook_account_for_request(
    channel: str, request: HttpRequest
) -> ChannelAccount | tuple[int, dict[str, Any]]:
    """The account of a webhook request that names none (seed 001's
    ``/api/webhooks/<platform>``), or the refusal (status, body): the only active account
    of the channel; else, for the GET handshake, the first whose verify token it names
    (X's CRC: the first that answers, with a warning where the answers differ); for a
    POST, among the accounts whose secret verifies it, the one whose ``external_id`` the
    payload names (``ChannelAdapter.addressed_to``: one Meta or X app signs for all its
    numbers, pages and users with one secret). Ambiguous (several, or none of them
    named): the lowest pk, as before, so nothing received is lost, with a warning. The
    caller then runs :func:`webhook` with its token, which repeats every check (rate
    limits, size, signature) as for any delivery."""
    if channel not in registered_channels():
        return 404, error_body("not_found", f"Unknown channel {channel!r}.")
    accounts = list(
        ChannelAccount.objects.filter(channel=channel, is_active=True).order_by("pk")[:50]
    )
    if not accounts:
        return 404, error_body("not_found", f"No active {channel} account.")
    if len(accounts) == 1:
        return accounts[0]
    adapter = get_adapter(channel)
    if request.method == "GET":
        return _handshake_account(channel, adapter, accounts, request.GET.dict())
    limit = webhook_body_limit(channel)
    declared = content_length(request.META.get("CONTENT_LENGTH"))
    if declared is not None and declared > limit:
        return webhook_too_large(channel)[:2]  # type: ignore[return-value]
    # Each try hashes the body (up to the cap) with one more account's secret: a caller
    # whose signatures match no account may fail API_AUTH_FAILURE_LIMIT_PER_MINUTE times a
    # minute, then gets 429 before anything is read (before: 60,000 a minute, the webhook
    # limit, each up to 50 HMACs of 1 MiB). Real deliveries match and are not counted.
    misses = failures_from(request, "webhook-seed-miss")
    if misses.over():
        return 429, error_body(
            "rate_limited", "Too many deliveries whose signature matches no account."
        )
    signed = services.webhook_request_build(
        headers=dict(request.headers), body=request.body[: limit + 1], query=request.GET.dict()
    )
    account = _signed_account(channel, adapter, accounts, signed)
    if account is None:
        misses.hit()
        return 403, error_body("invalid_signature", "The signature matches no account.")
    return account


def _handshake_account(
    channel: str, adapter: ChannelAdapter, accounts: list[ChannelAccount], query: dict[str, str]
) -> ChannelAccount | tuple[int, dict[str, Any]]:
    """The first account (lowest pk) that answers the handshake. Meta's answer is the
    challenge, the same from every account. X's CRC answer is signed with each account's
    consumer secret: where those differ, the oldest answering account's answer is given
    anyway, as before, with a warning. It is right when X's webhook belongs to that
    account; refusing instead (409, as briefly on 2026-12-07) fails X's hourly CRC for
    every account, and X then disables the webhook. Only the account's own path
    (``/api/webhooks/twitter/<webhook token>``) can be right for each of them."""
    answering = []
    for account in accounts:
        code, body, _ = adapter.handshake(account, query)
        if code == 200:
            answering.append((account, body))
    if not answering:
        return 403, error_body("forbidden", "No account matches this handshake.")
    chosen = answering[0][0]
    if len({body for _, body in answering}) > 1:
        logger.warning(
            "%s handshake without a token: accounts %s answer it differently (different "
            "secrets); answered as account %s, which may be wrong for the others. Point "
            "the platform at each account's own /api/webhooks/%s/<webhook token>.",
            channel,
            ", ".join(str(account.pk) for account, _ in answering),
            chosen.pk,
            channel,
        )
    return chosen


def _signed_account(
    channel: str, adapter: ChannelAdapter, accounts: list[ChannelAccount], signed: WebhookRequest
) -> ChannelAccount | None:
    """Among ``accounts`` (in pk order), the one a POST is for: see
    :func:`webhook_account_for_request`. None: no account's secret verifies it.

    The accounts the payload names are verified first: when exactly one of them verifies,
    it is the answer whatever the others would say, so theirs cost no HMAC (the usual case
    of one app's numbers or pages sharing its secret: one HMAC)."""
    named = adapter.addressed_to(signed)
    is_named = [bool(account.external_id) and account.external_id in named for account in accounts]
    verified = _verifying(
        adapter, [a for a, n in zip(accounts, is_named, strict=True) if n], signed
    )
    if not verified:
        # None of the named: the one that verifies, whatever it names (ambiguous where
        # several do).
        verified = _verifying(
            adapter, [a for a, n in zip(accounts, is_named, strict=True) if not n], signed
        )
    if not verified:
        return None
    chosen = verified[0]
    if len(verified) > 1 or len(named) > 1:
        _choice_warn(channel, named, verified, chosen)
    return chosen


def _verifying(
    adapter: ChannelAdapter, accounts: list[ChannelAccount], signed: WebhookRequest
) -> list[ChannelAccount]:
    verified = []
    for account in accounts:
        try:
            adapter.verify(account, signed)
        except SignatureError:
            continue
        verified.append(account)
    return verified


#: The most ids (and accounts) one warning names, each cut to ``LOGGED_ID_MAX`` characters.
LOGGED_IDS_MAX = 10
LOGGED_ID_MAX = 64


def _choice_warn(
    channel: str, named: frozenset[str], verified: list[ChannelAccount], chosen: ChannelAccount
) -> None:
    """Say why a delivery without a token went where it did (ids only: no secret, no
    text): several accounts it verifies for could be meant, or it names several."""
    ids = ", ".join(repr(i[:LOGGED_ID_MAX]) for i in sorted(named)[:LOGGED_IDS_MAX]) or "no id"
    candidates = ", ".join(
        f"{account.pk} (external_id {account.external_id[:LOGGED_ID_MAX]!r})"
        for account in verified[:LOGGED_IDS_MAX]
    )
    if len(named) > 1:
        why = (
            "one delivery naming several accounts is recorded once, under one of them "
            "(docs/channels.md)"
        )
    else:
        why = (
            "set each account's external_id, or point the platform at "
            f"/api/webhooks/{channel}/<webhook token>"
        )
    logger.warning(
        "%s webhook without a token: the delivery names %s (%d) and verifies for accounts "
        "%s; recorded under account %d: %s.",
        channel,
        ids,
        len(named),
        candidates,
        chosen.pk,
        why,
    )


def _too_many(wait: float) -> JsonResponse:
    response = _error("rate_limited", "Too many webhook requests.", 429)
    response["Retry-After"] = str(int(wait))
    return response


def _handshake_rate_limited(who: str) -> float | None:
    """Handshakes (X's CRC signs what it is given) have a much lower limit than POSTs."""
    return hit(f"handshake-{who}", int(settings.CHANNELS_HANDSHAKE_RATE_LIMIT_PER_MINUTE))


def _webhook_post_request(
    request: HttpRequest, channel: str, token: str, ip: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    limit = webhook_body_limit(channel)
    length = content_length(request.META.get("CONTENT_LENGTH"))
    if length is not None and length > limit:
        return webhook_too_large(channel)
    admitted = webhook_admit(channel, token, ip=ip)
    if not isinstance(admitted, ChannelAccount):
        return admitted
    # Read at most one byte past the cap: a body without Content-Length (chunked, under
    # the ASGI handler) cannot make us hold more than that.
    body = request.read(limit + 1)
    if len(body) > limit:
        return webhook_too_large(channel)
    if channel == "webchat":
        limited = _webchat_send_limited(
            admitted,
            request.headers.get(SESSION_HEADER, ""),
            client_ip(request),  # type: ignore[arg-type]
        )
        if limited is not None:
            return limited
    return webhook_record(
        admitted, headers=dict(request.headers), body=body, query=request.GET.dict()
    )


def _webchat_send_limited(account: ChannelAccount, session: str, ip: str) -> Result | None:
    """A visitor's messages POSTed over HTTP count in its socket's buckets (the session's
    and the address's, ``visitor_send_wait``): before, only the per-address webhook limit
    (60,000 a minute) applied, so one session could post a message every millisecond.
    A session that does not verify is refused by ``webhook_record``, uncounted."""
    try:
        claims = session_read(account, session)
    except SignatureError:
        return None
    wait = visitor_send_wait(claims["v"], ip)
    if wait is None:
        return None
    return (
        429,
        error_body("rate_limited", "Too many messages; wait a moment before sending more."),
        {"Retry-After": str(int(wait))},
    )


def _rate_limited(ip: str) -> float | None:
    return hit(f"webhook-ip:{ip}", int(settings.CHANNELS_WEBHOOK_RATE_LIMIT_PER_MINUTE))


Result = tuple[int, dict[str, Any], dict[str, str]]


def webhook_body_limit(channel: str) -> int:
    """The largest body a channel's webhook accepts: e-mail (whole messages with their
    attachments, ``CHANNELS_EMAIL_WEBHOOK_MAX_BYTES``), a web chat message (64 KiB: any
    visitor's session can post, and the raw body is stored whole) or JSON events
    (``CHANNELS_WEBHOOK_MAX_BYTES``, about 1 MB)."""
    if channel == "email":
        return int(settings.CHANNELS_EMAIL_WEBHOOK_MAX_BYTES)
    if channel == "webchat":
        return min(WEBCHAT_MESSAGE_MAX_BYTES, int(settings.CHANNELS_WEBHOOK_MAX_BYTES))
    return int(settings.CHANNELS_WEBHOOK_MAX_BYTES)


def webhook_too_large(channel: str) -> Result:
    limit = webhook_body_limit(channel)
    return (
        413,
        error_body(
            "too_large",
            f"The body is larger than {limit} bytes, the most a {channel} webhook delivery may be.",
            {"max_bytes": limit},
        ),
        {},
    )


def webhook_admit(channel: str, token: str, *, ip: str) -> ChannelAccount | Result:
    """Before a body is read: the rate limit, then the account its token names
    (the account, or the refusal to send: 429 / 404)."""
    wait = _rate_limited(ip)
    if wait is not None:
        return (
            429,
            error_body("rate_limited", "Too many webhook requests."),
            {"Retry-After": str(int(wait))},
        )
    if channel not in registered_channels():
        return 404, error_body("not_found", f"Unknown channel {channel!r}."), {}
    try:
        return selectors.channel_account_get_cached(channel=channel, webhook_token=token)
    except NotFound as exc:
        return 404, error_body("not_found", exc.message), {}


def webhook_record(
    account: ChannelAccount, *, headers: dict[str, str], body: bytes, query: dict[str, str]
) -> Result:
    """A read body: verify, record; (status, JSON, headers)."""
    webhook_request = services.webhook_request_build(headers=headers, body=body, query=query)
    try:
        event, created = services.inbound_receive(account=account, request=webhook_request)
    except SignatureError as exc:
        return exc.status, error_body("invalid_signature", str(exc)), {}
    except MalformedPayload as exc:
        return 400, error_body("malformed_payload", str(exc)), {}
    return 200, {"status": "accepted" if created else "duplicate", "id": event.pk}, {}


def webhook_post(
    channel: str,
    token: str,
    *,
    headers: dict[str, str],
    body: bytes,
    query: dict[str, str],
    ip: str,
) -> Result:
    """One POSTed delivery whose body is already in hand: rate limit, account, size,
    verify, record; (status, JSON, headers). The view and the ASGI fast path run the
    same steps, with the body read only after ``webhook_admit``."""
    admitted = webhook_admit(channel, token, ip=ip)
    if not isinstance(admitted, ChannelAccount):
        return admitted
    if len(body) > webhook_body_limit(channel):
        return webhook_too_large(channel)
    return webhook_record(admitted, headers=headers, body=body, query=query)


# --- chatbot hand-off ---------------------------------------------------------------------


class ChatbotHandoffSerializer(serializers.Serializer):
    source = serializers.CharField(max_length=100)  # type: ignore[assignment]
    customer_email = serializers.EmailField(max_length=EMAIL_MAX_LENGTH)
    customer_name = serializers.CharField(max_length=200, required=False, default="")
    subject = serializers.CharField(max_length=255)
    initial_message = serializers.CharField(max_length=20000)
    session_id = serializers.CharField(max_length=255)
    transcript = serializers.ListField(
        child=serializers.DictField(), required=False, allow_empty=True, max_length=500
    )
    callback_url = serializers.CharField(
        max_length=2048,
        required=False,
        default="",
        allow_blank=True,
        help_text="Where agents' replies are also POSTed, signed, with their files' "
        "download URLs (signed hand-offs only; https, public addresses only; "
        "docs/channels.md#chatbot-hand-off).",
    )

    def validate_transcript(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if contains_nul(value):  # stored as jsonb, which cannot hold NUL
            raise serializers.ValidationError("Null characters are not allowed.")
        return value


def _chatbot_hmac_account(request: Request) -> ChannelAccount | Response | None:
    """None: no signature given; the account whose secret signed the body (with
    ``X-Signature-Timestamp``: ``"<timestamp>." + body``, the timestamp fresh); else the
    refusal: 401 for a stale timestamp, or none where the account requires one; 403 for a
    signature no active chatbot account made."""
    given = request.META.get("HTTP_X_SIGNATURE_256", "")
    if not given:
        return None
    # before the body is read and hashed with every chatbot account's secret (review
    # 2026-12-07: forged signatures were answered 403 at the webhook limit, 60,000 a minute)
    misses = failures_from(request, "handoff-miss")
    if misses.over():
        return Response(
            error_body("rate_limited", "Too many hand-offs whose signature matches no account."),
            status=429,
        )
    timestamp = request.headers.get(handoff.TIMESTAMP_HEADER)
    if timestamp is not None:
        if not handoff.signature_timestamp_fresh(timestamp):
            return Response(
                error_body(
                    "stale_signature",
                    f"{handoff.TIMESTAMP_HEADER} must be Unix seconds within "
                    f"{settings.CHATBOT_SIGNATURE_MAX_AGE_SECONDS} s of now.",
                ),
                status=401,
            )
        account = handoff.chatbot_account_for_signature(
            given, payload=request.body, timestamp=timestamp
        )
    else:
        account = handoff.chatbot_account_for_signature(given, payload=request.body)
        if account is not None and handoff.handoff_requires_timestamp(account):
            return Response(
                error_body(
                    "timestamp_required",
                    f"This chatbot account requires {handoff.TIMESTAMP_HEADER} and "
                    f'{handoff.SIGNATURE_HEADER}: sha256=<HMAC of "<timestamp>." + body>.',
                ),
                status=401,
            )
    if account is None:
        misses.hit()
        return Response(
            error_body("invalid_signature", f"{handoff.SIGNATURE_HEADER} does not match."),
            status=403,
        )
    return account


def chatbot_status_access(request: HttpRequest, ticket_ref: str) -> StatusGrant | None:
    """``GET /api/tickets/{id}/status`` signed by the bot that handed the ticket off
    (registered in ``tickets.status_access``): ``X-Signature-Timestamp`` and
    ``X-Signature-256: sha256=<HMAC(secret, "<timestamp>.GET <path>")>``. No signature:
    None (the usual authentication applies); stale or missing timestamp 401, no account's
    signature 403; another bot's (or no bot's) ticket 404, as if it did not exist. The
    grant lists the last reply's files as the callback does, with fresh URLs signed with
    this account's secret (``handoff.handoff_reply_files``)."""
    given = request.headers.get(handoff.SIGNATURE_HEADER, "")
    if not given:
        return None
    # counted with the hand-offs' misses (the same secrets guessed): before, forged polls
    # were limited only by the API's per-address rate, each hashed with every secret
    misses = failures_from(request, "handoff-miss")
    if misses.over():
        raise Throttled(detail="Too many requests whose signature matches no account.")
    timestamp = request.headers.get(handoff.TIMESTAMP_HEADER, "")
    if not handoff.signature_timestamp_fresh(timestamp):
        raise AuthenticationFailed(
            f"{handoff.TIMESTAMP_HEADER} is missing or more than "
            f"{settings.CHATBOT_SIGNATURE_MAX_AGE_SECONDS} s away from now."
        )
    payload = f"{request.method} {request.path}".encode()
    account = handoff.chatbot_account_for_signature(given, payload=payload, timestamp=timestamp)
    if account is None:
        misses.hit()
        raise PermissionDenied(f"{handoff.SIGNATURE_HEADER} does not match.")
    ticket = handoff.handoff_ticket_for_account(ticket_ref, account=account)
    if ticket is None:
        raise NotFound(f"No ticket {ticket_ref!r}.")
    return StatusGrant(
        ticket=ticket,
        via="chatbot_status_access",
        reply_files=functools.partial(handoff.handoff_reply_files, account=account),
    )


class ChatbotHandoffApi(APIView):
    """A bot hands a conversation to people: a ticket flagged ``is_bot_handoff``.

    Authenticated by an agent's API key, or by ``X-Signature-256: sha256=<hex HMAC of the
    body>`` with a chatbot channel account's app secret (with ``X-Signature-Timestamp``:
    of ``"<timestamp>." + body``, required where the account says so). 201 with a new
    ticket; 200 with the session's ticket for a replay (nothing added) or for a later
    hand-off added to it while it is open (``services.chatbot_handoff``).
    """

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [AllowAny]
    throttle_classes = [WebhookRateThrottle]

    @extend_schema(
        operation_id="chatbot_handoff",
        request=ChatbotHandoffSerializer,
        responses={201: OpenApiTypes.OBJECT, 200: OpenApiTypes.OBJECT},
        examples=[
            OpenApiExample(
                "hand-off",
                request_only=True,
                value={
                    "source": "faq-bot",
                    "customer_email": "ada@example.com",
                    "customer_name": "Ada Lovelace",
                    "subject": "Needs a person",
                    "initial_message": "The bot could not help with my refund.",
                    "session_id": "bot-session-1",
                    "transcript": [{"from": "customer", "text": "refund?"}],
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        # Before the body is read and hashed with every chatbot account's secret: anyone
        # could send 25 MiB (DATA_UPLOAD_MAX_MEMORY_SIZE) with any X-Signature-256.
        limit = int(settings.CHANNELS_WEBHOOK_MAX_BYTES)
        declared = content_length(request.META.get("CONTENT_LENGTH"))
        if declared is not None and declared > limit:
            return Response(
                error_body(
                    "too_large",
                    f"The body is larger than {limit} bytes, the most a hand-off may be.",
                    {"max_bytes": limit},
                ),
                status=413,
            )
        signed = _chatbot_hmac_account(request)
        if isinstance(signed, Response):
            return signed
        if signed is None and request.auth is not None and not is_agent(request.user):
            # A valid key whose role may not hand off (an integration key, a non-agent's).
            return Response(
                error_body("permission_denied", "This API key may not hand off to agents."),
                status=403,
            )
        if signed is None and request.auth is None:
            return Response(
                error_body(
                    "not_authenticated",
                    "Send an agent API key or an X-Signature-256 HMAC of the body.",
                ),
                status=401,
            )
        serializer = ChatbotHandoffSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        account = signed if isinstance(signed, ChannelAccount) else None
        ticket, created = services.chatbot_handoff(
            **serializer.validated_data,
            account=account,
            api_key_id=None if account is not None else request.auth.pk,
        )
        return Response(
            {
                "ticket_id": ticket.pk,
                "number": ticket.number,
                "status": ticket.status,
                "is_bot_handoff": ticket.is_bot_handoff,
                "status_url": f"/api/tickets/{ticket.pk}/status",
            },
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


# --- web chat widget ----------------------------------------------------------------------


#: The largest body the widget's own endpoints read (a name, an address, a code); its
#: messages go through the webhook and its cap (``webhook_body_limit``).
WIDGET_BODY_MAX_BYTES = 16_384


@require_http_methods(["GET"])
def chatbot_file(request: HttpRequest, attachment_id: int) -> HttpResponseBase:
    """A file of an agent's reply, for the hand-off bot whose callback listed it: the URL
    the callback gave (``?expires=…&signature=…``, each once), signed with that chatbot
    account's secret and valid a few minutes (``handoff.handoff_file_for_url``), always as
    a download (``nosniff``, ``sandbox``). Anything else (a forged, altered, expired or
    another bot's URL, a file of an internal note, of the customer, of any other ticket) is
    the same 404, so nothing says whether a file exists; past
    ``API_AUTH_FAILURE_LIMIT_PER_MINUTE`` of those a minute from one address, 429 before
    anything is looked up (review 2026-12-07: each try is a query and one HMAC per bot)."""
    misses = failures_from(request, "handoff-file-miss")
    if misses.over():
        return _error("rate_limited", "Too many file URLs that match no file.", 429)
    expires, signature = request.GET.getlist("expires"), request.GET.getlist("signature")
    attachment = None
    if len(expires) == 1 and len(signature) == 1:
        attachment = handoff.handoff_file_for_url(
            attachment_id, expires=expires[0], signature=signature[0]
        )
    if attachment is None:
        misses.hit()
        return _error("not_found", "No such file.", 404)
    return attachment_file_response(attachment, private=True)


def _json(request: HttpRequest) -> dict[str, Any] | JsonResponse:
    """The body's JSON object, or the 400 ``malformed_payload`` that says what is wrong
    (413 past ``WIDGET_BODY_MAX_BYTES``, refused on its ``Content-Length`` before it is
    read; before, these anonymous endpoints read and parsed up to 25 MiB)."""
    too_large = _error(
        "too_large",
        f"The body is larger than {WIDGET_BODY_MAX_BYTES} bytes.",
        413,
    )
    declared = content_length(request.META.get("CONTENT_LENGTH"))
    if declared is not None and declared > WIDGET_BODY_MAX_BYTES:
        return too_large
    body = request.read(WIDGET_BODY_MAX_BYTES + 1)
    if len(body) > WIDGET_BODY_MAX_BYTES:
        return too_large
    try:
        data = json_loads(body or b"{}")
    except UnreadableJson as exc:
        return _error("malformed_payload", str(exc), 400)
    if not isinstance(data, dict):
        return _error("malformed_payload", "The body is not a JSON object.", 400)
    return data


@csrf_exempt
@require_http_methods(["POST"])
def webchat_session(request: HttpRequest, token: str) -> HttpResponse:
    """Start a visitor session: name and email in, a signed session token out.

    The email is only a claim (see ``channels_app.adapters.webchat``): the visitor is a
    guest until it proves the address through the verify endpoints below."""
    wait = hit(f"webchat-ip:{client_ip(request)}", 60)  # type: ignore[arg-type]
    if wait is not None:
        return _error("rate_limited", "Too many chat sessions from this address.", 429)
    account = _account("webchat", token)
    if isinstance(account, JsonResponse):
        return account
    data = _json(request)
    if isinstance(data, JsonResponse):
        return data
    name, email = data.get("name", ""), data.get("email", "")
    if not isinstance(name, str) or not isinstance(email, str):
        # str() made a list or an object the visitor's "name" (and a claimed address)
        return _error("invalid", "name and email must be strings.", 400)
    name, email = name.strip(), email.strip()
    if not name or "@" not in email:
        return _error("invalid", "name and a valid email are required.", 400)
    if contains_nul(name) or contains_nul(email):
        # Nothing is received yet: the visitor is told, rather than a NUL signed into the
        # session (messages keep what they carry: NUL there becomes U+FFFD, see
        # channels_app.adapters.base).
        return _error("invalid", "name and email may not contain NUL characters.", 400)
    issued = session_issue(account, name=name, email=email)
    return JsonResponse(
        {
            **issued,
            "messages_url": f"/api/webhooks/webchat/{token}",
            "poll_url": f"/api/webchat/{token}/messages",
            "verify_url": f"/api/webchat/{token}/verify",
            "upload_url": f"/api/webchat/{token}/files",
            "upload_max_bytes": int(settings.WEBCHAT_UPLOAD_MAX_BYTES),
            "verify_confirm_url": f"/api/webchat/{token}/verify/confirm",
            "ws_path": f"/ws/webchat/{token}/",
        },
        status=201,
    )


def _webchat_session(
    request: HttpRequest, token: str
) -> tuple[ChannelAccount, dict[str, Any]] | JsonResponse:
    """The widget account and the visitor's session claims, or the error to answer
    (404 unknown widget; 401 missing or expired session; 403 forged or another widget's)."""
    account = _account("webchat", token)
    if isinstance(account, JsonResponse):
        return account
    try:
        return account, session_read(account, request.headers.get(SESSION_HEADER, ""))
    except SignatureError as exc:
        code = "session_expired" if isinstance(exc, SessionExpired) else "invalid_session"
        return _error(code, str(exc), exc.status)


@csrf_exempt
@require_http_methods(["GET"])
def webchat_messages(request: HttpRequest, token: str) -> HttpResponse:
    """The polling fallback: the visitor's conversation after message id ``after``.
    At most ``WEBCHAT_POLL_RATE_LIMIT_PER_MINUTE`` polls a minute per session and
    ``WEBCHAT_POLL_IP_RATE_LIMIT_PER_MINUTE`` per address (429 with ``Retry-After``)."""
    session = _polled_session(request, token)
    if isinstance(session, JsonResponse):
        return session
    account, claims = session
    after = request.GET.get("after", "0")
    messages = selectors.webchat_messages(
        visitor_id=claims["v"], account_id=account.pk, after_id=parse_id(after) or 0
    )
    return JsonResponse({"messages": [webchat_message_json(m) for m in messages]})


@csrf_exempt
@require_http_methods(["GET"])
def webchat_file(request: HttpRequest, token: str, attachment_id: int) -> HttpResponseBase:
    """A file an agent sent to this visitor, for its own session (``X-Webchat-Session``):
    only files of the outbound public messages of the visitor's own conversation
    (``selectors.webchat_file_get``), always as a download (``nosniff``, ``sandbox``).
    Anything else, a missing, forged or expired session included, is the same 404, so
    nothing says whether a file exists. Rate limited as polling is (per address before
    the session is read, per session after)."""
    missing = _error("not_found", "No such file.", 404)
    session = _polled_session(request, token, refused=missing)
    if isinstance(session, JsonResponse):
        return session
    _, claims = session
    attachment = selectors.webchat_file_get(visitor_id=claims["v"], attachment_id=attachment_id)
    if attachment is None:
        return missing
    return attachment_file_response(attachment, private=True)


@csrf_exempt
@require_http_methods(["POST"])
def webchat_upload(request: HttpRequest, token: str) -> HttpResponse:
    """A file from the visitor (multipart: ``file``, optional ``text`` and ``client_id``),
    for its own session (``X-Webchat-Session``), as a message of its chat.

    Refused before the body is read: a ``Content-Length`` over ``WEBCHAT_UPLOAD_MAX_BYTES``
    (413), then an unknown widget (404) or a missing, expired (401) or forged (403)
    session, then no ``Content-Length`` (400), then over the limits (429: uploads per
    session and per address an hour, and the visitor's message limits). Then an empty
    file or a type outside the safe list is 400. The file is stored and its event
    recorded before the 202
    (``webchat_upload_receive``): a file acknowledged is never lost."""
    cap = int(settings.WEBCHAT_UPLOAD_MAX_BYTES)
    declared = content_length(request.META.get("CONTENT_LENGTH"))
    if declared is not None and declared > cap:
        return _error("too_large", f"The file is larger than {cap} bytes.", 413)
    session = _webchat_session(request, token)
    if isinstance(session, JsonResponse):
        return session
    if declared is None:
        return _error("length_required", "Send the file with a Content-Length header.", 400)
    account, claims = session
    limited = _upload_rate_limited(request, claims["v"])
    if limited is not None:
        return limited
    try:
        file = request.FILES.get("file")
        text = request.POST.get("text", "")
        client_id = request.POST.get("client_id", "") or f"up-{secrets.token_hex(12)}"
    except (MultiPartParserError, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent) as exc:
        return _error("malformed_payload", f"The upload could not be read: {exc}", 400)
    if file is None:
        return _error("malformed_payload", "Send one file in the 'file' field.", 400)
    if file.size is None or file.size > cap:
        return _error("too_large", f"The file is larger than {cap} bytes.", 413)
    if len(text) > MAX_TEXT or contains_nul(text):
        return _error("invalid", f"'text' is at most {MAX_TEXT} characters, without NUL.", 400)
    problem = client_id_problem(client_id)  # the message's rule, before the file is stored
    if problem:
        return _error("invalid", problem, 400)
    upload = WebchatUpload(
        file=file,
        filename=file.name or "",
        size=file.size,
        text=text.strip(),
        client_id=client_id,
    )
    try:
        event, created = webchat_upload_receive(
            account=account,
            visitor_id=claims["v"],
            session=request.headers.get(SESSION_HEADER, ""),
            upload=upload,
        )
    except SignatureError as exc:
        return _error("invalid_session", str(exc), exc.status)
    except MalformedPayload as exc:
        return _error("malformed_payload", str(exc), 400)
    return JsonResponse(
        {
            "status": "accepted" if created else "duplicate",
            "id": event.pk,
            "client_id": client_id,
        },
        status=202,
    )


def _upload_rate_limited(request: HttpRequest, visitor_id: str) -> JsonResponse | None:
    """Uploads per session and per address an hour, then the visitor's message limits
    (a file is a message too: ``visitor_send_wait``)."""
    ip = client_ip(request)  # type: ignore[arg-type]
    for bucket, limit in (
        (f"webchat-upload-session:{visitor_id}", settings.WEBCHAT_UPLOADS_PER_SESSION_PER_HOUR),
        (f"webchat-upload-ip:{ip}", settings.WEBCHAT_UPLOADS_PER_IP_PER_HOUR),
    ):
        wait = hit(bucket, int(limit), 3600)
        if wait is not None:
            break
    else:
        wait = visitor_send_wait(visitor_id, ip)
    if wait is None:
        return None
    response = _error("rate_limited", "Too many files; wait before sending more.", 429)
    response["Retry-After"] = str(int(wait))
    return response


def _polled_session(
    request: HttpRequest, token: str, *, refused: JsonResponse | None = None
) -> tuple[ChannelAccount, dict[str, Any]] | JsonResponse:
    """The session of a poll-like read (messages, a file): the address's poll limit before
    the session is read, the session's after (429 with ``Retry-After``); a session refused
    answers ``refused`` when given (a file: the same 404 as a missing one), else its own
    refusal."""
    limited = _poll_rate_limited(request, None)
    if limited is not None:
        return limited
    session = _webchat_session(request, token)
    if isinstance(session, JsonResponse):
        return refused if refused is not None else session
    limited = _poll_rate_limited(request, session[1]["v"])
    return limited if limited is not None else session


def _poll_rate_limited(request: HttpRequest, visitor_id: str | None) -> JsonResponse | None:
    """The address's poll limit (``visitor_id`` None, before the session is read) or the
    session's (after)."""
    if visitor_id is None:
        bucket = f"webchat-poll-ip:{client_ip(request)}"  # type: ignore[arg-type]
        limit = int(settings.WEBCHAT_POLL_IP_RATE_LIMIT_PER_MINUTE)
    else:
        bucket = f"webchat-poll-session:{visitor_id}"
        limit = int(settings.WEBCHAT_POLL_RATE_LIMIT_PER_MINUTE)
    wait = hit(bucket, limit)
    if wait is None:
        return None
    response = _error("rate_limited", "Too many polls; wait before polling again.", 429)
    response["Retry-After"] = str(int(wait))
    return response


def _verify_rate_limited(request: HttpRequest, visitor_id: str) -> JsonResponse | None:
    ip = client_ip(request)  # type: ignore[arg-type]
    for bucket, limit, window in (
        (f"webchat-verify-ip:{ip}", 30, 60),
        (f"webchat-verify-session:{visitor_id}", 10, 60),
        # A new session per request gets round the per-session and per-address limits:
        # without this one, one address could have ~1,800 codes an hour mailed to others.
        (f"webchat-verify-ip-hour:{ip}", settings.WEBCHAT_VERIFY_REQUESTS_PER_IP_PER_HOUR, 3600),
    ):
        wait = hit(bucket, limit, window)
        if wait is not None:
            response = _error("rate_limited", "Too many verification requests.", 429)
            response["Retry-After"] = str(int(wait))
            return response
    return None


def _application_error(exc: ApplicationError) -> JsonResponse:
    return _error(exc.code, exc.message, exc.http_status)


@csrf_exempt
@require_http_methods(["POST"])
def webchat_verify(request: HttpRequest, token: str) -> HttpResponse:
    """Send a one-time code to the visitor's address (``{"email": …}``, default: the one
    typed at the start) through the email channel. 202 when queued; 409
    ``email_channel_unavailable`` when no email channel can send (nothing linked)."""
    session = _webchat_session(request, token)
    if isinstance(session, JsonResponse):
        return session
    account, claims = session
    limited = _verify_rate_limited(request, claims["v"])
    if limited is not None:
        return limited
    data = _json(request)
    if isinstance(data, JsonResponse):
        return data
    given = data.get("email")
    if given is not None and not isinstance(given, str):
        return _error("invalid", "email must be a string.", 400)
    email = str(given or claims.get("e") or "")
    try:
        sent = verification.webchat_verification_request(
            account=account, visitor_id=claims["v"], email=email
        )
    except ApplicationError as exc:
        return _application_error(exc)
    return JsonResponse(
        {
            "status": "sending",
            "email": sent.email,
            "expires_in": int(settings.WEBCHAT_VERIFY_CODE_TTL_SECONDS),
        },
        status=202,
    )


@csrf_exempt
@require_http_methods(["POST"])
def webchat_verify_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """Check the code (``{"code": "123456"}``): the chat is then linked to the customer
    with that address (the guest customer merged into it), 200."""
    session = _webchat_session(request, token)
    if isinstance(session, JsonResponse):
        return session
    account, claims = session
    limited = _verify_rate_limited(request, claims["v"])
    if limited is not None:
        return limited
    data = _json(request)
    if isinstance(data, JsonResponse):
        return data
    code = str(data.get("code", "")).strip()
    if not code.isascii() or not code.isdigit():
        return _error("invalid_code", "'code' is the number from the email.", 400)
    try:
        verification.webchat_verification_confirm(
            account=account, visitor_id=claims["v"], name=str(claims.get("n", "")), code=code
        )
    except ApplicationError as exc:
        return _application_error(exc)
    return JsonResponse({"status": "verified"})


def webchat_message_json(message: Any) -> dict[str, Any]:
    text = message.body_text
    if SURVEY_METADATA_KEY in (message.metadata or {}):
        # the visitor's own survey: its link, as it was pushed (never stored)
        written_on = message_written_on_ticket_get(message=message)
        if written_on is not None:
            text = survey_text_with_link(message, ticket=written_on)
    data = {
        "id": message.pk,
        "from": "visitor" if message.direction == "inbound" else "agent",
        "text": text,
        "client_id": (message.channel_message_id or "").partition(":")[2]
        if message.direction == "inbound"
        else "",
        "at": message.created_at.isoformat(),
    }
    # the files an agent sent, and the visitor's own: the widget fetches each from
    # api-webchat-file
    if message.direction in ("outbound", "inbound"):
        data["files"] = [
            webchat_file_json(a.pk, a.filename, a.content_type, a.size)
            for a in message.attachments.all()
            if a.file
        ]
    return data


def webchat_file_json(attachment_id: int, name: str, content_type: str, size: int) -> Any:
    return {"id": attachment_id, "name": name, "type": content_type, "size": size}


__all__ = [
    "ChatbotHandoffApi",
    "chatbot_file",
    "webchat_file",
    "webchat_messages",
    "webchat_session",
    "webchat_upload",
    "webchat_verify",
    "webchat_verify_confirm",
    "webhook",
]
