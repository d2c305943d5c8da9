from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, ProtectedError, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from support.admin_site import admin_request
from support.auth.admin import (
    RecordAdminMixin,
    SupervisorAdmin,
    SupervisorInlineMixin,
    VisibleRelatedListFilter,
    VisibleRowsAdminMixin,
    admin_link,
    admin_superuser_subject_register,
    admin_visibility_register,
)
from support.auth.roles import is_agent, is_supervisor
from support.errors import InvalidInput
from support.parsing import parse_id
from support.services import agent_access_changed
from tickets import services
from tickets.attachments import attachment_url
from tickets.models import (
    AGENT_OPENED_CHANNELS,
    Attachment,
    BusinessCalendar,
    BusinessHours,
    CannedResponse,
    ChannelIdentity,
    Customer,
    Holiday,
    Message,
    SlaEvent,
    SlaPolicy,
    Tag,
    Team,
    Ticket,
    TicketStatus,
)
from tickets.selectors import (
    customer_visibility_q,
    customer_visible_to,
    tag_visibility_q,
    tag_visible_to,
    ticket_number_in,
    ticket_search_query,
    ticket_visibility_q,
    ticket_visible_to,
    user_team_ids,
    visible_ticket_ids,
)
from tickets.services.sla import sla_policies_changed

# What the admin may link or name for whom (support.auth.admin.admin_link): the workbench's
# rules (docs/security.md). Customers follow their tickets; messages and attachments are
# their ticket's.
# The same rules filter the admin pages of these objects and of the records that hang off
# them (``VisibleRowsAdminMixin``: lists, pages, searches, lookups).
admin_visibility_register(
    Ticket,
    lambda user, t: ticket_visible_to(user, team_id=t.team_id, assignee_id=t.assignee_id),
    rows=ticket_visibility_q,
    subject_name="ticket",
)
admin_visibility_register(
    Customer,
    lambda user, c: customer_visible_to(user, customer_id=c.pk),
    rows=customer_visibility_q,
    subject_name="customer",
)
admin_visibility_register(
    Message,
    lambda user, m: m.ticket_id in visible_ticket_ids(user, [m.ticket_id]),
    rows=lambda user: Q(ticket__in=Ticket.objects.filter(ticket_visibility_q(user)).values("pk")),
)
# A tag is named to whoever sees a ticket bearing it: the admin's tag list, the tag
# choices of a ticket's form and the ticket list's tag filter (an agent's list would
# otherwise name the tags of other teams' tickets).
admin_visibility_register(Tag, tag_visible_to, rows=tag_visibility_q)
admin_visibility_register(
    Attachment,
    lambda user, a: a.message.ticket_id in visible_ticket_ids(user, [a.message.ticket_id]),
    rows=lambda user: Q(
        message__ticket__in=Ticket.objects.filter(ticket_visibility_q(user)).values("pk")
    ),
    # the audit log's "Download again" entries: shown to whoever sees the ticket
    subject_name="attachment",
)


def workbench_visible(ticket: Ticket) -> bool:
    """Whether the admin user being served may open this ticket's workbench page (agents
    and supervisors, under the ticket rule); the page answers 404 otherwise."""
    request = admin_request()
    user = getattr(request, "user", None)
    return (
        user is not None
        and is_agent(user)
        and ticket_visible_to(user, team_id=ticket.team_id, assignee_id=ticket.assignee_id)
    )


#: Why a channel identity's form refuses a change by whoever is not a supervisor.
IDENTITY_SUPERVISORS = (
    "Only supervisors change a channel identity (its customer, channel or id decide whose "
    "messages, and replies, are whose). To join two customers, merge their tickets in the "
    "workbench. Nothing was changed."
)
#: What the customer page says to a supervisor (``CustomerAdmin.change_view``).
CUSTOMER_CONTACT_ELSEWHERE = (
    "The name, e-mail address and phone number are changed on the customer's page in the "
    "workbench ({url}, Edit contact details), where they are checked (an address or number "
    "another customer has), audit-logged and the tickets' search follows."
)
#: What the customer page says to whoever may only read it (``CustomerAdmin.change_view``).
CUSTOMER_READ_ONLY = (
    "Only supervisors change a customer here. Whoever sees every ticket of the customer "
    "changes its name on the customer's page in the workbench ({url}, Edit contact "
    "details); its e-mail address, phone number and identities are a supervisor's."
)


class ChannelIdentityInline(SupervisorInlineMixin, admin.TabularInline):  # type: ignore[type-arg]
    """The customer's identities, on its page: only supervisors change them (and add or
    delete them, given those Django permissions), since they decide whose messages are
    the customer's, as on the identities' own page; anyone else is shown them, as the
    page is read-only to them (``CustomerAdmin.has_change_permission``)."""

    model = ChannelIdentity
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) and super().has_delete_permission(request, obj)


