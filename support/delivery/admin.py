"""Every outbound delivery in one place (filter by target kind and status, attempts inline),
dead-letter re-drive (bulk action, and a button on a dead letter's page), status updates
whose replays were given up (a filter, and an action that runs them again) and the
targets' circuits ("resume now"; a paused target shows in the deliveries list too). The
pages are ``SupervisorAdmin`` ones (the supervisor role may use them without model
permissions); re-drive, replay and resume are for supervisors only and audited."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from support.auth.admin import (
    ExactSearchMixin,
    SupervisorAdmin,
    SupervisorInlineMixin,
    VisibleRowsAdminMixin,
    admin_link,
)
from support.auth.roles import is_supervisor
from support.delivery import services
from support.delivery.models import Attempt, Circuit, CircuitState, Delivery, OutcomeReplay
from support.models import DeliveryStatus


class OutcomeReplayFilter(admin.SimpleListFilter):
    """Finished deliveries whose status update (the kind's hook) an integration's sweep
    replays: still trying, or given up (``services.deliveries_outcome_replay``)."""

    title = "status update replays"
    parameter_name = "outcome_replay"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("given_up", "Status update given up"), ("replaying", "Being replayed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
        if self.value() == "given_up":
            return queryset.filter(outcome_replay__given_up_at__isnull=False)
        if self.value() == "replaying":
            return queryset.filter(
                outcome_replay__isnull=False, outcome_replay__given_up_at__isnull=True
            )
        return queryset


class AttemptInline(SupervisorInlineMixin, admin.TabularInline):  # type: ignore[type-arg]
    model = Attempt
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "number",
        "created_at",
        "outcome",
        "http_status",
        "duration_ms",
        "error_code",
        "error",
        "request_summary",
        "response_summary",
        "lease_owner",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ExactSearchMixin, VisibleRowsAdminMixin, SupervisorAdmin):
    show_full_result_count = False  # a big table: one count per page, not two
    # A delivery about a ticket or a call (a reply, a CRM push) carries its text: listed
    # for those who may see that ticket or call.
    visible_subject = ("subject_type", "subject_id")
    # an alert's notification or a web chat visitor's code (its typed address): supervisors'
    visible_other_subjects_to_supervisors_only = True
    list_display = [
        "id",
        "target_kind",
        "target_key",
        "subject",
        "status",
        "attempts",
        "last_http_status",
        "error_code",
        "next_attempt_at",
        "leased",
        "target_circuit",
        "possible_duplicate",
        "created_at",
    ]
    list_filter = [
        "target_kind",
        "status",
        "possible_duplicate",
        OutcomeReplayFilter,
        "error_code",
    ]
    search_fields = ["idempotency_key"]
    exact_search_fields = ("idempotency_key", "target_key", "external_id", "subject_id")
    search_help_text = (
        "An idempotency key, a target (whatsapp:+447700900123), a provider's message id "
        "or a subject's id, exactly."
    )
    fields = readonly_fields = (
        "target_kind",
        "target_key",
        "idempotency_key",
        "subject_type",
        "subject_id",
        "payload",
        "status",
        "attempts",
        "total_attempts",
        "next_attempt_at",
        "expires_at",
        "lease_owner",
        "lease_until",
        "last_error",
        "last_http_status",
        "error_code",
        "external_id",
        "possible_duplicate",
        "completed_at",
        "created_at",
        "updated_at",
        "circuit",
        "status_update_replays",
    )
    inlines = [AttemptInline]
    actions = ["redrive", "replay_again"]
    change_form_template = "admin/delivery/delivery/change_form.html"

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        circuits = Circuit.objects.filter(
            target_kind=OuterRef("target_kind"), target_key=OuterRef("target_key")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                circuit_state=Subquery(circuits.values("state")[:1]),
                circuit_open_until=Subquery(circuits.values("open_until")[:1]),
            )
        )

    @admin.display(description="Target paused")
    def target_circuit(self, obj: Delivery) -> str:
        """The target's breaker in the list: "" while sending, "paused until ..." when open."""
        state = getattr(obj, "circuit_state", None)
        until = getattr(obj, "circuit_open_until", None)
        if state == CircuitState.OPEN and until is not None:
            return f"paused until {timezone.localtime(until):%H:%M:%S}"
        if state == CircuitState.HALF_OPEN:
            return "probing"
        return ""

    @admin.display(description="About")
    def subject(self, obj: Delivery) -> str:
        return f"{obj.subject_type} {obj.subject_id}".strip()

    @admin.display(description="Leased", boolean=True)
    def leased(self, obj: Delivery) -> bool:
        return bool(obj.lease_until and obj.lease_until > timezone.now())

    @admin.display(description="Target circuit")
    def circuit(self, obj: Delivery) -> str:
        circuit = Circuit.objects.filter(
            target_kind=obj.target_kind, target_key=obj.target_key
        ).first()
        if circuit is None:
            return "closed (no failures recorded)"
        label = circuit.get_state_display()
        if circuit.state == CircuitState.OPEN and circuit.open_until:
            label = f"{label} until {timezone.localtime(circuit.open_until):%Y-%m-%d %H:%M:%S}"
        return admin_link(circuit, text=label)

    @admin.display(description="Status update replays")
    def status_update_replays(self, obj: Delivery) -> str:
        """What the integration's sweep did about a status update that failed (none: "")."""
        replay = OutcomeReplay.objects.filter(delivery=obj).first()
        if replay is None:
            return ""
        if replay.given_up_at is not None:
            when = timezone.localtime(replay.given_up_at)
            return f"given up at {when:%Y-%m-%d %H:%M:%S}: {replay.last_error}"
        text = f"replayed {replay.attempts} time(s)"
        if replay.attempted_at is not None:
            text += f", last at {timezone.localtime(replay.attempted_at):%Y-%m-%d %H:%M:%S}"
        return f"{text}: {replay.last_error}" if replay.last_error else text

    @admin.action(description="Run the given-up status updates of the selected again")
    def replay_again(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors can run them again.", messages.ERROR)
            return
        ids = list(queryset.values_list("pk", flat=True))
        count = services.outcome_replays_again(delivery_ids=ids, actor=request.user)
        skipped = len(ids) - count
        note = f" ({skipped} not given up, left alone)" if skipped else ""
        self.message_user(
            request,
            f"{count} status update(s) will run again at the next sweep{note}.",
        )

    @admin.action(description="Re-drive the selected dead letters")
    def redrive(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors can re-drive.", messages.ERROR)
            return
        ids = list(queryset.filter(status=DeliveryStatus.DEAD).values_list("pk", flat=True))
        count = services.delivery_redrive(delivery_ids=ids, actor=request.user)
        skipped = queryset.count() - count
        note = f" ({skipped} not dead, left alone)" if skipped else ""
        self.message_user(request, f"{count} dead letter(s) re-driven{note}.")

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<path:object_id>/redrive/",
                self.admin_site.admin_view(self.redrive_view),
                name="delivery_delivery_redrive",
            )
        ]
        return own + super().get_urls()

    def redrive_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The "Re-drive" button of one dead letter (POST only)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        # among the rows this viewer may see (an id it may not is as unknown as one that
        # does not exist), and an id that is no number is unknown too, not an error
        if not (object_id.isascii() and object_id.isdigit()):
            raise Http404("No such delivery.")
        delivery = get_object_or_404(self.get_queryset(request), pk=int(object_id))
        change_url = reverse("admin:delivery_delivery_change", args=[delivery.pk])
        if not (self.has_view_permission(request, delivery) and is_supervisor(request.user)):
            self.message_user(request, "Only supervisors can re-drive.", messages.ERROR)
            return HttpResponseRedirect(change_url)
        if services.delivery_redrive(delivery_ids=[delivery.pk], actor=request.user):
            self.message_user(request, "Re-driven: a new cycle of attempts has started.")
        else:
            self.message_user(request, "Not a dead letter: nothing to re-drive.", messages.WARNING)
        return HttpResponseRedirect(change_url)

    def render_change_form(  # type: ignore[override]
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        obj = context.get("original")
        context["can_redrive"] = (
            obj is not None and obj.status == DeliveryStatus.DEAD and is_supervisor(request.user)
        )
        return super().render_change_form(request, context, *args, **kwargs)


@admin.register(Circuit)
class CircuitAdmin(SupervisorAdmin):
    list_display = [
        "target_kind",
        "target_key",
        "state",
        "consecutive_failures",
        "open_until",
        "times_opened",
        "last_failure_at",
        "last_error_short",
    ]
    list_filter = ["state", "target_kind"]
    search_fields = ["target_key"]
    fields = readonly_fields = (
        "target_kind",
        "target_key",
        "state",
        "consecutive_failures",
        "open_until",
        "probe_until",
        "probe_owner",
        "opened_at",
        "times_opened",
        "last_error",
        "last_failure_at",
        "updated_at",
    )
    actions = ["close"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    @admin.display(description="Last error")
    def last_error_short(self, obj: Circuit) -> str:
        return obj.last_error[:120]

    @admin.action(description="Close the selected circuits (resume sending now)")
    def close(self, request: HttpRequest, queryset: QuerySet[Circuit]) -> None:
        if not is_supervisor(request.user):
            self.message_user(request, "Only supervisors can resume a target.", messages.ERROR)
            return
        count = services.circuit_close(
            circuit_ids=list(queryset.values_list("pk", flat=True)), actor=request.user
        )
        self.message_user(request, f"{count} circuit(s) closed.")
