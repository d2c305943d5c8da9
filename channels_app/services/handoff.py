"""Chatbot hand-off: a bot session becomes a ticket; agents' replies go back to the
customer by e-mail and, when the bot registered one, to its callback URL.

Signatures: the hand-off body is signed ``X-Signature-256: sha256=<hex HMAC-SHA256(chatbot
account secret, body)>`` (or the call carries an agent's API key). What the server signs
and what the bot signs afterwards add a timestamp, so a captured request cannot be replayed
later: ``X-Signature-Timestamp: <unix seconds>`` and ``X-Signature-256: sha256=<hex
HMAC-SHA256(secret, "<timestamp>." + payload)>``, where the payload is the body of a
callback POST or of a hand-off, or ``GET <path>`` for a status poll. A hand-off may be
signed either way unless its account requires the timestamp
(docs/channels.md#chatbot-hand-off).

Files: a callback lists the reply's files, each with a ``url`` the bot fetches within
``FILE_URL_MAX_AGE_SECONDS``: the signed S3 URL when files are on S3, else this app's own
(``api-chatbot-file``): ``?expires=<unix seconds>&signature=<hex HMAC-SHA256(secret,
"chatbot-file:<attachment id>:<expires>")>``, signed with the same account's secret and
good only for the files of that account's hand-off tickets' replies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from channels_app.account_settings import TRUE_WORDS
from channels_app.adapters.base import constant_time_equal
from channels_app.models import ChannelAccount
from support.db import advisory_xact_lock
from support.delivery.models import Delivery
from support.delivery.registry import ANSWER_TOO_LARGE, Schedule, SendResult, TargetKind
from support.delivery.services import delivery_enqueue
from support.errors import InvalidInput, NotFound, PermanentError, RetryableError
from support.models import ApiKey, AttemptOutcome
from support.outbound import (
    AnswerTooLarge,
    classify_http_status,
    outbound_headers,
    retry_after_from_headers,
)
from support.safe_urls import UnsafeUrlError, public_post, public_url_error
from tickets import services as ticket_services
from tickets.attachments import PROVIDER_URL_EXPIRE_SECONDS
from tickets.models import (
    Attachment,
    Channel,
    Customer,
    Direction,
    Message,
    MessageKind,
    Ticket,
)
from tickets.selectors import (
    MERGE_CHAIN_MAX,
    OPEN_STATUSES,
    message_list_written_on,
    message_written_on_ticket_get,
    ticket_visible_to,
)

logger = logging.getLogger(__name__)

CALLBACK_KIND = "chatbot_callback"
SIGNATURE_HEADER = "X-Signature-256"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
#: How long the ``url`` of a file in a callback stays valid: the signed S3 URL's lifetime,
#: and our own URL's off S3, so a bot meets one rule whatever the storage.
FILE_URL_MAX_AGE_SECONDS = PROVIDER_URL_EXPIRE_SECONDS
#: Web servers' clocks differ a little: an expiry up to this much further ahead than one of
#: our URLs can carry is still taken (anything further is no URL of ours: 404).
FILE_URL_CLOCK_SLACK_SECONDS = 60
_HEX = frozenset("0123456789abcdef")


# --- signatures ---------------------------------------------------------------------------


def handoff_signature(secret: str, timestamp: int | str, payload: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, "<timestamp>." + payload)>``."""
    message = f"{timestamp}.".encode() + payload
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def chatbot_accounts() -> list[ChannelAccount]:
    return list(
        ChannelAccount.objects.filter(channel=Channel.CHATBOT, is_active=True)
        .exclude(app_secret="")
        .order_by("pk")
    )


