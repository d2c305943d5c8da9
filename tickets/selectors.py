"""Reads of the core domain."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import models
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    Count,
    DateTimeField,
    Exists,
    F,
    Func,
    IntegerField,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce, Least, Left
from django.utils import timezone

from support.auth.roles import is_supervisor
from support.errors import InvalidInput, NotFound
from support.parsing import normalise_phone, parse_id, phone_typed
from tickets.models import (
    CUSTOMER_PK_TEXT,
    MESSAGE_OPENED_TICKET_KEY,
    MESSAGE_WRITTEN_ON_KEY,
    PRIORITY_RANK,
    Attachment,
    CannedResponse,
    Channel,
    ChannelIdentity,
    Customer,
    Direction,
    Message,
    MessageKind,
    Priority,
    Tag,
    Team,
    Ticket,
    TicketRead,
    TicketStatus,
    VipTier,
)

TICKET_FILTERS = ("status", "priority", "channel", "team", "assignee", "customer", "tag")
#: The filters that take a comma list of choices, and their choices.
CHOICE_FILTERS: dict[str, tuple[str, ...]] = {
    "status": tuple(TicketStatus.values),
    "priority": tuple(Priority.values),
    "channel": tuple(Channel.values),
}


def parse_ticket_ref(ref: str | int) -> int:
    """Accept ``123`` or ``T-000123`` (ASCII digits only: "¹" is not a ticket)."""
    text = str(ref).strip()
    if text.upper().startswith("T-"):
        text = text[2:]
    pk = parse_id(text)
    if pk is None:
        raise NotFound(f"No ticket {ref!r}.")
    return pk


def ticket_get(ref: str | int, *, for_update: bool = False) -> Ticket:
    qs = Ticket.objects.select_related(
        "customer", "team", "assignee", "merged_into", "sla_policy", "created_by"
    )
    if for_update:
        # the ticket's row only: PostgreSQL cannot lock the nullable side of the outer
        # joins (team, assignee, ...), so a plain select_for_update() failed every time
        qs = qs.select_for_update(of=("self",))
    try:
        return qs.get(pk=parse_ticket_ref(ref))
    except Ticket.DoesNotExist:
        raise NotFound(f"No ticket {ref!r}.") from None


def choices_check(key: str, values: Iterable[str]) -> None:
    """InvalidInput naming the first of ``values`` that is no choice of ``key`` (a key of
    ``CHOICE_FILTERS``), and the choices."""
    choices = CHOICE_FILTERS[key]
    unknown = [v for v in values if v not in choices]
    if unknown:
        message = f"{key}: unknown value {unknown[0][:40]!r}; one of {', '.join(choices)}."
        raise InvalidInput(message, details={key: [message]})


def ticket_list(*, filters: dict[str, Any] | None = None) -> QuerySet[Ticket]:
    """Tickets newest first, filtered by exact fields; unknown values raise InvalidInput
    (an unknown status or channel would otherwise look like "nothing matches")."""
    filters = filters or {}
    qs = Ticket.objects.select_related("customer", "team", "assignee").prefetch_related("tags")
    for key in CHOICE_FILTERS:
        value = filters.get(key)
        if value:
            values = [v.strip() for v in str(value).split(",") if v.strip()]
            choices_check(key, values)
            qs = qs.filter(**{f"{key}__in": values})
    for key in ("team", "assignee", "customer"):
        value = filters.get(key)
        if value in (None, ""):
            continue
        if value == "none":
            qs = qs.filter(**{f"{key}__isnull": True})
            continue
        pk = parse_id(value)
        if pk is None:
            raise InvalidInput(f"{key} must be an id or 'none'.", details={key: ["Not an id."]})
        qs = qs.filter(**{f"{key}_id": pk})
    if filters.get("tag"):
        qs = qs.filter(tags__name=str(filters["tag"]).lower())
    needs_review = filters.get("needs_review")
    if needs_review not in (None, "", True, False, "true", "false", "1", "0"):
        message = "needs_review must be true or false."
        raise InvalidInput(message, details={"needs_review": [message]})
    if needs_review in ("true", "1", True):
        qs = qs.filter(needs_review=True)
    elif needs_review in ("false", "0", False):  # before 2026-12-07: no filter at all
        qs = qs.filter(needs_review=False)
    return qs.order_by("-created_at", "-id")


def message_list(*, ticket: Ticket, include_internal: bool = True) -> QuerySet[Message]:
    qs = (
        Message.objects.filter(ticket=ticket)
        .select_related("author_user", "author_customer")
        .prefetch_related(Prefetch("attachments", queryset=Attachment.objects.order_by("id")))
    )
    if not include_internal:
        qs = qs.filter(kind="public")
    return qs.order_by("created_at", "id")


#: How far :func:`message_list_written_on` follows a ticket's merges (a merge refuses a
#: merged target, so a chain grows only when its last ticket is merged on: a few at most).
MERGE_CHAIN_MAX = 20


def written_on_ticket_id(path: str = "") -> Coalesce:
    """The id of the ticket a message was written on, as an expression: the one a merge
    recorded when it moved the message (``MESSAGE_WRITTEN_ON_KEY``), else its own ticket.
    ``path`` leads to the message (``"message__"`` from an attachment)."""
    return Coalesce(
        Cast(KeyTextTransform(MESSAGE_WRITTEN_ON_KEY, f"{path}metadata"), BigIntegerField()),
        F(f"{path}ticket_id"),
        output_field=BigIntegerField(),
    )


def message_list_written_on(*, ticket: Ticket) -> QuerySet[Message]:
    """The entries written on ``ticket``, wherever merges moved them: those on it that no
    merge brought in, and those a merge took from it (on the ticket it was merged into, or
    further along). What was meant for the ticket's counterpart, and nothing else."""
    ids = [ticket.pk]
    into = ticket.merged_into_id
    while into is not None and into not in ids and len(ids) < MERGE_CHAIN_MAX:
        ids.append(into)
        into = Ticket.objects.filter(pk=into).values_list("merged_into_id", flat=True).first()
    return (
        Message.objects.filter(ticket_id__in=ids)
        .alias(written_on=written_on_ticket_id())
        .filter(written_on=ticket.pk)
    )


