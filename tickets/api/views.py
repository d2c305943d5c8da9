"""Ticket API: thin views that validate, call a service or selector, and shape output."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import QueryDict
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from support.api_parsers import JsonParser
from support.api_schema import IDEMPOTENCY_KEY
from support.auth.permissions import IsAgent
from support.errors import Forbidden, InvalidInput, NotFound
from support.idempotency import idempotent
from support.parsing import content_length, parse_id
from tickets import extras, selectors, services
from tickets.api import serializers as s
from tickets.api.schema import TICKET_ID
from tickets.models import Channel, Message, Priority, Ticket, TicketStatus
from tickets.status_access import StatusGrant, status_access_grant


class TicketCursorPagination(CursorPagination):
    """Newest first; a ``page_size`` out of 1-200 or a cursor this list did not give is a
    400 saying so (DRF falls back to the default size, cuts to the maximum, and answers an
    unreadable cursor with 404)."""

    page_size = 25
    max_page_size = 200
    page_size_query_param = "page_size"
    ordering = ("-created_at", "-id")

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param, "")
        if raw == "":
            return self.page_size
        size = parse_id(raw)
        if size is None or not 1 <= size <= self.max_page_size:
            message = f"page_size must be a whole number from 1 to {self.max_page_size}."
            raise InvalidInput(message, details={"page_size": [message]})
        return size

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            cursor = super().decode_cursor(request)
            if cursor is not None and cursor.position is not None:
                # the position is a creation time: a made-up one would fail in the query
                Ticket._meta.get_field("created_at").to_python(cursor.position)
        except (exceptions.NotFound, DjangoValidationError):
            message = "cursor: not a cursor this list gave; follow the next or previous link."
            raise InvalidInput(message, details={"cursor": [message]}) from None
        return cursor


#: The list's own parameters: given more than once, a choice filter adds up like a comma
#: list; any other with different values is refused (the last one used to win silently).
TICKET_LIST_PARAMS = (*selectors.TICKET_FILTERS, "needs_review", "cursor", "page_size")


def ticket_list_filters(params: QueryDict) -> dict[str, str]:
    """The list's filters from the query string (``selectors.ticket_list`` checks values)."""
    if "page" in params:
        # page numbers are other lists' way (the inbox, /analytics): here page=2 would
        # quietly answer the first page again, and a client paging by number never ends
        message = "page: this list pages by cursor; follow the next and previous links."
        raise InvalidInput(message, details={"page": [message]})
    filters: dict[str, str] = {}
    for key in TICKET_LIST_PARAMS:
        values = list(dict.fromkeys(params.getlist(key)))
        if not values:
            continue
        if key in selectors.CHOICE_FILTERS:
            filters[key] = ",".join(values)
        elif len(values) > 1:
            message = f"{key}: give it once (it came with {len(values)} different values)."
            raise InvalidInput(message, details={key: [message]})
        else:
            filters[key] = values[0]
    return filters


def _enum_list(name: str, choices: list[str]) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        str,
        description=f"Filter by {name}: one value or a comma list of {', '.join(choices)}.",
        pattern=rf"^(?:{'|'.join(choices)})(?:,(?:{'|'.join(choices)}))*$",
        examples=[OpenApiExample(choices[0], value=choices[0])],
    )


def _id_or_none(name: str) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        str,
        description=f"Filter by {name}: an id, or `none` for tickets without one.",
        pattern=r"^(?:[0-9]{1,18}|none)$",
        examples=[OpenApiExample("id", value="1"), OpenApiExample("none", value="none")],
    )


def _include_parameter() -> OpenApiParameter:
    """The extras other apps registered (their ``ready()`` ran before URLs are loaded)."""
    names = extras.available_create_extras() or ["none"]
    choice = "|".join(names)
    return OpenApiParameter(
        "include",
        str,
        description=f"Extras in the response, a comma list of: {', '.join(names)}.",
        pattern=rf"^(?:{choice})(?:,(?:{choice}))*$",
        examples=[OpenApiExample(name, value=name) for name in names],
    )


