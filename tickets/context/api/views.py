"""Customer-context API: thin views over ``tickets.context`` selectors and services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from support.api_schema import path_parameter
from support.auth.permissions import IsAgent
from support.errors import Forbidden
from support.throttling import PerIPRateThrottle
from tickets import selectors as ticket_selectors
from tickets.api.schema import TICKET_ID
from tickets.context import selectors, services
from tickets.models import Ticket


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
