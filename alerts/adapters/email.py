"""E-mail notifications through Django's mail backend (``EMAIL_BACKEND``), with
``ALERTS_EMAIL_TIMEOUT``. Refused recipients or sender are permanent; refused credentials
are an auth failure; anything else SMTP or the network says is retryable."""

from __future__ import annotations

import smtplib
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection

from alerts.adapters import AlertMessage
from support.auth.roles import SUPERVISORS_GROUP
from support.delivery.models import Outcome
from support.delivery.registry import DeliveryError, SendResult


def supervisor_addresses() -> list[str]:
    users = get_user_model().objects.filter(is_active=True).exclude(email="")
    supervisors = users.filter(groups__name=SUPERVISORS_GROUP) | users.filter(is_superuser=True)
    return sorted(set(supervisors.values_list("email", flat=True)))


def recipients(target: Any) -> list[str]:
    configured = [a.strip() for a in str(target.email_to or "").split(",") if a.strip()]
    return configured or supervisor_addresses()


def email_body(message: AlertMessage) -> str:
    lines = [message.headline, "", message.summary, "", f"Severity: {message.severity}"]
    lines.append(f"State: {message.state}")
    if message.url:
        lines.append(f"Details: {message.url}")
    return "\n".join(lines) + "\n"


def email_send(target: Any, message: AlertMessage) -> SendResult:
    to = recipients(target)
    if not to:
        raise DeliveryError(
            "No recipient: the target has no address and no supervisor has one.",
            outcome=Outcome.PERMANENT,
            error_code="no_recipient",
        )
    prefix = str(settings.ALERTS_EMAIL_SUBJECT_PREFIX)
    mail = EmailMessage(
        subject=f"{prefix}{message.headline}"[:250].replace("\n", " "),
        body=email_body(message),
        from_email=settings.ALERTS_EMAIL_FROM or None,
        to=to,
        connection=get_connection(timeout=float(settings.ALERTS_EMAIL_TIMEOUT)),
    )
    try:
        mail.send(fail_silently=False)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(str(exc), outcome=Outcome.AUTH, error_code="smtp_auth") from exc
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        raise DeliveryError(
            f"{type(exc).__name__}: {exc}", outcome=Outcome.PERMANENT, error_code="refused"
        ) from exc
    except (smtplib.SMTPException, OSError) as exc:  # timeouts, refused connections, 4xx
        raise DeliveryError(f"{type(exc).__name__}: {exc}", outcome=Outcome.RETRYABLE) from exc
    return SendResult(request_summary={"to": to, "action": message.action})
