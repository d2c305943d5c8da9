"""Customer-context API: thin views over ``tickets.context`` selectors and services."""

from __future__ import annotations

import logging
from typing import Any

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from support.api_schema import path_parameter
from support.auth.permissions import IsAgent, IsIntegration
from support.errors import Forbidden, InvalidInput, PermanentError, RetryableError
from support.parsing import json_loads
from support.throttling import PerIPRateThrottle
from tickets import selectors as ticket_selectors
from tickets.api.schema import TICKET_ID
from tickets.context import intake, selectors, services
from tickets.context.models import InteractionKind, OrderStatus
from tickets.models import Channel, Ticket

logger = logging.getLogger(__name__)


class FeedbackInputSerializer(serializers.Serializer):
    rating = serializers.IntegerField(min_value=1, max_value=5)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    token = serializers.CharField(
        required=False, help_text="The signed token from the feedback link (no login needed)."
    )


class FeedbackOutputSerializer(serializers.Serializer):
    ticket_id = serializers.IntegerField()
    rating = serializers.IntegerField()
    comment = serializers.CharField()
    created = serializers.BooleanField()


class TicketRefMixin:
    """How ``{ticket_id}`` is read and answered; seed 000's routes (``seed_api``) override
    both to take the caller's own ticket ids, as seed 004's ``GET /tickets/{id}`` does."""

    def ticket_for(self, request: Request, ref: str) -> Ticket:
        """The ticket ``ref`` (id or number) names, if this caller may see it (404)."""
        return ticket_selectors.ticket_get_visible(ref, user=request.user)

    def ticket_ids(self, ticket: Ticket) -> dict[str, Any]:
        return {"ticket_id": ticket.pk}


class TicketContextApi(TicketRefMixin, APIView):
    @extend_schema(
        operation_id="tickets_context",
        parameters=[TICKET_ID],
        responses=OpenApiResponse(description="The customer context of the ticket's customer."),
    )
    def get(self, request: Request, ticket_id: str) -> Response:
        ticket = self.ticket_for(request, ticket_id)
        data = selectors.customer_context_for(ticket.customer, user=request.user)
        return Response({**self.ticket_ids(ticket), **data})


class CustomerContextApi(APIView):
    @extend_schema(
        operation_id="customers_context",
        parameters=[
            path_parameter("customer_id", description="The customer's id.", examples={"id": "1"})
        ],
        responses=OpenApiResponse(description="Profile, orders, interactions, churn risk."),
    )
    def get(self, request: Request, customer_id: str) -> Response:
        """404 unless the caller may see one of the customer's tickets (supervisors: all)."""
        customer = ticket_selectors.customer_get_visible(customer_id, user=request.user)
        return Response(selectors.customer_context_for(customer, user=request.user))


