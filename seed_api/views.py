"""Thin views: each seed path delegates to the product's own view, service or selector."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls.api.views import AnalyticsDetailApi, AnalyticsListApi
from channels_app.api.views import webhook, webhook_account_for_request
from routing import selectors as routing_selectors
from routing.api.serializers import RoutingDecisionOutputSerializer
from routing.selectors import RoutingState, RoutingStatus
from support.api_schema import path_parameter
from support.auth.permissions import IsAgent
from support.errors import Conflict, NotFound
from support.parsing import parse_id
from support.throttling import PerIPRateThrottle
from tickets import extras
from tickets import services as ticket_services
from tickets.api import serializers as ticket_serializers
from tickets.api.schema import TICKET_ID
from tickets.api.views import (
    TicketDetailApi,
    TicketListCreateApi,
    ticket_created_body,
)
from tickets.context.api.views import (
    FeedbackOutputSerializer,
    TicketContextApi,
    TicketFeedbackApi,
)
from tickets.models import Ticket
from tickets.selectors import (
    customer_submitted_id,
    ticket_get_for_caller,
    ticket_get_for_submitter,
    ticket_submitted_id,
    ticket_submitted_text,
    ticket_visible_to,
)


def seed_contracts_enabled() -> bool:
    return bool(getattr(settings, "SEED_CONTRACTS_ENABLED", True))


class SeedContractMixin:
    """404 for every seed-only path while ``SEED_CONTRACTS_ENABLED`` is off."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if not seed_contracts_enabled():
            raise NotFound("Not found.")
        super().initial(request, *args, **kwargs)  # type: ignore[misc]


# --- seeds 000 and 004: POST /tickets ---------------------------------------------------------

#: How far ahead of this platform's clock a submitted ``timestamp`` may be: the caller's
#: clock may run a little fast; a later time is a mistake (a wrong offset, local time
#: sent as UTC) and is refused rather than shown on the ticket as a time yet to come.
SUBMITTED_AT_SKEW = timedelta(minutes=5)
ISO_EXAMPLE = "2026-12-06T09:00:00Z"


def submitted_at_parse(value: str, *, now: datetime | None = None) -> datetime | None:
    """Seed 004's ``timestamp`` (ISO 8601) as an aware datetime; None when blank. A
    ValidationError says what is wrong: not a date and time, no offset (a local time of
    an unknown zone would be stored hours off), or later than ``SUBMITTED_AT_SKEW``
    ahead of now."""
    text = value.strip()
    if not text:
        return None
    try:
        moment = parse_datetime(text)
    except ValueError:  # well formed, but no such date or time (month 13, 25:00)
        moment = None
    if moment is None:
        raise serializers.ValidationError(
            f"Not an ISO 8601 date and time; send e.g. {ISO_EXAMPLE!r}."
        )
    if timezone.is_naive(moment):
        raise serializers.ValidationError(
            f"No UTC offset: add 'Z' for UTC or the offset, e.g. {ISO_EXAMPLE!r} or "
            "'2026-12-06T10:00:00+01:00'."
        )
    latest = (now or timezone.now()) + SUBMITTED_AT_SKEW
    if moment > latest:
        raise serializers.ValidationError(
            f"In the future: later than this platform's clock plus "
            f"{SUBMITTED_AT_SKEW.seconds // 60} minutes ({latest.isoformat()})."
        )
    return moment


SEED_CUSTOMER_ID_ERROR = (
    "A customer id of this platform (digits), your own customer id (any other string), "
    "or give customer: {email, name}."
)


class SeedCustomerIdField(ticket_serializers.CustomerIdField):
    """Seed 004's ``customer_id`` ("string": the ticketing system's own customer id, seed
    001's ``cust_xyz``): a string of ASCII digits or a JSON integer is this platform's
    customer id, read as before (``parse_id``, this endpoint's own error); any other
    string is the caller's own id (``Customer.external_id``), as on ``/api/tickets``."""

    def to_internal_value(self, data: Any) -> int | str:  # type: ignore[override]
        if ticket_services.customer_id_is_external(data):
            return ticket_serializers.customer_external_id_parse(data)
        number = isinstance(data, str | int) and not isinstance(data, bool)
        pk = parse_id(str(data).strip()) if number else None
        if not pk:
            raise serializers.ValidationError(SEED_CUSTOMER_ID_ERROR)
        return pk


