"""Webhook endpoints (verify → record → acknowledge), the chatbot hand-off and the
web chat widget's endpoints. Thin: each calls one service."""

from __future__ import annotations

import functools
import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app import selectors, services
from channels_app.adapters.base import (
    MalformedPayload,
    SignatureError,
    constant_time_equal,
    get_adapter,
    registered_channels,
)
from channels_app.adapters.meta.common import meta_signature
from channels_app.adapters.webchat.adapter import SESSION_HEADER, session_issue, session_read
from channels_app.models import ChannelAccount
from support.auth.authentication import ApiKeyAuthentication
from support.auth.roles import is_agent
from support.errors import NotFound, error_body
from support.parsing import contains_nul, parse_id
from support.throttling import PerIPRateThrottle, client_ip, hit


class WebhookRateThrottle(PerIPRateThrottle):
    limit_setting = "CHANNELS_WEBHOOK_RATE_LIMIT_PER_MINUTE"


def _cors(response: HttpResponse) -> HttpResponse:
    """The widget runs on customers' sites; sessions travel in a header, never cookies."""
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Allow-Headers"] = "Content-Type, X-Webchat-Session"
    response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    response["Access-Control-Max-Age"] = "600"
    return response


def webchat_cors(view: Any) -> Any:
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "OPTIONS":
            return _cors(HttpResponse(status=204))
        response = view(request, *args, **kwargs)
        if kwargs.get("channel", "webchat") == "webchat":
            _cors(response)
        return response

    return csrf_exempt(wrapper)


def _error(code: str, message: str, http_status: int) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=http_status)


def _account(channel: str, token: str) -> ChannelAccount | JsonResponse:
    if channel not in registered_channels():
        return _error("not_found", f"Unknown channel {channel!r}.", 404)
    try:
        return selectors.channel_account_get_cached(channel=channel, webhook_token=token)
    except NotFound as exc:
        return _error("not_found", exc.message, 404)


@webchat_cors
@require_http_methods(["GET", "POST"])
def webhook(request: HttpRequest, channel: str, token: str) -> HttpResponse:
    """``GET``: the channel's subscription handshake. ``POST``: one delivery.

    A plain Django view (not DRF) because it is the hot path: verify the signature on
    the raw body, store it, answer 200. Processing happens in a task. (Under ASGI the
    POSTs of most channels take ``channels_app.api.fastpath`` instead, the same code
    without Django's request handling.)
    """
    if request.method == "POST":
        code, payload, extra = webhook_post(
            channel,
            token,
            headers=dict(request.headers),
            body=request.body,
            query=request.GET.dict(),
            ip=client_ip(request),  # type: ignore[arg-type]
        )
        response = JsonResponse(payload, status=code)
        for name, value in extra.items():
            response[name] = value
        return response
    wait = _rate_limited(client_ip(request))  # type: ignore[arg-type]
    if wait is not None:
        response = _error("rate_limited", "Too many webhook requests.", 429)
        response["Retry-After"] = str(int(wait))
        return response
    account = _account(channel, token)
    if isinstance(account, JsonResponse):
        return account
    code, body, content_type = get_adapter(channel).handshake(account, request.GET.dict())
    return HttpResponse(body, status=code, content_type=content_type)


def _rate_limited(ip: str) -> float | None:
    return hit(f"webhook-ip:{ip}", int(settings.CHANNELS_WEBHOOK_RATE_LIMIT_PER_MINUTE))


