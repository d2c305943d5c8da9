"""Celery tasks of the channels app: thin, take ids, call one service."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import shared_task

from channels_app import services
from channels_app.services.csat_survey import csat_survey_send, csat_surveys_sweep
from channels_app.services.media import media_error_words
from channels_app.services.staged_uploads import staged_uploads_purge
from support.db import DATABASE_GONE, DATABASE_GONE_RETRY
from support.errors import PermanentError, RetryableError
from support.events import SUBSCRIBER_TASK_OPTIONS
from tickets.context.models import ContextDeadLetterKind
from tickets.context.tasks import dead_letter_on_give_up

logger = logging.getLogger(__name__)

DRAIN_TASK_SECONDS = 30.0  # then hand over to a new task (far below the time limit)
DRAIN_LINGER_SECONDS = 0.5
DRAIN_POLL_SECONDS = 0.05
DRAIN_DATABASE_RETRIES = 10


@shared_task(bind=True, acks_late=True, max_retries=None, soft_time_limit=60, time_limit=90)
def inbound_event_process_task(self, event_id: int, attempts: int | None = None) -> None:  # type: ignore[no-untyped-def]
    """Idempotent: messages are unique per channel id, events end processed. Processes
    only a ``retrying`` event that has failed ``attempts`` times (queued without a count:
    any ``retrying`` event): one the sweep handed back to the drain is left to it, and so
    is one that failed again there (its own retry is queued)."""
    try:
        services.inbound_event_process(event_id=event_id, retry=True, expected_attempts=attempts)
    except Exception as exc:
        logger.exception("Processing inbound event %s failed", event_id)
        final, counted = services.inbound_event_fail(
            event_id=event_id,
            error=f"{type(exc).__name__}: {exc}",
            permanent=isinstance(exc, PermanentError),
            expected_attempts=attempts,
        )
        if final or self.app.conf.task_always_eager:
            return
        countdown = services.inbound_retry_delay(counted)
        if isinstance(exc, RetryableError) and exc.retry_after:
            countdown = max(countdown, exc.retry_after)
        raise self.retry(
            kwargs={"event_id": event_id, "attempts": counted}, countdown=countdown, exc=exc
        ) from exc


@shared_task(
    bind=True,
    acks_late=True,
    max_retries=DRAIN_DATABASE_RETRIES,
    soft_time_limit=120,
    time_limit=150,
)
def inbound_events_drain_task(self, account_id: int) -> int:  # type: ignore[no-untyped-def]
    """Process an account's received deliveries in batches until none is left.

    It waits ``DRAIN_LINGER_SECONDS`` for more before ending, so a steady stream keeps one
    drain running instead of queueing a new task (behind whatever else is queued) for
    every lull; after ``DRAIN_TASK_SECONDS`` it hands over to a fresh task.

    When the database goes away mid-drain (a restart, a failover), the open batch rolls
    back whole and the task tries again with backoff (1, 2, 4 … 30 s), instead of leaving
    the rest to the beat sweep minutes later.
    """
    try:
        return _drain(self, account_id)
    except DATABASE_GONE as exc:
        if self.app.conf.task_always_eager:
            raise
        countdown = min(30.0, 2.0**self.request.retries)
        logger.warning("Inbound drain of account %s lost the database (%s)", account_id, exc)
        raise self.retry(countdown=countdown, exc=exc) from exc


def _drain(task: Any, account_id: int) -> int:
    with services.inbound_drainer(account_id=account_id) as renew:
        # None: another task is the drainer and takes what woke this one. Leaving, the
        # drainer starts a successor when deliveries are left (handover, a late arrival).
        if renew is None:
            return 0
        services.inbound_drain_flag_clear(account_id=account_id)
        return _drain_batches(task, account_id, renew)


def _drain_batches(task: Any, account_id: int, renew: Callable[[], object]) -> int:
    eager = bool(task.app.conf.task_always_eager)
    total = 0
    started = time.monotonic()
    idle_since: float | None = None
    while time.monotonic() - started < DRAIN_TASK_SECONDS:
        renew()
        result = services.inbound_events_drain(account_id=account_id)
        if not eager:  # eager (tests): one attempt, as below
            for event_id, delay, attempts in result.retries:
                services.inbound_retry_enqueue(event_id, attempts=attempts, countdown=delay)
        if result.taken:
            total += result.taken
            idle_since = None
            continue
        if eager:
            return total
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since >= DRAIN_LINGER_SECONDS:
            return total
        time.sleep(DRAIN_POLL_SECONDS)
    return total  # more left: the leaving drainer starts a fresh task (inbound_drainer)


@shared_task(
    **DATABASE_GONE_RETRY,
    acks_late=True,
    max_retries=5,
    soft_time_limit=30,
    time_limit=45,
)
def outbound_message_send_task(message_id: int) -> None:
    """Hand a queued public reply to the delivery engine (idempotent: one delivery per
    message); the engine makes the attempts (``support.delivery.tasks``). The database
    going away (a restart, a failover) is retried with backoff; anything else, or retries
    running out, leaves the reply ``queued`` with no delivery, and the beat sweep
    (``outbound_replies_sweep_task``) creates it."""
    services.outbound_delivery_create(message_id=message_id)


@shared_task(**SUBSCRIBER_TASK_OPTIONS)
def csat_survey_send_task(self: Any, ticket_id: int, resolved_at: str) -> int | None:
    """Queue the satisfaction survey of a ticket's resolution (enqueued by the
    ``ticket.resolved`` subscriber, or a supervisor's re-drive). Idempotent through the
    survey's metadata key (the ticket and its ``resolved_at``): a task delivered twice
    writes one message. The database going away is retried with backoff a bounded number
    of times (``support.events.SUBSCRIBER_TASK_OPTIONS``); after that, or on anything
    else, it is recorded as a customer-context dead letter (``csat_survey``; with the
    database away, logged only) and raised (the event was delivered; the beat's
    ``csat_surveys_sweep_task`` tries the resolution again ten minutes later, and its
    success takes the dead letter away)."""
    with dead_letter_on_give_up(
        self,
        kind=ContextDeadLetterKind.CSAT_SURVEY,
        args=[ticket_id, resolved_at],
        ticket=lambda: ticket_id,
    ):
        message = csat_survey_send(ticket_id=ticket_id, resolved_at=resolved_at)
    return message.pk if message is not None else None


@shared_task(soft_time_limit=120, time_limit=150)
def csat_surveys_sweep_task() -> int:
    """Every five minutes (beat ``csat-surveys-sweep``): resolutions whose survey task
    never finished (``csat_surveys_sweep``). Idempotent."""
    return csat_surveys_sweep()


@shared_task(soft_time_limit=60, time_limit=90)
def outbound_replies_sweep_task(stale_seconds: float | None = None) -> int:
    """Every minute (beat ``channels-outbound-sweep``) and on each broker connection
    (0): queued public replies left with no delivery. Idempotent."""
    if stale_seconds is None:
        return services.outbound_replies_sweep()
    return services.outbound_replies_sweep(stale_seconds=stale_seconds)


@shared_task(bind=True, acks_late=True, max_retries=5, soft_time_limit=120, time_limit=180)
def attachment_download_task(self, attachment_id: int) -> None:  # type: ignore[no-untyped-def]
    """Fetch and store a referenced attachment (idempotent: only a ``pending`` one, one
    task at a time). A retryable failure is tried again with backoff; a permanent one, or
    the last retry's, marks the attachment ``failed`` with the reason (the message stays).
    A failure that cannot even be recorded (the database gone) leaves it ``pending`` for
    the media sweep."""
    try:
        services.attachment_download(attachment_id=attachment_id)
    except PermanentError as exc:
        services.attachment_download_give_up(attachment_id=attachment_id, exc=exc)
    except Exception as exc:  # retryable, or unexpected (the task boundary): bounded retries
        unexpected = not isinstance(exc, RetryableError)
        if unexpected:
            logger.exception("Media download of attachment %s failed", attachment_id)
        if self.request.retries >= self.max_retries:  # the last attempt
            services.attachment_download_give_up(
                attachment_id=attachment_id,
                exc=exc if not unexpected else RetryableError(_unexpected_words(exc)),
                attempts=self.request.retries + 1,
            )
            return
        if self.app.conf.task_always_eager:
            if unexpected:
                raise
            logger.warning("Media download %s failed: %s", attachment_id, media_error_words(exc))
            return  # left pending: the media sweep queues it again
        countdown = min(600.0, 5.0 * 2**self.request.retries)
        if isinstance(exc, RetryableError) and exc.retry_after:
            countdown = max(countdown, exc.retry_after)
        raise self.retry(countdown=countdown, exc=exc) from exc


def _unexpected_words(exc: BaseException) -> str:
    """An unexpected failure, in words: its kind only (its message may say anything)."""
    return f"an unexpected error ({type(exc).__name__})"


@shared_task(soft_time_limit=60, time_limit=90)
def attachment_downloads_sweep_task(stale_seconds: float | None = None) -> int:
    """Every minute (beat ``channels-media-sweep``) and on each broker connection (0):
    pending downloads nobody is fetching are queued again, those whose channel reference
    expired are marked failed. Idempotent."""
    if stale_seconds is None:
        return services.attachment_downloads_sweep()
    return services.attachment_downloads_sweep(stale_seconds=stale_seconds)


@shared_task(soft_time_limit=60, time_limit=90)
def inbound_event_sweep_task(stale_seconds: float | None = None) -> int:
    if stale_seconds is None:
        return services.inbound_event_sweep()
    return services.inbound_event_sweep(stale_seconds=stale_seconds)


@shared_task(soft_time_limit=300, time_limit=360)
def staged_uploads_purge_task() -> int:
    """Hourly (beat ``webchat-uploads-purge``): staged web chat uploads no pending event
    names, past ``WEBCHAT_STAGED_UPLOAD_MAX_AGE_HOURS``. Idempotent."""
    return staged_uploads_purge()
