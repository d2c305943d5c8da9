"""Data protection: export everything about a customer, and erase a customer.

Erase keeps the customer row, tickets, orders, ratings, interaction kinds, dates and
scores (the aggregates reports rely on) and removes what identifies the person:
profile fields and channel identities are removed, the customer's own messages (and bot
transcripts handed over with them) and the subjects of the tickets they opened are
replaced by ``[erased]``, their attachments deleted, and every other place the person's
name, email, phone, channel ids or own words appear (agent replies, other subjects, event
payloads, the audit and admin logs, interaction summaries, CSAT comments) is redacted.
Only rows tied to the person are touched (their customer id, their tickets, an identifier
of theirs, their messages' channel ids; never rows found by a name word alone), and names
are redacted there as whole words.
Other apps that keep personal data register an :func:`register_erasure_hook`; the
:class:`ErasureSubject` they get says how to find the person's rows and redact them.
Both operations write an audit-log entry (who, when, what was counted; never the
personal data).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache, partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.contrib.postgres.search import SearchVector
from django.db import transaction
from django.db.models import F, Func, Q, Value
from django.utils import timezone

from support.errors import PermanentError, RetryableError
from support.models import AuditLog, OutboxEvent
from support.redaction import fold  # the folding support.redaction matches names in
from support.services import audit_log_record
from tickets.context.cache import context_invalidate
from tickets.context.interactions import get_backend
from tickets.context.models import ContextDeadLetter, CsatFeedback, CustomerErasure, Order
from tickets.context.selectors import interactions_visible
from tickets.models import (
    Attachment,
    ChannelIdentity,
    Customer,
    Direction,
    Message,
    MessageKind,
    Ticket,
)

logger = logging.getLogger(__name__)

ERASED = "[erased]"
REDACTED = "[redacted]"
EXPORT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ErasureSubject:
    """The person being erased, for the apps' erasure hooks.

    - ``tokens``: every string that identifies them (name and its words, e-mail, phone and
      its digits, channel ids and display names), longest first;
    - ``identifiers``: the part of ``tokens`` that identifies them beyond doubt (e-mail,
      phone and its digits, channel ids) and no other live customer has (a household's
      shared landline is not one: it also finds the other customer's calls and
      messages): a record holding one of these is about them, while a name alone may be
      someone else's. Only these, their ``customer_id``, ``ticket_ids`` and
      ``message_ids`` select rows; ``tokens`` (name words included) then redact what was
      selected, as whole words (see :func:`redact`);
    - ``message_ids``: the channel ids of their own messages (wamid, mid, Message-ID...);
    - ``texts``: their own words (message bodies, each line and sentence of them, and the
      subjects of the tickets they opened), to remove wherever they were copied.

    :meth:`redact` and :meth:`redact_json` replace own words by ``[erased]`` and tokens by
    ``[redacted]``.
    """

    customer_id: int
    ticket_ids: list[int]
    tokens: list[str]
    identifiers: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    @cached_property
    def _texts_re(self) -> re.Pattern[str] | None:
        return phrases_pattern(self.texts)

    def redact(self, text: str) -> str:
        if not text:
            return text
        if self._texts_re is not None:  # own words first: they may hold a token
            text = self._texts_re.sub(ERASED, text)
        return redact(text, self.tokens)

    def redact_json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list):
            return [self.redact_json(v) for v in value]
        if isinstance(value, dict):
            return {k: self.redact_json(v) for k, v in value.items()}
        return value


ErasureHook = Callable[[ErasureSubject], int]
ExportHook = Callable[[Customer], dict[str, Any]]
_erasure_hooks: dict[str, ErasureHook] = {}
_after_commit_erasure_hooks: dict[str, ErasureHook] = {}
_export_hooks: dict[str, ExportHook] = {}


def register_erasure_hook(name: str, hook: ErasureHook, *, after_commit: bool = False) -> None:
    """Another app's eraser: gets the subject, returns how many rows (or items) it changed.

    The one rule of erasure: a hook runs inside the erase transaction and changes
    PostgreSQL rows only, so a rollback undoes it with everything else. Anything outside
    PostgreSQL (S3 or other file storage, DynamoDB, another service's API) is erased by a
    hook registered with ``after_commit=True``: it runs once the database erase has
    committed, with no transaction open, and on every erase of the customer, the first and
    any repeat (so it must be idempotent and find what it erases by ids: on a repeat the
    profile is already blank, so ``tokens`` and ``identifiers`` are empty). An error
    there reaches the caller before the audit-log row is written; erasing again finishes.
    """
    (_after_commit_erasure_hooks if after_commit else _erasure_hooks)[name] = hook


def register_export_hook(name: str, hook: ExportHook) -> None:
    """Another app's exporter: returns JSON-ready data put under ``name`` in the export."""
    _export_hooks[name] = hook


def customer_redaction_names(customer_id: int | None) -> tuple[str, ...]:
    """The names text about this customer may hold (their name, their channel display
    names), for ``support.redaction.redact(names=...)`` before text goes to a provider."""
    if customer_id is None:
        return ()
    rows = Customer.objects.filter(pk=customer_id).values_list("name", "identities__display_name")
    return tuple(dict.fromkeys(name for row in rows for name in row if name))


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


# --- export ---------------------------------------------------------------------------


def customer_export_build(customer: Customer, *, viewer: Any = None) -> dict[str, Any]:
    """Everything about the customer, as JSON-ready data. Its interactions are those the
    customer context shows ``viewer`` (:func:`interactions_visible`; every one for a
    supervisor or with no viewer); the rest is the whole customer's, which whoever
    exports for a viewer checks it may see (the admin: ``customers_fully_visible_to``)."""
    tickets = []
    for ticket in Ticket.objects.filter(customer=customer).prefetch_related("tags").order_by("id"):
        messages = [
            {
                "id": m.pk,
                "direction": m.direction,
                "kind": m.kind,
                "channel": m.channel,
                "body_text": m.body_text,
                "body_html": m.body_html,
                "created_at": _iso(m.created_at),
                "attachments": [
                    {"filename": a.filename, "content_type": a.content_type, "size": a.size}
                    for a in m.attachments.all()
                ],
            }
            for m in ticket.messages.filter(kind="public")
            .prefetch_related("attachments")
            .order_by("created_at", "id")
        ]
        tickets.append(
            {
                "id": ticket.pk,
                "number": ticket.number,
                "subject": ticket.subject,
                "status": ticket.status,
                "channel": ticket.channel,
                "tags": sorted(t.name for t in ticket.tags.all()),
                "created_at": _iso(ticket.created_at),
                "resolved_at": _iso(ticket.resolved_at),
                "messages": messages,
            }
        )
    data: dict[str, Any] = {
        "format_version": EXPORT_FORMAT_VERSION,
        "exported_at": timezone.now().isoformat(),
        "customer": {
            "id": customer.pk,
            "name": customer.name,
            "email": customer.email,
            "phone": customer.phone,
            "vip_tier": customer.vip_tier,
            "account_type": customer.account_type,
            "created_at": _iso(customer.created_at),
            "updated_at": _iso(customer.updated_at),
            "erased": CustomerErasure.objects.filter(customer=customer).exists(),
        },
        "identities": [
            {
                "channel": i.channel,
                "external_id": i.external_id,
                "display_name": i.display_name,
                "created_at": _iso(i.created_at),
            }
            for i in ChannelIdentity.objects.filter(customer=customer).order_by("id")
        ],
        "orders": [
            {
                "number": o.number,
                "status": o.status,
                "currency": o.currency,
                "total": f"{o.total:.2f}",
                "refunded_amount": f"{o.refunded_amount:.2f}",
                "items": o.items,
                "placed_at": _iso(o.placed_at),
            }
            for o in Order.objects.filter(customer=customer).order_by("placed_at", "id")
        ],
        "tickets": tickets,
        "csat_feedback": [
            {
                "ticket_id": f.ticket_id,
                "rating": f.rating,
                "comment": f.comment,
                "created_at": _iso(f.created_at),
                "updated_at": _iso(f.updated_at),
            }
            for f in CsatFeedback.objects.filter(customer=customer).order_by("id")
        ],
        "interactions": [
            item.as_dict()
            for item in interactions_visible(
                customer, get_backend().for_customer(customer.pk), viewer=viewer
            )
        ],
    }
    for name, hook in sorted(_export_hooks.items()):
        data[name] = hook(customer)
    return data


def customer_export(*, customer: Customer, actor: Any, via: str) -> dict[str, Any]:
    """Everything about the customer as JSON-ready data, the interactions as the customer
    context shows them to ``actor`` (:func:`customer_export_build`); audit-logged."""
    data = customer_export_build(customer, viewer=actor)
    audit_log_record(
        actor=actor,
        action="customer.export",
        object_type="customer",
        object_id=customer.pk,
        details={
            "via": via,
            "tickets": len(data["tickets"]),
            "orders": len(data["orders"]),
            "interactions": len(data["interactions"]),
        },
    )
    return data


# --- erase ----------------------------------------------------------------------------


def _clean(values: Iterable[str]) -> list[str]:
    return sorted({t.strip() for t in values if t and len(t.strip()) >= 3}, key=len, reverse=True)


def _tokens(customer: Customer, identities: list[ChannelIdentity]) -> tuple[list[str], list[str]]:
    """(tokens, identifiers): see :class:`ErasureSubject`."""
    strong = {customer.email, customer.phone}
    # Phone numbers are often written without the leading + or spaces.
    if customer.phone:
        strong.add(digits_of(customer.phone))
    strong.update(identity.external_id for identity in identities)
    raw = {customer.name, *strong, *(i.display_name for i in identities)}
    # Names also appear in part ("Hi Ada"): each name word of 3+ letters (matched as a
    # whole word, and only in rows already found to be theirs).
    for name in (customer.name, *(i.display_name for i in identities)):
        for part in re.split(r"\s+", name):
            part = part.strip(_NAME_PUNCTUATION)
            if len(part) >= 3:
                raw.add(part)
    strong -= _shared_with_others(customer, _clean(strong))
    return _clean(raw), _clean(strong)


_NAME_PUNCTUATION = "()[]{}<>:;,\"'"


def digits_of(value: str) -> str:
    return re.sub(r"\D", "", value)


def _digits_expr(field_name: str) -> Func:
    return Func(F(field_name), Value(r"\D"), Value(""), Value("g"), function="regexp_replace")


_PHONE_SHAPE = re.compile(r"\+?[\d\s().-]{7,}")


def phone_digits(value: str) -> str:
    """The digits of a value shaped like a phone number ("+1 415-555 0100"), else ""."""
    return digits_of(value) if _PHONE_SHAPE.fullmatch(value.strip()) else ""


def _shared_with_others(customer: Customer, values: list[str]) -> set[str]:
    """Those of the customer's identifiers that another customer also has (their e-mail,
    phone, or a channel id): a shared household number or mailbox identifies neither."""
    if not values:
        return set()
    others = Customer.objects.exclude(pk=customer.pk)
    same_email, same_id = Q(), Q()
    for value in values:
        same_email |= Q(email__iexact=value)
        same_id |= Q(external_id__iexact=value)
    taken = {e.lower() for e in others.filter(same_email).values_list("email", flat=True)}
    taken |= {
        i.lower()
        for i in ChannelIdentity.objects.exclude(customer_id=customer.pk)
        .filter(same_id)
        .values_list("external_id", flat=True)
    }
    digits = {d for v in values if (d := phone_digits(v))}
    if digits:
        shared_digits = set(
            others.annotate(digits=_digits_expr("phone"))
            .filter(digits__in=digits)
            .values_list("digits", flat=True)
        )
        shared_digits |= {
            d
            for i in ChannelIdentity.objects.exclude(customer_id=customer.pk)
            .annotate(digits=_digits_expr("external_id"))
            .filter(digits__in=digits)
            .values_list("external_id", flat=True)
            if (d := phone_digits(i))
        }
        taken |= {v.lower() for v in values if phone_digits(v) in shared_digits}
    return {v for v in values if v.lower() in taken}


MIN_PHRASE = 8  # shorter own words ("ok", "thanks!") identify no one and are left alone
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def own_texts(texts: Iterable[str]) -> list[str]:
    """The person's own words as phrases to remove wherever they were copied: each text,
    each of its lines and each sentence (copies are often truncated or re-wrapped)."""
    found: set[str] = set()
    for text in texts:
        for piece in (text, *text.splitlines()):
            for phrase in (piece, *_SENTENCE_END.split(piece)):
                phrase = " ".join(phrase.split())
                if len(phrase) >= MIN_PHRASE and phrase not in (ERASED, REDACTED):
                    found.add(phrase)
    return sorted(found, key=lambda p: (-len(p), p))


def phrases_pattern(phrases: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive pattern for the phrases, any run of white space matching any."""
    parts = [r"\s+".join(re.escape(word) for word in p.split()) for p in phrases]
    parts = [p for p in parts if p]
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def redact(text: str, tokens: list[str]) -> str:
    """``text`` with each token replaced by ``[redacted]``: as a whole word (a name word is
    not found inside another word: "Ana" stays in "Anabel", "number" in "phone_number"),
    case-insensitively and in the folded form ``support.redaction`` compares names in
    ("José" is found as "Jose")."""
    if not text or not tokens:
        return text
    pattern = tokens_pattern(tuple(tokens))
    if pattern is None:
        return text
    folded, origin = fold(text)
    out: list[str] = []
    last = 0
    for match in pattern.finditer(folded):
        start, end = match.span()
        if origin is not None:
            start, end = origin[start], origin[end - 1] + 1
        out += (text[last:start], REDACTED)
        last = end
    out.append(text[last:])
    return "".join(out)


def mentions(text: str, tokens: list[str]) -> bool:
    """Whether :func:`redact` would change ``text``."""
    pattern = tokens_pattern(tuple(tokens)) if text and tokens else None
    return bool(pattern and pattern.search(fold(text)[0]))


@lru_cache(maxsize=64)
def tokens_pattern(tokens: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive pattern for the tokens (longest first), each as a whole word:
    no letter or digit just before one that starts with a letter or digit ("_" is a
    boundary: "Invoice_Jane_Doe"), no letter just after one ending in a letter (digits
    may follow a name: "@ana88") and no digit after one ending in a digit."""
    parts = []
    for token in sorted({fold(t)[0] for t in tokens if t}, key=len, reverse=True):
        before = r"(?<![^\W_])" if token[0].isalnum() else ""
        after = r"(?!\d)" if token[-1].isdigit() else r"(?![^\W\d_])" if token[-1].isalpha() else ""
        parts.append(before + re.escape(token) + after)
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def redact_json(value: Any, tokens: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, tokens)
    if isinstance(value, list):
        return [redact_json(v, tokens) for v in value]
    if isinstance(value, dict):
        return {k: redact_json(v, tokens) for k, v in value.items()}
    return value


def _text_match(field: str, values: list[str]) -> Q:
    """Rows whose ``field`` holds one of ``values`` (case-insensitive, anywhere): only ever
    given identifiers or message ids, never name words (which would find other people's
    rows: "number" is in every "phone_number_id")."""
    if not values:
        return Q(pk__in=[])  # matches nothing
    q = Q()
    for value in values:
        q |= Q(**{f"{field}__icontains": value})
    return q


def customer_erase(*, customer: Customer, actor: Any, via: str) -> dict[str, int]:
    """Erase the customer's personal data (see the module docstring). Idempotent.

    The database is erased in one transaction that also writes the erasure marker (the
    apps' hooks included: they change rows only). Everything outside PostgreSQL is erased
    after it commits, with no transaction open (``_erase_outside_database``): attachment
    files (S3 or disk), the interaction summaries (the store may be DynamoDB) and the
    apps' ``after_commit`` hooks. So a rollback never leaves outside data erased while
    the rows still point to it, and no network call holds the transaction open
    (docs/operations.md). The committed marker stops new interactions being written
    meanwhile. Should a step outside fail, ``ErasureIncomplete`` reaches the caller and
    erasing again finishes the job (each step finds what is left by ids); the audit-log
    row is written once everything is done."""
    counts, first, subject, file_ids = _customer_erase_rows(customer=customer, actor=actor)
    counts.update(_erase_outside_database(subject, file_ids))
    with transaction.atomic():
        if first:
            CustomerErasure.objects.filter(customer_id=customer.pk).update(counts=counts)
        audit_log_record(
            actor=actor,
            action="customer.erase",
            object_type="customer",
            object_id=customer.pk,
            details={"via": via, **counts},
        )
        context_invalidate(customer.pk)
    logger.info("Customer %s erased: %s", customer.pk, counts)
    return counts


class ErasureIncomplete(Exception):
    """The customer's rows are erased (committed) but a step outside PostgreSQL failed:
    erasing again finishes it."""

    def __init__(self, customer_id: int, step: str, cause: BaseException) -> None:
        self.customer_id = customer_id
        super().__init__(
            f"Customer {customer_id}: their data in the database is erased, but {step} "
            f"failed ({cause}); erase again to finish."
        )


# What a step outside PostgreSQL raises: storage (disk, S3 through django-storages),
# the interactions store (support.aws errors) or another app's outside eraser.
OUTSIDE_ERRORS = (OSError, BotoCoreError, ClientError, RetryableError, PermanentError)


def _erase_outside_database(subject: ErasureSubject, file_ids: list[int]) -> dict[str, int]:
    """The erase steps outside PostgreSQL, after the rows' erase committed (no transaction
    open). Each is idempotent and finds its work by ids, so a repeat erase finishes what a
    failure left (``ErasureIncomplete`` says so). ``file_ids``: the messages whose
    attachments' files go (the customer's own, and the replies that sent them files)."""
    steps: list[tuple[str, str, Callable[[], int]]] = [
        (
            "attachments_deleted",
            "deleting attachment files",
            lambda: _attachment_files_erase(file_ids),
        ),
        (
            "interactions_erased",
            "erasing the interaction summaries",
            lambda: get_backend().erase_customer(subject.customer_id),
        ),
    ]
    for name, hook in sorted(_after_commit_erasure_hooks.items()):
        steps.append((f"hook_{name}", f"the {name} eraser", partial(hook, subject)))
    counts: dict[str, int] = {}
    for key, step, run in steps:
        try:
            counts[key] = run()
        except OUTSIDE_ERRORS as exc:
            raise ErasureIncomplete(subject.customer_id, step, exc) from exc
    return counts


def _attachment_files_erase(message_ids: list[int]) -> int:
    """Delete the files of these messages' attachments from storage (S3 or disk), then
    their rows, one by one: a storage failure leaves the rest (rows still pointing at
    their files) for the next erase. Returns how many were deleted."""
    deleted = 0
    for attachment in Attachment.objects.filter(message_id__in=message_ids).order_by("id"):
        if attachment.file:
            attachment.file.delete(save=False)  # idempotent: a missing file is no error
        Attachment.objects.filter(pk=attachment.pk).delete()
        deleted += 1
    return deleted


@transaction.atomic
def _customer_erase_rows(
    *, customer: Customer, actor: Any
) -> tuple[dict[str, int], bool, ErasureSubject, list[int]]:
    """Every database row, in one transaction (nothing outside PostgreSQL: see
    ``customer_erase``); returns the counts, whether this was the customer's first
    erasure, the subject and the ids of the messages whose attachment files are deleted
    after commit (the customer's own, and the replies that sent them files)."""
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    identities = list(ChannelIdentity.objects.filter(customer=customer))
    tokens, identifiers = _tokens(customer, identities)
    ticket_ids = list(Ticket.objects.filter(customer=customer).values_list("id", flat=True))
    # The customer's own words: their messages, and a bot's transcript of its chat with
    # them handed over with the ticket.
    own = Message.objects.filter(
        Q(author_customer=customer)
        | Q(ticket_id__in=ticket_ids, direction=Direction.INBOUND)
        | Q(ticket_id__in=ticket_ids, metadata__has_key="bot_transcript")
    )
    own_rows = list(own.values_list("id", "body_text", "channel_message_id"))
    own_ids = [pk for pk, _, _ in own_rows]
    opened = _opened_by(ticket_ids, set(own_ids))
    subjects = Ticket.objects.filter(pk__in=opened).values_list("subject", flat=True)
    subject = ErasureSubject(
        customer_id=customer.pk,
        ticket_ids=ticket_ids,
        tokens=tokens,
        identifiers=identifiers,
        message_ids=sorted({mid for _, _, mid in own_rows if mid}),
        texts=own_texts([*(body for _, body, _ in own_rows), *subjects]),
    )
    counts: dict[str, int] = {}

    # Replaced entirely. Their attachments lose their names and links here; the files
    # (and then the rows) are deleted after commit, by _attachment_files_erase.
    Attachment.objects.filter(message_id__in=own_ids).update(
        filename=ERASED, external_url="", external_media_id=""
    )
    # Files sent to them (an invoice "Invoice Jane Doe.pdf" billing them by name): their
    # names redacted here, the files (whose storage keys are built from those names) and
    # then the rows deleted after commit, like their own.
    sent_ids = list(
        Message.objects.filter(
            ticket_id__in=ticket_ids, direction=Direction.OUTBOUND, kind=MessageKind.PUBLIC
        )
        .exclude(pk__in=own_ids)
        .filter(attachments__isnull=False)
        .values_list("id", flat=True)
        .distinct()
    )
    for attachment in Attachment.objects.filter(message_id__in=sent_ids).only("filename"):
        filename = subject.redact(attachment.filename)
        if filename != attachment.filename:
            attachment.filename = filename
            attachment.save(update_fields=["filename"])
    counts["messages_anonymised"] = Message.objects.filter(pk__in=own_ids).update(
        body_text=ERASED, body_html="", metadata={}
    )
    # Everything else on their tickets (agent replies, notes, system entries): redacted.
    others = Message.objects.filter(ticket_id__in=ticket_ids).exclude(pk__in=own_ids)
    changed = []
    fields = ["body_text", "body_html", "metadata", "delivery_error", "channel_message_id"]
    for message in others.only(*fields):
        before = [getattr(message, name) for name in fields]
        message.body_text = subject.redact(message.body_text)
        message.body_html = subject.redact(message.body_html)
        message.metadata = subject.redact_json(message.metadata)
        # A bounce names the address ("550 5.1.1 <ana@example.com>: User unknown").
        message.delivery_error = subject.redact(message.delivery_error)
        if message.channel_message_id:
            message.channel_message_id = subject.redact(message.channel_message_id)
        if before != [getattr(message, name) for name in fields]:
            changed.append(message)
    Message.objects.bulk_update(changed, fields)
    Message.objects.filter(pk__in=own_ids, channel_message_id__isnull=False).filter(
        _text_match("channel_message_id", tokens)  # their own rows: any mention will do
    ).update(channel_message_id=None)
    counts["messages_redacted"] = len(changed)

    tickets = list(Ticket.objects.filter(pk__in=ticket_ids))
    for ticket in tickets:
        # A ticket the customer opened has their words as its subject (an e-mail's
        # Subject, a chat's first line): erased like their messages.
        ticket.subject = ERASED if ticket.pk in opened else subject.redact(ticket.subject)
        redacted = redact(ticket.origin_platform_id, tokens)
        if redacted != ticket.origin_platform_id:
            # No longer the caller's ticket id (and two redacted ids could now be equal,
            # which the per-caller unique constraint forbids).
            ticket.origin_platform_id = redacted
            ticket.origin_caller = None
    Ticket.objects.bulk_update(tickets, ["subject", "origin_platform_id", "origin_caller"])
    for ticket in tickets:
        Ticket.objects.filter(pk=ticket.pk).update(
            search_vector=SearchVector(Value(ticket.subject), weight="A", config="english")
        )
    counts["tickets"] = len(tickets)

    counts["identities_deleted"] = ChannelIdentity.objects.filter(customer=customer).delete()[0]
    counts["csat_comments_erased"] = (
        CsatFeedback.objects.filter(customer=customer).exclude(comment="").update(comment="")
    )
    # Their history entries and surveys that never came: not to be re-driven after this
    # (each would record a history entry of erased words, or survey an erased person).
    counts["dead_letters_deleted"] = ContextDeadLetter.objects.filter(
        Q(customer=customer) | Q(ticket_id__in=ticket_ids)
    ).delete()[0]
    counts["events_redacted"] = _redact_events(subject, own_ids)
    counts["log_entries_redacted"] = _redact_logs(subject, identities)
    for name, hook in sorted(_erasure_hooks.items()):
        counts[f"hook_{name}"] = hook(subject)

    customer.name = ""
    customer.email = ""
    customer.phone = ""
    # the ticketing system's id for the person: a later ticket under it makes a new customer
    customer.external_id = ""
    customer.save(update_fields=["name", "email", "phone", "external_id", "updated_at"])
    # The first erasure's record stays; a repeated one is still audit-logged.
    _, first = CustomerErasure.objects.get_or_create(
        customer=customer,
        defaults={
            "erased_by": actor if getattr(actor, "is_authenticated", False) else None,
            "counts": counts,
        },
    )
    # A cache delete, now and after commit: on a rollback it only costs a rebuild.
    context_invalidate(customer.pk)
    return counts, first, subject, [*own_ids, *sent_ids]


def _opened_by(ticket_ids: list[int], own_ids: set[int]) -> set[int]:
    """The tickets whose first message is one of the customer's own."""
    firsts = (
        Message.objects.filter(ticket_id__in=ticket_ids)
        .order_by("ticket_id", "created_at", "id")
        .distinct("ticket_id")
        .values_list("ticket_id", "id")
    )
    return {ticket_id for ticket_id, first in firsts if first in own_ids}


def _selected_by_ids(field: str, subject: ErasureSubject) -> Q:
    """Rows of any customer that hold one of the person's identifiers or message ids (a
    name word selects nothing: it may be anyone's, see :class:`ErasureSubject`)."""
    return _text_match(field, [*subject.identifiers, *subject.message_ids])


def _redact_events(subject: ErasureSubject, own_message_ids: list[int]) -> int:
    events = OutboxEvent.objects.filter(
        Q(payload__customer_id=subject.customer_id)
        | Q(payload__ticket_id__in=subject.ticket_ids)
        | _selected_by_ids("payload", subject)
    )
    own = {str(pk) for pk in own_message_ids}
    changed = []
    for event in events:
        payload = subject.redact_json(event.payload)
        if event.aggregate_type == "message" and event.aggregate_id in own and "preview" in payload:
            payload["preview"] = ERASED
        if payload != event.payload:
            event.payload = payload
            changed.append(event)
    OutboxEvent.objects.bulk_update(changed, ["payload"])
    return len(changed)


def _redact_logs(subject: ErasureSubject, identities: list[ChannelIdentity]) -> int:
    """Audit-log details and Django admin log entries about the person (their customer
    row, identities, tickets) or holding one of their identifiers, redacted. An admin
    entry's ``object_repr`` is the record's ``str()`` when it was logged: for their
    customer row and identities that is their name, e-mail or channel id (perhaps an
    earlier one, which no token finds), so it is replaced whole; for any other record it
    is redacted (another customer's entry that mentions them keeps its own name)."""
    changed = 0
    identity_ids = [str(i.pk) for i in identities]
    ticket_ids = [str(pk) for pk in subject.ticket_ids]
    audit = AuditLog.objects.filter(
        Q(object_type="customer", object_id=str(subject.customer_id))
        | Q(object_type="channel_identity", object_id__in=identity_ids)
        | Q(object_type="ticket", object_id__in=ticket_ids)
        | _selected_by_ids("details", subject)
    ).exclude(action="customer.erase")  # counts only, and the record of the erasure
    for entry in audit:
        details = subject.redact_json(entry.details)
        if details != entry.details:
            entry.details = details
            entry.save(update_fields=["details"])
            changed += 1
    customer_type = ContentType.objects.get_for_model(Customer)
    identity_type = ContentType.objects.get_for_model(ChannelIdentity)
    ticket_type = ContentType.objects.get_for_model(Ticket)
    whole = Q(content_type=customer_type, object_id=str(subject.customer_id)) | Q(
        content_type=identity_type, object_id__in=identity_ids
    )
    entries = LogEntry.objects.filter(
        whole
        | Q(content_type=ticket_type, object_id__in=ticket_ids)
        | _selected_by_ids("object_repr", subject)
        | _selected_by_ids("change_message", subject)
    )
    theirs = set(LogEntry.objects.filter(whole).values_list("pk", flat=True))
    for log in entries:
        before = (log.object_repr, log.change_message)
        log.object_repr = ERASED if log.pk in theirs else subject.redact(log.object_repr)
        log.change_message = subject.redact(log.change_message)
        if before != (log.object_repr, log.change_message):
            log.save(update_fields=["object_repr", "change_message"])
            changed += 1
    return changed
