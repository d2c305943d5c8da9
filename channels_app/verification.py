"""Web chat visitors proving an email address (writes; the widget's verify endpoints call
these).

A web chat visitor is a guest customer: what it typed is a claim. To be linked to the
customer who owns an address it asks for a one-time code, which the **email channel**
sends to that address (a ``support.delivery`` delivery of kind ``webchat_verification``:
attempts recorded, retried with backoff, never sent once expired, dead letters kept);
entering the code links the visitor: its guest customer is merged into the customer with
that address (``tickets.services.customer_email_confirm``, audited), or becomes that
address's customer when there is none.

Limits: ``WEBCHAT_VERIFY_CODES_PER_HOUR`` codes per session and per address (a code
requested again replaces the previous one), ``WEBCHAT_VERIFY_CODE_TTL_SECONDS`` of
validity, ``WEBCHAT_VERIFY_MAX_ATTEMPTS`` wrong guesses per code. The code itself is never
stored (see :class:`channels_app.models.WebchatVerification`).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from rest_framework import status

from channels_app.adapters.base import OutboundRequest, get_adapter
from channels_app.models import ChannelAccount, WebchatVerification
from support.delivery import selectors as delivery_selectors
from support.delivery.models import Delivery
from support.delivery.registry import Schedule, SendResult, TargetKind
from support.delivery.services import delivery_enqueue
from support.errors import ApplicationError, Conflict, InvalidInput, PermanentError
from support.services import audit_log_record
from tickets import services as ticket_services
from tickets.context.privacy import ErasureSubject
from tickets.models import EMAIL_MAX_LENGTH, ChannelIdentity, Customer

logger = logging.getLogger(__name__)

CODE_DIGITS = 6
CODE_KEY_SALT = "channels_app.webchat.verification-code"
SUBJECT = "Your chat verification code"
WEBCHAT_CODE_KIND = "webchat_verification"


class EmailChannelUnavailable(Conflict):
    code = "email_channel_unavailable"


class VerificationRateLimited(ApplicationError):
    code = "rate_limited"
    http_status = status.HTTP_429_TOO_MANY_REQUESTS


class VerificationFailed(InvalidInput):
    code = "invalid_code"


class AlreadyVerified(Conflict):
    code = "already_verified"


def verification_code(verification: WebchatVerification) -> str:
    """The row's code: an HMAC (key derived from ``SECRET_KEY``) of its id and salt."""
    digest = salted_hmac(
        CODE_KEY_SALT, f"{verification.pk}:{verification.code_salt}", algorithm="sha256"
    ).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**CODE_DIGITS:0{CODE_DIGITS}d}"


def verification_email_account() -> ChannelAccount | None:
    """The email channel account that sends codes: the first active one able to send."""
    return (
        ChannelAccount.objects.filter(channel="email", is_active=True)
        .exclude(access_token="")
        .order_by("pk")
        .first()
    )


def _locks(*keys: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(%s::text[]) AS k",
            [sorted(keys)],
        )


def _visitor_lock_key(account: ChannelAccount, visitor_id: str) -> str:
    # The same key the inbound path holds while it threads this visitor's messages
    # (channels_app.services.ingest._message_ingest), so a link and a message never interleave.
    return f"webchat:{account.pk}:{visitor_id}"


def _normalised_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > EMAIL_MAX_LENGTH:  # Django's validator takes 320: the column holds 254
        raise InvalidInput(
            f"An email address has at most {EMAIL_MAX_LENGTH} characters.",
            details={"email": [f"At most {EMAIL_MAX_LENGTH} characters."]},
        )
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidInput(
            "A valid email address is required.", details={"email": ["Invalid."]}
        ) from None
    return email