def webhook_post(
    channel: str,
    token: str,
    *,
    headers: dict[str, str],
    body: bytes,
    query: dict[str, str],
    ip: str,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One POSTed delivery: rate limit, account, verify, record; (status, JSON, headers).
    Shared by the view and the ASGI fast path."""
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
        account = selectors.channel_account_get_cached(channel=channel, webhook_token=token)
    except NotFound as exc:
        return 404, error_body("not_found", exc.message), {}
    webhook_request = services.webhook_request_build(headers=headers, body=body, query=query)
    try:
        event, created = services.inbound_receive(account=account, request=webhook_request)
    except SignatureError as exc:
        return exc.status, error_body("invalid_signature", str(exc)), {}
    except MalformedPayload as exc:
        return 400, error_body("malformed_payload", str(exc)), {}
    return 200, {"status": "accepted" if created else "duplicate", "id": event.pk}, {}


# --- chatbot hand-off ---------------------------------------------------------------------


class ChatbotHandoffSerializer(serializers.Serializer):
    source = serializers.CharField(max_length=100)  # type: ignore[assignment]
    customer_email = serializers.EmailField()
    customer_name = serializers.CharField(max_length=200, required=False, default="")
    subject = serializers.CharField(max_length=255)
    initial_message = serializers.CharField(max_length=20000)
    session_id = serializers.CharField(max_length=255)
    transcript = serializers.ListField(
        child=serializers.DictField(), required=False, allow_empty=True, max_length=500
    )

    def validate_transcript(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if contains_nul(value):  # stored as jsonb, which cannot hold NUL
            raise serializers.ValidationError("Null characters are not allowed.")
        return value


def _chatbot_hmac_ok(request: Request) -> bool | None:
    """None: no signature given; else whether it matches a chatbot account's secret."""
    given = request.META.get("HTTP_X_SIGNATURE_256", "")
    if not given:
        return None
    body = request.body
    matched = False
    for secret in (
        ChannelAccount.objects.filter(channel="chatbot", is_active=True)
        .exclude(app_secret="")
        .values_list("app_secret", flat=True)
    ):
        matched |= constant_time_equal(given, meta_signature(secret, body))
    return matched


class ChatbotHandoffApi(APIView):
    """A bot hands a conversation to people: a ticket flagged ``is_bot_handoff``.

    Authenticated by an agent's API key, or by ``X-Signature-256: sha256=<hex HMAC of the
    body>`` with a chatbot channel account's app secret. One ticket per ``session_id``.
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
        signed = _chatbot_hmac_ok(request)
        if signed is False:
            return Response(
                error_body("invalid_signature", "X-Signature-256 does not match."), status=403
            )
        if signed is None and not (request.auth is not None and is_agent(request.user)):
            return Response(
                error_body(
                    "not_authenticated",
                    "Send an agent API key or an X-Signature-256 HMAC of the body.",
                ),
                status=401,
            )
        serializer = ChatbotHandoffSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ticket, created = services.chatbot_handoff(**serializer.validated_data)
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


def _json(request: HttpRequest) -> dict[str, Any] | None:
    try:
        data = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


@webchat_cors
@require_http_methods(["POST"])
def webchat_session(request: HttpRequest, token: str) -> HttpResponse:
    """Start a visitor session: name and email in, a signed session token out."""
    wait = hit(f"webchat-ip:{client_ip(request)}", 60)  # type: ignore[arg-type]
    if wait is not None:
        return _error("rate_limited", "Too many chat sessions from this address.", 429)
    account = _account("webchat", token)
    if isinstance(account, JsonResponse):
        return account
    data = _json(request)
    if data is None:
        return _error("malformed_payload", "The body is not a JSON object.", 400)
    name = str(data.get("name", "")).strip()
    email = str(data.get("email", "")).strip()
    if not name or "@" not in email:
        return _error("invalid", "name and a valid email are required.", 400)
    issued = session_issue(account, name=name, email=email)
    return JsonResponse(
        {
            **issued,
            "messages_url": f"/api/webhooks/webchat/{token}",
            "poll_url": f"/api/webchat/{token}/messages",
            "ws_path": f"/ws/webchat/{token}/",
        },
        status=201,
    )


@webchat_cors
@require_http_methods(["GET"])
def webchat_messages(request: HttpRequest, token: str) -> HttpResponse:
    """The polling fallback: the visitor's conversation after message id ``after``."""
    account = _account("webchat", token)
    if isinstance(account, JsonResponse):
        return account
    try:
        claims = session_read(account, request.headers.get(SESSION_HEADER, ""))
    except SignatureError as exc:
        return _error("invalid_session", str(exc), exc.status)
    after = request.GET.get("after", "0")
    messages = selectors.webchat_messages(
        visitor_id=claims["v"], account_id=account.pk, after_id=parse_id(after) or 0
    )
    return JsonResponse({"messages": [webchat_message_json(m) for m in messages]})


def webchat_message_json(message: Any) -> dict[str, Any]:
    return {
        "id": message.pk,
        "from": "visitor" if message.direction == "inbound" else "agent",
        "text": message.body_text,
        "client_id": (message.channel_message_id or "").partition(":")[2],
        "at": message.created_at.isoformat(),
    }


__all__ = ["ChatbotHandoffApi", "webchat_messages", "webchat_session", "webhook"]