def chatbot_account_for_signature(
    given: str, *, payload: bytes, timestamp: str | None = None
) -> ChannelAccount | None:
    """The active chatbot account whose secret produced ``given`` (every account is
    compared, in constant time, so the time taken names none of them)."""
    found: ChannelAccount | None = None
    for account in chatbot_accounts():
        if timestamp is None:
            expected = (
                "sha256="
                + hmac.new(account.app_secret.encode(), payload, hashlib.sha256).hexdigest()
            )
        else:
            expected = handoff_signature(account.app_secret, timestamp, payload)
        if constant_time_equal(given, expected) and found is None:
            found = account
    return found


def signature_timestamp_fresh(raw: str, *, now: float | None = None) -> bool:
    """A Unix timestamp at most ``CHATBOT_SIGNATURE_MAX_AGE_SECONDS`` away from now."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        return False
    now = time.time() if now is None else now
    return abs(now - int(raw)) <= int(settings.CHATBOT_SIGNATURE_MAX_AGE_SECONDS)


def handoff_file_signature(secret: str, attachment_id: int, expires: int | str) -> str:
    """``<hex HMAC-SHA256(secret, "chatbot-file:<attachment id>:<expires>")>``: the
    signature of a file URL (its own prefix: no callback or request signature is one)."""
    message = f"chatbot-file:{attachment_id}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def handoff_file_url(attachment_id: int, *, account: ChannelAccount, expires: int) -> str:
    """This app's download URL of a reply's file, for the bot of ``account`` until
    ``expires`` (Unix seconds): ``SITE_URL`` + ``api-chatbot-file`` + the signed query."""
    query = urlencode(
        {
            "expires": expires,
            "signature": handoff_file_signature(account.app_secret, attachment_id, expires),
        }
    )
    return f"{settings.SITE_URL}{reverse('api-chatbot-file', args=[attachment_id])}?{query}"


def handoff_file_for_url(
    attachment_id: int, *, expires: str, signature: str, now: float | None = None
) -> Attachment | None:
    """The file a download URL names, if the URL is one of ours and still valid: an expiry
    from now to ``FILE_URL_MAX_AGE_SECONDS`` (plus a little clock slack) ahead, a signature
    (64 lower-case hex digits) an active chatbot account's secret made over the id and
    expiry (every account compared in constant time), and a file of an agent's reply on a
    ticket that account handed off (``selectors.handoff_file_get``). None for anything
    else; nothing is read from the database before the signature matches."""
    from channels_app import selectors

    if not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
        return None
    now = time.time() if now is None else now
    if not now <= int(expires) <= now + FILE_URL_MAX_AGE_SECONDS + FILE_URL_CLOCK_SLACK_SECONDS:
        return None
    if len(signature) != 64 or not set(signature) <= _HEX:
        return None
    found: ChannelAccount | None = None
    for account in chatbot_accounts():
        expected = handoff_file_signature(account.app_secret, attachment_id, expires)
        if constant_time_equal(signature, expected) and found is None:
            found = account
    if found is None:
        return None
    return selectors.handoff_file_get(account_id=found.pk, attachment_id=attachment_id)


def handoff_ticket_for_account(ticket_ref: str, *, account: ChannelAccount) -> Ticket | None:
    """The hand-off ticket ``ticket_ref`` if ``account`` (the bot) handed it off."""
    from tickets.selectors import parse_ticket_ref

    try:
        pk = parse_ticket_ref(ticket_ref)
    except NotFound:
        return None
    return (
        Ticket.objects.select_related("customer")
        .filter(
            pk=pk,
            channel=Channel.CHATBOT,
            is_bot_handoff=True,
            channel_account_id=str(account.pk),
        )
        .first()
    )


# --- hand-off -----------------------------------------------------------------------------


def callback_url_check(url: str) -> None:
    """InvalidInput unless the server may call ``url`` (``support.safe_urls``)."""
    problem = public_url_error(url, allow_http=bool(settings.DEBUG))
    if problem is not None:
        raise InvalidInput(
            f"callback_url: {problem}.", details={"callback_url": [f"Refused: {problem}."]}
        )


def handoff_trusts_email(account: ChannelAccount | None) -> bool:
    """Whether this bot vouches for the addresses its users give: only a chatbot account
    configured so (``settings["trusts_customer_email"]``, e.g. a bot behind the site's
    login). Anyone can type anyone's address into a bot, as into the web chat widget."""
    return _account_flag(account, "trusts_customer_email")