@admin.register(Customer)
class CustomerAdmin(VisibleRowsAdminMixin, SupervisorAdmin):
    """Customers, changed here by supervisors only. The workbench lets an agent who sees
    every ticket of a customer change its name (``customer_contact_update``, audited,
    the tickets' search refreshed) and only supervisors its address and number, which
    decide whose mail, calls and replies are the customer's; a staff agent given
    ``change_customer`` saved any field here, for a customer it saw one ticket of. So the
    page is read-only to it (and says where the name is changed): the workbench's rule
    with no second copy of it here. The contact fields are read-only here to supervisors
    too (``CONTACT_FIELDS``): saved by this form they skipped the workbench's checks (a
    number another customer has), its audit log and the tickets' search refresh; a
    supervisor changes them on the workbench's customer page, as anyone does."""

    show_full_result_count = False  # a big table: one count per page, not two

    #: Changed only through ``customer_contact_update`` (the workbench's contact form).
    CONTACT_FIELDS = ("name", "email", "phone")

    visible_through = ("",)
    list_display = (
        "id",
        "name",
        "email",
        "phone",
        "external_id",
        "vip_tier",
        "account_type",
        "created_at",
    )
    list_filter = ("vip_tier", "account_type")
    # external_id: the ticketing system's own customer id (POST /tickets' customer_id)
    search_fields = ("name", "email", "phone", "external_id", "identities__external_id")
    # Annotated: the customer-context admin extends it (mypy could not always infer it).
    inlines: ClassVar[list[type[admin.options.InlineModelAdmin[Any, Any]]]] = [
        ChannelIdentityInline
    ]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        return (*fields, *self.CONTACT_FIELDS) if obj is not None else fields

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        pk = parse_id(object_id)
        if pk is not None:
            # above the fields (base_site.html); shown only with the page, which answers
            # as a missing customer does for one the person may not see
            url = reverse("customer", kwargs={"customer_id": pk})
            about = (
                CUSTOMER_CONTACT_ELSEWHERE if is_supervisor(request.user) else CUSTOMER_READ_ONLY
            )
            # the sentence is ours; the link is built with format_html (its URL escaped)
            link = format_html('<a href="{}">{}</a>', url, url)
            extra_context = {**(extra_context or {}), "admin_about": format_html(about, url=link)}
        return super().change_view(request, object_id, form_url, extra_context)


class ChannelIdentityAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = ChannelIdentity
        fields = ["customer", "channel", "external_id", "display_name"]

    #: The person filling the form in (``ChannelIdentityAdmin.get_form``).
    actor: Any = None

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        # The workbench moves identities only in a merge of two customers whose every
        # ticket the agent sees (``tickets.services.merge``); here, as on the customer
        # page, supervisors alone change them. Said on the form, nothing saved.
        if self.instance.pk and self.changed_data and not is_supervisor(self.actor):
            raise forms.ValidationError(IDENTITY_SUPERVISORS)
        return cleaned


