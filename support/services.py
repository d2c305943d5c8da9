"""Writes of the shared infrastructure: outbox relay, API keys, audit log, OIDC identities."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from support import retention
from support.events import (
    ACCESS_CHANGED_EVENT,
    RELAY_PENDING_KEY,
    NewEvent,
    batch_subscribers_for,
    events_record,
    subscribers_for,
)
from support.lru import BoundedLRU
from support.models import ApiKey, ApiKeyRole, AuditLog, OidcIdentity, OutboxEvent
from support.redis_client import get_redis
from support.sinks import sinks_publish

logger = logging.getLogger(__name__)

OUTBOX_MAX_ATTEMPTS = 10


def _deliver(event: OutboxEvent, send_errors: dict[int, Exception]) -> None:
    if event.pk in send_errors:
        raise send_errors[event.pk]
    for handler in subscribers_for(event.event_type):
        handler(event)


def outbox_relay(*, batch_size: int = 500) -> int:
    """Deliver pending events in id order to every sink (``support.sinks``: the websocket
    layer, and EventBridge, outgoing webhooks and Kafka when configured) and to in-process
    subscribers; returns how many were delivered.

    Rows are locked with SKIP LOCKED so several relays can run at once without
    delivering one event twice in parallel.
    """
    get_redis().delete(RELAY_PENDING_KEY)
    delivered = 0
    while True:
        with transaction.atomic():
            events = list(
                OutboxEvent.objects.select_for_update(skip_locked=True)
                .filter(delivered_at__isnull=True, failed_at__isnull=True)
                .order_by("id")[:batch_size]
            )
            if not events:
                return delivered
            now = timezone.now()
            done: list[OutboxEvent] = []
            failed: list[OutboxEvent] = []
            send_errors = sinks_publish(events)
            for event in events:
                event.attempts += 1
                try:
                    _deliver(event, send_errors)
                except Exception as exc:
                    logger.exception("Outbox event %s delivery failed", event.pk)
                    event.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                    if event.attempts >= OUTBOX_MAX_ATTEMPTS:
                        event.failed_at = now
                    failed.append(event)
                else:
                    event.delivered_at = now
                    event.last_error = ""
                    done.append(event)
            done = _deliver_batches(done, failed, now)
            _outbox_mark([*done, *failed])
            delivered += len(done)
            if failed and not done:
                return delivered


def _deliver_batches(
    done: list[OutboxEvent], failed: list[OutboxEvent], now: Any
) -> list[OutboxEvent]:
    """Hand each event type's delivered events to its batch subscribers; the events of a
    failing one move to ``failed`` (retried later: every subscriber is idempotent).
    Returns what is still done."""
    by_type: dict[str, list[OutboxEvent]] = {}
    for event in done:
        by_type.setdefault(event.event_type, []).append(event)
    undone: set[int] = set()
    for event_type, group in by_type.items():
        for handler in batch_subscribers_for(event_type):
            try:
                handler(group)
            except Exception as exc:
                logger.exception("Batch subscriber for %s failed", event_type)
                for event in group:
                    if event.pk in undone:
                        continue
                    undone.add(event.pk)
                    event.delivered_at = None
                    event.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                    if event.attempts >= OUTBOX_MAX_ATTEMPTS:
                        event.failed_at = now
                    failed.append(event)
    return [event for event in done if event.pk not in undone]


def _outbox_mark(events: list[OutboxEvent]) -> None:
    """Write the relay's outcome for a batch in one UPDATE joined to arrays (Django's
    ``bulk_update`` builds a CASE per column and row: a third of the relay's time)."""
    table = OutboxEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS o SET attempts = v.attempts, last_error = v.last_error, "  # noqa: S608
            "delivered_at = v.delivered_at, failed_at = v.failed_at FROM ("
            "SELECT unnest(%s::bigint[]) AS id, unnest(%s::int[]) AS attempts, "
            "unnest(%s::text[]) AS last_error, unnest(%s::timestamptz[]) AS delivered_at, "
            "unnest(%s::timestamptz[]) AS failed_at) AS v WHERE o.id = v.id",
            [
                [e.pk for e in events],
                [e.attempts for e in events],
                [e.last_error for e in events],
                [e.delivered_at for e in events],
                [e.failed_at for e in events],
            ],
        )


def outbox_purge(
    *,
    older_than_days: int | None = None,
    batch: int = retention.BATCH,
    max_batches: int = retention.MAX_BATCHES,
) -> int:
    """Delete the events delivered more than ``OUTBOX_RETENTION_DAYS`` ago; returns how
    many. An event is created before it is delivered, so those are among the events
    created before the cutoff: the condition on ``created_at`` (indexed) finds them
    without reading every event kept (``delivered_at`` has no index). ``batch`` at a
    time, each in a short transaction, at most ``max_batches`` per run (the next hourly
    run goes on). Events not delivered (pending, or failed and waiting for a re-drive)
    stay."""
    days = older_than_days if older_than_days is not None else settings.OUTBOX_RETENTION_DAYS
    cutoff = timezone.now() - timedelta(days=days)
    done = OutboxEvent.objects.filter(
        created_at__lt=cutoff, delivered_at__isnull=False, delivered_at__lt=cutoff
    )
    return retention.delete_in_batches(done, batch=batch, max_batches=max_batches)