def handoff_requires_timestamp(account: ChannelAccount | None) -> bool:
    """Whether this bot's hand-offs must carry ``X-Signature-Timestamp`` (its account's
    ``settings["require_signature_timestamp"]``): a body signed without one can be
    replayed at any later time by whoever captured it."""
    return _account_flag(account, "require_signature_timestamp")


def _account_flag(account: ChannelAccount | None, name: str) -> bool:
    if account is None:
        return False
    flag = account.settings.get(name, False)
    return flag is True or str(flag).strip().lower() in TRUE_WORDS


def _handoff_customer(account: ChannelAccount | None, email: str, name: str) -> Customer:
    """The address's customer when the bot is trusted, else a guest of its own (no e-mail,
    so nothing links it to the address's owner; an agent may merge it after checking)."""
    if handoff_trusts_email(account):
        customer, _ = ticket_services.customer_get_or_create(email=email, name=name)
        return customer
    who = name.strip()
    guest = f"{who} (unverified: {email})" if who else f"{email} (unverified)"
    customer, _ = ticket_services.customer_get_or_create(email="", name=guest[:200])
    return customer


def _transcript_line(turn: dict[str, Any]) -> str:
    """``{"role"|"from": …, "text"|"content": …}`` (seed 001's example uses ``from``)."""
    who = turn.get("role", turn.get("from", "?"))
    return f"{who!s}: {turn.get('text', turn.get('content', ''))!s}"


# How long an exact repeat of a hand-off counts as a replay once its ticket is resolved or
# closed: a bot's retry comes within minutes (a signed hand-off is refused after
# CHATBOT_SIGNATURE_MAX_AGE_SECONDS anyway); the same words an hour later, on a ticket
# that is done, are the customer asking again and open a new ticket. While the ticket is
# open an exact repeat is always a replay (it is already there).
HANDOFF_REPLAY_WINDOW = timedelta(hours=1)


def _turn_key(turn: Any) -> str:
    """A transcript turn as compared with those already stored (key order aside)."""
    return json.dumps(turn, sort_keys=True, separators=(",", ":"), default=str)


def _session_tickets(
    *, session_id: str, account: ChannelAccount | None, api_key_id: int | None
) -> list[Ticket]:
    """The caller's tickets of this bot session, oldest first (a session is its caller's
    own: the chatbot account that signed, else the API key that sent it)."""
    found = Ticket.objects.filter(channel=Channel.CHATBOT, origin_platform_id=session_id)
    if account is not None:
        found = found.filter(channel_account_id=str(account.pk))
    else:
        found = found.filter(
            pk__in=Message.objects.filter(metadata__contains={"bot_api_key_id": api_key_id}).values(
                "ticket_id"
            ),
            channel_account_id="",
        )
    return list(found.order_by("pk"))


def _stored_handoff(
    tickets: list[Ticket], *, merged_into: Ticket | None = None, mark: dict[str, str]
) -> tuple[dict[tuple[str, str], tuple[Ticket, datetime]], set[str]]:
    """What the session's hand-offs already stored on ``tickets`` (wherever a merge moved
    it): each hand-off's subject and initial message (with the ticket it was written on
    and when it came, the latest one) and every transcript turn kept in a transcript note.
    A first message stored before ``bot_subject`` was recorded has its ticket's subject.
    ``merged_into``: the open ticket the session's ticket was merged into, where later
    hand-offs were added; there only the entries marked with this session and caller
    (``mark``) count."""
    messages: dict[tuple[str, str], tuple[Ticket, datetime]] = {}
    turns: set[str] = set()
    sources = [(ticket, message_list_written_on(ticket=ticket), False) for ticket in tickets]
    if merged_into is not None and all(t.pk != merged_into.pk for t in tickets):
        marked = Message.objects.filter(ticket=merged_into, metadata__contains=mark)
        sources.append((merged_into, marked, True))
    for ticket, entries, target in sources:
        rows = entries.values_list("direction", "body_text", "metadata", "created_at")
        for direction, body, metadata, created_at in rows:
            if not isinstance(metadata, dict):
                continue
            if direction == Direction.INBOUND and "bot_session_id" in metadata:
                key = (str(metadata.get("bot_subject", ticket.subject)), body)
                if target:  # a merge moved there what a session ticket holds too
                    messages.setdefault(key, (ticket, created_at))
                else:
                    messages[key] = (ticket, created_at)
            for turn in metadata.get("bot_transcript") or ():
                turns.add(_turn_key(turn))
    return messages, turns


