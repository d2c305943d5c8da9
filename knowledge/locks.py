"""PostgreSQL session-level advisory locks: what makes a sync of one source exclusive.

A session lock is held across the many transactions of a run (one per batch) and needs no
transaction open, so S3 reads and embedding happen outside any. PostgreSQL releases it when
the session ends: a worker that is killed, or loses its connection, frees its sources at
once, and no sweep or expiry is needed for the lock itself (the job row's status is the
sweep's business, ``services.jobs_sweep``). Keys share ``support.db.advisory_xact_lock``'s
name space (``hashtextextended(name, 0)``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)


def session_locks_try(names: Sequence[str]) -> str | None:
    """Take every lock named, in the given order, or none of them: ``None`` when all are
    now held by this session, else the first name another session holds (the ones taken
    before it are released again, so a waiter never sits on half of what it needs)."""
    taken: list[str] = []
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [name])
            row = cursor.fetchone()
            if not (row and row[0]):
                session_locks_release(taken)
                return name
            taken.append(name)
    return None


def session_locks_release(names: Sequence[str]) -> None:
    """Release locks this session holds (a lost connection has released them already)."""
    if not names:
        return
    try:
        with connection.cursor() as cursor:
            for name in reversed(names):
                cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [name])
    except DatabaseError:
        logger.warning("Could not release %s (connection lost: released with it)", names)