TICKET_LIST_PARAMETERS = (
    _enum_list("status", list(TicketStatus.values)),
    _enum_list("priority", list(Priority.values)),
    _enum_list("channel", list(Channel.values)),
    _id_or_none("team"),
    _id_or_none("assignee"),
    _id_or_none("customer"),
    OpenApiParameter("tag", str, description="Filter by one tag name."),
    OpenApiParameter("needs_review", bool, description="Only tickets routing sent to people."),
    OpenApiParameter("cursor", str, description="The page cursor from `next`/`previous`."),
    OpenApiParameter("page_size", int, description="Tickets per page, 1 to 200 (default 25)."),
)


def ticket_output_context(request: Request, tickets: Iterable[Ticket]) -> dict[str, Any]:
    """What ``TicketOutputSerializer`` needs for this caller: the merge targets among
    ``tickets`` it may see (the ticket page's rule, ``visible_ticket_ids``; one query for
    a page of an agent's tickets with any merged, none otherwise)."""
    targets = [t.merged_into_id for t in tickets if t.merged_into_id is not None]
    return {"visible_ticket_ids": selectors.visible_ticket_ids(request.user, targets)}


class TicketListCreateApi(APIView):
    @extend_schema(
        operation_id="tickets_list",
        parameters=[*TICKET_LIST_PARAMETERS],
        responses=s.TicketOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        qs = (
            selectors.ticket_list(filters=ticket_list_filters(request.query_params))
            .filter(selectors.ticket_visibility_q(request.user))
            .prefetch_related("customer__identities")  # the customer's channel_identity
        )
        paginator = TicketCursorPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        context = ticket_output_context(request, page or [])
        data = s.TicketOutputSerializer(page, many=True, context=context).data
        return paginator.get_paginated_response(data)

    @extend_schema(
        operation_id="tickets_create",
        parameters=[_include_parameter(), IDEMPOTENCY_KEY],
        request=s.TicketCreateInputSerializer,
        responses={201: s.TicketCreatedOutputSerializer},
        examples=[
            OpenApiExample(
                "new customer",
                request_only=True,
                value={
                    "subject": "Where is my order?",
                    "description": "Order 1042 has not arrived.",
                    "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
                    "channel": "api",
                    "priority": "normal",
                    "tags": ["orders"],
                },
            ),
            OpenApiExample(
                "known customer",
                request_only=True,
                value={"subject": "Refund", "customer_id": 1, "team_id": 1},
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        include = extras.parse_include(request.query_params.get("include"))

        def answer(ticket: Ticket) -> Response:
            body = ticket_created_body(ticket)
            body.update(extras.create_extras_build(include, request, ticket))
            return Response(body, status=status.HTTP_201_CREATED)

        def create() -> tuple[int, Response]:
            serializer = s.TicketCreateInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            ticket = services.ticket_open(actor=request.user, data=serializer.validated_data)
            return ticket.pk, answer(ticket)

        return idempotent(
            request,
            operation="tickets_create",
            create=create,
            replay=lambda pk: answer(selectors.ticket_get_visible(pk, user=request.user)),
        )


def ticket_created_body(ticket: Ticket) -> dict[str, Any]:
    """The documented shape is TicketCreatedOutputSerializer; built directly because this
    is the hottest endpoint (a ModelSerializer costs ~0.5 ms per response)."""
    return {
        "id": ticket.pk,
        "number": ticket.number,
        "correlation_id": str(ticket.correlation_id),
        "status": ticket.status,
        "priority": ticket.priority,
        "created_at": ticket.created_at,
    }


class TicketDetailApi(APIView):
    @extend_schema(
        operation_id="tickets_retrieve",
        parameters=[TICKET_ID],
        responses=s.TicketDetailOutputSerializer,
    )
    def get(self, request: Request, ticket_id: str) -> Response:
        ticket = selectors.ticket_get_visible(ticket_id, user=request.user)
        messages = selectors.ticket_timeline(ticket=ticket, user=request.user)
        context = {**ticket_output_context(request, [ticket]), "messages": messages}
        return Response(s.TicketDetailOutputSerializer(ticket, context=context).data)

    @extend_schema(
        operation_id="tickets_update",
        parameters=[TICKET_ID],
        request=s.TicketUpdateInputSerializer,
        examples=[
            OpenApiExample(
                "reassign", request_only=True, value={"status": "open", "assignee_id": 1}
            ),
            OpenApiExample("retag", request_only=True, value={"priority": "high", "tags": ["vip"]}),
        ],
        responses=s.TicketOutputSerializer,
    )
    def patch(self, request: Request, ticket_id: str) -> Response:
        ticket = selectors.ticket_get_visible(ticket_id, user=request.user)
        serializer = s.TicketUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = serializer.validated_data
        # Written all or nothing: a refused status or an unknown team used to leave the
        # assignment behind.
        fields = {k: data[k] for k in ("status", "priority", "subject", "tags") if k in data}
        if "team_id" in data:
            fields["team"] = services.team_or_error(data["team_id"])
        with transaction.atomic():
            # the rules on the row as it is written (locked), not as first read: its
            # visibility (moved out of the caller's view meanwhile: 404) and its assignee
            ticket = selectors.ticket_get_visible(ticket.pk, user=request.user, for_update=True)
            if "team" in fields and not services.team_change_allowed(
                actor=request.user,
                current_team_id=ticket.team_id,
                team_id=fields["team"].pk if fields["team"] else None,
            ):  # said here for team_id (ticket_update refuses it too, naming "team")
                raise InvalidInput(
                    f"team_id: {services.NO_TEAM_REFUSAL}",
                    details={"team_id": ["Supervisors only: give a team's id."]},
                )
            if "assignee_id" in data:
                assignee = _assignee_for(request, ticket, data["assignee_id"])
                services.ticket_assign(ticket=ticket, assignee=assignee, actor=request.user)
            if fields:
                services.ticket_update(ticket=ticket, actor=request.user, **fields)
        ticket = selectors.ticket_get(ticket.pk)
        context = ticket_output_context(request, [ticket])
        return Response(s.TicketOutputSerializer(ticket, context=context).data)


def _assignee_for(request: Request, ticket: Ticket, assignee_id: int | None) -> Any:
    """The user ``assignee_id`` names (None: unassign), if the caller may give it the
    ticket: agents only take or release their own; an active agent or supervisor only.

    Who may assign is checked first, on the id alone, as the workbench does: an agent
    naming someone else is refused with the same answer whoever (or nobody) the id is,
    so the API tells no username or account state to a caller who may not assign."""
    if not services.assignment_allowed(
        actor=request.user, current_assignee_id=ticket.assignee_id, assignee_id=assignee_id
    ):
        raise Forbidden(
            "Only supervisors assign tickets to other people.",
            details={"assignee_id": ["Supervisors only."]},
        )
    if assignee_id is None:
        return None
    assignee = get_user_model().objects.filter(pk=assignee_id).first()
    if assignee is None:
        raise InvalidInput(
            f"assignee_id: no user {assignee_id}.", details={"assignee_id": ["Unknown user."]}
        )
    refusal = services.assignee_refusal(assignee)
    if refusal is not None:
        raise InvalidInput(f"assignee_id: {refusal}", details={"assignee_id": [refusal]})
    return assignee


class TicketMessageCreateApi(APIView):
    """A reply or an internal note: JSON (``body``, ``kind``), or ``multipart/form-data``
    with the same fields and ``files`` (repeated) to attach files."""

    parser_classes = [JsonParser, MultiPartParser]

    @extend_schema(
        operation_id="tickets_messages_create",
        parameters=[TICKET_ID, IDEMPOTENCY_KEY],
        request={
            "application/json": s.MessageCreateInputSerializer,
            "multipart/form-data": s.MessageCreateMultipartSerializer,
        },
        examples=[
            OpenApiExample(
                "reply", request_only=True, value={"body": "It ships today.", "kind": "public"}
            )
        ],
        responses={201: s.MessageOutputSerializer},
    )
    def post(self, request: Request, ticket_id: str) -> Response:
        ticket = selectors.ticket_get_visible(ticket_id, user=request.user)
        if request.content_type.startswith("multipart/"):
            # the files' cap on the declared length, before the parser copies the body
            services.message_upload_length_check(content_length(request.META.get("CONTENT_LENGTH")))

        def create() -> tuple[int, Response]:
            serializer = s.MessageCreateInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            attachments = services.message_files_read(request.FILES.getlist("files"))
            message = services.message_add(
                ticket=ticket,
                body=serializer.validated_data["body"],
                kind=serializer.validated_data["kind"],
                author_user=request.user,
                attachments=attachments,
            )
            return message.pk, _message_created(message)

        def replay(pk: int) -> Response:
            message = Message.objects.select_related("ticket").filter(pk=pk).first()
            if message is None:  # deleted since (an erasure, the admin)
                raise NotFound(f"No message {pk}.")
            # where it is now (a merge moves it), under the rule of the moment
            selectors.ticket_get_visible(message.ticket_id, user=request.user)
            return _message_created(message)

        return idempotent(
            request, operation="tickets_messages_create", create=create, replay=replay
        )


def _message_created(message: Message) -> Response:
    return Response(s.MessageOutputSerializer(message).data, status=status.HTTP_201_CREATED)


class StatusGrantAuthentication(BaseAuthentication):
    """A credential registered in ``tickets.status_access`` (the chatbot hand-off
    signature); absent, the usual authentication classes that follow apply."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        kwargs = (request.parser_context or {}).get("kwargs", {})
        grant = status_access_grant(request._request, str(kwargs.get("ticket_id", "")))
        if grant is None:
            return None
        return AnonymousUser(), grant

    def authenticate_header(self, request: Request) -> str:
        return 'Api-Key realm="api"'


class IsAgentOrStatusGrant(IsAgent):
    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, StatusGrant):
            return True
        return super().has_permission(request, view)


class TicketStatusApi(APIView):
    """Light status for chatbot polling: an agent's credential (the visibility rule), or
    the hand-off bot's signature for its own ticket (docs/channels.md#chatbot-hand-off)."""

    authentication_classes = [
        StatusGrantAuthentication,
        *cast(list[type[BaseAuthentication]], api_settings.DEFAULT_AUTHENTICATION_CLASSES),
    ]
    permission_classes = [IsAgentOrStatusGrant]

    @extend_schema(
        operation_id="tickets_status",
        parameters=[TICKET_ID],
        responses=s.TicketStatusOutputSerializer,
    )
    def get(self, request: Request, ticket_id: str) -> Response:
        context: dict[str, Any] = {}
        if isinstance(request.auth, StatusGrant):
            ticket = request.auth.ticket
            context["reply_files"] = request.auth.reply_files
        else:
            ticket = selectors.ticket_get_visible(ticket_id, user=request.user)
        return Response(s.TicketStatusOutputSerializer(ticket, context=context).data)


class TicketMergeApi(APIView):
    """Merge this ticket into ``into`` (timeline, tags and identities move; see
    ``tickets.services.ticket_merge``). Tickets of two different customers need a
    supervisor or ``confirm_customer_merge: true`` (400 otherwise); audited."""

    @extend_schema(
        operation_id="tickets_merge",
        parameters=[TICKET_ID],
        request=s.TicketMergeInputSerializer,
        examples=[OpenApiExample("into", request_only=True, value={"into": "T-000002"})],
        responses=s.TicketOutputSerializer,
    )
    def post(self, request: Request, ticket_id: str) -> Response:
        source = selectors.ticket_get_visible(ticket_id, user=request.user)
        serializer = s.TicketMergeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        target = selectors.ticket_get_visible(serializer.validated_data["into"], user=request.user)
        services.ticket_merge(
            source=source,
            target=target,
            actor=request.user,
            confirm_customer_merge=serializer.validated_data["confirm_customer_merge"],
        )
        target = selectors.ticket_get(target.pk)
        context = ticket_output_context(request, [target])
        return Response(s.TicketOutputSerializer(target, context=context).data)