def _open_session_ticket(ticket: Ticket, *, api_key_id: int | None = None) -> Ticket | None:
    """Where a new hand-off of the session goes: its latest ticket, or the ticket that
    ticket was merged into (the conversation goes on there), while not resolved or
    closed; else None (a new ticket). A hand-off sent with an API key (``api_key_id``)
    acts as the key's user: a ticket that user may not see (routed to a team they are
    not in) is not added to, nor named in the answer, either; the hand-off opens a new
    ticket (security review 2026-12-06; a replay of a hand-off that went to such a
    ticket, too: :func:`chatbot_handoff`)."""
    seen = {ticket.pk}
    while ticket.merged_into_id is not None and len(seen) < MERGE_CHAIN_MAX:
        target = Ticket.objects.filter(pk=ticket.merged_into_id).first()
        if target is None or target.pk in seen:
            return None
        seen.add(target.pk)
        ticket = target
    if ticket.merged_into_id is not None or ticket.status not in OPEN_STATUSES:
        return None
    if not _key_sees(ticket, api_key_id=api_key_id):
        return None
    return ticket


def _key_sees(ticket: Ticket, *, api_key_id: int | None) -> bool:
    """Whether a hand-off may write to or name ``ticket``: always for a signed hand-off
    (``api_key_id`` None: the account owns its tickets), else only when the key's user
    may see it."""
    if api_key_id is None:
        return True
    key = ApiKey.objects.select_related("user").filter(pk=api_key_id).first()
    return key is not None and ticket_visible_to(
        key.user, team_id=ticket.team_id, assignee_id=ticket.assignee_id
    )


def _transcript_note(ticket: Ticket, turns: list[dict[str, Any]], mark: dict[str, str]) -> None:
    ticket_services.message_add(
        ticket=ticket,
        body="Bot transcript\n" + "\n".join(_transcript_line(turn) for turn in turns),
        kind=MessageKind.INTERNAL_NOTE,
        direction=Direction.OUTBOUND,
        metadata={"bot_transcript": turns, **mark},
    )