def outbox_redrive(*, event_ids: Iterable[int], actor: Any) -> int:
    """Put events the relay gave up on (``failed_at``: ``OUTBOX_MAX_ATTEMPTS`` spent) back
    in its queue with their attempts starting again (admin action, each audited as the
    other re-drives are: ``outbox_event.redrive``); the relay runs after the commit.
    Events not failed are left alone (a pending one is still being retried by the relay,
    a delivered one is done). Returns how many were re-driven."""
    with transaction.atomic():
        failed = list(
            OutboxEvent.objects.select_for_update()
            .filter(pk__in=list(event_ids), delivered_at__isnull=True, failed_at__isnull=False)
            .order_by("pk")
        )
        if not failed:
            return 0
        OutboxEvent.objects.filter(pk__in=[event.pk for event in failed]).update(
            failed_at=None, attempts=0
        )
        for event in failed:
            # the event type and the error, not the aggregate: an event about a user (who
            # gained a role) is superusers' in the admin, and the audit log names this row
            audit_log_record(
                actor=actor,
                action="outbox_event.redrive",
                object_type="outbox_event",
                object_id=event.pk,
                details={
                    "event_type": event.event_type,
                    "attempts": event.attempts,
                    "failed_at": event.failed_at.isoformat() if event.failed_at else None,
                    "last_error": event.last_error[:500],
                },
            )
        transaction.on_commit(_schedule)
    return len(failed)


def _schedule() -> None:
    from support.events import schedule_relay

    schedule_relay()


API_KEY_CACHE_SECONDS = 10.0
# Keys that exist: key hash → (expires at, monotonic clock; the key). Bounded by the keys
# in the database.
known_api_keys: dict[str, tuple[float, ApiKey]] = {}
# Hashes of keys that do not exist → expires at. Anyone can send random keys, so this one
# is bounded: beyond API_KEY_NEGATIVE_CACHE_SIZE the oldest entries go first (lookups only
# peek, so "oldest" is by write). The bound is read at each write, so a test can lower it.
API_KEY_NEGATIVE_CACHE_SIZE = 1024
unknown_api_keys: BoundedLRU[str, float] = BoundedLRU(
    max_entries=lambda: API_KEY_NEGATIVE_CACHE_SIZE
)


def forget_api_key(key_hash: str) -> None:
    known_api_keys.pop(key_hash, None)
    unknown_api_keys.pop(key_hash, None)


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(
    *,
    name: str,
    user: Any,
    rate_limit_per_minute: int | None = None,
    expires_at: Any = None,
    role: str = ApiKeyRole.USER,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the raw key, which is never retrievable again.

    ``role``: ``user`` (default; the key acts as ``user``) or ``integration`` (a machine
    credential accepted only by integration endpoints such as ``POST /api/calls/events``).
    """
    if role not in ApiKeyRole.values:
        raise ValueError(f"role: {role!r} is not one of {', '.join(ApiKeyRole.values)}.")
    prefix = secrets.token_hex(4)
    raw = f"sk_{prefix}_{secrets.token_urlsafe(32)}"
    forget_api_key(hash_api_key(raw))
    key = ApiKey.objects.create(
        name=name,
        prefix=prefix,
        key_hash=hash_api_key(raw),
        user=user,
        rate_limit_per_minute=rate_limit_per_minute,
        expires_at=expires_at,
        role=role,
    )
    return key, raw


def api_key_revoke(*, api_key: ApiKey) -> None:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at", "updated_at"])
    forget_api_key(api_key.key_hash)


def audit_log_record(
    *,
    actor: Any,
    action: str,
    object_type: str,
    object_id: int | str,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    return AuditLog.objects.create(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        details=details or {},
    )


def agent_access_changed(*, user_ids: Iterable[int], reason: str) -> None:
    """Tell live sockets that these users' teams, roles or active flag changed (an
    ``agent.access_changed`` outbox event each, relayed after commit): the workbench
    socket of each re-checks what it may see without reconnecting. Call it wherever
    membership changes (admin, SSO group sync)."""
    ids = sorted({int(pk) for pk in user_ids})
    if ids:
        events_record(
            [
                NewEvent(ACCESS_CHANGED_EVENT, "user", pk, {"user_id": pk, "reason": reason})
                for pk in ids
            ]
        )


def oidc_identity_link(*, user: Any, issuer: str, subject: str) -> OidcIdentity:
    """Record that the provider's ``subject`` (under ``issuer``) is ``user``.

    Called at each browser sign-in, after the ID token was verified; a subject already
    linked to another user (that user was matched by email before) moves to this one."""
    identity, _ = OidcIdentity.objects.update_or_create(
        issuer=issuer, subject=subject, defaults={"user": user}
    )
    return identity