@admin.register(ChannelIdentity)
class ChannelIdentityAdmin(VisibleRowsAdminMixin, SupervisorAdmin):
    visible_through = ("customer",)
    list_display = ("channel", "external_id", "customer", "created_at")
    list_filter = ("channel",)
    search_fields = ("external_id", "customer__name", "customer__email")
    raw_id_fields = ("customer",)
    form = ChannelIdentityAdminForm

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        # an identity added to a customer hands whoever writes from it that customer's
        # record (and the customer's replies on that channel): supervisors only
        return is_supervisor(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # deleting one is a change of whose messages are the customer's: supervisors only
        # (given Django's permission), as changing one is (``ChannelIdentityAdminForm``)
        # and as on the customer page's inline (``ChannelIdentityInline``)
        return is_supervisor(request.user) and super().has_delete_permission(request, obj)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        # the person's form class first, then the admin's narrowing of its choices
        # (``VisibleRowsAdminMixin.get_form``), as ``TicketAdmin.get_form``
        kwargs["form"] = type(self.form.__name__, (self.form,), {"actor": request.user})
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        previous = ChannelIdentity.objects.get(pk=obj.pk).customer if change else None
        super().save_model(request, obj, form, change)
        if previous is not None and previous.pk != obj.customer_id:
            # Moving an identity hands that person's future messages to another customer:
            # supervisors only (``ChannelIdentityAdminForm.clean``), and audited.
            services.channel_identity_move(
                identity=obj, customer=obj.customer, previous=previous, actor=request.user
            )


#: How many of the tickets that stop a team's deletion its confirmation page lists.
TEAM_DELETE_BLOCKERS_SHOWN = 20
TEAM_HAS_TICKETS = "The team still has tickets: move them to another team first, then delete it."


@admin.register(Team)
class TeamAdmin(SupervisorAdmin):
    list_display = ("name", "slug", "member_count")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("members",)
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        # Counted in the list's query, not once per row.
        return super().get_queryset(request).annotate(members_total=Count("members"))

    @admin.display(description="Members", ordering="members_total")
    def member_count(self, obj: Team) -> int:
        return int(obj.members_total)  # type: ignore[attr-defined]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        before = set(form.instance.members.values_list("pk", flat=True)) if change else set()
        super().save_related(request, form, formsets, change)
        after = set(form.instance.members.values_list("pk", flat=True))
        # Live sockets of agents who joined or left re-check what they may see.
        agent_access_changed(user_ids=before ^ after, reason="team membership")

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """A team that still has tickets is not deleted (``Ticket.team`` is ``PROTECT``: a
        ticket with no team is visible to every agent). The confirmation page (and "delete
        selected") lists the first tickets that block it, each named and linked as
        :func:`~support.auth.admin.admin_link` does (a ticket the person may not see is not
        named), and how many more; nothing else is asked then, so the page says what to do
        (move them), not that some other kind of object may not be deleted."""
        ids = [team.pk for team in objs]
        # Locked first (the delete view and action run in a transaction): a ticket moving
        # in meanwhile (``tickets.services.lifecycle._team_lock``) is seen, or waits.
        with transaction.atomic():
            list(Team.objects.select_for_update().filter(pk__in=ids).order_by("pk").values("pk"))
        blocking = Ticket.objects.filter(team__in=ids).order_by("pk")
        total = blocking.count()
        if not total:
            return super().get_deleted_objects(objs, request)
        shown: list[str] = [
            format_html("{}: {}", "Ticket", admin_link(ticket, site=self.admin_site))
            for ticket in blocking[:TEAM_DELETE_BLOCKERS_SHOWN]
        ]
        if total > len(shown):
            shown.append(f"… and {total - len(shown)} more ticket(s)")
        return [], {}, set(), shown

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except ProtectedError:
            # a ticket moved into the team between the check above and the delete (its
            # transaction rolled back): the page again, listing it
            self.message_user(request, TEAM_HAS_TICKETS, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def response_action(self, request: HttpRequest, queryset: QuerySet[Team]) -> Any:
        # "delete selected" logs the deletions before it deletes: both or neither
        try:
            with transaction.atomic():
                return super().response_action(request, queryset)
        except ProtectedError:
            self.message_user(request, TEAM_HAS_TICKETS, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request: HttpRequest, obj: Team) -> None:
        members = list(obj.members.values_list("pk", flat=True))
        super().delete_model(request, obj)
        agent_access_changed(user_ids=members, reason="team deleted")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        members = list(queryset.values_list("members", flat=True))
        super().delete_queryset(request, queryset)
        agent_access_changed(user_ids=[m for m in members if m], reason="team deleted")


class TagAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Tag
        fields = ["name"]

    def clean_name(self) -> str:
        """The name as every other way in stores it (trimmed, lower case: the workbench
        and the API would never find "VIP " as the tag "vip")."""
        try:
            names = services.tag_names_normalise([self.cleaned_data["name"]])
        except InvalidInput as exc:
            raise forms.ValidationError(exc.message) from exc
        if not names:
            raise forms.ValidationError("Give a tag name.")
        return names[0]


@admin.register(Tag)
class TagAdmin(VisibleRowsAdminMixin, SupervisorAdmin):
    visible_through = ("",)
    form = TagAdminForm
    search_fields = ("name",)


#: The messages a ticket's admin page shows, the latest first; the message list has them all.
CONVERSATION_SHOWN = 50


def conversation_html(ticket: Ticket) -> str:
    """The latest ``CONVERSATION_SHOWN`` messages of ``ticket`` as a table (two queries
    whatever the conversation's length: a thread of thousands of messages was a page of
    megabytes), with a link to the message list filtered to the ticket for the rest."""
    if ticket.pk is None:
        return "(after saving)"
    total = ticket.messages.count()
    latest = list(
        ticket.messages.select_related("author_user", "author_customer").order_by(
            "-created_at", "-id"
        )[:CONVERSATION_SHOWN]
    )
    rows = format_html_join(
        "",
        '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{} · {}</td><td>{}</td>'
        '<td style="white-space: pre-wrap">{}</td><td>{}</td></tr>',
        (
            (
                reverse("admin:tickets_message_change", args=[m.pk]),
                m.pk,
                date_format(timezone.localtime(m.created_at), "DATETIME_FORMAT"),
                m.get_direction_display(),
                m.get_kind_display(),
                m.author_user or m.author_customer or "-",
                Truncator(m.body_text).chars(500),
                " ".join(filter(None, [m.delivery_status, m.delivery_error])) or "-",
            )
            for m in latest
        ),
    )
    everything = reverse("admin:tickets_message_changelist") + f"?ticket__id__exact={ticket.pk}"
    summary = (
        format_html("All {} messages", total)
        if total <= CONVERSATION_SHOWN
        else format_html("The latest {} of {} messages", CONVERSATION_SHOWN, total)
    )
    return format_html(
        '<p>{} (<a href="{}">the message list</a>).</p>'
        "<table><thead><tr><th>Message</th><th>At</th><th>Direction · kind</th>"
        "<th>Author</th><th>Text</th><th>Delivery</th></tr></thead><tbody>{}</tbody></table>",
        summary,
        everything,
        rows,
    )


#: What the workbench and the API answer an agent who gives a ticket to someone else.
ASSIGNMENT_REFUSAL = "Only supervisors assign tickets to other people."


class TicketAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Ticket
        fields = [
            "customer",
            "subject",
            "status",
            "priority",
            "team",
            "assignee",
            "tags",
            "channel",
            "channel_account_id",
            "origin_platform_id",
            "is_bot_handoff",
            "needs_review",
            "merged_into",
        ]

    #: The person filling the form in (``TicketAdmin.get_form``): the assignment rule is
    #: theirs to meet.
    actor: Any = None

    def clean_assignee(self) -> Any:
        assignee = self.cleaned_data.get("assignee")
        refusal = services.assignee_refusal(assignee) if assignee is not None else None
        if refusal is not None:
            raise forms.ValidationError(refusal)
        current = (
            Ticket.objects.filter(pk=self.instance.pk).values_list("assignee_id", flat=True).first()
            if self.instance.pk
            else None
        )
        if self.actor is not None and not services.assignment_allowed(
            actor=self.actor,
            current_assignee_id=current,
            assignee_id=assignee.pk if assignee is not None else None,
        ):  # the workbench's and the API's rule: agents take or release their own
            raise forms.ValidationError(ASSIGNMENT_REFUSAL)
        return assignee

    def clean_team(self) -> Any:
        team = self.cleaned_data.get("team")
        current = (
            Ticket.objects.filter(pk=self.instance.pk).values_list("team_id", flat=True).first()
            if self.instance.pk
            else None
        )
        if (
            self.instance.pk
            and self.actor is not None
            and not services.team_change_allowed(
                actor=self.actor, current_team_id=current, team_id=team.pk if team else None
            )
        ):  # the service's rule, said on the form rather than as an error page
            raise forms.ValidationError(services.NO_TEAM_REFUSAL)
        return team

    def clean_status(self) -> str:
        status: str = self.cleaned_data["status"]
        if self.instance.pk:
            current = Ticket.objects.only("status").get(pk=self.instance.pk)
            if not current.can_transition_to(status):
                raise forms.ValidationError(f"A {current.status} ticket cannot become {status}.")
        return status


class TicketAdminAddForm(TicketAdminForm):
    """The add page: a ticket opened here is opened as the API and intake open one
    (``services.ticket_create``: its first message, due times, events, routing)."""

    description = forms.CharField(
        widget=forms.Textarea,
        required=False,
        help_text="The customer's first message, as the start of the ticket's timeline.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "channel" in self.fields:  # the workbench's "New ticket" choices: no channel thread
            cast(forms.ChoiceField, self.fields["channel"]).choices = AGENT_OPENED_CHANNELS


#: Fixed once a ticket exists: where it came from (intake's facts) and what it was merged
#: into (the workbench's merge moves its conversation, which a field edit would not).
TICKET_FIXED_FIELDS = (
    "customer",
    "channel",
    "channel_account_id",
    "origin_platform_id",
    "is_bot_handoff",
    "merged_into",
)
#: Set by what happens to a ticket, or by channel intake alone (which account and whose
#: channel id a reply goes to: set by hand, a reply would go from the company's WhatsApp
#: number to any number, or into another web chat visitor's chat), not on its add page.
TICKET_NOT_ON_ADD = (
    "status",
    "needs_review",
    "merged_into",
    "channel_account_id",
    "origin_platform_id",
    "is_bot_handoff",
)


@admin.register(Ticket)
class TicketAdmin(VisibleRowsAdminMixin, SupervisorAdmin):
    visible_through = ("",)
    form = TicketAdminForm
    list_display = (
        "number",
        "subject",
        "customer",
        "channel",
        "status",
        "priority",
        "team",
        "assignee",
        "needs_review",
        "created_at",
    )
    list_filter = (
        "status",
        "priority",
        "channel",
        "team",
        "needs_review",
        "is_bot_handoff",
        # the tags this viewer may see named, not every tag (a name can tell)
        ("tags", VisibleRelatedListFilter),
        "created_at",
    )
    # ``get_search_results``: the inbox's search (a number, or words in the GIN-indexed
    # ``search_vector``), not a scan of every subject and customer
    search_fields = ("subject",)
    search_help_text = (
        "A ticket number (T-000123), or words of the subject, the recent messages or the "
        "customer's name, e-mail or phone."
    )
    list_select_related = ("customer", "team", "assignee")
    raw_id_fields = ("customer", "merged_into")
    autocomplete_fields = ("tags",)
    show_full_result_count = False  # one count of 100,000 tickets per page is enough
    readonly_fields = (
        "number",
        "correlation_id",
        "created_by",
        "first_response_at",
        "resolved_at",
        "closed_at",
        "last_message_at",
        "waiting_since",
        "sla_policy",
        "first_response_due_at",
        "resolution_due_at",
        "sla_paused_at",
        "sla_paused_seconds",
        "created_at",
        "updated_at",
        "conversation",
    )
    actions = [
        "mark_resolved",
        "mark_closed",
        "set_priority_urgent",
        "set_priority_high",
        "clear_needs_review",
        "unassign",
    ]
    list_per_page = 50

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Ticket], search_term: str
    ) -> tuple[QuerySet[Ticket], bool]:
        search = search_term.strip()[:200]
        if not search:
            return queryset, False
        number = ticket_number_in(search) or parse_id(search)
        if number is not None:
            return queryset.filter(pk=number), False
        return queryset.filter(search_vector=ticket_search_query(search)), False

    @admin.display(description="Conversation")
    def conversation(self, obj: Ticket) -> str:
        return conversation_html(obj)

    @admin.display(description="Workbench")
    def workbench_link(self, obj: Ticket) -> str:
        if obj.pk is None:  # the add page: no workbench page yet
            return "(after saving)"
        if not workbench_visible(obj):
            return "Not open to you in the workbench"
        return format_html(
            '<a href="{}">Open {} in the workbench</a>',
            reverse("ticket", kwargs={"ref": obj.number}),
            obj.number,
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ["workbench_link", *super().get_readonly_fields(request, obj)]
        if obj is None:
            return (*fields, *TICKET_NOT_ON_ADD)
        fields += TICKET_FIXED_FIELDS
        if not is_supervisor(request.user):  # clearing it says a supervisor reviewed it
            fields.append("needs_review")
        return tuple(fields)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        # the person's form class first, then the admin's narrowing of its choices
        # (``VisibleRowsAdminMixin.get_form``), which a subclass made afterwards would lose
        base = TicketAdminAddForm if obj is None else self.form
        kwargs["form"] = type(base.__name__, (base,), {"actor": request.user})
        return super().get_form(request, obj, change, **kwargs)

    def _each(self, request: HttpRequest, queryset: QuerySet[Ticket], **changes: Any) -> None:
        for ticket in queryset:
            services.ticket_update(ticket=ticket, actor=request.user, **changes)
        self.message_user(request, f"{queryset.count()} ticket(s) updated.")

    # Priority and status: what an agent may do to the tickets it sees in the workbench
    # (the rows here are those), so whoever may change tickets here; not a view permission.
    @admin.action(description="Set priority: urgent", permissions=["change"])
    def set_priority_urgent(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        self._each(request, queryset, priority="urgent")

    @admin.action(description="Set priority: high", permissions=["change"])
    def set_priority_high(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        self._each(request, queryset, priority="high")

    @admin.action(description="Clear 'needs review' (AI decision checked)", permissions=["change"])
    def clear_needs_review(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        if not is_supervisor(request.user):  # the timeline says a supervisor reviewed it
            self.message_user(request, "Only supervisors can clear 'needs review'.", messages.ERROR)
            return
        self._each(request, queryset, needs_review=False, reason="reviewed by a supervisor")

    @admin.action(description="Unassign selected tickets", permissions=["change"])
    def unassign(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        with transaction.atomic():
            # the rule on the rows as they are written (locked, in id order), as the
            # workbench applies it: agents release their own tickets, not someone else's;
            # one refused, none released
            tickets = list(
                Ticket.objects.filter(pk__in=queryset.values("pk"))
                .order_by("pk")
                .select_for_update()
            )
            if not all(
                services.assignment_allowed(
                    actor=request.user, current_assignee_id=t.assignee_id, assignee_id=None
                )
                for t in tickets
            ):
                self.message_user(
                    request,
                    "Only supervisors release tickets assigned to other people. "
                    "Nothing was unassigned.",
                    messages.ERROR,
                )
                return
            for ticket in tickets:
                services.ticket_assign(ticket=ticket, assignee=None, actor=request.user)
        self.message_user(request, f"{len(tickets)} ticket(s) unassigned.")

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Ticket], status: str) -> None:
        changed, skipped = 0, 0
        for ticket in queryset:
            if ticket.can_transition_to(status):
                services.ticket_update(ticket=ticket, actor=request.user, status=status)
                changed += 1
            else:
                skipped += 1
        self.message_user(
            request,
            f"{changed} ticket(s) now {status}; {skipped} skipped "
            "(that change is not allowed from their status).",
        )

    @admin.action(description="Resolve selected tickets", permissions=["change"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        self._set_status(request, queryset, TicketStatus.RESOLVED)

    @admin.action(description="Close selected tickets", permissions=["change"])
    def mark_closed(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        self._set_status(request, queryset, TicketStatus.CLOSED)

    def save_model(self, request: HttpRequest, obj: Ticket, form: Any, change: bool) -> None:
        # Every edit goes through the services, so it is validated, written to the
        # timeline and published (the form's fields are those they apply; the rest are
        # read-only here): a field saved by the form alone would skip all three.
        tags = [tag.name for tag in form.cleaned_data.get("tags", ())]
        if not change:
            created = services.ticket_create(
                customer=obj.customer,
                subject=obj.subject,
                body=form.cleaned_data.get("description", ""),
                channel=obj.channel,
                priority=obj.priority,
                team=obj.team,
                tags=tags,
                created_by=request.user,
            )
            if obj.assignee_id is not None:
                services.ticket_assign(ticket=created, assignee=obj.assignee, actor=request.user)
            obj.pk = created.pk  # the admin's log entry and redirect name the new ticket
            obj._state.adding = False
            return
        if form.initial:
            # locked (the admin saves in a transaction): the assignment rule holds for the
            # row as it is written, not only as the form read it
            original = Ticket.objects.select_for_update().get(pk=obj.pk)
            if obj.assignee_id != original.assignee_id and not services.assignment_allowed(
                actor=request.user,
                current_assignee_id=original.assignee_id,
                assignee_id=obj.assignee_id,
            ):  # given to someone else since the form was checked
                raise PermissionDenied(ASSIGNMENT_REFUSAL)
            review = (
                form.cleaned_data.get("needs_review") if "needs_review" in form.fields else None
            )
            services.ticket_update(
                ticket=original,
                actor=request.user,
                status=obj.status,
                priority=obj.priority,
                team=obj.team,
                subject=obj.subject,
                tags=tags if "tags" in form.fields else None,
                needs_review=review,
                reason="reviewed by a supervisor"
                if original.needs_review and review is False
                else "",
            )
            if obj.assignee_id != original.assignee_id:
                services.ticket_assign(ticket=original, assignee=obj.assignee, actor=request.user)
            return
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # the tags were set by the service (``save_model``), not to be written again here
        form.cleaned_data.pop("tags", None)
        super().save_related(request, form, formsets, change)


@admin.register(Message)
class MessageAdmin(VisibleRowsAdminMixin, RecordAdminMixin, SupervisorAdmin):
    """The conversation as it happened: what a customer wrote and what was sent cannot be
    rewritten or made up here (no event, audit or delivery would follow)."""

    visible_through = ("",)
    list_display = ("id", "ticket", "direction", "kind", "channel", "delivery_status", "created_at")
    list_filter = ("direction", "kind", "channel", "delivery_status")
    # ``get_search_results``: exact ids, or the tickets' indexed search (a million bodies
    # are not scanned for a word)
    search_fields = ("channel_message_id",)
    search_help_text = (
        "A message's id or channel message id, a ticket number (T-000123), or words: the "
        "messages of the tickets whose subject, recent messages or customer match them."
    )
    raw_id_fields = ("ticket", "author_customer", "author_user")
    show_full_result_count = False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Message], search_term: str
    ) -> tuple[QuerySet[Message], bool]:
        search = search_term.strip()[:200]
        if not search:
            return queryset, False
        ticket = ticket_number_in(search)
        if ticket is not None:
            return queryset.filter(ticket_id=ticket), False
        found = Q(channel_message_id=search)
        number = parse_id(search)
        if number is not None:
            found |= Q(pk=number)
        tickets = Ticket.objects.filter(search_vector=ticket_search_query(search))
        return queryset.filter(found | Q(ticket_id__in=tickets.values("pk"))), False


#: ``(attachment_ids, actor) -> (queued, expired, skipped)``: what "Download again" calls.
DownloadRedrive = Callable[..., tuple[int, int, int]]
_download_redrive: list[DownloadRedrive] = []


def attachment_download_redrive_register(redrive: DownloadRedrive) -> None:
    """The channels app plugs in its re-drive of failed downloads
    (``channels_app.services.media.attachment_downloads_redrive``, from its ``admin.py``):
    the core's admin imports no feature app (routing's admin imports this module, and
    channels and routing never import each other). Without it the action is not offered."""
    _download_redrive[:] = [redrive]


@admin.register(Attachment)
class AttachmentAdmin(VisibleRowsAdminMixin, RecordAdminMixin, SupervisorAdmin):
    """Files as received or sent: re-pointing one at another ticket's file would hand it to
    whoever may see this ticket."""

    show_full_result_count = False  # a big table: one count per page, not two

    visible_through = ("",)
    list_display = (
        "filename",
        "kind",
        "content_type",
        "size",
        "download_status",
        "message",
        "created_at",
    )
    list_filter = ("kind", "download_status")
    raw_id_fields = ("message",)
    # The stored file's own URL (``/media/...``, or a bare S3 URL) is not served: files
    # go out through the download view, which checks who asks and sets a safe disposition.
    exclude = ("file",)
    readonly_fields = ("download",)
    actions = ["download_again"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not _download_redrive:
            actions.pop("download_again", None)
        return actions

    @admin.action(description="Download again")
    def download_again(self, request: HttpRequest, queryset: QuerySet[Attachment]) -> None:
        """A download that failed for good (retries run out: "gave up after 6 attempts:
        WhatsApp answered HTTP 503") is fetched again, once the cause is fixed: the
        supervisors' re-drive, audited, as the other dead letters'."""
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors can download again.", messages.ERROR)
            return
        ids = list(queryset.values_list("pk", flat=True))  # the rows this viewer sees
        queued, expired, skipped = _download_redrive[0](attachment_ids=ids, actor=request.user)
        notes = []
        if expired:
            notes.append(
                f"{expired} left failed: past their channel's reference lifetime (the "
                "channel no longer keeps the file)"
            )
        if skipped:
            notes.append(f"{skipped} left as they were (not failed, or nothing to fetch)")
        level = messages.SUCCESS if queued else messages.WARNING
        text = "; ".join([f"{queued} download(s) queued again", *notes])
        self.message_user(request, f"{text}.", level)

    @admin.display(description="File")
    def download(self, obj: Attachment) -> str:
        url = attachment_url(obj) if obj.pk else ""
        if not url:
            return "—"
        if obj.file and not workbench_visible(obj.message.ticket):
            # The download view applies the ticket rule (404 otherwise): no link.
            return obj.filename
        return format_html('<a href="{}">{}</a>', url, obj.filename)


@admin.register(CannedResponse)
class CannedResponseAdmin(SupervisorAdmin):
    """A staff agent given Django permissions on canned responses lists, opens and files
    them under its own teams' and the global ones only, as the workbench offers them
    (``selectors.canned_response_list``): a team's replies tell what the team handles
    (security review 2026-12-07: every team's were listed)."""

    list_display = ("title", "shortcut", "team", "is_active", "updated_at")
    list_filter = ("is_active", "team")
    list_select_related = ("team",)
    search_fields = ("title", "shortcut", "body")
    prepopulated_fields = {"shortcut": ("title",)}
    fieldsets = (
        (None, {"fields": ("title", "shortcut", "team", "is_active")}),
        (
            "Text",
            {
                "fields": ("body",),
                "description": "Placeholders: {{ customer.name }}, {{ customer.first_name }}, "
                "{{ customer.email }}, {{ ticket.number }}, {{ ticket.subject }}, "
                "{{ agent.name }}, {{ agent.first_name }}.",
            },
        ),
    )

    @staticmethod
    def _every_team(request: HttpRequest) -> bool:
        return is_supervisor(request.user) or bool(request.user.is_superuser)

    def get_queryset(self, request: HttpRequest) -> QuerySet[CannedResponse]:
        rows = super().get_queryset(request)
        if self._every_team(request):
            return rows
        return rows.filter(Q(team__isnull=True) | Q(team_id__in=user_team_ids(request.user)))

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "team" and not self._every_team(request):
            own = Team.objects.filter(pk__in=user_team_ids(request.user)).order_by("name")
            kwargs["queryset"] = own
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_list_filter(self, request: HttpRequest) -> Any:
        # the team filter lists every team's name
        return self.list_filter if self._every_team(request) else ("is_active",)


class TeamMembershipInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Team.members.through
    extra = 0
    verbose_name = "team membership"
    verbose_name_plural = "teams"


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)
# People and their roles are superusers' in the admin; so are the audit-log entries
# about them (support.admin.AuditLogAdmin).
admin_superuser_subject_register(User)
admin_superuser_subject_register(Group)


@admin.register(User)
class AgentUserAdmin(UserAdmin):  # type: ignore[type-arg]
    """Users with their roles (groups) and teams: how supervisors manage agents."""

    list_display = ("username", "first_name", "last_name", "email", "roles", "is_active")
    list_filter = ("groups", "teams", "is_active", "is_staff")
    inlines = [TeamMembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="Roles")
    def roles(self, obj: Any) -> str:
        return ", ".join(g.name for g in obj.groups.all()) or "—"

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if change:  # roles, teams or the active flag may have changed
            agent_access_changed(user_ids=[form.instance.pk], reason="user changed")

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        pk = obj.pk
        super().delete_model(request, obj)
        agent_access_changed(user_ids=[pk], reason="user deleted")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        pks = list(queryset.values_list("pk", flat=True))
        super().delete_queryset(request, queryset)
        agent_access_changed(user_ids=pks, reason="user deleted")


# --- SLA (docs/sla.md): supervisors edit calendars and policies; agents cannot ----------


class _SupervisorEditsInline(SupervisorInlineMixin):
    """Rows of a calendar: supervisors add and remove them too."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) or super().has_add_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_supervisor(request.user) or super().has_delete_permission(request, obj)  # type: ignore[misc]


class BusinessHoursFormSet(forms.BaseInlineFormSet):  # type: ignore[type-arg]
    """Refuses two intervals of one weekday that overlap (the same row twice, 09:00-17:00
    and 12:00-13:00): each open moment counts once. Touching ones (09:00-12:00 and
    12:00-13:00) are fine. The arithmetic merges overlaps anyway (``tickets.sla``)."""

    def clean(self) -> None:
        super().clean()
        by_day: dict[int, list[tuple[Any, Any]]] = {}
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE") or form.errors:
                continue
            opens, closes, day = data.get("opens_at"), data.get("closes_at"), data.get("weekday")
            if opens is None or closes is None or day is None:
                continue
            by_day.setdefault(int(day), []).append((opens, closes))
        names = dict(BusinessHours._meta.get_field("weekday").choices or [])
        problems = []
        for day, spans in sorted(by_day.items()):
            spans.sort()
            latest = spans[0]  # the interval that closes last so far
            for opens, closes in spans[1:]:
                if opens < latest[1]:
                    problems.append(
                        f"{names.get(day, day)}: {latest[0]:%H:%M}–{latest[1]:%H:%M} "
                        f"overlaps {opens:%H:%M}–{closes:%H:%M}"
                    )
                if closes > latest[1]:
                    latest = (opens, closes)
        if problems:
            raise forms.ValidationError(
                "Business hours may not overlap on the same day (use one interval, or two "
                "that meet, e.g. 09:00–12:00 and 12:00–17:00). " + "; ".join(problems) + "."
            )


class BusinessHoursInline(_SupervisorEditsInline, admin.TabularInline):  # type: ignore[type-arg]
    model = BusinessHours
    formset = BusinessHoursFormSet
    extra = 0


class HolidayInline(_SupervisorEditsInline, admin.TabularInline):  # type: ignore[type-arg]
    model = Holiday
    extra = 0


class ReappliesSlaOnChange:
    """Saving or deleting here changes which due times open tickets should have: once the
    change is committed a worker recomputes them (``tickets_sla_reapply``). ``save_related``
    runs after the object and its inlines (hours, holidays) are saved."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)  # type: ignore[misc]
        sla_policies_changed()

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)  # type: ignore[misc]
        sla_policies_changed()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        super().delete_queryset(request, queryset)  # type: ignore[misc]
        sla_policies_changed()


@admin.register(BusinessCalendar)
class BusinessCalendarAdmin(ReappliesSlaOnChange, SupervisorAdmin):
    list_display = ("name", "timezone", "is_24_7", "updated_at")
    search_fields = ("name",)
    inlines = [BusinessHoursInline, HolidayInline]


@admin.register(SlaPolicy)
class SlaPolicyAdmin(ReappliesSlaOnChange, SupervisorAdmin):
    list_display = (
        "name",
        "priority",
        "team",
        "channel",
        "first_response_minutes",
        "resolution_minutes",
        "calendar",
        "escalate_on",
        "is_active",
    )
    list_filter = ("priority", "is_active", "team", "channel")
    list_select_related = ("team", "calendar")
    search_fields = ("name",)
    fieldsets = (
        (None, {"fields": ("name", "is_active", "priority", "team", "channel", "calendar")}),
        (
            "Targets (business minutes)",
            {"fields": ("first_response_minutes", "resolution_minutes")},
        ),
        (
            "Escalation",
            {"fields": ("escalate_on", "escalate_raise_priority", "escalate_to_team")},
        ),
    )


@admin.register(SlaEvent)
class SlaEventAdmin(VisibleRowsAdminMixin, RecordAdminMixin, SupervisorAdmin):
    """The checker's record (read-only): the page shows every field, the list all but the
    escalation (a JSON list of what was done)."""

    visible_through = ("ticket",)
    fields = readonly_fields = (
        "ticket",
        "target",
        "kind",
        "due_at",
        "stopped_at",
        "policy_name",
        "escalation",
        "created_at",
    )
    list_display = tuple(name for name in readonly_fields if name != "escalation")
    list_filter = ("target", "kind")


from tickets.context.admin import *  # noqa: E402, F403 - customer-context admin
