"""The satisfaction survey: when a ticket is resolved, one message with its signed feedback
link (``tickets.context.services.feedback_link_build``) to the customer, on the ticket's
own channel. The link is never stored: the message keeps a placeholder, and the outbound
path puts the link in when it sends (``channels_app.services.survey_link``), so agents,
who read the message, cannot answer as the customer.

It is a public reply written by the system: ``tickets.services.message_add`` puts it on the
timeline (queued, "System to customer via ..."), and its ``message.created`` event hands it
to the outbound path every reply takes (``channels_app.services.outbound``: one
``channel_reply`` delivery, every attempt recorded, retried, dead-lettered, swept). Nothing
here sends.

One survey per resolution: the message records which one (``SURVEY_METADATA_KEY``: the
ticket id and its ``resolved_at``), so a ``ticket.resolved`` event delivered twice sends
once, and a ticket reopened and resolved again is asked again. Not sent when
``CSAT_SURVEY_ENABLED`` is off, for a merged ticket, for a ticket reopened (or resolved
again) since the event, nor when there is no way to reach the customer on the ticket's
channel (API, phone and chatbot hand-off tickets; no account; no address or identity;
outside Meta's 24-hour window on WhatsApp, Messenger and Instagram), nor for an e-mail ticket
whose address only sends automatic mail (noreply@, MAILER-DAEMON@) or whose last inbound
mail was automatic (RFC 3834: an out-of-office reply, a bounce), nor for an e-mail
ticket whose sender is not verified
(a guest customer, the ``suspicious-sender`` tag or a message marked suspicious: a forged
From would otherwise have our signed mail carry the attacker's subject to the address they
named): then an info log line says why, naming the ticket only.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import cast

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels_app import selectors
from channels_app.adapters.base import get_adapter, registered_channels
from channels_app.adapters.email.adapter import AUTO_SUBMITTED_KEY, NO_AUTO_REPLY_KEY
from channels_app.adapters.email.parsing import is_automated_address, is_mailbox
from channels_app.services.email_auth import email_ticket_sender_unverified
from channels_app.services.outbound import channel_recipient
from channels_app.services.survey_link import SURVEY_LINK_PLACEHOLDER, SURVEY_METADATA_KEY
from support.db import DATABASE_GONE
from support.errors import InvalidInput
from support.events import event_time
from tickets import services as ticket_services
from tickets.context.models import ContextDeadLetterKind
from tickets.context.services import (
    FEEDBACK_STATUSES,
    context_dead_letter_record,
    context_dead_letters_resolve,
)
from tickets.models import (
    MESSAGE_WRITTEN_ON_KEY,
    Channel,
    Direction,
    Message,
    MessageKind,
    Ticket,
)
from tickets.selectors import customer_is_erased

logger = logging.getLogger(__name__)

__all__ = [
    "SURVEY_LINK_PLACEHOLDER",
    "SURVEY_METADATA_KEY",
    "csat_survey_send",
    "csat_survey_text",
    "csat_surveys_sweep",
]

# The sweep (``csat_surveys_sweep``): resolutions older than this whose survey task should
# long have run (its retries last well under a minute), up to this old (a survey a day
# late is still worth it; later it is not), at most this many a run.
SWEEP_STALE = timedelta(minutes=10)
SWEEP_WINDOW = timedelta(hours=24)
SWEEP_BATCH = 200
SWEEP_PAGE = 1000  # candidates read at a time (those already looked at are skipped in Redis)
SWEEP_SCAN = 20000  # at most this many read a run
# Surveys turned back on (in Redis, no expiry): a run that finds ``CSAT_SURVEY_ENABLED``
# off writes ``SWEEP_OFF``; the next run that finds it on replaces that with its own time,
# and no resolution from before that time is swept: turning surveys on does not survey the
# day's earlier resolutions, which no task was meant to survey. No key (surveys never seen
# off, a deploy, Redis's data lost) limits nothing but the window: a task lost then is
# still swept.
SWEEP_ON_SINCE_KEY = "csat-surveys-on-since"
SWEEP_OFF = "off"
#: The task that sends a survey (``channels_app.tasks.csat_survey_send_task``, args
#: ``[ticket id, resolved_at]``): what a dead letter of a survey the sweep could not send
#: names, for a supervisor's re-drive (a service does not import the tasks module).
SURVEY_TASK = "channels_app.tasks.csat_survey_send_task"


def csat_survey_text(*, ticket: Ticket, link: str = SURVEY_LINK_PLACEHOLDER) -> str:
    """The survey in the channel's format: a short plain text on the messaging channels
    (the link on its own, so apps make it tappable), a few lines in an e-mail (which goes
    out as a reply in the ticket's thread, ``Re: <subject> [<number>]``). Stored with the
    placeholder: the link itself is put in when it is sent (``survey_link``). It asks for
    a tap on the link, not a reply: an answer typed into the chat ("5") is a message like
    any other, which reopens the resolved ticket and records no rating."""
    if ticket.channel == Channel.EMAIL:
        return (
            f"Your request {ticket.number} is resolved. How did we do?\n\n"
            "Open this link to rate our help from 1 to 5 (and tell us more if you like):\n"
            f"{link}\n\n"
            "Thank you."
        )
    return f"How did we do with {ticket.number}? Tap the link to rate our help: {link}"


def _skip(ticket: Ticket, reason: str) -> None:
    # the ticket's number only: no address, name or channel id in the log
    logger.info("No satisfaction survey for %s: %s", ticket.number, reason)


def _unreachable(ticket: Ticket) -> str:
    """Why the customer cannot be reached on the ticket's channel, "" when they can."""
    if ticket.channel not in registered_channels():
        return f"{ticket.get_channel_display()} tickets have no channel of their own to send it on"
    if customer_is_erased(customer_id=ticket.customer_id):
        return "the customer was erased"
    if ticket.channel == Channel.EMAIL and email_ticket_sender_unverified(ticket):
        # a forged From: the survey would carry the attacker's subject, in our signed
        # mail, to the address they named (docs/security.md)
        return "the e-mail sender is not verified (a guest customer or a suspicious sender)"
    if selectors.channel_account_for_ticket(ticket) is None:
        return f"no active {ticket.get_channel_display()} account"
    recipient = channel_recipient(ticket, ticket.channel)
    if not recipient or (ticket.channel == Channel.EMAIL and not is_mailbox(recipient)):
        return f"the customer has no {ticket.get_channel_display()} contact to send it to"
    if ticket.channel == Channel.EMAIL:
        if is_automated_address(recipient):
            # MAILER-DAEMON@, noreply@: nobody reads it, and a daemon may answer (a loop)
            return "the address only sends automatic mail (a no-reply or daemon address)"
        last = (
            Message.objects.filter(ticket=ticket, direction=Direction.INBOUND)
            .order_by("-created_at", "-pk")
            .values_list("metadata", flat=True)
            .first()
        )
        if isinstance(last, dict) and last.get(AUTO_SUBMITTED_KEY):
            # its last mail was written by a program (RFC 3834): a survey would draw
            # another automatic reply, and nobody is there to answer it
            return "the last mail on it was automatic (an out-of-office reply, a bounce)"
        if isinstance(last, dict) and last.get(NO_AUTO_REPLY_KEY):
            # a mailing list's, or its sender asked for no automatic replies (RFC 3834)
            return f"the last mail on it asks for no automatic mail ({last[NO_AUTO_REPLY_KEY]})"
    last_inbound = cast(datetime | None, selectors.last_inbound_at(ticket))
    if not get_adapter(ticket.channel).reply_window_open(last_inbound):
        return (
            f"{ticket.get_channel_display()} takes no free-form message now (the customer "
            "last wrote outside its window)"
        )
    return ""


@transaction.atomic
def csat_survey_send(*, ticket_id: int, resolved_at: str) -> Message | None:
    """Queue the survey of the resolution of ``ticket_id`` at ``resolved_at`` (the
    ``ticket.resolved`` event's); idempotent. Returns the survey message (the one already
    written, for a repeated event), or None when none is sent (logged why, at info)."""
    if not settings.CSAT_SURVEY_ENABLED:
        return None
    # Locked: a repeated event waits for the first one's survey and then finds it.
    ticket = (
        Ticket.objects.select_for_update(of=("self",))
        .select_related("customer")
        .filter(pk=ticket_id)
        .first()
    )
    if ticket is None:
        return None
    if ticket.merged_into_id is not None:
        _skip(ticket, "it was merged into another ticket")
        return None
    when = parse_datetime(resolved_at)
    if ticket.status not in FEEDBACK_STATUSES or ticket.resolved_at != when:
        _skip(ticket, "it was reopened or resolved again since")
        return None
    key = f"{ticket.pk}:{resolved_at}"
    # this resolution's survey: by its key, or (whatever the key's spelling of the time)
    # any survey written on this ticket since it was resolved (not one a merge moved in)
    existing = Message.objects.filter(ticket=ticket).filter(
        Q(**{f"metadata__{SURVEY_METADATA_KEY}": key})
        | (
            Q(metadata__has_key=SURVEY_METADATA_KEY, created_at__gte=ticket.resolved_at)
            & ~Q(metadata__has_key=MESSAGE_WRITTEN_ON_KEY)
        )
    )
    found = existing.order_by("pk").first()
    if found is not None:
        return found
    problem = _unreachable(ticket)
    if problem:
        _skip(ticket, problem)
        return None
    try:
        return ticket_services.message_add(
            ticket=ticket,
            # the link is not stored (agents read this text): put in when it is sent
            body=csat_survey_text(ticket=ticket),
            kind=MessageKind.PUBLIC,
            direction=Direction.OUTBOUND,
            channel=ticket.channel,
            metadata={SURVEY_METADATA_KEY: key},
        )
    except InvalidInput as exc:  # the channel's rules refuse the text (a limit set tiny)
        _skip(ticket, f"the channel does not take it ({exc.message})")
        return None


def csat_surveys_sweep(
    *,
    stale: timedelta = SWEEP_STALE,
    window: timedelta = SWEEP_WINDOW,
    batch: int = SWEEP_BATCH,
) -> int:
    """The surveys whose task never finished: a ticket resolved between ``window`` and
    ``stale`` ago, on a channel that sends, with no survey written on it since, is handed to
    ``csat_survey_send`` (idempotent; it checks again everything the task checks, and
    logs once why none is sent). The task gives up when the database stays away longer
    than its retries, and a killed worker loses it; the ``ticket.resolved`` event was
    delivered all the same, so nothing else would ask. Each resolution is looked at once
    (remembered in Redis for ``window`` once ``csat_survey_send`` has returned): one the
    rules skip (no window, no address, an unverified sender) is not logged again every
    run. Newest first, in pages, so those skipped ones never crowd out a newer lost one;
    at most ``batch`` looked at a run. Returns how many it looked at.

    A resolution whose survey fails here is tried again at the next run, and recorded
    as a customer-context dead letter (``csat_survey``, the error, one more failure each
    run), which the run that sends it or finds it skipped by the rules removes: once it
    is older than ``window`` the sweep leaves it, and the dead letter is what a
    supervisor sees (``support_context_dead_letters``) and re-drives or discards.

    ``CSAT_SURVEY_ENABLED`` is read when the sweep runs; after a run found it off, a
    resolution from before the run that found it on again is not asked about
    (``SWEEP_ON_SINCE_KEY``): turning surveys on does not survey the day's earlier
    resolutions (docs/customer-context.md)."""
    if not settings.CSAT_SURVEY_ENABLED:
        cache.set(SWEEP_ON_SINCE_KEY, SWEEP_OFF, timeout=None)
        return 0
    now = timezone.now()
    since = _surveys_on_since(now)
    written = Message.objects.filter(
        ticket=OuterRef("pk"),
        metadata__has_key=SURVEY_METADATA_KEY,
        created_at__gte=OuterRef("resolved_at"),
    ).exclude(metadata__has_key=MESSAGE_WRITTEN_ON_KEY)
    candidates = (
        Ticket.objects.filter(
            status__in=FEEDBACK_STATUSES,
            resolved_at__gte=max(now - window, since) if since else now - window,
            resolved_at__lt=now - stale,
            merged_into__isnull=True,
            channel__in=registered_channels(),
        )
        .exclude(Exists(written))
        .order_by("-resolved_at", "-pk")
    )
    handled = scanned = 0
    while handled < batch and scanned < SWEEP_SCAN:
        page = list(candidates.values_list("pk", "resolved_at")[scanned : scanned + SWEEP_PAGE])
        if not page:
            break
        scanned += len(page)
        keys = {
            f"csat-survey-swept:{pk}:{event_time(at)}": (pk, event_time(at))
            for pk, at in page
            if at is not None
        }
        seen = cache.get_many(list(keys))
        for key, (ticket_id, resolved_at) in keys.items():
            if key in seen:
                continue
            if handled >= batch:
                break
            handled += 1
            try:
                csat_survey_send(ticket_id=ticket_id, resolved_at=resolved_at)
            except DATABASE_GONE:
                raise  # the database is away: the next run starts again
            except SoftTimeLimitExceeded:
                raise  # time is up (its transaction rolled back): the next run
            except Exception as exc:  # not marked, so the next run tries it again
                logger.exception("Satisfaction survey sweep: ticket %s failed", ticket_id)
                # and recorded: once the resolution is out of the window nothing tries it
                # again, and a supervisor sees it (a dead letter) and re-drives it
                context_dead_letter_record(
                    kind=ContextDeadLetterKind.CSAT_SURVEY,
                    task=SURVEY_TASK,
                    args=[ticket_id, resolved_at],
                    error=f"{type(exc).__name__}: {exc}",
                    ticket_id=ticket_id,
                )
                continue
            # done (written, or skipped by the rules): a dead letter of it goes
            context_dead_letters_resolve(task=SURVEY_TASK, args=[ticket_id, resolved_at])
            cache.set(key, 1, timeout=int(window.total_seconds()))
    if handled:
        logger.info("Satisfaction survey sweep: looked at %d resolutions", handled)
    return handled


def _surveys_on_since(now: datetime) -> datetime | None:
    """Since when surveys are on again after a run found them off (``SWEEP_ON_SINCE_KEY``:
    ``now`` when the last run found them off), or None when no run has seen them off."""
    value = cache.get(SWEEP_ON_SINCE_KEY)
    if value == SWEEP_OFF:
        cache.set(SWEEP_ON_SINCE_KEY, now.isoformat(), timeout=None)
        return now
    return parse_datetime(value) if isinstance(value, str) else None