def webchat_verification_request(
    *, account: ChannelAccount, visitor_id: str, email: str
) -> WebchatVerification:
    """Send the visitor a one-time code at ``email`` (after commit, by the email channel).

    ``EmailChannelUnavailable`` when no email account can send (nothing is created);
    ``VerificationRateLimited`` past ``WEBCHAT_VERIFY_CODES_PER_HOUR`` for this session or
    this address. Earlier codes of the session stop working.
    """
    email = _normalised_email(email)
    email_account = verification_email_account()
    if email_account is None:
        raise EmailChannelUnavailable(
            "Email verification is not available: no email channel is configured to send the code."
        )
    limit = int(settings.WEBCHAT_VERIFY_CODES_PER_HOUR)
    now = timezone.now()
    with transaction.atomic():
        _locks(f"webchat-verify-visitor:{visitor_id}", f"webchat-verify-email:{email}")
        recent = WebchatVerification.objects.filter(created_at__gte=now - timedelta(hours=1))
        if recent.filter(account=account, visitor_id=visitor_id).count() >= limit:
            raise VerificationRateLimited(
                "Too many verification codes for this chat; try again in an hour."
            )
        if recent.filter(email=email).count() >= limit:
            raise VerificationRateLimited(
                "Too many verification codes for this address; try again in an hour."
            )
        WebchatVerification.objects.filter(
            account=account, visitor_id=visitor_id, verified_at__isnull=True, expires_at__gt=now
        ).update(expires_at=now)
        verification = WebchatVerification.objects.create(
            account=account,
            email_account=email_account,
            visitor_id=visitor_id,
            email=email,
            code_salt=secrets.token_hex(16),
            expires_at=now + timedelta(seconds=int(settings.WEBCHAT_VERIFY_CODE_TTL_SECONDS)),
        )
        delivery_enqueue(
            kind=WEBCHAT_CODE_KIND,
            idempotency_key=_delivery_key(verification.pk),
            target_key=f"email:{email_account.pk}",
            subject_type="webchat_verification",
            subject_id=verification.pk,
            payload={"verification_id": verification.pk},
            expires_at=verification.expires_at,
        )
    return verification