def message_written_on_ticket_get(*, message: Message) -> Ticket | None:
    """The ticket ``message`` was written on: its own ticket, unless a merge has since
    moved it to another (:func:`written_on_ticket_id`, read afresh from the database).
    None when that ticket no longer exists. Whom a reply is for, its hand-off and its
    e-mail thread follow this ticket, not the one the merge put the reply on."""
    pk = (
        Message.objects.filter(pk=message.pk).values_list(written_on_ticket_id(), flat=True).first()
    ) or message.ticket_id
    if pk == message.ticket_id:
        return message.ticket
    return Ticket.objects.select_related("customer").filter(pk=pk).first()


def ticket_opened_by_system(*, ticket: Ticket) -> bool:
    """Whether the system opened ``ticket`` for a customer who wrote nothing
    (``ticket_create(system_note=...)``: an IVR failure): its subject is then the system's
    words, not the customer's, and what reads the customer's words (routing, knowledge
    suggestions) leaves it out. The marker is the system entry it was opened with
    (``MESSAGE_OPENED_TICKET_KEY``), one written on this ticket: a merge that brings such
    an entry in from another ticket does not make this one system-opened."""
    return (
        Message.objects.filter(
            ticket=ticket,
            kind=MessageKind.SYSTEM,
            metadata__contains={MESSAGE_OPENED_TICKET_KEY: True},
        )
        .alias(written_on=written_on_ticket_id())
        .filter(written_on=ticket.pk)
        .exists()
    )


def ticket_changed_by_person(*, ticket: Ticket, fields: Sequence[str]) -> bool:
    """Whether a person (not the system: routing, SLA escalations) changed any of
    ``fields`` (``ticket_update``'s names: "team", "priority", "needs_review", ...) on
    ``ticket``, read from its timeline: every change is a system entry whose metadata
    holds the ``changes`` and whose ``author_user`` is the person who made it (the
    workbench, the API, the admin). Entries a merge brought in from another ticket are
    that ticket's changes, not this one's."""
    return (
        Message.objects.filter(
            ticket=ticket,
            kind=MessageKind.SYSTEM,
            author_user__isnull=False,
            metadata__changes__has_any_keys=list(fields),
        )
        .alias(written_on=written_on_ticket_id())
        .filter(written_on=ticket.pk)
        .exists()
    )


def message_opened_ticket(*, message: Message, ticket: Ticket) -> bool:
    """Whether ``message``, already loaded, is the system entry ``ticket`` was opened with
    (the rule of :func:`ticket_opened_by_system`, for callers that list the messages
    anyway and would otherwise spend a query on it)."""
    metadata = message.metadata or {}
    if message.kind != MessageKind.SYSTEM or metadata.get(MESSAGE_OPENED_TICKET_KEY) is not True:
        return False
    try:
        written_on = int(metadata.get(MESSAGE_WRITTEN_ON_KEY, message.ticket_id))
    except (TypeError, ValueError):
        return False
    return written_on == ticket.pk


def ticket_last_agent_reply(*, ticket: Ticket) -> Message | None:
    """The last public reply an agent wrote on ``ticket`` (a merge that moved it away
    keeps it the ticket's; one that brought another ticket's in does not make it so): what
    the status poll shows."""
    return (
        message_list_written_on(ticket=ticket)
        .filter(direction=Direction.OUTBOUND, kind=MessageKind.PUBLIC, author_user__isnull=False)
        .order_by("-created_at", "-pk")
        .first()
    )


# --- workbench --------------------------------------------------------------------

# --- SLA (docs/sla.md) ------------------------------------------------------------------

#: A missing first reply counts while the ticket is new, open or pending; the resolution
#: clock runs while new or open (``tickets.services.sla``).
SLA_FIRST_RESPONSE_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)
SLA_RESOLUTION_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN)


def sla_warning_window() -> timedelta:
    return timedelta(minutes=int(getattr(settings, "SLA_WARNING_MINUTES", 30)))