@transaction.atomic
def chatbot_handoff(
    *,
    source: str,
    customer_email: str,
    subject: str,
    initial_message: str,
    session_id: str,
    transcript: list[dict[str, Any]] | None = None,
    customer_name: str = "",
    account: ChannelAccount | None = None,
    api_key_id: int | None = None,
    callback_url: str = "",
) -> tuple[Ticket, bool]:
    """Hand a bot session to people: a ticket flagged ``is_bot_handoff``. Returns the
    ticket and whether it is new.

    Nothing a hand-off brings is dropped, and a replay adds nothing
    (docs/channels.md#chatbot-hand-off):

    - the session's first hand-off opens a ticket;
    - a replay (a ``subject`` and ``initial_message`` this session already handed off,
      and no transcript turn not already stored) returns the ticket it went to,
      unchanged (sent with an API key: only while the key's user may see that ticket,
      else it is handed off as new, below, and that ticket is not named);
    - another hand-off while the session's latest ticket (or the ticket it was merged
      into) is new, open or pending adds to it: the initial message as the customer's
      message (its ``bot_subject`` and ``claimed_email`` in the message's metadata), unless
      that subject and message are already stored, and the
      transcript turns not already stored as a transcript note;
    - another hand-off once that ticket is resolved or closed opens a new ticket, whose
      first message names the earlier one (``bot_previous_ticket_id``).

    The session is locked (a transaction-scoped advisory lock) from the look-up to the
    write, so concurrent hand-offs of one session queue: a replay racing its original
    finds it and creates nothing.

    ``account`` is the chatbot account whose secret signed the hand-off, else
    ``api_key_id`` the agent's API key that sent it: a session is the caller's own (the
    same ``session_id`` from another account or key is another conversation). The account
    may poll the ticket's status and receives the callbacks. A ``callback_url`` needs it
    (callbacks are signed with its secret) and must pass the safe-URL check (no internal
    address); a ticket keeps the callback URL of the hand-off that opened it.
    ``customer_email`` is a claim (see :func:`handoff_trusts_email`): kept as the
    message's ``claimed_email``, where replies are e-mailed (the first message's)."""
    if callback_url:
        if account is None:
            raise InvalidInput(
                "callback_url: only a signed hand-off (X-Signature-256) may register one; "
                "callbacks are signed with that chatbot account's secret.",
                details={"callback_url": ["Needs a signed hand-off."]},
            )
        callback_url_check(callback_url)
    caller = f"account:{account.pk}" if account is not None else f"key:{api_key_id or ''}"
    advisory_xact_lock(f"chatbot:{caller}:{session_id}")
    turns = list(transcript or [])
    # what marks this session's entries on a ticket another one was merged into
    mark = {"bot_session_id": session_id, "bot_caller": caller}
    metadata: dict[str, Any] = {
        "bot_source": source,
        **mark,
        "claimed_email": customer_email,
        "bot_subject": subject,
    }
    if account is None:
        metadata["bot_api_key_id"] = api_key_id
    if callback_url:
        metadata["bot_callback_url"] = callback_url
    session = _session_tickets(session_id=session_id, account=account, api_key_id=api_key_id)
    if session:
        current = _open_session_ticket(session[-1], api_key_id=api_key_id)
        messages, stored_turns = _stored_handoff(session, merged_into=current, mark=mark)
        new_turns = [turn for turn in turns if _turn_key(turn) not in stored_turns]
        handed = (subject, initial_message)
        if handed in messages and not new_turns:
            went_to, came_at = messages[handed]
            recent = came_at >= timezone.now() - HANDOFF_REPLAY_WINDOW
            if (current is not None or recent) and _key_sees(went_to, api_key_id=api_key_id):
                return went_to, False  # a replay: nothing new
            # asked again once the ticket was done, or a replay whose ticket the key's
            # user may no longer see (never named to them): a new hand-off
            messages.pop(handed)
        if current is not None:
            if handed not in messages:
                ticket_services.message_add(
                    ticket=current,
                    body=initial_message,
                    direction=Direction.INBOUND,
                    kind=MessageKind.PUBLIC,
                    author_customer=current.customer,
                    channel=Channel.CHATBOT,
                    metadata=metadata,
                )
            if new_turns:
                _transcript_note(current, new_turns, mark)
            current.refresh_from_db()
            return current, False
        metadata["bot_previous_ticket_id"] = session[-1].pk
    customer = _handoff_customer(account, customer_email, customer_name)
    ticket = ticket_services.ticket_create(
        customer=customer,
        subject=subject,
        body=initial_message,
        channel="chatbot",
        channel_account_id=str(account.pk) if account is not None else "",
        is_bot_handoff=True,
        origin_platform_id=session_id,
        message_metadata=metadata,
    )
    if turns:
        _transcript_note(ticket, turns, mark)
    return ticket, True