class TicketFeedbackApi(TicketRefMixin, APIView):
    """CSAT after resolution: agents (signed in) or the customer with the signed token. A
    token sent by a signed-in agent or supervisor (session or API key) is an answer of
    theirs (``recorded_by``), never the customer's; by any other login or key, 403."""

    permission_classes = [AllowAny]
    throttle_classes = [PerIPRateThrottle]

    @extend_schema(
        operation_id="tickets_feedback",
        parameters=[TICKET_ID],
        request=FeedbackInputSerializer,
        examples=[
            OpenApiExample("agent", request_only=True, value={"rating": 5, "comment": "Quick"}),
        ],
        responses={201: FeedbackOutputSerializer, 200: FeedbackOutputSerializer},
    )
    def post(self, request: Request, ticket_id: str) -> Response:
        serializer = FeedbackInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = serializer.validated_data
        token = data.get("token") or request.query_params.get("token")
        staff = IsAgent().has_permission(request, self)  # type: ignore[arg-type]
        signed_in = bool(getattr(request.user, "is_authenticated", False))
        if token:
            ticket = self.ticket_for_link(ticket_id, token=token)
            if staff:
                # Staff holding the customer's link answer as themselves, never as the
                # customer, and only on the tickets they may see (404 for the others).
                ticket = ticket_selectors.ticket_get_visible(ticket.pk, user=request.user)
            elif signed_in:  # a role-less login or an integration key: not the customer
                raise Forbidden(
                    "The feedback link is the customer's: send it without signing in or an API key."
                )
        elif not staff:
            if not signed_in:
                raise exceptions.NotAuthenticated()
            raise Forbidden("Only agents or the signed link may submit feedback.")
        else:  # an agent: only the tickets it may see (404 for the others, as everywhere)
            ticket = self.ticket_for(request, ticket_id)
        via_link = bool(token) and not staff
        feedback, created = services.feedback_submit(
            ticket=ticket,
            rating=data["rating"],
            comment=data.get("comment", ""),
            via_link=via_link,
            recorded_by=None if via_link else request.user,
        )
        body = {
            **self.ticket_ids(ticket),
            "rating": feedback.rating,
            "comment": feedback.comment,
            "created": created,
        }
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def ticket_for_link(self, ref: str, *, token: str) -> Ticket:
        """The ticket of a signed feedback link; ``ref`` must be its id or number."""
        ticket_pk = ticket_selectors.parse_ticket_ref(ref)
        if services.feedback_token_ticket_id(token) != ticket_pk:
            raise Forbidden(
                "This link is for another ticket.", details={"token": ["Wrong ticket."]}
            )
        return ticket_selectors.ticket_get(ticket_pk)


# --- machine intake: integration keys only ------------------------------------------------


class IntakeBackendUnavailable(exceptions.APIException):
    """The sentiment analyser or the interactions store (outside services) failed."""

    status_code = 503
    default_detail = (
        "The sentiment analyser or the interactions store is unavailable; send the same "
        "request again shortly (entries already recorded are not recorded twice)."
    )
    default_code = "backend_unavailable"


def _intake_body(request: Request) -> Any:
    """The request's JSON, read with the project's reader whatever its content type: a
    body that is not JSON is a 400 naming why, never a 415 or a 500."""
    try:
        return json_loads(request.body)
    except ValueError as exc:
        raise InvalidInput(str(exc), details={"body": [str(exc)]}) from None


class OrderIntakeItemSerializer(serializers.Serializer):
    """One order (the schema; ``tickets.context.intake`` reads and checks the items)."""

    customer_id = serializers.CharField(
        help_text="This platform's customer id (a JSON integer or a string of digits) or "
        "your own (any other string: Customer.external_id). The customer must exist."
    )
    number = serializers.CharField(max_length=64, help_text="The upsert key.")
    status = serializers.ChoiceField(choices=OrderStatus.choices)
    currency = serializers.CharField(required=False, default="USD", help_text="ISO 4217.")
    total = serializers.DecimalField(max_digits=12, decimal_places=2)
    refunded_amount = serializers.DecimalField(max_digits=12, decimal_places=2, required=False)
    items = serializers.ListField(child=serializers.DictField(), required=False)
    placed_at = serializers.DateTimeField(help_text="ISO 8601 with an offset.")


class InteractionIntakeItemSerializer(serializers.Serializer):
    """One interaction (the schema; ``tickets.context.intake`` reads and checks them)."""

    customer_id = serializers.CharField(
        help_text="This platform's customer id (a JSON integer or a string of digits) or "
        "your own (any other string: Customer.external_id). The customer must exist."
    )
    id = serializers.CharField(
        max_length=intake.INTERACTION_ID_MAX_CHARS,
        help_text="Your id of the event: the same id again is already recorded (idempotent).",
    )
    occurred_at = serializers.DateTimeField(help_text="ISO 8601 with an offset.")
    channel = serializers.ChoiceField(choices=Channel.choices)
    kind = serializers.ChoiceField(choices=InteractionKind.choices)
    summary = serializers.CharField(max_length=services.SUMMARY_CHARS)
    text = serializers.CharField(
        required=False,
        max_length=intake.INTERACTION_TEXT_MAX_CHARS,
        help_text="The customer's own words, scored for sentiment; not stored.",
    )