def _first_response_running() -> Q:
    return Q(first_response_at__isnull=True, status__in=SLA_FIRST_RESPONSE_STATUSES)


def _resolution_running() -> Q:
    return Q(status__in=SLA_RESOLUTION_STATUSES, sla_paused_at__isnull=True)


def sla_due_expression() -> Any:
    """The ticket's next running due time (first response or resolution), NULL when no
    clock runs: the inbox's badge and its "SLA due soonest" order."""
    return Least(
        Case(When(_first_response_running(), then=F("first_response_due_at"))),
        Case(When(_resolution_running(), then=F("resolution_due_at"))),
        output_field=DateTimeField(),
    )


def sla_due_q(*, before: datetime) -> Q:
    """Tickets with a running clock due at or before ``before`` (uses the due indexes)."""
    return (_first_response_running() & Q(first_response_due_at__lte=before)) | (
        _resolution_running() & Q(resolution_due_at__lte=before)
    )


INBOX_VIEWS: dict[str, str] = {
    "mine": "Mine",
    "unassigned": "Unassigned",
    "teams": "My teams",
    "all": "All",
    "vip": "VIP",
    "review": "Needs review",
    "sla_risk": "SLA at risk",
    "sla_breached": "SLA breached",
}
INBOX_SORTS: dict[str, str] = {
    "newest": "Newest",
    "relevance": "Best match (search)",
    "oldest": "Oldest",
    "waiting": "Waiting longest",
    "priority": "Priority",
    "updated": "Recently active",
    "sla_due": "SLA due soonest",
}
OPEN_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)
PAGE_SIZE = 50
#: The deepest inbox page (50,000 tickets in): past it, filters or search narrow the list.
#: Bounds the OFFSET (a page of 10^18 overflowed PostgreSQL's bigint: a 500).
INBOX_MAX_PAGE = 1000
INBOX_PAGE_ERROR = f"page must be a whole number from 1 to {INBOX_MAX_PAGE}."


def _page_check(page: int) -> None:
    """InvalidInput for a page outside 1..``INBOX_MAX_PAGE`` (the inbox's, the customer
    page's)."""
    if not 1 <= page <= INBOX_MAX_PAGE:
        raise InvalidInput(INBOX_PAGE_ERROR, details={"page": [INBOX_PAGE_ERROR]})


_Row = TypeVar("_Row", bound=models.Model)


def _page_rows(qs: QuerySet[_Row], page: int, page_size: int) -> tuple[list[_Row], bool]:
    """Page ``page`` of ``qs`` and whether a next one has rows: one query of a row more
    than a page, nothing counted."""
    offset = (page - 1) * page_size
    rows = list(qs[offset : offset + page_size + 1])
    return rows[:page_size], len(rows) > page_size and page < INBOX_MAX_PAGE


def user_team_ids(user: Any) -> list[int]:
    cached = getattr(user, "_workbench_team_ids", None)
    if cached is None:
        cached = list(Team.objects.filter(members=user).values_list("id", flat=True))
        user._workbench_team_ids = cached
    return cached


def ticket_visibility_q(user: Any) -> Q:
    """Which tickets a user may see: supervisors all; agents their own, unassigned-team
    tickets and their teams' tickets."""
    if is_supervisor(user):
        return Q()
    return Q(team__isnull=True) | Q(team_id__in=user_team_ids(user)) | Q(assignee_id=user.pk)


def ticket_visible_to(user: Any, *, team_id: int | None, assignee_id: int | None) -> bool:
    """The same rule as :func:`ticket_visibility_q` for an event payload."""
    return ticket_visibility_check(user)(team_id, assignee_id)


def ticket_visibility_check(user: Any) -> Callable[[int | None, int | None], bool]:
    """:func:`ticket_visible_to` for many tickets, ``check(team_id, assignee_id)``: the
    user's roles and teams are read once (a live socket decides a batch of events)."""
    if is_supervisor(user):
        return lambda team_id, assignee_id: True
    user_id = user.pk
    teams = frozenset(user_team_ids(user))
    return lambda team_id, assignee_id: (
        team_id is None or assignee_id == user_id or team_id in teams
    )


@dataclass(frozen=True)
class InboxPage:
    tickets: Sequence[Ticket]
    page: int
    has_next: bool
    view: str
    sort: str
    search: str


def ticket_number_in(search: str) -> int | None:
    """The ticket a search names by its number ("T-000123"), if it does."""
    ref = search.strip().upper()
    return parse_id(ref[2:]) if ref.startswith("T-") else None


def ticket_search_query(search: str) -> SearchQuery:
    """Words searched in the tickets' ``search_vector`` (subject, recent public messages,
    customer name, e-mail and phone; a GIN index), as the inbox searches them: English
    stems or the words as written."""
    return SearchQuery(search, search_type="websearch", config="english") | SearchQuery(
        search, search_type="websearch", config="simple"
    )


