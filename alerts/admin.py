"""Alarm rules and notification targets, for supervisors (``SupervisorAdmin``). A target's
secret (the Slack webhook URL, the PagerDuty routing key) is write-only; Slack URLs pass
``support.safe_urls.public_url_error``; changes are audited. Alerts are read-only here
(acknowledge and resolve on ``/alerts/<id>/``)."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from alerts import services
from alerts.adapters.http import target_url_problem
from alerts.models import Alert, AlertEvent, AlertRule, AlertTarget, Severity, TargetKind
from alerts.selectors import (
    SelectorError,
    alert_list_open_sent_to,
    metric_names_known,
    selector_parse,
    selector_unknown_name_problem,
)
from support.auth.admin import (
    AboutAdminMixin,
    SupervisorAdmin,
    SupervisorInlineMixin,
    VisibleRowsAdminMixin,
)

_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")


class AlertRuleForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = AlertRule
        fields = [
            "name",
            "description",
            "source",
            "metric",
            "denominator",
            "aggregation",
            "window_seconds",
            "comparison",
            "threshold",
            "datapoints_to_alarm",
            "severity",
            "enabled",
            "auto_resolve",
            "targets",
        ]

    def _selector(self, field: str) -> str:
        """A selector that parses and names a metric some source exports (a name nothing
        exports sums to 0 for ever: the rule could never fire, or never resolve)."""
        value = str(self.cleaned_data.get(field) or "").strip()
        if value:
            try:
                selector = selector_parse(value)
            except SelectorError as exc:
                raise forms.ValidationError(str(exc)) from None
            if not hasattr(self, "_known_names"):
                self._known_names = metric_names_known()
            problem = selector_unknown_name_problem(selector, self._known_names)
            if problem:
                raise forms.ValidationError(problem)
        return value

    def clean_metric(self) -> str:
        return self._selector("metric")

    def clean_denominator(self) -> str:
        return self._selector("denominator")

    def clean_datapoints_to_alarm(self) -> int:
        value = int(self.cleaned_data["datapoints_to_alarm"])
        if value < 1:
            raise forms.ValidationError("At least 1.")
        return value

    def clean_window_seconds(self) -> int:
        value = int(self.cleaned_data["window_seconds"])
        if value < 60:
            raise forms.ValidationError("At least 60 seconds.")
        return value


@admin.register(AlertRule)
class AlertRuleAdmin(AboutAdminMixin, SupervisorAdmin):
    about = (
        "Alarm rules over the figures of /metrics (backlog, error rates, deliveries...), "
        "evaluated every minute by default: a breach raises an alert and notifies the "
        "alert targets. Not the agent-state rules of the call centre (Calls → Agent-state "
        "alert rules)."
    )
    docs = "docs/alerts.md (Rules)"
    form = AlertRuleForm
    list_display = [
        "name",
        "severity",
        "metric",
        "comparison",
        "threshold",
        "window_seconds",
        "enabled",
        "last_evaluated_at",
    ]
    list_filter = ["severity", "enabled", "source"]
    search_fields = ["name", "metric", "description"]
    filter_horizontal = ["targets"]
    readonly_fields = ["last_evaluated_at"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        services.alert_rule_save(rule=obj, actor=request.user, changed=list(form.changed_data))


class AlertTargetForm(forms.ModelForm):  # type: ignore[type-arg]
    severities = forms.MultipleChoiceField(
        choices=Severity.choices, widget=forms.CheckboxSelectMultiple, required=False
    )
    secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Slack: the incoming webhook URL. PagerDuty: the routing (integration) "
        "key. Write-only: empty on a change keeps the current one.",
    )

    class Meta:
        model = AlertTarget
        fields = [
            "name",
            "kind",
            "severities",
            "email_to",
            "secret",
            "topic_arn",
            "region",
            "is_active",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        secret = str(data.get("secret") or "")
        has_secret = bool(secret) or bool(self.instance.pk and self.instance.secret)
        if kind == TargetKind.SLACK:
            if secret:
                problem = target_url_problem(secret, resolve=False)
                if problem:
                    self.add_error("secret", problem)
            elif not has_secret:
                self.add_error("secret", "A Slack target needs its incoming webhook URL.")
        if kind == TargetKind.PAGERDUTY:
            if secret and not re.fullmatch(r"[A-Za-z0-9]{20,64}", secret):
                self.add_error("secret", "A PagerDuty routing key is 32 letters and digits.")
            elif not has_secret:
                self.add_error("secret", "A PagerDuty target needs its routing key.")
        if kind == TargetKind.SNS and not _TOPIC_ARN.match(str(data.get("topic_arn") or "")):
            self.add_error("topic_arn", "An SNS topic ARN (arn:aws:sns:<region>:<account>:<name>).")
        if kind == TargetKind.EMAIL:
            for address in [a.strip() for a in str(data.get("email_to") or "").split(",")]:
                if address:
                    try:
                        forms.EmailField().clean(address)
                    except forms.ValidationError:
                        self.add_error("email_to", f"Not an e-mail address: {address}")
        return data


@admin.register(AlertTarget)
class AlertTargetAdmin(SupervisorAdmin):
    form = AlertTargetForm
    list_display = ["name", "kind", "tiers", "is_active", "updated_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["name"]

    @admin.display(description="Severities")
    def tiers(self, obj: AlertTarget) -> str:
        return ", ".join(obj.severities)

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """A target sent an alert that is still open is owed its resolve, which a deleted
        target never gets (its PagerDuty incident or *FIRING* mail would stay open for
        ever): such a deletion is refused, on the confirmation page and by the "delete
        selected" action alike, each open alert named with what to do instead
        (docs/alerts.md)."""
        to_delete, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        names = {t.pk: t.name for t in objs}
        for alert in alert_list_open_sent_to(names):
            sent_to = ", ".join(names[pk] for pk in alert.notified_target_ids if pk in names)
            protected.append(
                f"Open alert #{alert.pk} “{alert.title}” ({alert.get_state_display().lower()}), "
                f"sent to {sent_to}: a deleted target never gets its resolve. Resolve the "
                "alert first, or deactivate the target instead (it still gets the resolve)."
            )
        return to_delete, counts, perms_needed, protected

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        new_secret = form.cleaned_data.get("secret") or ""
        if new_secret:
            obj.secret = new_secret
        elif change:
            obj.secret = AlertTarget.objects.get(pk=obj.pk).secret
        changed = [f for f in form.changed_data if f != "secret"]
        if new_secret:
            changed.append("secret")
        services.alert_target_save(target=obj, actor=request.user, changed=changed)


class AlertEventInline(SupervisorInlineMixin, admin.TabularInline):  # type: ignore[type-arg]
    model = AlertEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "action", "from_state", "to_state", "actor", "note"]
    readonly_fields = ["created_at", "action", "from_state", "to_state", "actor", "note"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AlertEvent]:
        return super().get_queryset(request).select_related("actor")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(VisibleRowsAdminMixin, AboutAdminMixin, SupervisorAdmin):
    # An SLA alert names its ticket (number, subject): listed for those who may see it.
    visible_subject = ("subject_type", "subject_id")
    about = (
        "Alerts raised by the alarm rules and by the SLA checker; acknowledge and resolve "
        "them on the Alerts page (/alerts/). Not the agent-state alerts of the call centre "
        "(Calls → Agent-state alerts)."
    )
    docs = "docs/alerts.md (Alerts)"
    list_display = ["title", "severity", "state", "created_at", "acknowledged_by", "resolved_at"]
    list_select_related = ["acknowledged_by"]
    list_filter = ["state", "severity"]
    search_fields = ["title", "fingerprint"]
    inlines = [AlertEventInline]
    readonly_fields = [f.name for f in Alert._meta.fields]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
