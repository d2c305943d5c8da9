"""Routing API: the decisions of a ticket, and a person's accept / override."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from routing import selectors, services
from routing.api import serializers as s
from routing.models import RoutingDecision, RoutingFeedback
from support.api_schema import IDEMPOTENCY_KEY
from support.auth.permissions import IsSupervisor
from support.errors import InvalidInput, NotFound
from support.idempotency import idempotent
from tickets.api.schema import TICKET_ID
from tickets.models import Team, Ticket
from tickets.selectors import ticket_get_visible


def _decision(ticket: Ticket, decision_id: int | None) -> RoutingDecision:
    """The decision named by the body's ``decision_id`` (the latest when it names none).
    One that is not this ticket's is bad input (400, like an unknown team), whether it is
    another ticket's or does not exist: the answer tells neither apart."""
    qs = selectors.routing_decision_list(ticket=ticket)
    if decision_id is None:
        latest = qs.first()
        if latest is None:
            raise NotFound(f"{ticket.number} has no routing decision yet.")
        return latest
    decision = qs.filter(pk=decision_id).first()
    if decision is None:
        raise InvalidInput(
            f"decision_id: no routing decision {decision_id} on {ticket.number}.",
            details={"decision_id": [f"Not a routing decision of {ticket.number}."]},
        )
    return decision


def _verdict(decision: RoutingDecision, feedback: Any, user: Any) -> Response:
    decision = selectors.routing_decision_list(ticket=decision.ticket).get(pk=decision.pk)
    selectors.routing_decisions_for_viewer([decision], user=user)
    return Response(
        s.RoutingVerdictOutputSerializer({"decision": decision, "feedback": feedback}).data
    )


def _verdict_replay(feedback_id: int, user: Any) -> Response:
    """The answer to a request sent again with its ``Idempotency-Key``: the verdict it
    gave, as it is now. NotFound (answered 409) for a verdict whose decision was purged
    since, or whose ticket the user may no longer see."""
    feedback = (
        RoutingFeedback.objects.select_related("decision", "team", "actor")
        .filter(pk=feedback_id)
        .first()
    )
    if feedback is None or feedback.decision is None:
        raise NotFound(f"No routing verdict {feedback_id}.")
    ticket_get_visible(feedback.ticket_id, user=user)
    return _verdict(feedback.decision, feedback, user)


class TicketRoutingApi(APIView):
    @extend_schema(
        operation_id="ticket_routing_get",
        parameters=[TICKET_ID],
        responses=s.TicketRoutingOutputSerializer,
    )
    def get(self, request: Request, ticket_id: str) -> Response:
        ticket = ticket_get_visible(ticket_id, user=request.user)
        history = selectors.routing_decisions_for_viewer(
            list(selectors.routing_decision_list(ticket=ticket)), user=request.user
        )
        where = selectors.routing_status_get(ticket=ticket, decided=bool(history))
        data = {
            "latest": history[0] if history else None,
            "history": history,
            "routing_status": where.status,
            "routing_status_reason": where.reason,
        }
        return Response(s.TicketRoutingOutputSerializer(data).data)


class TicketRoutingOverrideApi(APIView):
    @extend_schema(
        operation_id="ticket_routing_override",
        parameters=[TICKET_ID, IDEMPOTENCY_KEY],
        request=s.RoutingOverrideInputSerializer,
        examples=[
            OpenApiExample(
                "to billing",
                request_only=True,
                value={"team": "billing", "priority": "high", "note": "charge dispute"},
            )
        ],
        responses=s.RoutingVerdictOutputSerializer,
    )
    def post(self, request: Request, ticket_id: str) -> Response:
        ticket = ticket_get_visible(ticket_id, user=request.user)

        def create() -> tuple[int, Response]:
            serializer = s.RoutingOverrideInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data: dict[str, Any] = serializer.validated_data
            team = Team.objects.filter(slug=data["team"]).first()
            if team is None:
                raise InvalidInput(
                    f"team: no team {data['team']!r}.", details={"team": ["Unknown."]}
                )
            decision = _decision(ticket, data.get("decision_id"))
            feedback = services.routing_decision_override(
                decision=decision,
                actor=request.user,
                team=team,
                priority=data["priority"],
                category=data["category"],
                intent=data["intent"],
                note=data["note"],
            )
            return feedback.pk, _verdict(decision, feedback, request.user)

        return idempotent(
            request,
            operation="ticket_routing_override",
            create=create,
            replay=lambda pk: _verdict_replay(pk, request.user),
        )


class TicketRoutingAcceptApi(APIView):
    @extend_schema(
        operation_id="ticket_routing_accept",
        parameters=[TICKET_ID, IDEMPOTENCY_KEY],
        request=s.RoutingAcceptInputSerializer,
        responses=s.RoutingVerdictOutputSerializer,
    )
    def post(self, request: Request, ticket_id: str) -> Response:
        ticket = ticket_get_visible(ticket_id, user=request.user)

        def create() -> tuple[int, Response]:
            serializer = s.RoutingAcceptInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            decision = _decision(ticket, serializer.validated_data.get("decision_id"))
            feedback = services.routing_decision_accept(decision=decision, actor=request.user)
            return feedback.pk, _verdict(decision, feedback, request.user)

        return idempotent(
            request,
            operation="ticket_routing_accept",
            create=create,
            replay=lambda pk: _verdict_replay(pk, request.user),
        )


class RoutingAccuracyApi(APIView):
    """Team and priority accuracy over every team's reviewed decisions: the supervisors'
    figures, as the dashboard's routing widget is (no agent page calls it)."""

    permission_classes = [IsSupervisor]

    @extend_schema(operation_id="routing_accuracy", responses=dict)
    def get(self, request: Request) -> Response:
        return Response(selectors.routing_accuracy())