def inbox_page(
    *,
    user: Any,
    view: str = "all",
    filters: dict[str, Any] | None = None,
    search: str = "",
    sort: str = "newest",
    page: int = 1,
    page_size: int = PAGE_SIZE,
) -> InboxPage:
    """One page of the inbox; a constant number of queries whatever the page size.

    Merged tickets are hidden. Without a status filter, views other than "all" show
    open work only (new, open, pending). Search uses the ``search_vector`` GIN index
    (subject, recent public messages, customer name/email/phone).
    """
    filters = dict(filters or {})
    if view not in INBOX_VIEWS:
        raise InvalidInput(f"Unknown view {view!r}.", details={"view": ["Invalid."]})
    if sort not in INBOX_SORTS:
        raise InvalidInput(f"Unknown sort {sort!r}.", details={"sort": ["Invalid."]})
    _page_check(page)
    filters.pop("needs_review", None)
    qs = ticket_list(filters=filters).filter(merged_into__isnull=True)
    qs = qs.filter(ticket_visibility_q(user))
    if view == "mine":
        qs = qs.filter(assignee_id=user.pk)
    elif view == "unassigned":
        qs = qs.filter(assignee__isnull=True)
    elif view == "teams":
        qs = qs.filter(team_id__in=user_team_ids(user))
    elif view == "vip":
        qs = qs.exclude(customer__vip_tier=VipTier.NONE)
    elif view == "review":
        qs = qs.filter(needs_review=True)
    elif view == "sla_breached":
        qs = qs.filter(sla_due_q(before=timezone.now()))
    elif view == "sla_risk":
        now = timezone.now()
        qs = qs.filter(sla_due_q(before=now + sla_warning_window())).exclude(sla_due_q(before=now))
    if view != "all" and not filters.get("status"):
        qs = qs.filter(status__in=OPEN_STATUSES)
    search = search.strip()[:200]
    query = None
    if search:
        number = ticket_number_in(search)
        if number is not None:
            qs = qs.filter(pk=number)
        else:
            query = ticket_search_query(search)
            qs = qs.filter(search_vector=query)
    last_public = Message.objects.filter(ticket=OuterRef("pk"), kind=MessageKind.PUBLIC).order_by(
        "-created_at", "-id"
    )
    qs = qs.annotate(
        preview=Left(Subquery(last_public.values("body_text")[:1]), 160),
        is_unread=~Exists(
            TicketRead.objects.filter(
                ticket=OuterRef("pk"), user_id=user.pk, seen_at__gte=OuterRef("last_message_at")
            )
        ),
        sla_due=sla_due_expression(),
    )
    if sort == "relevance" and query is not None:
        # Ranks every match, so it costs more on common words than newest-first.
        qs = qs.annotate(rank=SearchRank(F("search_vector"), query)).order_by(
            "-rank", "-created_at", "-id"
        )
    elif sort == "oldest":
        qs = qs.order_by("created_at", "id")
    elif sort == "waiting":
        qs = qs.order_by(F("waiting_since").asc(nulls_last=True), "id")
    elif sort == "sla_due":
        qs = qs.order_by(F("sla_due").asc(nulls_last=True), "id")
    elif sort == "updated":
        qs = qs.order_by(F("last_message_at").desc(nulls_last=True), "-id")
    elif sort == "priority":
        rank = Case(
            *[When(priority=k, then=Value(v)) for k, v in PRIORITY_RANK.items()],
            output_field=IntegerField(),
        )
        qs = qs.annotate(priority_rank=rank).order_by("-priority_rank", "-created_at", "-id")
    tickets, has_next = _page_rows(qs, page, page_size)
    return InboxPage(
        tickets=tickets,
        page=page,
        has_next=has_next,
        view=view,
        sort=sort,
        search=search,
    )


def ticket_get_visible(ref: str | int, *, user: Any, for_update: bool = False) -> Ticket:
    """A ticket the user may see (NotFound otherwise, so numbers do not leak).
    ``for_update``: the row locked until the caller's transaction ends, and the rule read
    on it as it will be written (a ticket moved out of the user's view since the page or
    request first read it is NotFound, not changed)."""
    ticket = ticket_get(ref, for_update=for_update)
    if not ticket_visible_to(user, team_id=ticket.team_id, assignee_id=ticket.assignee_id):
        raise NotFound(f"No ticket {ref!r}.")
    return ticket


def ticket_list_locked(ids: Iterable[int], *, user: Any) -> list[Ticket]:
    """The tickets among ``ids`` that ``user`` may see and that were not merged, their rows
    locked (``SELECT ... FOR UPDATE``) until the caller's transaction ends: for a change to
    many tickets (the inbox's bulk actions), whose rules must read the rows as they will be
    written. Locked in id order, the order every multi-ticket lock takes (``ticket_merge``
    too), so two such changes over the same tickets wait for each other, never deadlock.
    The filters hold for the rows once locked: a ticket merged or moved out of the user's
    view while this waited for it is left out."""
    return list(
        Ticket.objects.filter(pk__in=set(ids), merged_into__isnull=True)
        .filter(ticket_visibility_q(user))
        .order_by("pk")
        .select_for_update()
    )