ORDER_EXAMPLE = {
    "customer_id": "CUST-42",
    "number": "SHOP-1001",
    "status": "shipped",
    "currency": "EUR",
    "total": "59.90",
    "items": [{"sku": "K-1", "name": "Kettle", "quantity": 1, "unit_price": "59.90"}],
    "placed_at": "2026-11-02T09:30:00+01:00",
}
INTERACTION_EXAMPLE = {
    "customer_id": 1234,
    "id": "activity-88123",
    "occurred_at": "2026-11-03T14:05:00Z",
    "channel": "phone",
    "kind": "note",
    "summary": "Called about a late delivery; promised a callback.",
    "text": "Third time I'm asking where my parcel is.",
}
INTAKE_ERRORS = OpenApiResponse(
    description="Nothing was written: `details.items` lists each bad item as `{index, "
    "errors: {field: [reason]}}`; `details.body` a body that is not JSON, not an object or "
    f"a list, or over {intake.INTAKE_MAX_ITEMS} items."
)


class CustomerOrdersIntakeApi(APIView):
    """Orders from a shop, CRM or ops system (seed 000: "Ops / CRM / eCommerce systems →
    orders → Postgres"): integration API keys only (people and user keys: 403)."""

    permission_classes = [IsIntegration]

    @extend_schema(
        operation_id="customers_orders_intake",
        description=(
            f"One order or a list of up to {intake.INTAKE_MAX_ITEMS}, upserted by `number`. "
            "All or nothing: every item is checked first. Integration API keys only."
        ),
        request=OrderIntakeItemSerializer(many=True),
        examples=[OpenApiExample("one order", request_only=True, value=ORDER_EXAMPLE)],
        responses={
            201: inline_serializer(
                "OrdersIntake",
                {"created": serializers.IntegerField(), "updated": serializers.IntegerField()},
            ),
            200: OpenApiResponse(description="Only updates: `{created: 0, updated}`."),
            400: INTAKE_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        result = intake.orders_intake(
            body=_intake_body(request), actor=request.user, key_id=_key_id(request)
        )
        return Response(
            {"created": result.created, "updated": result.updated},
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class CustomerInteractionsIntakeApi(APIView):
    """Interaction events from a CRM or ops system (seed 000: "→ interaction events →
    DynamoDB (TTL)"; the configured ``INTERACTIONS_BACKEND``): integration API keys only."""

    permission_classes = [IsIntegration]

    @extend_schema(
        operation_id="customers_interactions_intake",
        description=(
            f"One interaction or a list of up to {intake.INTAKE_MAX_ITEMS}, idempotent on "
            "your `id`. All or nothing: every item is checked first. Entries name no "
            "ticket: every agent who may see the customer sees them. Integration API keys "
            "only."
        ),
        request=InteractionIntakeItemSerializer(many=True),
        examples=[OpenApiExample("one interaction", request_only=True, value=INTERACTION_EXAMPLE)],
        responses={
            201: inline_serializer(
                "InteractionsIntake",
                {
                    "recorded": serializers.IntegerField(),
                    "already_recorded": serializers.IntegerField(),
                },
            ),
            200: OpenApiResponse(description="All already recorded: `{recorded: 0, ...}`."),
            400: INTAKE_ERRORS,
            503: OpenApiResponse(description="The analyser or the store failed: send again."),
        },
    )
    def post(self, request: Request) -> Response:
        try:
            result = intake.interactions_intake(
                body=_intake_body(request), actor=request.user, key_id=_key_id(request)
            )
        except (RetryableError, PermanentError) as exc:
            logger.warning("Interactions intake failed (API key %s): %s", _key_id(request), exc)
            raise IntakeBackendUnavailable() from exc
        body = {"recorded": result.recorded, "already_recorded": result.already_recorded}
        return Response(
            body, status=status.HTTP_201_CREATED if result.recorded else status.HTTP_200_OK
        )


def _key_id(request: Request) -> int | None:
    return getattr(request.auth, "pk", None)
