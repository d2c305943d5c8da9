"""Call analytics API: event intake, the SNS endpoint, seed 003's /api/analytics."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls import parsers, selectors, services, sns
from calls.api.authentication import FIREHOSE_REQUEST_ID, FirehoseAccessKeyAuthentication
from calls.models import CallEvent, EventSource, EventStatus
from support.api_schema import path_parameter
from support.auth.permissions import IsIntegration
from support.errors import InvalidInput, error_body
from support.parsing import content_length, json_loads, parse_id
from support.throttling import PerIPRateThrottle

logger = logging.getLogger(__name__)
FOUND = "Call recording analytics retrieved successfully"
#: The largest SNS delivery read: a 256 KiB message, escaped, in its JSON envelope.
SNS_BODY_MAX_BYTES = 2_097_152
CONTACT_EVENT_EXAMPLE = {
    "version": "0",
    "id": "5b6c1d5e-1a2b-4c3d-9e8f-0a1b2c3d4e5f",
    "detail-type": "Amazon Connect Contact Event",
    "source": "aws.connect",
    "time": "2026-11-01T10:00:00Z",
    "detail": {
        "eventType": "INITIATED",
        "contactId": "11111111-2222-3333-4444-555555555555",
        "channel": "VOICE",
        "initiationMethod": "INBOUND",
        "initiationTimestamp": "2026-11-01T10:00:00Z",
    },
}


class CallEventsIntakeApi(APIView):
    """Connect contact events, contact trace records (single or a Kinesis batch) and agent
    event stream records. Answers 202 with what was accepted; bad records are kept.

    Only an integration API key may post (people and user keys get 403): the events name
    S3 objects the worker reads with its own role, so they must come from the machine
    that forwards Connect's streams, and those objects must be in the allow-list.
    """

    permission_classes = [IsIntegration]

    def get_authenticators(self) -> list[BaseAuthentication]:
        # The project's authenticators, then the same API-key check on Firehose's header.
        return [*super().get_authenticators(), FirehoseAccessKeyAuthentication()]

    @extend_schema(
        operation_id="calls_events",
        description=(
            "Also an Amazon Data Firehose HTTP endpoint: with `X-Amz-Firehose-Request-Id` "
            "and the key in `X-Amz-Firehose-Access-Key`, a delivery `{requestId, "
            "timestamp, records: [{data}]}` is answered 200 `{requestId, timestamp}` once "
            "recorded (errors: `{requestId, timestamp, errorMessage}`)."
        ),
        request=OpenApiTypes.OBJECT,
        responses={202: OpenApiTypes.OBJECT, 200: OpenApiTypes.OBJECT},
        examples=[OpenApiExample("contact event", request_only=True, value=CONTACT_EVENT_EXAMPLE)],
    )
    def post(self, request: Request) -> Response:
        request_id = request.META.get(FIREHOSE_REQUEST_ID)
        if request_id is not None:
            try:
                body = parsers.firehose_body(
                    request.body,
                    request.META.get("HTTP_CONTENT_ENCODING", ""),
                    max_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
                )
            except parsers.RecordError as exc:
                raise InvalidInput(str(exc)) from None
            # Acknowledged only once recorded: the intake's transaction has committed.
            services.call_events_intake(body=body)
            return Response(
                {"requestId": request_id, "timestamp": _millis()}, status=status.HTTP_200_OK
            )
        result = services.call_events_intake(body=request.body)
        return Response(
            {
                "accepted": len(result.accepted),
                "duplicates": result.duplicates,
                "errors": result.errors,
            },
            status=status.HTTP_202_ACCEPTED,
        )

    def handle_exception(self, exc: Exception) -> Response:
        """To Firehose, every error in its shape: ``{requestId, timestamp, errorMessage}``
        (any non-200 makes it retry, then back the records up)."""
        response = super().handle_exception(exc)
        request_id = self.request.META.get(FIREHOSE_REQUEST_ID)
        if request_id is not None:
            error = response.data.get("error") if isinstance(response.data, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            response.data = {
                "requestId": request_id,
                "timestamp": _millis(),
                "errorMessage": str(message or response.status_text),
            }
        return response


def _millis() -> int:
    return int(timezone.now().timestamp() * 1000)


class SnsIntakeApi(APIView):
    """HTTPS subscription endpoint for the recording topic (seed 003)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [PerIPRateThrottle]

    @extend_schema(
        operation_id="calls_sns",
        description="An SNS HTTPS delivery, authenticated by its SNS signature.",
        request=OpenApiTypes.OBJECT,
        responses={200: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request) -> Response:
        # Before the body is read: an SNS message is at most 256 KiB, so its JSON envelope
        # fits SNS_BODY_MAX_BYTES even with every character escaped (anyone could post up
        # to 25 MiB, DATA_UPLOAD_MAX_MEMORY_SIZE, to be read and parsed before the topic
        # check).
        declared = content_length(request.META.get("CONTENT_LENGTH"))
        if declared is not None and declared > SNS_BODY_MAX_BYTES:
            return Response(
                error_body(
                    "too_large",
                    f"The body is larger than {SNS_BODY_MAX_BYTES} bytes; "
                    "an SNS delivery is never that large.",
                    {"max_bytes": SNS_BODY_MAX_BYTES},
                ),
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        try:
            message = json_loads(request.body)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        if not isinstance(message, dict):
            raise InvalidInput("The body must be an SNS message object.")
        # The topic first (free): an anonymous caller naming another topic cannot make
        # us fetch a signing certificate.
        topic = str(message.get("TopicArn", ""))
        if topic not in settings.CALLS_SNS_TOPIC_ARNS:
            return Response(
                {
                    "error": {
                        "code": "forbidden",
                        "message": f"Topic {topic} is not accepted.",
                        "details": {},
                    }
                },
                status=status.HTTP_403_FORBIDDEN,
            )
        try:
            sns.verify(message)
        except sns.SnsVerificationError as exc:
            logger.warning("Rejected SNS message: %s", exc)
            return Response(
                {"error": {"code": "bad_signature", "message": str(exc), "details": {}}},
                status=status.HTTP_403_FORBIDDEN,
            )
        kind = message.get("Type")
        if kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
            with transaction.atomic():
                event, created = CallEvent.objects.get_or_create(
                    source=EventSource.SNS,
                    external_id=str(message.get("MessageId")),
                    defaults={"payload": message, "status": EventStatus.PROCESSED},
                )
                # SNS retries a confirmation we answered 502 with the same MessageId: a
                # failed one is tried again (one conditional update: one retry at a time).
                retried = not created and bool(
                    CallEvent.objects.filter(pk=event.pk, status=EventStatus.FAILED).update(
                        status=EventStatus.PROCESSED, error="", updated_at=timezone.now()
                    )
                )
            if (created or retried) and kind == "SubscriptionConfirmation":
                try:
                    sns.confirm_subscription(message)
                except sns.SnsVerificationError as exc:
                    CallEvent.objects.filter(pk=event.pk).update(
                        status=EventStatus.FAILED, error=str(exc)
                    )
                    return Response(
                        {"error": {"code": "confirm_failed", "message": str(exc), "details": {}}},
                        status=status.HTTP_502_BAD_GATEWAY,
                    )
            return Response({"type": kind}, status=status.HTTP_200_OK)
        if kind != "Notification":
            return Response({"ignored": kind}, status=status.HTTP_200_OK)
        body = str(message.get("Message", "")).encode()
        result = services.call_events_intake(body=body)
        return Response(
            {"accepted": len(result.accepted), "duplicates": result.duplicates},
            status=status.HTTP_200_OK,
        )


def _envelope(items: list[Any], message: str = FOUND) -> dict[str, Any]:
    return {
        "message": message,
        "count": len(items),
        "items": [selectors.analytics_item(a) for a in items],
    }


def _int(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = parse_id(raw)
    if value is None:
        raise InvalidInput(f"{name} must be a non-negative integer.", details={name: ["Invalid."]})
    return min(value, maximum)


class AnalyticsReaderMixin:
    def reader(self, request: Request) -> dict[str, Any]:
        """Whose visibility applies (seed 003's public variant overrides it)."""
        return {"user": request.user}


class AnalyticsListApi(AnalyticsReaderMixin, APIView):
    """``GET /api/analytics`` (recent, ``limit``/``offset``) or ``?callId=``: the calls the
    caller may see (queue → team mapping; supervisors all); others answer 404."""

    @extend_schema(
        operation_id="analytics_list",
        parameters=[
            OpenApiParameter("callId", str, description="One call: its Connect contact id."),
            OpenApiParameter("limit", int, description="At most 200 (default 50)."),
            OpenApiParameter("offset", int, description="Skip this many (default 0)."),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        call_id = request.query_params.get("callId")
        items = selectors.analytics_list(
            **self.reader(request),
            call_id=call_id,
            limit=_int(request, "limit", 50, 200),
            offset=_int(request, "offset", 0, 1_000_000),
        )
        if call_id is not None and not items:
            return Response(_envelope([], "No analytics found for this callId"), status=404)
        return Response(_envelope(items))


class AnalyticsDetailApi(AnalyticsReaderMixin, APIView):
    @extend_schema(
        operation_id="analytics_retrieve",
        parameters=[
            path_parameter(
                "hash",
                description="The call's key: the MD5 hex digest of its contact id.",
                pattern=r"^[0-9a-f]{32}$",
                examples={"hash": "0cc175b9c0f1b6a831c399e269772661"},
            )
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request, hash: str) -> Response:
        key = selectors.call_hash_parse(hash)
        if key is None:
            raise InvalidInput(
                "hash must be the 32-character hex MD5 digest of the call id.",
                details={"hash": ["Invalid."]},
            )
        items = selectors.analytics_list(**self.reader(request), hash=key, limit=1)
        if not items:
            return Response(_envelope([], "No analytics found for this hash"), status=404)
        return Response(_envelope(items))
