"""Admin for orders, interactions and CSAT; export / erase actions on customers.

Imported at the end of ``tickets/admin.py``; it re-registers the core CustomerAdmin with
the data-protection actions and an orders inline.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from support.auth.admin import (
    AboutAdminMixin,
    RecordAdminMixin,
    SupervisorAdmin,
    VisibleRowsAdminMixin,
)
from support.auth.roles import is_supervisor
from tickets.admin import CustomerAdmin
from tickets.context import privacy
from tickets.context import services as context_services
from tickets.context.models import (
    ContextDeadLetter,
    CsatFeedback,
    CustomerErasure,
    Interaction,
    Order,
)
from tickets.context.selectors import interaction_scope_q
from tickets.models import Customer
from tickets.selectors import customers_fully_visible_to
from tickets.services.customers import customer_stamps_renew

#: Why an export or erasure of a customer whom the person sees only in part is refused.
WHOLE_CUSTOMER_REFUSAL = (
    "Only supervisors, or whoever may see every ticket of each selected customer, can "
    "{what}: some of the selected customers have tickets you cannot see. Nothing was done."
)
#: Erasure reaches what no ticket rule covers (the customer's calls, on whichever team's
#: queue, their recordings' transcripts and analyses, the interactions of every channel).
ERASURE_SUPERVISORS = (
    "Only supervisors erase a customer's personal data: it is irreversible, and it reaches "
    "records beyond the tickets you see (the customer's calls on every queue). Nothing was "
    "done."
)


class OrderInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Order
    extra = 0
    fields = ("number", "status", "total", "currency", "placed_at")
    readonly_fields = fields
    ordering = ("-placed_at",)
    show_change_link = True
    max_num = 0


class CustomerContextAdmin(CustomerAdmin):
    inlines = [*CustomerAdmin.inlines, OrderInline]
    actions = ["export_json", "erase_personal_data"]

    def _whole_customers_allowed(
        self, request: HttpRequest, queryset: QuerySet[Customer], what: str
    ) -> bool:
        """Whether the person may act on these customers as a whole (an export holds, and
        an erasure redacts, every ticket of the customer): supervisors, or someone who
        sees every ticket of each (seeing one ticket is not seeing the customer: the rule
        a merge of two customers applies). Otherwise the whole selection is refused, with
        the reason."""
        if is_supervisor(request.user) or customers_fully_visible_to(
            request.user, customer_ids=queryset.values_list("pk", flat=True)
        ):
            return True
        self.message_user(request, WHOLE_CUSTOMER_REFUSAL.format(what=what), messages.ERROR)
        return False

    @admin.action(description="Export selected customers' data as JSON", permissions=["view"])
    def export_json(
        self, request: HttpRequest, queryset: QuerySet[Customer]
    ) -> HttpResponse | None:
        if not self._whole_customers_allowed(request, queryset, "export customers' data"):
            return None
        data = [
            privacy.customer_export(customer=c, actor=request.user, via="admin")
            for c in queryset.order_by("id")
        ]
        body = data[0] if len(data) == 1 else {"customers": data}
        name = f"customer-{data[0]['customer']['id']}" if len(data) == 1 else "customers"
        response = HttpResponse(
            json.dumps(body, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False),
            content_type="application/json",
        )
        response["Content-Disposition"] = f'attachment; filename="{name}-export.json"'
        return response

    @admin.action(
        description="Erase selected customers' personal data (irreversible)",
        permissions=["delete"],
    )
    def erase_personal_data(
        self, request: HttpRequest, queryset: QuerySet[Customer]
    ) -> HttpResponse | None:
        if not is_supervisor(request.user):  # before the confirmation page: nothing to confirm
            self.message_user(request, ERASURE_SUPERVISORS, messages.ERROR)
            return None
        if request.POST.get("confirm") == "yes":
            erased = 0
            for customer in queryset:
                try:
                    privacy.customer_erase(customer=customer, actor=request.user, via="admin")
                except privacy.ErasureIncomplete as exc:  # the others are still erased
                    self.message_user(request, str(exc), messages.ERROR)
                else:
                    erased += 1
            if erased:
                self.message_user(
                    request,
                    f"Erased the personal data of {erased} customer(s).",
                    messages.SUCCESS,
                )
            return None
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Erase personal data?",
            "customers": queryset,
            "action": "erase_personal_data",
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/tickets/context/erase_confirmation.html", context)


admin.site.unregister(Customer)
admin.site.register(Customer, CustomerContextAdmin)


class RenewsContextMixin:
    """Rows a customer context shows (orders, interactions) changed or deleted in the admin
    renew their customers' stamps, as the services' writes do: a cached context (up to
    ``CUSTOMER_CONTEXT_CACHE_TTL``, in every process) stopped showing a deleted order or
    interaction only when it expired."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        before = form.initial.get("customer") if change else None  # an order moved away
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        customer_stamps_renew([c for c in (obj.customer_id, before) if c])

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)  # type: ignore[misc]
        customer_stamps_renew([obj.customer_id])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        customers = list(queryset.values_list("customer_id", flat=True))
        super().delete_queryset(request, queryset)  # type: ignore[misc]
        customer_stamps_renew(customers)