def ticket_submitted_get(*, caller: Any, external_id: str) -> Ticket | None:
    """The ticket ``caller`` submitted under its own ticket id ``external_id`` (seed 004's
    ``ticket_id``, kept as ``origin_platform_id`` with ``origin_caller``), or None."""
    if not external_id or getattr(caller, "pk", None) is None:
        return None
    return (
        Ticket.objects.select_related("customer", "team", "assignee", "merged_into", "sla_policy")
        .filter(origin_caller_id=caller.pk, origin_platform_id=external_id)
        .first()
    )


def ticket_submitted_text(ticket: Ticket) -> str:
    """The description a submitted ticket was created with: the first message written on
    it (wherever a merge moved it since); "" when it was created without one."""
    first = (
        message_list_written_on(ticket=ticket)
        .order_by("created_at", "pk")
        .values_list("body_text", flat=True)
        .first()
    )
    return first or ""


def ticket_submitted_id(ticket: Ticket) -> str:
    """The ticket's id as seed 004 names it (a string, the table's "partition key"): the
    caller's own id when the ticket was submitted with one (``POST /tickets`` with a
    ``ticket_id``, ``origin_caller`` set; ``GET /tickets/{id}`` finds it by that id), else
    the internal id as a string. One rule for every place that answers it: the seed API's
    answers and the ``TicketReceived`` event (``events_out``)."""
    return str(ticket.origin_platform_id if ticket.origin_caller_id else ticket.pk)


def customer_submitted_id(customer: Customer) -> str:
    """The customer's id as seed 004 names it (``customer_id``, a string): the caller's own
    id when the customer has one (``external_id``: ``POST /tickets`` found or created the
    customer by it), else the internal id as a string. What the seed API answers, so that
    it reads back the id that was posted. An own id of digits only (the admin takes one)
    is not given: on ``POST /tickets`` digits name this platform's customer, so it would
    name another customer (review 2026-12-07); the internal id is."""
    own = customer.external_id
    return own if own and not CUSTOMER_PK_TEXT.fullmatch(own.strip()) else str(customer.pk)


@dataclass(frozen=True)
class SubmittedTicket:
    """A ticket as :func:`ticket_get_for_submitter` found it: ``visible`` is the project's
    visibility rule for the caller; False means the caller reads it only as its
    submitter."""

    ticket: Ticket
    visible: bool


def ticket_get_for_submitter(ref: str, *, user: Any) -> SubmittedTicket:
    """Seed 004's ``GET /tickets/{id}`` (the routing decision): the ticket as
    :func:`ticket_get_for_caller` finds it, and also one the user may no longer see under
    the visibility rule (routing moved it to a team the user is not in) when the user
    submitted it (``origin_caller``: ``POST /tickets`` with a ``ticket_id``). What such a
    submitter may read is the caller's business (``visible`` False): the routing decision
    of what it sent, never the conversation. NotFound otherwise, as for an unknown id."""
    ticket = ticket_submitted_get(caller=user, external_id=str(ref))
    if ticket is None:
        ticket = ticket_get(ref)
    visible = ticket_visible_to(user, team_id=ticket.team_id, assignee_id=ticket.assignee_id)
    submitter = ticket.origin_caller_id is not None and ticket.origin_caller_id == user.pk
    if not (visible or submitter):
        raise NotFound(f"No ticket {ref!r}.")
    return SubmittedTicket(ticket=ticket, visible=visible)


def ticket_get_for_caller(ref: str, *, user: Any) -> Ticket:
    """Seed 004's ``GET /tickets/{id}``: the ticket this user submitted with ``ref`` as its
    ticket id, else (none submitted so) the ticket whose id or number ``ref`` is. One
    ticket either way: a caller's ids are unique per caller and win over the internal
    ones. The same visibility rule as :func:`ticket_get_visible` (NotFound otherwise)."""
    ticket = ticket_submitted_get(caller=user, external_id=str(ref))
    if ticket is None:
        return ticket_get_visible(ref, user=user)
    if not ticket_visible_to(user, team_id=ticket.team_id, assignee_id=ticket.assignee_id):
        raise NotFound(f"No ticket {ref!r}.")
    return ticket


def visible_ticket_ids(user: Any, ids: Iterable[int]) -> set[int]:
    """The ids among ``ids`` of tickets the user may see (one query; none for supervisors)."""
    wanted = {int(i) for i in ids}
    if not wanted or is_supervisor(user):
        return wanted
    return set(
        Ticket.objects.filter(pk__in=wanted)
        .filter(ticket_visibility_q(user))
        .values_list("pk", flat=True)
    )


#: What a merged ticket's timeline and page say of the ticket it went to, for a reader who
#: may not see that ticket (:func:`ticket_merge_target_visible`).
MERGED_OUT_OF_VIEW = "Merged into a ticket you cannot see."
#: What the ticket a merge went to says of a merged ticket the reader may not see.
MERGED_FROM_OUT_OF_VIEW = "A ticket you cannot see was merged into this one ({moved})."