def _handoff_metadata(ticket: Ticket) -> dict[str, Any]:
    """The hand-off's own record: the metadata of the first inbound message written on the
    ticket (wherever a merge moved it; never that of a ticket merged into it)."""
    first = (
        message_list_written_on(ticket=ticket)
        .filter(direction=Direction.INBOUND)
        .order_by("created_at", "pk")
        .values_list("metadata", flat=True)
        .first()
    )
    return first if isinstance(first, dict) else {}


def handoff_callback_url(ticket: Ticket) -> str:
    """The callback URL the bot registered at hand-off ("" if none)."""
    return str(_handoff_metadata(ticket).get("bot_callback_url", ""))


def handoff_reply_address(ticket: Ticket) -> str:
    """Where agents' replies on a hand-off are e-mailed: the customer's address, else the
    one the bot's user gave (a guest's claim: mail goes to that mailbox, whose owner is
    the only one who reads it, as with an unverified e-mail sender)."""
    return ticket.customer.email or str(_handoff_metadata(ticket).get("claimed_email", ""))


# --- agents' replies ------------------------------------------------------------------------


def handoff_reply_deliveries_create(message: Message) -> Delivery | None:
    """An agent's public reply on a hand-off ticket: an e-mail to the customer through the
    e-mail channel (a ``channel_reply`` delivery, which keeps the message's status) and,
    when the bot registered a callback URL, a signed POST to it (a ``chatbot_callback``
    delivery). Idempotent per message. Returns the e-mail delivery."""
    from channels_app.services.outbound import email_reply_delivery_create

    key = f"message:{message.pk}"
    ticket = handoff_reply_ticket(message)
    email = email_reply_delivery_create(message, address=handoff_reply_address(ticket))
    url = handoff_callback_url(ticket)
    if url and ticket.channel_account_id.isdigit():
        delivery_enqueue(
            kind=CALLBACK_KIND,
            idempotency_key=key,
            target_key=f"{CALLBACK_KIND}:{ticket.channel_account_id}",
            subject_type="ticket",
            subject_id=ticket.pk,
            payload={"message_id": message.pk, "account_id": int(ticket.channel_account_id)},
        )
    return email


def handoff_reply_files(
    message: Message, *, account: ChannelAccount, now: float | None = None
) -> list[dict[str, Any]]:
    """The files of an agent's reply as its hand-off bot gets them, in the callback
    (``message.files``) and in the status poll (``last_agent_reply.files``): ``id``,
    ``name``, ``content_type``, ``size`` and a ``url`` the bot can fetch until
    ``expires_at``, ``FILE_URL_MAX_AGE_SECONDS`` from now (the signed S3 URL on S3, else
    ours: :func:`handoff_file_url`, signed with ``account``'s secret). Fresh on every call:
    a retried callback and every poll carry new URLs."""
    from channels_app.services.outbound import outbound_files

    expires = int(time.time() if now is None else now) + FILE_URL_MAX_AGE_SECONDS
    expires_at = datetime.fromtimestamp(expires, tz=UTC).isoformat()
    return [
        {
            "id": file.attachment_id,
            "name": file.filename,
            "content_type": file.content_type,
            "size": file.size,
            "url": file.public_url()
            or handoff_file_url(file.attachment_id, account=account, expires=expires),
            "expires_at": expires_at,
        }
        for file in outbound_files(message)
    ]


def handoff_reply_ticket(message: Message) -> Ticket:
    """The hand-off ticket an agent's reply was written on: its own ticket, unless a merge
    has since moved it to another (``tickets.selectors.written_on_ticket_id``). The reply
    stays that hand-off's: its callback, its bot's session and file URLs, and the
    address its e-mail goes to. A ticket since deleted is a permanent failure in words."""
    ticket = message_written_on_ticket_get(message=message)
    if ticket is None:
        raise PermanentError(
            "The hand-off ticket this reply was written on no longer exists; not sent."
        )
    return ticket


