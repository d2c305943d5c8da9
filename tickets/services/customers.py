"""Customers and their channel identities: find or create (by email, or by the caller's
own customer id, ``external_id``), merge, confirm an address, move an identity."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from support.auth.roles import is_supervisor
from support.db import advisory_xact_lock
from support.errors import Conflict, Forbidden, InvalidInput
from support.parsing import normalise_phone, phone_typed
from support.services import audit_log_record
from tickets.models import (
    CUSTOMER_EXTERNAL_ID_MAX_LENGTH,
    CUSTOMER_PK_TEXT,
    EMAIL_MAX_LENGTH,
    ChannelIdentity,
    Customer,
    Ticket,
)
from tickets.selectors import (
    customer_get_by_external_id,
    customer_is_erased,
    customer_phone_digits,
    customers_fully_visible_to,
)
from tickets.services.events import _ticket_event
from tickets.services.lifecycle import _refresh_search_vector, _system_note

# --- customers --------------------------------------------------------------


def _customer_columns() -> tuple[list[str], str]:
    fields = Customer._meta.concrete_fields
    return [f.attname for f in fields], ", ".join(f'"{f.column}"' for f in fields)


def customer_stamps_renew(customer_ids: Iterable[int]) -> int:
    """Set the customers' ``updated_at`` to now: the stamp their cached contexts are served
    with (``tickets.context.cache``), so every process stops serving those contexts at once.
    For a change to what a context shows that no ticket event or context write announces
    (a merge, an identity move, interactions purged). Returns how many rows changed."""
    ids = sorted(set(customer_ids))
    if not ids:
        return 0
    return Customer.objects.filter(pk__in=ids).update(updated_at=timezone.now())


def customer_find_by_email(email: str) -> Customer | None:
    """Case-insensitive, through the ``lower(email)`` unique index (a plain cursor: this is
    on the path of every ticket created, and a raw queryset costs ~0.2 ms more)."""
    attnames, columns = _customer_columns()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM tickets_customer WHERE lower(email) = %s LIMIT 1",  # noqa: S608
            [email.strip().lower()],
        )
        row = cursor.fetchone()
    return Customer.from_db(connection.alias, attnames, row) if row else None


def customer_get_or_create(
    *,
    email: str = "",
    name: str = "",
    phone: str = "",
    defaults: dict[str, Any] | None = None,
) -> tuple[Customer, bool]:
    """Find a customer by email (case-insensitive), or create one. Safe under races.
    ``InvalidInput`` for an address longer than the column (inputs check it first; this
    keeps a caller that does not from failing in PostgreSQL)."""
    email = email.strip()
    if len(email) > EMAIL_MAX_LENGTH:
        raise InvalidInput(
            f"email: at most {EMAIL_MAX_LENGTH} characters.",
            details={"email": [f"At most {EMAIL_MAX_LENGTH} characters."]},
        )
    if email:
        existing = customer_find_by_email(email)
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            customer = Customer.objects.create(
                email=email,
                name=name.strip()[: Customer._meta.get_field("name").max_length],
                phone=phone.strip(),
                **(defaults or {}),
            )
    except IntegrityError:
        existing = customer_find_by_email(email)
        if existing is None:
            raise
        return existing, False
    return customer, True


#: Who may change a customer's details in the workbench, and what an agent may not.
CONTACT_NOT_WHOLE = (
    "Only supervisors, or agents who see every ticket of this customer, change the "
    "customer's details."
)
CONTACT_ROUTING_SUPERVISORS = (
    "Only supervisors change a customer's e-mail address or phone number: the customer's "
    "mail, calls and replies follow them."
)
CONTACT_ERASED = "This customer's data was erased: nothing more is recorded about them."
CONTACT_STALE = (
    "{field} was changed by someone else since this page was loaded; reload it and try again."
)
_CONTACT_MAX = {"name": 200, "phone": 32, "email": EMAIL_MAX_LENGTH}


def _contact_taken(field: str, what: str) -> InvalidInput:
    return InvalidInput(
        f"{field}: another customer has this {what}; merge their tickets instead.",
        details={field: ["Another customer has it."]},
    )


def _customer_tickets_search_refresh(customer: Customer) -> None:
    """Ticket search reads the customer's name, address and number: each of the
    customer's tickets' search vectors again, after one of those changed."""
    for ticket in Ticket.objects.filter(customer=customer).select_related("customer"):
        _refresh_search_vector(ticket)


def _phone_taken(phone: str, customer_id: int) -> bool:
    """Whether another customer has this number, however it was stored (the API keeps
    numbers as typed: ``+44 20 7946 0001`` is ``+442079460001``)."""
    return (
        Customer.objects.exclude(pk=customer_id)
        .exclude(phone="")
        .annotate(digits=customer_phone_digits())
        .filter(digits=phone)
        .exists()
    )


def customer_contact_update(
    *,
    customer: Customer,
    actor: Any,
    name: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    expected: dict[str, str] | None = None,
) -> Customer:
    """Change a customer's name, phone number or e-mail address from the workbench (a
    phone caller who gives an address, so that replies can reach them).

    The person must see every ticket of the customer (``customers_fully_visible_to``: the
    details follow the customer into other teams' tickets) or be a supervisor; the phone
    number and the address are supervisors' alone, as they decide whose mail, calls and
    replies are this customer's (calls find a customer by number, mail by address and
    the address's e-mail identity). Refused: an erased customer; an address another
    customer has, or another customer's e-mail identity; a number another customer has
    (numbers are kept as calls match them: digits and ``+``); and, with ``expected``
    (the values the form was drawn with), a field someone else changed since (Conflict).
    Audit-logged by field names (not values); contexts and ticket search follow at once.
    Open ticket pages show the new details when reloaded."""
    if not customers_fully_visible_to(actor, customer_ids=[customer.pk]):
        raise Forbidden(CONTACT_NOT_WHOLE)
    wanted = {
        field: value.strip()
        for field, value in (("name", name), ("phone", phone), ("email", email))
        if value is not None
    }
    for field, value in wanted.items():
        if len(value) > _CONTACT_MAX[field] or not value.isprintable():
            raise InvalidInput(
                f"{field}: at most {_CONTACT_MAX[field]} characters, no control characters.",
                details={field: ["Too long, or control characters."]},
            )
    if wanted.get("phone"):
        if not phone_typed(wanted["phone"]):
            raise InvalidInput(
                f"phone: {wanted['phone'][:40]!r} is not a phone number (digits, spaces and "
                "+ - ( ) . only).",
                details={"phone": ["Not a phone number."]},
            )
        wanted["phone"] = normalise_phone(wanted["phone"])
    with transaction.atomic():
        row = Customer.objects.select_for_update().get(pk=customer.pk)
        if customer_is_erased(customer_id=row.pk):
            raise Conflict(CONTACT_ERASED)
        changed = [f for f, v in wanted.items() if v != getattr(row, f)]
        for field in changed:
            if expected is not None and expected.get(field, getattr(row, field)) != getattr(
                row, field
            ):
                raise Conflict(
                    CONTACT_STALE.format(field=field.capitalize()), details={field: ["Changed."]}
                )
        if {"phone", "email"} & set(changed) and not is_supervisor(actor):
            raise Forbidden(CONTACT_ROUTING_SUPERVISORS)
        if "email" in changed and wanted["email"]:
            address = wanted["email"]
            try:
                validate_email(address)
            except ValidationError:
                raise InvalidInput(
                    f"email: {address[:80]!r} is not an e-mail address.",
                    details={"email": ["Not an e-mail address."]},
                ) from None
            owner = customer_find_by_email(address)
            if (owner is not None and owner.pk != row.pk) or (
                ChannelIdentity.objects.filter(channel="email", external_id__iexact=address)
                .exclude(customer=row)
                .exists()
            ):
                raise _contact_taken("email", "address")
        if "phone" in changed and wanted["phone"]:
            # No unique index can hold numbers stored as typed: two supervisors giving two
            # customers one number take turns here, the second seeing the first's commit.
            advisory_xact_lock(f"customer-phone:{wanted['phone']}")
            if _phone_taken(wanted["phone"], row.pk):
                raise _contact_taken("phone", "number")
        if not changed:
            return row
        for field in changed:
            setattr(row, field, wanted[field])
        try:
            with transaction.atomic():
                row.save(update_fields=[*changed, "updated_at"])
        except IntegrityError:  # the address taken meanwhile
            raise _contact_taken("email", "address") from None
        _customer_tickets_search_refresh(row)
        audit_log_record(
            actor=actor,
            action="customer.contact_updated",
            object_type="customer",
            object_id=row.pk,
            details={"fields": changed},
        )
    return row


def customer_id_is_external(data: Any) -> bool:
    """Whether a ``customer_id`` as sent is the caller's own customer id
    (``Customer.external_id``): any string that is not a number as ``CUSTOMER_PK_TEXT``
    reads one (spaces around it allowed). A JSON integer or such a string is this
    platform's id. One rule for ticket creation and the intake of orders and
    interactions."""
    return isinstance(data, str) and not CUSTOMER_PK_TEXT.fullmatch(data.strip())


def customer_external_id_problem(external_id: str) -> str | None:
    """What is wrong with ``external_id`` as a ``Customer.external_id`` (already stripped),
    or None: empty, longer than the column (refused, never cut: two ids that differ past
    the cut would be one customer), or a control or other unprintable character (a
    newline or a NUL would end up in logs, URLs and the admin)."""
    if not external_id:
        return "Empty: give a customer id."
    if len(external_id) > CUSTOMER_EXTERNAL_ID_MAX_LENGTH:
        return f"Longer than {CUSTOMER_EXTERNAL_ID_MAX_LENGTH} characters."
    if not external_id.isprintable():
        return "Contains a control or other unprintable character."
    return None


def customer_get_or_create_by_external_id(
    *, external_id: str, name: str = ""
) -> tuple[Customer, bool]:
    """Find the customer the caller's own id ``external_id`` names (seed 004's
    ``customer_id``), or create one (``name`` defaults to the id; no email). Safe under
    races: the partial unique index on ``external_id`` lets one insert win, and the loser
    finds the winner's row. Inside a caller's transaction the insert is a savepoint, so
    that transaction stays usable (and a later failure there leaves no customer behind).
    InvalidInput for an id ``customer_external_id_problem`` refuses."""
    external_id = external_id.strip()
    problem = customer_external_id_problem(external_id)
    if problem is not None:
        raise InvalidInput(f"external_id: {problem}", details={"external_id": [problem]})
    existing = customer_get_by_external_id(external_id)
    if existing is not None:
        return existing, False
    name_max = Customer._meta.get_field("name").max_length
    try:
        with transaction.atomic():
            customer = Customer.objects.create(
                external_id=external_id, name=(name.strip() or external_id)[:name_max]
            )
    except IntegrityError:
        existing = customer_get_by_external_id(external_id)
        if existing is None:
            raise
        return existing, False
    return customer, True


def channel_identity_link(
    *, customer: Customer, channel: str, external_id: str, display_name: str = ""
) -> ChannelIdentity:
    """Attach a channel identity to a customer (idempotent; never moves an existing one)."""
    identity, _ = ChannelIdentity.objects.get_or_create(
        channel=channel,
        external_id=external_id,
        defaults={"customer": customer, "display_name": display_name[:200]},
    )
    return identity


@transaction.atomic
def customer_merge(
    *, source: Customer, target: Customer, actor: Any = None, reason: str
) -> Customer:
    """Fold ``source`` into ``target``: every row pointing at the source customer
    (tickets, channel identities, message authorship, context rows of other apps such as
    orders, interactions or calls) is re-pointed at the target, each moved ticket gets a
    system entry and a ``ticket.updated`` event, the audit log gets a ``customer.merge``
    row, and the emptied source is deleted. Generic over ``Customer``'s reverse relations,
    so the core names no feature app. One-to-one rows (an erasure marker) stay with the
    source and keep it (it is then left in place, empty). The source's ``external_id``
    (the caller's own customer id) moves to a target that has none; a target with its own
    keeps it, and the source's goes with the source.
    """
    if source.pk == target.pk:
        return target
    locked = {
        c.pk: c for c in Customer.objects.select_for_update().filter(pk__in=[source.pk, target.pk])
    }
    source, target = locked[source.pk], locked[target.pk]
    ticket_ids = list(
        Ticket.objects.filter(customer=source).order_by("pk").values_list("pk", flat=True)
    )
    moved: dict[str, int] = {}
    keeps_source = False
    for relation in Customer._meta.related_objects:
        model = relation.related_model
        assert not isinstance(model, str)  # resolved once the app registry is ready
        rows = model._default_manager.filter(**{relation.field.name: source})
        if relation.one_to_one:
            keeps_source |= rows.exists()
        elif relation.one_to_many:  # a ForeignKey to Customer on another model
            count = rows.update(**{relation.field.name: target})
            if count:
                moved[f"{model._meta.label_lower}.{relation.field.name}"] = count
    if source.external_id and not target.external_id:
        # The caller's id follows the person (its next ticket must find the target, not
        # a new customer or the emptied source): cleared first, it is unique.
        moved["tickets.customer.external_id"] = 1  # the audit row says so
        Customer.objects.filter(pk=source.pk).update(external_id="")
        Customer.objects.filter(pk=target.pk).update(external_id=source.external_id)
        target.external_id, source.external_id = source.external_id, ""
    for ticket in Ticket.objects.filter(pk__in=ticket_ids).select_related("customer"):
        _system_note(
            ticket,
            actor,
            f"Customer record merged into {target} ({reason}).",
            {"customer_merged_from": source.pk, "customer_id": target.pk, "reason": reason},
        )
        _refresh_search_vector(ticket)
        _ticket_event("ticket.updated", ticket, changes={"customer_id": [source.pk, target.pk]})
    audit_log_record(
        actor=actor,
        action="customer.merge",
        object_type="customer",
        object_id=target.pk,
        details={
            "source_customer_id": source.pk,
            "target_customer_id": target.pk,
            "reason": reason,
            "tickets": ticket_ids,
            "moved": moved,
        },
    )
    # A merge of a customer with no ticket (orders, interactions, identities only) sends
    # no ticket event, so the stamp is what makes the target's context show what moved.
    customer_stamps_renew([source.pk, target.pk])
    if not keeps_source:
        source.delete()
    return target


@transaction.atomic
def customer_email_confirm(
    *, customer: Customer, email: str, actor: Any = None, reason: str
) -> Customer:
    """``customer`` proved it owns ``email`` (e.g. a one-time code sent there): it becomes
    that address's customer. When another customer already has the address, ``customer``
    is merged into it (:func:`customer_merge`) and that one is returned; otherwise the
    address is set on ``customer``. Either way the audit log gets a row. Only for proven
    addresses: an email someone merely typed must never reach this function."""
    email = email.strip()
    if not email:
        raise InvalidInput("An email address is required.", details={"email": ["Required."]})
    owner = customer_find_by_email(email)
    if owner is None:
        try:
            with transaction.atomic():
                Customer.objects.filter(pk=customer.pk).update(
                    email=email, updated_at=timezone.now()
                )
        except IntegrityError:  # someone took the address meanwhile: merge into them
            owner = customer_find_by_email(email)
            if owner is None:
                raise
        else:
            customer.email = email
            _customer_tickets_search_refresh(customer)
            audit_log_record(
                actor=actor,
                action="customer.email_verified",
                object_type="customer",
                object_id=customer.pk,
                details={"reason": reason},
            )
            return customer
    if owner.pk == customer.pk:
        audit_log_record(
            actor=actor,
            action="customer.email_verified",
            object_type="customer",
            object_id=customer.pk,
            details={"reason": reason},
        )
        return customer
    return customer_merge(source=customer, target=owner, actor=actor, reason=reason)


@transaction.atomic
def channel_identity_move(
    *, identity: ChannelIdentity, customer: Customer, previous: Customer, actor: Any
) -> ChannelIdentity:
    """Re-attach a channel identity to another customer (a supervisor's correction in
    the admin): that person's future messages go to ``customer``. Audited."""
    ChannelIdentity.objects.filter(pk=identity.pk).update(customer=customer)
    identity.customer = customer
    # both customers' cached contexts list their identities: a new stamp retires them
    customer_stamps_renew([customer.pk, previous.pk])
    audit_log_record(
        actor=actor,
        action="channel_identity.move",
        object_type="channel_identity",
        object_id=identity.pk,
        details={
            "channel": identity.channel,
            "from_customer_id": previous.pk,
            "to_customer_id": customer.pk,
        },
    )
    return identity
