"""Lean writes for the hottest paths: several model rows in one database round trip.

Django's ``Model.objects.create()`` costs a round trip and a full SQL compilation per row,
and an ``atomic`` block two more round trips (BEGIN and COMMIT). Creating a ticket writes
three tables; through the ORM that was six round trips. Here the rows are built as normal
model instances (defaults, ``auto_now_add`` and field preparation are Django's own), their
primary keys are reserved first (:func:`ids_reserve`), and :func:`rows_insert` sends every
INSERT in one statement string. PostgreSQL runs a multi-statement string as one
transaction when no transaction is open, so the rows are written all or nothing; inside an
``atomic`` block they simply join it.

Only for plain inserts of new rows: no ``save()`` signals are sent (callers document it),
and many-to-many links and files are the caller's business.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from typing import Any

from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    InterfaceError,
    OperationalError,
    connection,
    connections,
)
from django.db.models import Model
from django.db.models.sql import InsertQuery

#: The database went away (a restart, a failover, a dropped connection): worth trying the
#: same work again shortly. Not an integrity or data error, which would fail again.
DATABASE_GONE: tuple[type[Exception], ...] = (OperationalError, InterfaceError)

#: Celery options for a task that retries, with backoff and jitter up to a minute, when
#: the database goes away (``@shared_task(**DATABASE_GONE_RETRY, max_retries=N, ...)``).
DATABASE_GONE_RETRY: dict[str, Any] = {
    "autoretry_for": DATABASE_GONE,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
}


@cache
def _sequence_name(table: str, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, column])
        row = cursor.fetchone()
    if row is None or row[0] is None:
        raise LookupError(f"{table}.{column} has no sequence")
    return str(row[0])


def ids_reserve(*models: type[Model]) -> list[int]:
    """Take the next primary key of each model (repeat a model for more), in one query."""
    names = [_sequence_name(m._meta.db_table, m._meta.pk.column) for m in models]  # type: ignore[union-attr]
    sql = "SELECT " + ", ".join(["nextval(%s::regclass)"] * len(names))
    with connection.cursor() as cursor:
        cursor.execute(sql, names)
        row = cursor.fetchone()
    assert row is not None
    return [int(value) for value in row]


def _row_sql(
    obj: Model, with_pk: bool, query: InsertQuery, compiler: Any, conn: Any
) -> tuple[list[str], str, list[Any]]:
    """Column names, a ``(…)`` values group and its parameters for one new instance."""
    opts = obj._meta
    columns: list[str] = []
    placeholders: list[str] = []
    params: list[Any] = []
    for field in opts.concrete_fields:
        if field.primary_key and not with_pk:
            continue
        value = field.pre_save(obj, add=True)
        columns.append(conn.ops.quote_name(field.column))
        if hasattr(value, "resolve_expression"):
            resolved = value.resolve_expression(query, allow_joins=False, for_save=True)
            sql, expr_params = compiler.compile(resolved)
            placeholders.append(sql)
            params.extend(expr_params)
            continue
        prepared = field.get_db_prep_save(value, connection=conn)
        if hasattr(field, "get_placeholder"):
            placeholders.append(field.get_placeholder(prepared, compiler, conn))
        else:
            placeholders.append("%s")
        params.append(prepared)
    return columns, "(" + ", ".join(placeholders) + ")", params


def rows_insert(objs: Sequence[Model]) -> None:
    """INSERT new instances (any mix of models) in one round trip, in the given order.

    Consecutive instances of the same model become one multi-row INSERT. Instances with
    a primary key keep it (reserve it with :func:`ids_reserve`); the others take the
    column's default and stay without ``pk`` here. Duplicates raise ``IntegrityError``
    and nothing of the batch is written.
    """
    if not objs:
        return
    conn = connections[DEFAULT_DB_ALIAS]
    statements: list[str] = []
    params: list[Any] = []
    group: list[tuple[list[str], str, list[Any]]] = []
    group_key: tuple[type[Model], bool] | None = None
    compilers: dict[type[Model], tuple[InsertQuery, Any]] = {}

    def flush() -> None:
        if not group or group_key is None:
            return
        # Table and column names come from model metadata; every value is a parameter.
        table = conn.ops.quote_name(group_key[0]._meta.db_table)
        columns = ", ".join(group[0][0])
        values = ", ".join(g[1] for g in group)
        statements.append(f"INSERT INTO {table} ({columns}) VALUES {values}")  # noqa: S608
        for g in group:
            params.extend(g[2])
        group.clear()

    for obj in objs:
        key = (type(obj), obj.pk is not None)
        if key != group_key:
            flush()
            group_key = key
        if key[0] not in compilers:
            query = InsertQuery(key[0])
            compilers[key[0]] = (query, query.get_compiler(connection=conn))
        group.append(_row_sql(obj, key[1], *compilers[key[0]], conn))
    flush()
    with conn.cursor() as cursor:
        # Client-side binding (Django's default with psycopg) lets one execute() carry
        # several statements: one round trip, and one transaction outside ``atomic``.
        cursor.execute(";\n".join(statements), params)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = conn.alias


def advisory_xact_lock(key: str) -> None:
    """Wait for, then hold until the transaction ends, the advisory lock named ``key``:
    serialises work on one thing (a conversation, a recount) across processes."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])


def advisory_session_locks_try(names: Sequence[str]) -> str | None:
    """Take every session-level advisory lock named, in the given order, or none of them:
    ``None`` when all are now held by this session, else the first name another session
    holds (the ones taken before it are released again, so a waiter never sits on half of
    what it needs). A session lock outlives transactions (held across a run's many) and
    needs none open; PostgreSQL releases it when the session ends, so a killed worker frees
    its locks at once. Keys share ``advisory_xact_lock``'s name space."""
    taken: list[str] = []
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [name])
            row = cursor.fetchone()
            if not (row and row[0]):
                advisory_session_locks_release(taken)
                return name
            taken.append(name)
    return None


def advisory_session_locks_release(names: Sequence[str]) -> None:
    """Release session locks this session holds (a lost connection has released them
    already: logged, not raised)."""
    if not names:
        return
    try:
        with connection.cursor() as cursor:
            for name in reversed(names):
                cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [name])
    except DatabaseError:
        logging.getLogger(__name__).warning(
            "Could not release %s (connection lost: released with it)", list(names)
        )
