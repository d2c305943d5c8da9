"""Login lockout glue for django-axes (settings ``AXES_*_CALLABLE``; see docs/workbench.md).

- The client IP is taken exactly as the rate limiters take it
  (:func:`support.throttling.client_ip_from_meta`, which trusts only configured proxy hops).
- Only password sign-ins count: the OIDC callback (no password) is never locked out by
  someone guessing passwords from the same address; the identity provider guards it.
- A locked-out sign-in (workbench or ``/admin/login/``) gets the sign-in page again, status
  429, saying how long to wait and that a supervisor can unlock it.
- The username counted is the one typed, bounded to the attempt record's column
  (:func:`login_username`): a longer one was a 500 on both sign-in pages.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from support.parsing import bounded_key
from support.throttling import client_ip_from_meta

#: ``AccessAttempt.username`` is a ``varchar(255)``.
LOGIN_USERNAME_MAX_LENGTH = 255


def login_client_ip(request: HttpRequest) -> str:
    return client_ip_from_meta(request.META)


def login_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """The username a sign-in attempt is counted under (``AXES_USERNAME_CALLABLE``): what
    axes reads by default (the credentials, else the form's ``username``), bounded to the
    attempt record's 255-character column. Axes stored it as typed: 256 characters or more
    with a wrong password was a ``DataError`` (500) on ``/accounts/login/`` and
    ``/admin/login/`` for anyone (jazzband/django-axes#1381). A longer name is cut with
    :func:`support.parsing.bounded_key` (its beginning and a hash of the whole): the same
    name gives the same key at every attempt, so it is locked out as any other, and two
    long names stay two. No account has such a name (usernames are at most 150)."""
    field = getattr(settings, "AXES_USERNAME_FORM_FIELD", "username")
    source = credentials if credentials else getattr(request, "data", request.POST)
    username = source.get(field)
    if username is None:
        return None
    return bounded_key(str(username), LOGIN_USERNAME_MAX_LENGTH)


def not_a_password_login(request: HttpRequest, credentials: dict[str, Any] | None) -> bool:
    """Exempt from lockout: authentications without a password (OIDC)."""
    return not credentials or credentials.get("password") is None


def lockout_minutes() -> int:
    return max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60))


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """The sign-in page with the lockout message (axes calls this with varying arguments:
    the synchronous middleware passes the original response, the asynchronous one the
    credentials; neither is needed here)."""
    source = request.POST if request.method == "POST" else request.GET
    context = {
        "locked_out": True,
        "lockout_minutes": lockout_minutes(),
        "next": source.get("next", ""),
    }
    return render(request, "registration/login.html", context, status=429)


def login_lockout_reset(*, actor: Any, usernames: Any = (), ip_addresses: Any = ()) -> int:
    """Unlock: forget every failed sign-in of these usernames and of these IP addresses,
    with one audit-log entry each. Returns the number of attempt records removed."""
    from axes.models import AccessAttempt

    from support.services import audit_log_record

    removed = 0
    with transaction.atomic():
        for field, values in (("username", usernames), ("ip_address", ip_addresses)):
            for value in sorted({v for v in values if v}):
                count, _ = AccessAttempt.objects.filter(**{field: value}).delete()
                removed += count
                audit_log_record(
                    actor=actor,
                    action="login_lockout_reset",
                    object_type="login",
                    object_id=str(value)[:64],
                    details={field: value, "attempt_records": count},
                )
    return removed


def lockout_keys() -> list[tuple[str, ...]]:
    """What failures are counted per (``LOGIN_LOCKOUT_PARAMETERS`` as axes has it): each a
    tuple of ``AccessAttempt`` fields, e.g. ``("username",)``, ``("ip_address",)``,
    ``("username", "ip_address")``."""
    return [(p,) if isinstance(p, str) else tuple(p) for p in settings.AXES_LOCKOUT_PARAMETERS]


def login_attempts_with_lockout(queryset: Any) -> Any:
    """Failed sign-in records with what axes would decide for them now, in the list's one
    query: for each lockout key (index ``i`` of :func:`lockout_keys`),
    ``lockout_failures_<i>``, the failures within the lockout time of every record sharing
    this record's value(s), 0 for none (what axes sums: one record per username, IP and
    browser, so a username's failures may be spread over several), and
    ``lockout_latest_<i>``, the newest of them. Axes refuses a sign-in when one sum reaches
    ``AXES_FAILURE_LIMIT``."""
    from axes.models import AccessAttempt

    since = timezone.now() - settings.AXES_COOLOFF_TIME
    annotations: dict[str, Any] = {}
    for i, fields in enumerate(lockout_keys()):
        window = (
            AccessAttempt.objects.filter(attempt_time__gte=since)
            .filter(**{name: OuterRef(name) for name in fields})
            .order_by()
            .values(*fields)
        )
        total = window.annotate(total=Sum("failures_since_start")).values("total")[:1]
        latest = window.annotate(latest=Max("attempt_time")).values("latest")[:1]
        annotations[f"lockout_failures_{i}"] = Coalesce(Subquery(total), 0)
        annotations[f"lockout_latest_{i}"] = Subquery(latest)
    return queryset.annotate(**annotations)