def ticket_merge_target_visible(ticket: Ticket, *, user: Any) -> bool:
    """Whether ``user`` may see the ticket ``ticket`` was merged into (False when it was
    not merged). Wherever a merged ticket is shown, its target is named only then: the
    ticket page (a redirect there, else a note that it went to a ticket the user cannot
    see), its timeline (:func:`ticket_timeline`), the API's ``merged_into``, the refusal
    of a reply to it. One query for an agent, none for a supervisor."""
    target = ticket.merged_into_id
    return target is not None and target in visible_ticket_ids(user, [target])


def ticket_timeline(*, ticket: Ticket, user: Any) -> list[Message]:
    """The ticket's timeline as ``user`` reads it (the ticket page, the API's ticket
    detail): :func:`message_list`, except that the entries recording a merge name the other
    ticket only when the user may see it: into a ticket the user may not see
    (:data:`MERGED_OUT_OF_VIEW`), or from one (:data:`MERGED_FROM_OUT_OF_VIEW`)."""
    messages = list(message_list(ticket=ticket))
    notes = [
        m
        for m in messages
        if m.kind == MessageKind.SYSTEM
        and ("merged_into" in (m.metadata or {}) or "merged_from" in (m.metadata or {}))
    ]
    if not notes:
        return messages
    sources = [
        parse_id(str(m.metadata["merged_from"])) for m in notes if "merged_from" in m.metadata
    ]
    visible = visible_ticket_ids(user, [pk for pk in sources if pk is not None])
    into_hidden = ticket.merged_into_id is not None and not ticket_merge_target_visible(
        ticket, user=user
    )
    for message in notes:  # in memory only (never saved): those who may see it read it all
        metadata = message.metadata
        if "merged_into" in metadata and into_hidden:
            message.body_text = MERGED_OUT_OF_VIEW
            message.metadata = {k: v for k, v in metadata.items() if k != "merged_into"}
        elif "merged_from" in metadata and parse_id(str(metadata["merged_from"])) not in visible:
            moved = metadata.get("moved_messages")
            message.body_text = MERGED_FROM_OUT_OF_VIEW.format(
                moved=f"{moved} timeline entries moved"
                if isinstance(moved, int)
                else "entries moved"
            )
            message.metadata = {k: v for k, v in metadata.items() if k != "merged_from"}
    return messages


# --- customers: visible through their tickets ----------------------------------------


def customer_visibility_q(user: Any) -> Q:
    """Which customers a user may see: supervisors all; agents those with at least one
    ticket the agent may see (:func:`ticket_visibility_q`). A customer with no ticket is
    for supervisors only."""
    if is_supervisor(user):
        return Q()
    return Q(customer_visible_expression(user))


def customer_visible_expression(user: Any, customer_ref: str = "pk") -> Exists | Value:
    """:func:`customer_visibility_q` as an expression (to annotate rows with it) of the
    customer whose id is the outer row's ``customer_ref`` (a call's ``customer_id``)."""
    if is_supervisor(user):
        return Value(True, output_field=BooleanField())
    return Exists(
        Ticket.objects.filter(customer_id=OuterRef(customer_ref)).filter(ticket_visibility_q(user))
    )


def customer_visible_to(user: Any, *, customer_id: int) -> bool:
    if is_supervisor(user):
        return True
    return Ticket.objects.filter(customer_id=customer_id).filter(ticket_visibility_q(user)).exists()


def customer_submitted_by(user: Any, *, customer_id: int) -> bool:
    """Whether the user submitted one of this customer's tickets itself (``created_by``):
    such a caller may name the customer again by its ``external_id`` when it no longer
    sees it (a ticketing system's second ticket for a customer must not be refused because
    routing moved the first to a team the key's user is not in). Naming it tells the caller
    nothing it did not send itself; the tickets stay under the visibility rule."""
    user_id = getattr(user, "pk", None)
    return user_id is not None and (
        Ticket.objects.filter(customer_id=customer_id, created_by_id=user_id).exists()
    )


def customer_is_erased(*, customer_id: int) -> bool:
    """Whether the customer's personal data was erased (nothing more is recorded)."""
    return Customer.objects.filter(pk=customer_id, erasure__isnull=False).exists()


def customers_fully_visible_to(user: Any, *, customer_ids: Iterable[int]) -> bool:
    """Whether the user may see every ticket of each of these customers (one query; always
    for supervisors). What an agent needs to act on a customer as a whole, e.g. to merge
    it into another: seeing one of its tickets is not enough."""
    wanted = {int(i) for i in customer_ids}
    if not wanted or is_supervisor(user):
        return True
    of_them = Ticket.objects.filter(customer_id__in=wanted)
    # by primary key, not exclude(Q): a NULL team or assignee must not make a row vanish
    return not of_them.exclude(
        pk__in=of_them.filter(ticket_visibility_q(user)).values("pk")
    ).exists()


def customer_get_visible(customer_id: int | str, *, user: Any) -> Customer:
    """A customer the user may see (NotFound otherwise, the same answer as for an unknown
    id, so customer ids do not leak)."""
    text = str(customer_id).strip()
    customer = None
    pk = parse_id(text)
    if pk is not None:
        customer = Customer.objects.filter(customer_visibility_q(user), pk=pk).first()
    if customer is None:
        raise NotFound(f"No customer {customer_id!r}.")
    return customer