def _code_text(verification: WebchatVerification, code: str) -> str:
    minutes = max(1, int(settings.WEBCHAT_VERIFY_CODE_TTL_SECONDS) // 60)
    return (
        f"Your verification code is {code}\n\n"
        f"Enter it in the chat window within {minutes} minutes to link the chat to "
        f"{verification.email}.\n\n"
        "If you did not ask for it, ignore this email: without the code nothing is linked "
        "and nobody sees your conversations."
    )


def webchat_verification_code_send(delivery: Delivery) -> SendResult:
    """Send one code by email (the delivery engine calls this with no transaction open).
    A code that expired, was replaced or was used meanwhile is not sent. Nothing holding
    the code is kept: no request body is returned for the attempt log."""
    verification = (
        WebchatVerification.objects.select_related("email_account")
        .filter(pk=delivery.payload.get("verification_id"))
        .first()
    )
    if verification is None:
        raise PermanentError("The verification was deleted.")
    if verification.verified_at is not None or verification.expires_at <= timezone.now():
        raise PermanentError("The code expired (or was replaced) before it could be sent.")
    email_account = verification.email_account
    if email_account is None or not email_account.is_active:
        raise PermanentError("The email channel account is gone or inactive.")
    domain = settings.CHANNELS_EMAIL_MESSAGE_ID_DOMAIN
    outbound = OutboundRequest(
        message_id=0,
        ticket_id=0,
        ticket_number="",  # not a reply on a ticket: no "Re:", no ticket token
        recipient_id=verification.email,
        text=_code_text(verification, verification_code(verification)),
        subject=SUBJECT,
        outgoing_message_id=f"<webchat-verify-{verification.pk}.{secrets.token_hex(8)}@{domain}>",
        idempotency_key=delivery.idempotency_key,
    )
    result = get_adapter("email").send(email_account, outbound)
    return SendResult(http_status=result.http_status, external_id=result.external_message_id)


def _code_schedule() -> Schedule:
    return Schedule(
        max_attempts=int(settings.CHANNELS_OUTBOUND_MAX_ATTEMPTS),
        base=float(settings.CHANNELS_OUTBOUND_BACKOFF_BASE),
        cap=float(settings.CHANNELS_OUTBOUND_BACKOFF_CAP),
    )


def _realtime_queue() -> str | None:
    return str(settings.REALTIME_QUEUE)


def webchat_code_target_kind() -> TargetKind:
    """Registered in ``ChannelsAppConfig.ready()``: codes leave by the email channel, on
    the channel replies' schedule, and never after the code expires."""
    return TargetKind(
        name=WEBCHAT_CODE_KIND,
        label="Web chat verification code",
        send=webchat_verification_code_send,
        schedule=_code_schedule,
        queue=_realtime_queue,
    )


def webchat_verification_delivery(verification: WebchatVerification) -> Delivery | None:
    """The delivery that sends this code (its status, attempts and errors)."""
    return delivery_selectors.delivery_get(
        target_kind=WEBCHAT_CODE_KIND, idempotency_key=_delivery_key(verification.pk)
    )


def _delivery_key(verification_id: int) -> str:
    return f"webchat-verification:{verification_id}"


@dataclass(frozen=True)
class Verified:
    customer: Customer
    merged_guest_id: int | None


def webchat_verification_confirm(
    *, account: ChannelAccount, visitor_id: str, name: str, code: str
) -> Verified:
    """Check the visitor's code and link it to the address's customer.

    Raises ``VerificationFailed`` for a wrong code (counted; after
    ``WEBCHAT_VERIFY_MAX_ATTEMPTS`` the code is dead), or when there is no live code, and
    ``AlreadyVerified`` when this chat is already linked to another verified address.
    """
    max_attempts = int(settings.WEBCHAT_VERIFY_MAX_ATTEMPTS)
    wrong: str | None = None
    with transaction.atomic():
        _locks(_visitor_lock_key(account, visitor_id))
        verification = (
            WebchatVerification.objects.select_for_update()
            .filter(account=account, visitor_id=visitor_id, verified_at__isnull=True)
            .order_by("-created_at")
            .first()
        )
        now = timezone.now()
        if verification is None or verification.expires_at <= now:
            raise VerificationFailed("No valid code for this chat: ask for a new one.")
        if verification.failed_checks >= max_attempts:
            raise VerificationFailed("Too many wrong codes: ask for a new one.")
        if not constant_time_compare(code.strip(), verification_code(verification)):
            WebchatVerification.objects.filter(pk=verification.pk).update(
                failed_checks=F("failed_checks") + 1
            )
            left = max_attempts - verification.failed_checks - 1
            wrong = (
                f"Wrong code; {left} attempt{'s' if left != 1 else ''} left."
                if left > 0
                else "Wrong code; ask for a new one."
            )
        else:
            result = _visitor_link(account, visitor_id, verification, name=name)
            WebchatVerification.objects.filter(pk=verification.pk).update(
                verified_at=now, customer=result.customer
            )
    if wrong is not None:  # raised after the commit, which keeps the count
        raise VerificationFailed(wrong)
    return result


def _visitor_link(
    account: ChannelAccount, visitor_id: str, verification: WebchatVerification, *, name: str
) -> Verified:
    identity = (
        ChannelIdentity.objects.select_related("customer")
        .filter(channel="webchat", external_id=visitor_id)
        .first()
    )
    reason = "web chat visitor proved the address with a one-time code"
    merged_guest_id = None
    if identity is None:  # no message yet: link the visitor straight to the address's customer
        customer, _ = ticket_services.customer_get_or_create(email=verification.email, name=name)
        ticket_services.channel_identity_link(
            customer=customer, channel="webchat", external_id=visitor_id, display_name=name
        )
    else:
        current = identity.customer
        if current.email and current.email.lower() != verification.email:
            raise AlreadyVerified(
                "This chat is already linked to another verified address; start a new chat "
                "to use this one."
            )
        customer = ticket_services.customer_email_confirm(
            customer=current, email=verification.email, actor=None, reason=reason
        )
        if customer.pk != current.pk:
            merged_guest_id = current.pk
    audit_log_record(
        actor=None,
        action="webchat.visitor_verified",
        object_type="customer",
        object_id=customer.pk,
        details={
            "channel_account_id": account.pk,
            "visitor_id": visitor_id,
            "verification_id": verification.pk,
            "merged_guest_customer_id": merged_guest_id,
        },
    )
    return Verified(customer=customer, merged_guest_id=merged_guest_id)


def webchat_verifications_erase(subject: ErasureSubject) -> int:
    """GDPR erasure hook: the subject's verification rows (their address) are deleted:
    those naming their customer, and those of an address of theirs that name no one else
    (a mailbox another customer shares is not theirs alone: ``subject.identifiers``
    leaves it out, and a row naming the other customer is that customer's)."""
    emails = [t.lower() for t in subject.identifiers if "@" in t]
    theirs = Q(customer_id=subject.customer_id)
    if emails:
        theirs |= Q(email__in=emails) & (
            Q(customer__isnull=True) | Q(customer_id=subject.customer_id)
        )
    ids = list(WebchatVerification.objects.filter(theirs).values_list("pk", flat=True))
    delivery_selectors.deliveries_for_subject(
        subject_type="webchat_verification", subject_ids=ids, target_kind=WEBCHAT_CODE_KIND
    ).delete()
    deleted, _ = WebchatVerification.objects.filter(pk__in=ids).delete()
    return deleted
