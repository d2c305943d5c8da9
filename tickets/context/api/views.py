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


class TicketContextApi(APIView):
    @extend_schema(
        operation_id="tickets_context",
        parameters=[TICKET_ID],
        responses=OpenApiResponse(description="The customer context of the ticket's customer."),
    )
    def get(self, request: Request, ticket_id: str) -> Response:
        ticket = ticket_selectors.ticket_get_visible(ticket_id, user=request.user)
        data = selectors.customer_context_for(ticket.customer, user=request.user)
        return Response({"ticket_id": ticket.pk, **data})


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


class TicketFeedbackApi(APIView):
    """CSAT after resolution: agents (signed in) or the customer with the signed token."""

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
        ticket_pk = ticket_selectors.parse_ticket_ref(ticket_id)
        token = data.get("token") or request.query_params.get("token")
        if token:
            if services.feedback_token_ticket_id(token) != ticket_pk:
                raise Forbidden(
                    "This link is for another ticket.", details={"token": ["Wrong ticket."]}
                )
        elif not IsAgent().has_permission(request, self):  # type: ignore[arg-type]
            if not getattr(request.user, "is_authenticated", False):
                raise exceptions.NotAuthenticated()
            raise Forbidden("Only agents or the signed link may submit feedback.")
        if token:
            ticket = ticket_selectors.ticket_get(ticket_pk)
        else:  # an agent: only the tickets it may see (404 for the others, as everywhere)
            ticket = ticket_selectors.ticket_get_visible(ticket_pk, user=request.user)
        feedback, created = services.feedback_submit(
            ticket=ticket,
            rating=data["rating"],
            comment=data.get("comment", ""),
            via_link=bool(token),
        )
        body = {
            "ticket_id": ticket.pk,
            "rating": feedback.rating,
            "comment": feedback.comment,
            "created": created,
        }
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