def customer_phone_digits() -> Func:
    """A customer's phone number as calls match it (digits and ``+``), as an expression:
    numbers are stored as typed by the API (``+44 20 7946 0001``)."""
    return Func(F("phone"), Value(r"[^0-9+]"), Value(""), Value("g"), function="regexp_replace")


#: The customer directory's search: at most this many characters.
CUSTOMER_SEARCH_MAX = 200


@dataclass(frozen=True)
class CustomerDirectoryPage:
    #: each with ``tickets_open`` and ``tickets_total`` (the viewer's visible tickets,
    #: merged ones left out) and ``last_ticket_at`` (None without a visible ticket)
    customers: Sequence[Customer]
    page: int
    has_next: bool
    search: str


def customer_directory_page(
    *, user: Any, search: str = "", page: int = 1, page_size: int = PAGE_SIZE
) -> CustomerDirectoryPage:
    """One page of the customers ``user`` may see (:func:`customer_visibility_q`: a
    supervisor all, an agent those with a ticket it sees), newest first, erased ones left
    out (nothing about them is shown). ``search``: part of the name or e-mail address
    (any case), the caller's own customer id (``external_id``, exact), or a phone number
    however it was typed (three digits or more, matched on digits). Ticket counts are of
    the tickets the viewer sees, as the customer page lists them; nothing is counted in
    total. Pages as the inbox's."""
    _page_check(page)
    search = search.strip()
    if len(search) > CUSTOMER_SEARCH_MAX:
        raise InvalidInput(
            f"q: at most {CUSTOMER_SEARCH_MAX} characters.", details={"q": ["Too long."]}
        )
    qs = Customer.objects.filter(customer_visibility_q(user), erasure__isnull=True)
    if search:
        match = Q(name__icontains=search) | Q(email__icontains=search) | Q(external_id=search)
        if phone_typed(search):
            qs = qs.annotate(phone_digits=customer_phone_digits())
            match |= Q(phone_digits__contains=normalise_phone(search))
        qs = qs.filter(match)
    visible = (
        Ticket.objects.filter(customer_id=OuterRef("pk"), merged_into__isnull=True)
        .filter(ticket_visibility_q(user))
        .order_by()
        .values("customer_id")
    )
    open_statuses = [TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING]
    qs = qs.annotate(
        tickets_total=Coalesce(Subquery(visible.annotate(n=Count("pk")).values("n")), 0),
        tickets_open=Coalesce(
            Subquery(visible.filter(status__in=open_statuses).annotate(n=Count("pk")).values("n")),
            0,
        ),
        last_ticket_at=Subquery(visible.annotate(at=Max("created_at")).values("at")),
    ).order_by("-id")
    rows, has_next = _page_rows(qs, page, page_size)
    return CustomerDirectoryPage(rows, page, has_next, search)


def customer_get_by_external_id(external_id: str) -> Customer | None:
    """The customer whose ``external_id`` (the caller's own customer id) this is: exact and
    case-sensitive, through its partial unique index; None for none or an empty id. No
    visibility rule: the caller decides what an unseen one answers."""
    if not external_id:
        return None
    return Customer.objects.filter(external_id=external_id).first()


def customer_identities(*, customer_id: int) -> list[ChannelIdentity]:
    return list(ChannelIdentity.objects.filter(customer_id=customer_id).order_by("channel", "id"))


def customer_other_tickets(*, ticket: Ticket, user: Any, limit: int = 10) -> list[Ticket]:
    """The customer's other tickets that ``user`` may see (the ticket page's sidebar)."""
    return list(
        Ticket.objects.filter(customer_id=ticket.customer_id, merged_into__isnull=True)
        .filter(ticket_visibility_q(user))
        .exclude(pk=ticket.pk)
        .only("id", "subject", "status", "created_at")
        .order_by("-created_at")[:limit]
    )


@dataclass(frozen=True)
class CustomerTicketPage:
    tickets: Sequence[Ticket]
    page: int
    has_next: bool


def customer_ticket_page(
    *, customer_id: int, user: Any, page: int = 1, page_size: int = PAGE_SIZE
) -> CustomerTicketPage:
    """One page of the customer's tickets that ``user`` may see (the customer page), newest
    first: each ticket by :func:`ticket_visibility_q`, whatever the customer's visibility.
    Merged tickets are left out, as in the inbox (their messages are in the ticket they went
    to). Pages as the inbox's (its size and deepest page; InvalidInput past them). Nothing
    is said of the tickets left out, not even how many: no total is counted. One query
    (two for an agent whose teams are not read yet)."""
    _page_check(page)
    qs = (
        Ticket.objects.filter(customer_id=customer_id, merged_into__isnull=True)
        .filter(ticket_visibility_q(user))
        .select_related("team", "assignee")
        .order_by("-created_at", "-id")
    )
    tickets, has_next = _page_rows(qs, page, page_size)
    return CustomerTicketPage(tickets=tickets, page=page, has_next=has_next)