class SeedTicketInputSerializer(ticket_serializers.TicketCreateInputSerializer):
    """The product's create input plus seed 004's names: ``ticket_id`` (the ticketing
    system's id, kept as ``origin_platform_id``) and ``customer_id`` as a string (this
    platform's id in digits, or the caller's own customer id)."""

    ticket_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    customer_id = SeedCustomerIdField(
        required=False,
        help_text="This platform's customer id (digits), or your own customer id (any other "
        "string, e.g. `CUST-42`; stripped, printable, at most 255 characters): the customer "
        "with that `external_id`, created (named after it, no email) when there is none.",
    )
    timestamp = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text=(
            "When the customer sent the message (seed 004: ISO 8601 with an offset, "
            "`2026-12-06T09:00:00Z`); kept on the ticket's first message. Not more than "
            f"{SUBMITTED_AT_SKEW.seconds // 60} minutes ahead of this platform's clock."
        ),
    )
    # The rest of seed 004's TicketReceived detail, which a ticketing system may send back
    # as it is: accepted, not trusted (the correlation id is this platform's, made per
    # ticket; VIP status and account type come from the customer's record or the customer
    # database, never from the caller's claim).
    correlation_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    customer_context = serializers.DictField(required=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        """Unknown top-level fields are refused (400, each named), with the other errors:
        a misspelt ``descripton`` would otherwise create a ticket without its text."""
        known = set(self.fields)
        unknown = (
            sorted(str(k) for k in data if k not in known) if isinstance(data, Mapping) else []
        )
        message = f"Unknown field; this endpoint takes {', '.join(sorted(known))}."
        errors = {name[:64]: [message] for name in unknown[:10]}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if errors and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **errors}) from exc
            raise
        if errors:
            raise serializers.ValidationError(errors)
        return value  # type: ignore[no-any-return]

    def validate_timestamp(self, value: str) -> datetime | None:
        return submitted_at_parse(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        external = attrs.pop("ticket_id", "")
        if attrs.get("timestamp") and not attrs.get("description", "").strip():
            # it dates the customer's message: without one it would be kept nowhere
            raise serializers.ValidationError(
                {
                    "timestamp": "timestamp is when the customer sent the description: "
                    "send the description with it, or leave timestamp out."
                }
            )
        given = attrs.get("origin_platform_id") or ""
        if external and given and external != given:
            # one id is kept: the other would answer 404 when the caller looks it up
            raise serializers.ValidationError(
                {"ticket_id": "ticket_id and origin_platform_id name the same id: send one."}
            )
        if external:
            attrs["origin_platform_id"] = external
        return attrs


class SeedTicketIngestApi(SeedContractMixin, APIView):
    """Seed 000's ticket ingestion (status, customer context, KB suggestions in one call)
    and seed 004's ``POST /tickets`` (202 Accepted with a correlation id), one response."""

    @extend_schema(
        operation_id="seed_tickets_ingest",
        request=SeedTicketInputSerializer,
        responses={202: OpenApiTypes.OBJECT, 200: OpenApiTypes.OBJECT},
        examples=[
            OpenApiExample(
                "seed 004",
                request_only=True,
                value={
                    "ticket_id": "TKT-1001",
                    "customer_id": "CUST-42",
                    "subject": "Internet down",
                    "description": "No connection since this morning.",
                },
            ),
            OpenApiExample(
                "this platform's customer id",
                request_only=True,
                value={"ticket_id": "TKT-1002", "customer_id": "1", "subject": "Refund"},
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        serializer = SeedTicketInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            sent_at = serializer.validated_data.get("timestamp")
            ticket = ticket_services.ticket_open(
                actor=request.user,
                data=serializer.validated_data,
                callers_own_id=True,
                # where channel intake keeps it too (channels_app.services.ingest)
                message_metadata=(
                    {"sent_at": sent_at.astimezone(UTC).isoformat()} if sent_at else None
                ),
            )
            code: int = status.HTTP_202_ACCEPTED
        except ticket_services.TicketAlreadySubmitted as repeat:
            # The same caller's ticket_id again (a retry): that ticket, nothing new. One
            # the caller may no longer see answers the 409 alone.
            ticket = repeat.ticket
            if not ticket_visible_to(
                request.user, team_id=ticket.team_id, assignee_id=ticket.assignee_id
            ):
                raise
            description = serializer.validated_data.get("description", "")
            if description and ticket_submitted_text(ticket) != description:
                # Not a retry: another ticket under an id already used. Answered with the
                # first ticket, its text went nowhere; the caller is told instead. (A
                # repeat without a description cannot differ: its ticket may have no
                # message of its own, the first being a later one.)
                raise Conflict(
                    f"ticket_id {ticket.origin_platform_id[:64]!r} was already submitted with "
                    "another description; a new ticket needs a new ticket_id.",
                    details={
                        "ticket_id": [ticket.origin_platform_id[:64]],
                        "description": ["Differs from the ticket first submitted with this id."],
                    },
                ) from repeat
            code = status.HTTP_200_OK
        body = ticket_created_body(ticket)
        names = [n for n in ("context", "suggestions") if n in extras.available_create_extras()]
        built = extras.create_extras_build(names, request, ticket)
        return Response(
            {
                "ticket_id": ticket_submitted_id(ticket),
                **body,
                "external_ticket_id": ticket.origin_platform_id,
                "customer_context": built.get("context"),
                "kb_suggestions": built.get("suggestions"),
            },
            status=code,
        )


# --- seed 004: GET /tickets/{id} (the routing decision) -------------------------------------


# Seed 004's sync_status is pending, success or failed; a decision with no ticketing
# system configured (``SyncStatus.NOT_CONFIGURED``, stored as "") says so by name.
SEED_SYNC_NOT_CONFIGURED = "not_configured"

#: What a caller reading a ticket only as its submitter (``visible`` False in
#: ``ticket_get_for_submitter``) does not get of the decision: the reasoning and the tool
#: trace can quote the text routing read (the ticket's first customer message, which is
#: not the submission when none was sent or tickets were merged) and the customer's
#: other tickets; a key whose user may see the ticket reads them. The classification too:
#: with a model provider its category, intent and secondary are the model's free text,
#: written from that same text.
SUBMITTER_WITHHELD = ("issue_classification", "reasoning", "tool_calls")
#: Nor what people did with the ticket since (its team and priority now, a person's
#: verdict): live workbench state of a ticket the submitter may no longer see, not the
#: router's record the seed's row is.
SUBMITTER_WITHHELD_NOW = ("current_team", "current_priority", "verdict")
#: The row's keys that only a decision fills (``null`` before one).
DECISION_KEYS = (
    "timestamp",
    "assigned_team",
    "priority_level",
    "confidence_score",
    "issue_classification",
    "reasoning",
    "requires_manual_review",
    "processing_time_ms",
    "tool_calls",
    "sync_status",
    "created_at",
    "ttl",
    "verdict",
)


def seed_routing_decision(
    ticket: Any, decision: dict[str, Any] | None, *, status: RoutingStatus, visible: bool = True
) -> dict[str, Any]:
    """Seed 004's "Routing Decisions Table" row from the product's latest decision, with
    ``routing_status`` (and its reason in words until decided). The row stays the
    router's (``assigned_team``, ``priority_level``); ``current_team`` and
    ``current_priority`` are the ticket's now (a person's override, a move since) and
    ``verdict`` the latest person's verdict on the decision. ``visible`` False: the
    caller reads it as its submitter only (``SUBMITTER_WITHHELD`` are null, named in
    ``withheld``)."""
    ids = {
        "ticket_id": ticket_submitted_id(ticket),
        "id": ticket.pk,
        "number": ticket.number,
    }
    reading = {"routing_status": status.status, "routing_status_reason": status.reason}
    # The row is the router's record (seed 004: "Store routing decisions for audit"); what
    # people made of it since, kept apart so a caller is not misled by assigned_team.
    team = ticket.team
    now = {
        "current_team": team.slug if team is not None else None,
        "current_priority": ticket.priority,
    }
    if decision is None:
        # The table's keys are there, null, until the router decides: one shape for a
        # caller's parser whatever the routing status.
        pending = {
            **ids,
            **dict.fromkeys(DECISION_KEYS),
            "customer_id": customer_submitted_id(ticket.customer),
            "correlation_id": str(ticket.correlation_id),
            **reading,
            **now,
        }
        if not visible:
            pending.update(dict.fromkeys(now))
            pending["withheld"] = list(now)
        return pending
    created = decision.get("created_at")
    row = {
        **ids,
        "timestamp": ticket_timestamp(created),
        "customer_id": customer_submitted_id(ticket.customer),
        "assigned_team": decision.get("team"),
        "priority_level": decision.get("priority"),
        "confidence_score": decision.get("confidence"),
        "issue_classification": decision.get("classification"),
        "reasoning": decision.get("reasoning"),
        "requires_manual_review": decision.get("requires_manual_review"),
        "processing_time_ms": decision.get("processing_ms"),
        "tool_calls": decision.get("tool_calls"),
        "correlation_id": decision.get("correlation_id"),
        "sync_status": decision.get("sync_status") or SEED_SYNC_NOT_CONFIGURED,
        "created_at": created,
        "ttl": ticket_timestamp(decision.get("expires_at")),
        **reading,
        **now,
        "verdict": decision_verdict(decision),
    }
    if not visible:
        withheld = SUBMITTER_WITHHELD + SUBMITTER_WITHHELD_NOW
        row.update(dict.fromkeys(withheld))
        row["withheld"] = list(withheld)
    return row


def decision_verdict(decision: dict[str, Any]) -> dict[str, Any] | None:
    """The latest person's verdict on the decision (accepted, or overridden with the team
    and priority set), without who gave it or their note; None before any."""
    feedback = decision.get("feedback") or []
    if not feedback:
        return None
    latest = feedback[0]  # newest first (RoutingFeedback.Meta.ordering)
    return {
        "verdict": latest.get("verdict"),
        "team": latest.get("team"),
        "priority": latest.get("priority") or None,
        "created_at": latest.get("created_at"),
    }


def ticket_timestamp(iso: Any) -> int | None:
    from django.utils.dateparse import parse_datetime

    moment = parse_datetime(str(iso)) if iso else None
    return int(moment.timestamp()) if moment else None


SEED_TICKET_ID = path_parameter(
    "ticket_id",
    description=(
        "The ticket id you submitted with `POST /tickets` (yours win), else the ticket's id "
        "(`42`) or number (`T-000042`)."
    ),
    pattern=r"^[^/]{1,255}$",
    examples={"submitted": "TKT-1001", "id": "1", "number": "T-000001"},
)


class SeedVerdictSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=["accepted", "overridden"])
    team = serializers.CharField(allow_null=True)
    priority = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()


class SeedRoutingDecisionOutputSerializer(serializers.Serializer):
    """The answer's shape, for the API docs (``seed_routing_decision`` builds it). The
    decision's keys are ``null`` before the router decided; to a submitter who may no
    longer see the ticket, those named in ``withheld`` are ``null``."""

    ticket_id = serializers.CharField(help_text="Yours from `POST /tickets`, else the id.")
    id = serializers.IntegerField()
    number = serializers.CharField()
    customer_id = serializers.CharField(
        help_text="The customer's id as `POST /tickets` took it: your own (the customer's "
        "`external_id`) when it has one, else this platform's id as a string."
    )
    correlation_id = serializers.CharField(allow_null=True)
    timestamp = serializers.IntegerField(allow_null=True, help_text="Unix time of the decision.")
    assigned_team = serializers.CharField(allow_null=True, help_text="The router's team.")
    priority_level = serializers.CharField(allow_null=True, help_text="The router's priority.")
    confidence_score = serializers.FloatField(allow_null=True)
    issue_classification = serializers.JSONField(allow_null=True)
    reasoning = serializers.CharField(allow_null=True)
    requires_manual_review = serializers.BooleanField(allow_null=True)
    processing_time_ms = serializers.FloatField(allow_null=True)
    tool_calls = serializers.JSONField(allow_null=True)
    sync_status = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField(allow_null=True)
    ttl = serializers.IntegerField(allow_null=True, help_text="Unix time of its expiry.")
    routing_status = serializers.ChoiceField(
        choices=[value for name, value in vars(RoutingState).items() if name.isupper()]
    )
    routing_status_reason = serializers.CharField(allow_null=True)
    current_team = serializers.CharField(allow_null=True, help_text="The ticket's team now.")
    current_priority = serializers.CharField(allow_null=True)
    verdict = SeedVerdictSerializer(allow_null=True)
    withheld = serializers.ListField(child=serializers.CharField(), required=False)


class SeedRoutingDecisionApi(SeedContractMixin, APIView):
    @extend_schema(
        operation_id="seed_tickets_routing_decision",
        parameters=[SEED_TICKET_ID],
        responses=SeedRoutingDecisionOutputSerializer,
    )
    def get(self, request: Request, ticket_id: str) -> Response:
        found = ticket_get_for_submitter(ticket_id, user=request.user)
        ticket = found.ticket
        history = routing_selectors.routing_decisions_for_viewer(
            list(routing_selectors.routing_decision_list(ticket=ticket)[:1]), user=request.user
        )
        latest = RoutingDecisionOutputSerializer(history[0]).data if history else None
        status = routing_selectors.routing_status_get(ticket=ticket, decided=latest is not None)
        return Response(seed_routing_decision(ticket, latest, status=status, visible=found.visible))


# --- seed 000: /tickets/{id}/context and /tickets/{id}/feedback -------------------------------


class SeedTicketRefMixin:
    """``{id}`` as ``GET /tickets/{id}`` reads it (the caller's own ticket id first, else
    the internal id or number; the same visibility rule), and ``ticket_id`` answered as
    ``POST /tickets`` answers it (beside the internal ``id``)."""

    def ticket_for(self, request: Request, ref: str) -> Ticket:
        return ticket_get_for_caller(ref, user=request.user)

    def ticket_ids(self, ticket: Ticket) -> dict[str, Any]:
        return {"ticket_id": ticket_submitted_id(ticket), "id": ticket.pk}


class SeedFeedbackOutputSerializer(FeedbackOutputSerializer):
    ticket_id = serializers.CharField(  # type: ignore[assignment]
        help_text="The ticket id you submitted with `POST /tickets`, else the internal id."
    )
    id = serializers.IntegerField(help_text="The internal ticket id.")


@extend_schema_view(
    get=extend_schema(operation_id="seed_tickets_context", parameters=[SEED_TICKET_ID])
)
class SeedTicketContextApi(SeedContractMixin, SeedTicketRefMixin, TicketContextApi):
    """Seed 000's ``GET /tickets/{id}/context``."""


@extend_schema_view(
    post=extend_schema(
        operation_id="seed_tickets_feedback",
        parameters=[SEED_TICKET_ID],
        responses={201: SeedFeedbackOutputSerializer, 200: SeedFeedbackOutputSerializer},
    )
)
class SeedTicketFeedbackApi(SeedContractMixin, SeedTicketRefMixin, TicketFeedbackApi):
    """Seed 000's ``POST /tickets/{id}/feedback``. A signed feedback link (``token``) names
    its ticket by the internal id or number, as on the product's path: its holder (the
    customer) submitted no ticket id of its own."""


# --- seed 001: /api/tickets/create, PUT /api/tickets/{id} -----------------------------------


class SeedTicketCreateApi(SeedContractMixin, TicketListCreateApi):
    """``POST /api/tickets/create``: ``POST /api/tickets`` under seed 001's path."""

    http_method_names = ["post", "options"]

    @extend_schema(
        operation_id="seed_tickets_create",
        parameters=[],
        request=ticket_serializers.TicketCreateInputSerializer,
        responses={201: ticket_serializers.TicketCreatedOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class SeedTicketDetailApi(TicketDetailApi):
    """``/api/tickets/{id}``: GET and PATCH as before, and seed 001's ``PUT`` (the same
    partial update as PATCH) while the seed contracts are on."""

    @extend_schema(
        operation_id="seed_tickets_put",
        parameters=[TICKET_ID],
        request=ticket_serializers.TicketUpdateInputSerializer,
        responses=ticket_serializers.TicketOutputSerializer,
    )
    def put(self, request: Request, ticket_id: str) -> Response:
        if not seed_contracts_enabled():
            self.http_method_not_allowed(request)
        return self.patch(request, ticket_id)


# --- seed 003: /analytics ---------------------------------------------------------------------


class SeedAnalyticsAccess:
    """The usual agent rule, or nobody's (``SEED_ANALYTICS_PUBLIC``: seed 003's "no
    authentication (configurable)"); public callers are limited per IP."""

    def get_authenticators(self) -> list[Any]:
        if settings.SEED_ANALYTICS_PUBLIC:
            return []
        return super().get_authenticators()  # type: ignore[misc]

    def get_permissions(self) -> list[Any]:
        if settings.SEED_ANALYTICS_PUBLIC:
            return [AllowAny()]
        return [IsAgent()]

    def get_throttles(self) -> list[Any]:
        if settings.SEED_ANALYTICS_PUBLIC:
            return [PerIPRateThrottle()]
        return super().get_throttles()  # type: ignore[misc]

    def reader(self, request: Request) -> dict[str, Any]:
        if settings.SEED_ANALYTICS_PUBLIC:
            return {"user": None, "every_call": True}
        return {"user": request.user}


@extend_schema_view(get=extend_schema(operation_id="seed_analytics_list"))
class SeedAnalyticsListApi(SeedContractMixin, SeedAnalyticsAccess, AnalyticsListApi):
    """Seed 003's ``GET /analytics`` and ``GET /analytics?callId=``."""


@extend_schema_view(get=extend_schema(operation_id="seed_analytics_retrieve"))
class SeedAnalyticsDetailApi(SeedContractMixin, SeedAnalyticsAccess, AnalyticsDetailApi):
    """Seed 003's ``GET /analytics/{hash}``."""


# --- seed 001: /api/webhooks/{facebook,whatsapp,twitter} without the account token -----------

SEED_WEBHOOK_CHANNELS = {"facebook": "messenger", "whatsapp": "whatsapp", "twitter": "twitter"}
SEED_WEBHOOK_CHANNEL_RE = re.compile(r"^(?:facebook|whatsapp|twitter)$")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def seed_webhook(request: HttpRequest, seed_channel: str) -> HttpResponse:
    """Seed 001's ``/api/webhooks/<platform>``: the account is the one the delivery names
    among those whose secret verifies it (or whose verify token the handshake names:
    ``channels_app.api.views.webhook_account_for_request``); then exactly the product's
    webhook view (``/api/webhooks/<channel>/<token>``) runs."""
    if not seed_contracts_enabled() or seed_channel not in SEED_WEBHOOK_CHANNELS:
        raise Http404
    channel = SEED_WEBHOOK_CHANNELS[seed_channel]
    account = webhook_account_for_request(channel, request)
    if isinstance(account, tuple):
        code, body = account
        return JsonResponse(body, status=code)
    return webhook(request, channel, account.webhook_token)