@admin.register(Order)
class OrderAdmin(VisibleRowsAdminMixin, RenewsContextMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    visible_through = ("customer",)
    list_display = ("number", "customer", "status", "total", "currency", "placed_at")
    list_filter = ("status", "currency")
    search_fields = ("number", "customer__email")
    raw_id_fields = ("customer",)
    date_hierarchy = "placed_at"


@admin.register(Interaction)
class InteractionAdmin(  # type: ignore[type-arg]
    VisibleRowsAdminMixin, RenewsContextMixin, RecordAdminMixin, admin.ModelAdmin
):
    """An entry is listed and opened for whoever may see its customer and its ticket and,
    for an entry with a scope (an analysed call's ``call:<contact id>``), that scope under
    the rule its app registered (``tickets.context.scopes``: the call page's), as the
    customer context shows it; supervisors see all."""

    visible_through = ("customer", "ticket")
    list_display = (
        "occurred_at",
        "customer",
        "kind",
        "channel",
        "sentiment_label",
        "sentiment_score",
        "expires_at",
    )
    list_filter = ("kind", "channel", "sentiment_label")
    raw_id_fields = ("customer", "ticket")
    search_fields = ("source_key",)

    def visible_rows_also(self, user: Any) -> Q:
        return interaction_scope_q(user)  # the context's rule, old calls' entries too


@admin.register(CsatFeedback)
class CsatFeedbackAdmin(VisibleRowsAdminMixin, RecordAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    visible_through = ("ticket", "customer")
    list_display = ("ticket", "customer", "rating", "via_link", "recorded_by", "updated_at")
    list_filter = ("rating", "via_link")
    list_select_related = ("ticket", "customer", "recorded_by")
    raw_id_fields = ("ticket", "customer", "recorded_by")


@admin.register(CustomerErasure)
class CustomerErasureAdmin(VisibleRowsAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    visible_through = ("customer",)
    list_display = ("customer", "erased_by", "created_at")
    list_select_related = ("customer", "erased_by")
    readonly_fields = ("customer", "erased_by", "counts", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ContextDeadLetter)
class ContextDeadLetterAdmin(
    AboutAdminMixin, VisibleRowsAdminMixin, RecordAdminMixin, SupervisorAdmin
):
    """Customer-context work that gave up (an entry missing from a customer's history, a
    satisfaction survey not sent), waiting for a supervisor as the other dead letters do
    (Outbox events, Outbound deliveries): the supervisor role uses the page without model
    permissions; re-drive and discard are audited. Records the system writes: never added
    or edited by hand. Supervisors only: a row names a customer and a failure, not always
    a ticket whose rule could place it."""

    about = (
        "Customer-context work that gave up: an entry missing from a customer's "
        "interaction history, or a satisfaction survey not sent. Re-drive once the cause "
        "is fixed (the work is idempotent), or discard (a survey now too late)."
    )
    docs = "docs/customer-context.md"
    # A row names a customer and maybe a ticket: the rule's relations, declared (the page
    # is a supervisor's, who sees every row; anyone else sees none)
    visible_through = ("ticket", "customer")
    visible_to_supervisors_only = True
    list_display = (
        "id",
        "kind",
        "task_name",
        "args",
        "customer",
        "ticket",
        "failures",
        "error",
        "updated_at",
    )
    list_filter = ("kind",)
    list_select_related = ("customer", "ticket")
    search_fields = ("task", "error")
    readonly_fields = [f.name for f in ContextDeadLetter._meta.fields]
    actions = ["redrive", "discard"]

    @admin.display(description="Task")
    def task_name(self, obj: ContextDeadLetter) -> str:
        return obj.task.rsplit(".", 1)[-1]

    @admin.action(description="Re-drive the selected dead letters")
    def redrive(self, request: HttpRequest, queryset: QuerySet[ContextDeadLetter]) -> None:
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors can re-drive.", messages.ERROR)
            return
        ids = list(queryset.values_list("pk", flat=True))
        count = context_services.context_dead_letters_redrive(ids=ids, actor=request.user)
        skipped = len(ids) - count
        note = f" ({skipped} left: see the log)" if skipped else ""
        self.message_user(request, f"Queued {count} dead letter(s) again{note}.")

    @admin.action(description="Discard the selected dead letters (give the work up)")
    def discard(self, request: HttpRequest, queryset: QuerySet[ContextDeadLetter]) -> None:
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors can discard.", messages.ERROR)
            return
        ids = list(queryset.values_list("pk", flat=True))
        count = context_services.context_dead_letters_discard(ids=ids, actor=request.user)
        self.message_user(request, f"Discarded {count} dead letter(s).")
