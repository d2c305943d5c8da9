"""Login lockout glue for django-axes (settings ``AXES_*_CALLABLE``; see docs/workbench.md).

- The client IP is taken exactly as the rate limiters take it
  (:func:`support.throttling.client_ip_from_meta`, which trusts only configured proxy hops).
- Only password sign-ins count: the OIDC callback (no password) is never locked out by
  someone guessing passwords from the same address; the identity provider guards it.
- A locked-out sign-in (workbench or ``/admin/login/``) gets the sign-in page again, status
  429, saying how long to wait and that a supervisor can unlock it.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from support.throttling import client_ip_from_meta


def login_client_ip(request: HttpRequest) -> str:
    return client_ip_from_meta(request.META)


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
