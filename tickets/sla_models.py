"""SLA policies: business calendars, policies per priority (optionally per team and/or
channel) and the record of warnings and breaches.

These models live in the ``tickets`` app (imported at the end of ``tickets/models.py``).
The business-hours arithmetic and the policy matching are in ``tickets.sla``; the checker
and the writes in ``tickets.services.sla``. See docs/sla.md.
"""

from __future__ import annotations

import zoneinfo

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from tickets.models import Channel, Priority, Team, Ticket


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"Unknown time zone {value!r} (use an IANA name).") from exc


class ForgetsPoliciesOnChange:
    """For the models the cached SLA policies are built from (calendars, hours, holidays,
    policies): saving or deleting a row forgets the cache (``_forget_policies``)."""

    def save(self, *args: object, **kwargs: object) -> None:
        super().save(*args, **kwargs)  # type: ignore[misc]
        _forget_policies()

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        result: tuple[int, dict[str, int]] = super().delete(*args, **kwargs)  # type: ignore[misc]
        _forget_policies()
        return result


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


class BusinessCalendar(ForgetsPoliciesOnChange, models.Model):
    """When the SLA clocks run: weekly open hours in a time zone, minus holidays.

    ``is_24_7`` ignores the hours and holidays (the clock always runs).
    """

    name = models.CharField(max_length=100, unique=True)
    timezone = models.CharField(
        max_length=64, default="UTC", validators=[validate_timezone], help_text="IANA name."
    )
    is_24_7 = models.BooleanField(
        "24/7", default=False, help_text="Always open: hours and holidays are ignored."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BusinessHours(ForgetsPoliciesOnChange, models.Model):
    """One open interval on a weekday, in the calendar's local time. Several per day are
    allowed (a lunch break); an interval past midnight is split over two days."""

    calendar = models.ForeignKey(BusinessCalendar, on_delete=models.CASCADE, related_name="hours")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    opens_at = models.TimeField()
    closes_at = models.TimeField(help_text="00:00 is not allowed; use 23:59:59 for midnight.")

    class Meta:
        verbose_name_plural = "business hours"
        ordering = ["weekday", "opens_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(closes_at__gt=F("opens_at")), name="business_hours_closes_after_opens"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.opens_at:%H:%M}–{self.closes_at:%H:%M}"


class Holiday(ForgetsPoliciesOnChange, models.Model):
    """A closed day (local date of the calendar)."""

    calendar = models.ForeignKey(
        BusinessCalendar, on_delete=models.CASCADE, related_name="holidays"
    )
    date = models.DateField()
    name = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["date"]
        constraints = [
            models.UniqueConstraint(fields=["calendar", "date"], name="holiday_unique_per_day")
        ]

    def __str__(self) -> str:
        return f"{self.date:%Y-%m-%d} {self.name}".strip()


class SlaEscalateOn(models.TextChoices):
    NEVER = "never", "Never (alert only)"
    WARNING = "warning", "At the warning"
    BREACHED = "breached", "At the breach"


class SlaPolicy(ForgetsPoliciesOnChange, models.Model):
    """Targets for tickets of one priority, optionally narrowed to a team and/or a channel.

    The most specific active policy wins: team and channel > team > channel > priority
    only. An empty target means "no target" for that clock.
    """

    name = models.CharField(max_length=100, unique=True)
    priority = models.CharField(max_length=16, choices=Priority.choices)
    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="sla_policies",
        help_text="Empty: every team (and no team).",
    )
    channel = models.CharField(
        max_length=16, choices=Channel.choices, blank=True, help_text="Empty: every channel."
    )
    calendar = models.ForeignKey(
        BusinessCalendar, on_delete=models.PROTECT, related_name="policies"
    )
    first_response_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Business minutes to the first agent reply."
    )
    resolution_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Business minutes to resolve (paused while pending)."
    )
    escalate_on = models.CharField(
        max_length=16, choices=SlaEscalateOn.choices, default=SlaEscalateOn.BREACHED
    )
    escalate_raise_priority = models.BooleanField(
        default=False, help_text="Raise the ticket's priority one step."
    )
    escalate_to_team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Reassign the ticket to this team.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "SLA policy"
        verbose_name_plural = "SLA policies"
        ordering = ["priority", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["priority", "team", "channel"],
                condition=Q(is_active=True),
                nulls_distinct=False,
                name="sla_policy_one_active_per_scope",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class SlaTarget(models.TextChoices):
    FIRST_RESPONSE = "first_response", "First response"
    RESOLUTION = "resolution", "Resolution"


class SlaEventKind(models.TextChoices):
    WARNING = "warning", "Warning"
    BREACHED = "breached", "Breached"


class SlaEvent(models.Model):
    """A warning or breach of one ticket's target, recorded once (the unique constraint
    makes the checker idempotent, also under concurrent runs)."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="sla_events")
    target = models.CharField(max_length=16, choices=SlaTarget.choices)
    kind = models.CharField(max_length=16, choices=SlaEventKind.choices)
    due_at = models.DateTimeField()
    policy_name = models.CharField(max_length=100, blank=True)
    escalation = models.JSONField(default=list, blank=True)
    # A breach recorded when the clock stopped (first reply, resolved, pending) after its
    # due time but before a checker run saw it overdue: when it stopped. No escalation.
    stopped_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = "SLA event"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticket", "target", "kind"], name="sla_event_once_per_target_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ticket_id} {self.target} {self.kind}"


def _forget_policies() -> None:
    """This process's cached policies are stale (other processes: after the cache's TTL,
    ``SLA_POLICY_CACHE_SECONDS``). Forgotten again at commit, in case a read inside the
    transaction cached what was not committed yet."""
    from django.db import transaction

    from tickets.sla import sla_policies_forget

    sla_policies_forget()
    transaction.on_commit(sla_policies_forget)