def canned_response_list(*, user: Any) -> list[CannedResponse]:
    return list(
        CannedResponse.objects.filter(is_active=True)
        .filter(Q(team__isnull=True) | Q(team_id__in=user_team_ids(user)))
        .order_by("title")
    )


def tag_visibility_q(user: Any) -> Q:
    """Which tags a user may see named: supervisors all; agents those on a ticket they may
    see (a tag's name can tell what another team's ticket is about: security review
    2026-12-06) and those on no ticket (which tell nothing: one just created, say). The
    inbox's tag filter and the admin's tag lists and choices."""
    if is_supervisor(user):
        return Q()
    on_visible = Ticket.objects.filter(ticket_visibility_q(user), tags=OuterRef("pk"))
    on_any = Ticket.objects.filter(tags=OuterRef("pk"))
    return Q(Exists(on_visible)) | ~Q(Exists(on_any))


def tag_visible_to(user: Any, tag: Tag) -> bool:
    """The same rule as :func:`tag_visibility_q` for one tag."""
    return Tag.objects.filter(tag_visibility_q(user), pk=tag.pk).exists()


def tag_list(*, user: Any, limit: int = 200) -> list[Tag]:
    """The tags the inbox's tag filter offers, by name, at most ``limit``: those ``user``
    may see (:func:`tag_visibility_q`). One query."""
    return list(Tag.objects.filter(tag_visibility_q(user)).order_by("name")[:limit])


def ticket_assigned_open_exists(*, user: Any) -> bool:
    """Whether the inbox's "Mine" view has anything in it (open work assigned to ``user``)."""
    return Ticket.objects.filter(
        assignee_id=user.pk, status__in=OPEN_STATUSES, merged_into__isnull=True
    ).exists()


def sla_attainment(
    *,
    start: datetime,
    end: datetime,
    team_ids: Sequence[int] | None = None,
    channels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """SLA attainment over ``[start, end)`` for the dashboard (contract16.md).

    Each target is judged once, when its clock stopped for good, and counted in the window
    holding that moment (tickets with that target only; merged ones excluded); met means
    at or before its due time, breached after it:

    - resolution: the ticket's end, ``COALESCE(resolved_at, closed_at)`` (a ticket closed
      straight from new, open or pending, never resolved, ends at its close: closing an
      overdue ticket is a breach, not a way out of the figures);
    - first response: the first reply (``first_response_at``); a **closed** ticket never
      answered counts as breached, in the window of its close (nothing can answer it any
      more), when its reply was due before its clock stopped (``first_response_due_at <
      COALESCE(resolved_at, closed_at)``: the clock stands still once resolved); one closed
      before its reply was due is not judged. A resolved ticket not answered is not judged
      yet (it may be reopened and answered).

    ``attainment`` is met / (met + breached), None with nothing to count. ``open_breached``
    / ``open_at_risk`` are open tickets (in the same team and channel scope, whatever the
    window) past due now / due within the warning window. Two queries.
    """
    qs = Ticket.objects.filter(merged_into__isnull=True)
    if team_ids is not None:
        qs = qs.filter(team_id__in=list(team_ids))
    if channels is not None:
        qs = qs.filter(channel__in=list(channels))
    ended = qs.annotate(sla_ended_at=Coalesce("resolved_at", "closed_at"))
    fr = Q(
        first_response_at__gte=start,
        first_response_at__lt=end,
        first_response_due_at__isnull=False,
    )
    never_answered = Q(
        status=TicketStatus.CLOSED,
        first_response_at__isnull=True,
        closed_at__gte=start,
        closed_at__lt=end,
        first_response_due_at__lt=F("sla_ended_at"),
    )
    res = Q(sla_ended_at__gte=start, sla_ended_at__lt=end, resolution_due_at__isnull=False)
    now = timezone.now()
    counts = ended.aggregate(
        fr_met=Count("pk", filter=fr & Q(first_response_at__lte=F("first_response_due_at"))),
        fr_breached=Count(
            "pk",
            filter=(fr & Q(first_response_at__gt=F("first_response_due_at"))) | never_answered,
        ),
        res_met=Count("pk", filter=res & Q(sla_ended_at__lte=F("resolution_due_at"))),
        res_breached=Count("pk", filter=res & Q(sla_ended_at__gt=F("resolution_due_at"))),
    )
    live = qs.aggregate(
        open_breached=Count("pk", filter=sla_due_q(before=now)),
        open_at_risk=Count(
            "pk", filter=sla_due_q(before=now + sla_warning_window()) & ~sla_due_q(before=now)
        ),
    )

    def part(met: int, breached: int) -> dict[str, Any]:
        total = met + breached
        return {
            "met": met,
            "breached": breached,
            "attainment": (met / total) if total else None,
        }

    return {
        "first_response": part(counts["fr_met"], counts["fr_breached"]),
        "resolution": part(counts["res_met"], counts["res_breached"]),
        "open_breached": live["open_breached"],
        "open_at_risk": live["open_at_risk"],
    }
