"""Outgoing webhooks: supervisors add and change them (``SupervisorAdmin``); the secret is
write-only (left empty on a new webhook, one is generated and shown once), changes audited.
Their deliveries are in Outbound deliveries → Deliveries (target kind ``webhook_event``),
where dead letters are re-driven."""

from __future__ import annotations

import secrets
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from events_out import services
from events_out.adapters.webhook import webhook_url_problem
from events_out.catalog import event_type_choices
from events_out.models import OutgoingWebhook
from support.auth.admin import SupervisorAdmin


class OutgoingWebhookForm(forms.ModelForm):  # type: ignore[type-arg]
    event_types = forms.MultipleChoiceField(
        choices=event_type_choices, widget=forms.CheckboxSelectMultiple
    )
    secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Empty on a new webhook: one is generated and shown once; "
        "empty on a change: the current secret stays.",
    )

    class Meta:
        model = OutgoingWebhook
        fields = ["name", "url", "event_types", "secret", "is_active"]

    def clean_url(self) -> str:
        url = str(self.cleaned_data["url"]).strip()
        problem = webhook_url_problem(url, resolve=False)
        if problem:
            raise forms.ValidationError(problem)
        return url

    def clean_secret(self) -> str:
        value = str(self.cleaned_data.get("secret") or "")
        if value and len(value) < 16:
            raise forms.ValidationError("Use at least 16 characters (or leave it empty).")
        return value


@admin.register(OutgoingWebhook)
class OutgoingWebhookAdmin(SupervisorAdmin):
    form = OutgoingWebhookForm
    list_display = ["name", "url", "subscribed", "is_active", "updated_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "url"]

    @admin.display(description="Event types")
    def subscribed(self, obj: OutgoingWebhook) -> str:
        return ", ".join(obj.event_types)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        new_secret = form.cleaned_data.get("secret") or ""
        generated = ""
        if new_secret:
            obj.secret = new_secret
        elif not change:
            obj.secret = generated = f"whsec_{secrets.token_urlsafe(32)}"
        else:
            obj.secret = OutgoingWebhook.objects.get(pk=obj.pk).secret
        changed = [f for f in form.changed_data if f != "secret"]
        if new_secret:
            changed.append("secret")
        services.outgoing_webhook_save(webhook=obj, actor=request.user, changed=changed)
        if generated:
            messages.warning(
                request,
                f"Signing secret of {obj.name}: {generated} (shown once; give it to the "
                "receiver, see docs/api.md).",
            )