def callback_body(
    message: Message, *, ticket: Ticket, account: ChannelAccount, now: float | None = None
) -> dict[str, Any]:
    """What the bot's callback receives: the reply, its hand-off ``ticket`` (the one it
    was written on: :func:`handoff_reply_ticket`) and its files
    (:func:`handoff_reply_files`). Made again for every attempt, so a retried callback
    carries fresh URLs."""
    files = handoff_reply_files(message, account=account, now=now)
    return {
        "event": "agent_reply",
        "ticket_id": ticket.pk,
        "number": ticket.number,
        "status": ticket.status,
        "session_id": ticket.origin_platform_id,
        "message": {
            "id": message.pk,
            "body_text": message.body_text,
            "created_at": message.created_at.isoformat(),
            "files": files,
        },
    }


def chatbot_callback_send(delivery: Delivery) -> SendResult:
    """POST the reply to the bot's callback URL, signed with its account's secret. The URL
    is checked again (DNS can change since the hand-off) and redirects are not followed;
    the answer is read within the timeout and up to 64 KiB (``public_post``: a larger one
    is a permanent failure, never read whole)."""
    message = (
        Message.objects.select_related("ticket")
        .filter(pk=delivery.payload.get("message_id"))
        .first()
    )
    if message is None:
        raise PermanentError("The message was deleted before it could be sent.")
    account = ChannelAccount.objects.filter(
        pk=delivery.payload.get("account_id"), channel=Channel.CHATBOT, is_active=True
    ).first()
    if account is None or not account.app_secret:
        raise PermanentError("The chatbot account is gone, inactive or has no secret.")
    ticket = handoff_reply_ticket(message)
    url = handoff_callback_url(ticket)
    body = json.dumps(
        callback_body(message, ticket=ticket, account=account), separators=(",", ":")
    ).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: handoff_signature(account.app_secret, timestamp, body),
        "Idempotency-Key": delivery.idempotency_key,
    }
    try:
        response = public_post(
            url,
            allow_http=bool(settings.DEBUG),
            data=body,
            headers=outbound_headers(headers),
            timeout=float(settings.CHATBOT_CALLBACK_TIMEOUT_SECONDS),
        )
    except UnsafeUrlError as exc:
        raise PermanentError(f"Callback URL refused: {exc}.") from exc
    except AnswerTooLarge as exc:  # not a passing fault: the bot answers this way
        raise PermanentError(
            f"The callback's answer was refused: {exc} (not read).", error_code=ANSWER_TOO_LARGE
        ) from exc
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
    outcome = classify_http_status(response.status_code)
    if 300 <= response.status_code < 400:
        raise PermanentError(f"HTTP {response.status_code}: redirects are not followed.")
    if outcome == AttemptOutcome.RETRYABLE:
        raise RetryableError(
            f"HTTP {response.status_code}: {response.text[:500]}",
            http_status=response.status_code,  # a 429 is throttled: the bot's circuit waits
            retry_after=retry_after_from_headers(response.headers),  # or a reset header
        )
    if outcome != AttemptOutcome.SUCCESS:
        raise PermanentError(f"HTTP {response.status_code}: {response.text[:500]}")
    return SendResult(
        http_status=response.status_code,
        request_summary={"url": url, "message_id": message.pk},
        response_summary=response.text[:500],
    )


def _callback_schedule() -> Schedule:
    return Schedule(
        max_attempts=int(settings.CHANNELS_OUTBOUND_MAX_ATTEMPTS),
        base=float(settings.CHANNELS_OUTBOUND_BACKOFF_BASE),
        cap=float(settings.CHANNELS_OUTBOUND_BACKOFF_CAP),
    )


def chatbot_callback_target_kind() -> TargetKind:
    """Registered in ``ChannelsAppConfig.ready()``."""
    return TargetKind(
        name=CALLBACK_KIND,
        label="Chatbot callback",
        send=chatbot_callback_send,
        schedule=_callback_schedule,
        deduplicates=lambda delivery: False,
    )
