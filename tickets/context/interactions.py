"""The interaction log behind a small interface: PostgreSQL (default) or DynamoDB.

``INTERACTIONS_BACKEND=postgres`` keeps rows in :class:`~tickets.context.models.Interaction`
with ``expires_at`` and a purge beat task; ``dynamodb`` writes items to
``INTERACTIONS_DYNAMODB_TABLE`` (hash key ``customer_id``, range key ``sk``) with a TTL
attribute ``expires_at`` (epoch seconds) that DynamoDB uses to delete old items itself.
Both record idempotently on a natural key (``source_key``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from support.aws import aws_client, aws_error, aws_error_code
from support.errors import PermanentError
from tickets.context.models import Interaction

ERASED_SUMMARY = "[erased]"


@dataclass(frozen=True)
class InteractionRecord:
    customer_id: int
    source_key: str
    channel: str
    kind: str
    occurred_at: datetime
    summary: str = ""
    ticket_id: int | None = None
    sentiment_score: float | None = None
    sentiment_label: str = ""
    expires_at: datetime | None = None
    #: what else the entry is about, with its own visibility rule (``call:<contact id>``;
    #: ``tickets.context.scopes``); "" for none
    scope: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["occurred_at"] = self.occurred_at.isoformat()
        data["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        return data


@dataclass(frozen=True)
class Purged:
    """One purge batch: how many entries were deleted, and the customers they were of."""

    deleted: int = 0
    customer_ids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class ScorePoint:
    occurred_at: datetime
    kind: str
    score: float | None
    #: the ticket the interaction was on (None: none), for what a viewer may see of it
    ticket_id: int | None = None
    #: its scope ("" for none), the other half of what a viewer may see of it
    scope: str = ""


class InteractionBackend(Protocol):
    name: str

    def record(self, item: InteractionRecord, *, replace: bool = False) -> bool:
        """Store once per ``source_key``; returns False when it was already there.
        ``replace``: an entry already there with this ``source_key`` (and, for DynamoDB,
        the same ``occurred_at``) takes the new values (a call analysed again)."""

    def recent(self, customer_id: int, *, limit: int) -> list[InteractionRecord]:
        """Newest first, unexpired only."""

    def window(self, customer_id: int, *, since: datetime) -> list[ScorePoint]:
        """Every unexpired interaction since ``since`` (for trends and churn), oldest first."""

    def for_customer(self, customer_id: int) -> list[InteractionRecord]:
        """Everything stored for the customer (data-protection export), oldest first."""

    def erase_customer(self, customer_id: int) -> int:
        """Blank the free-text summaries; keep kinds, dates and scores (aggregates)."""

    def purge_expired(self, *, now: datetime, limit: int) -> Purged:
        """Delete up to ``limit`` expired entries; returns how many, and whose."""


#: What an analysed call's entry was before entries carried a scope (2026-12-06): kind
#: ``call``, ``source_key`` ``call:<contact id>`` (``calls.services.call_interaction_record``),
#: which is also its scope now.
LEGACY_CALL_KEY_PREFIX = "call:"


def scope_read(*, kind: str, source_key: str, scope: str) -> str:
    """The scope of a stored entry. An analysed call's entry written without one (before
    scopes; or, during the rolling deploy that adds them, by the previous release's
    workers, after migration ``tickets.0014`` filled in the rows already there; and
    DynamoDB items, which no migration reaches) is scoped by its key: so it is never
    shown to an agent who may not see the call for want of a scope."""
    if scope:
        return scope
    if kind == "call" and source_key.startswith(LEGACY_CALL_KEY_PREFIX):
        return source_key
    return ""


def expiry_for(item: InteractionRecord) -> datetime:
    return item.expires_at or item.occurred_at + timedelta(
        days=settings.INTERACTIONS_RETENTION_DAYS
    )


# --- PostgreSQL -----------------------------------------------------------------------


def record_from_row(row: Interaction) -> InteractionRecord:
    return InteractionRecord(
        customer_id=row.customer_id,
        source_key=row.source_key,
        channel=row.channel,
        kind=row.kind,
        occurred_at=row.occurred_at,
        summary=row.summary,
        ticket_id=row.ticket_id,
        sentiment_score=row.sentiment_score,
        sentiment_label=row.sentiment_label,
        expires_at=row.expires_at,
        scope=scope_read(kind=row.kind, source_key=row.source_key, scope=row.scope),
    )


class PostgresInteractionBackend:
    name = "postgres"

    def record(self, item: InteractionRecord, *, replace: bool = False) -> bool:
        values = {
            "customer_id": item.customer_id,
            "ticket_id": item.ticket_id,
            "channel": item.channel,
            "kind": item.kind,
            "summary": item.summary[:300],
            "sentiment_score": item.sentiment_score,
            "sentiment_label": item.sentiment_label,
            "occurred_at": item.occurred_at,
            "expires_at": expiry_for(item),
            "scope": item.scope,
        }
        if replace:
            _, created = Interaction.objects.update_or_create(
                source_key=item.source_key, defaults=values
            )
            return created
        if Interaction.objects.filter(source_key=item.source_key).exists():
            return False
        try:
            with transaction.atomic():
                Interaction.objects.create(source_key=item.source_key, **values)
        except IntegrityError:
            return False  # a concurrent delivery of the same event won the race
        return True

    def _live(self, customer_id: int) -> Any:
        return Interaction.objects.filter(customer_id=customer_id, expires_at__gt=timezone.now())

    def recent(self, customer_id: int, *, limit: int) -> list[InteractionRecord]:
        rows = self._live(customer_id).order_by("-occurred_at", "-id")[:limit]
        return [record_from_row(row) for row in rows]

    def window(self, customer_id: int, *, since: datetime) -> list[ScorePoint]:
        rows = (
            self._live(customer_id)
            .filter(occurred_at__gte=since)
            .order_by("occurred_at", "id")
            .values_list(
                "occurred_at", "kind", "sentiment_score", "ticket_id", "source_key", "scope"
            )
        )
        return [
            ScorePoint(at, kind, score, ticket, scope_read(kind=kind, source_key=key, scope=scope))
            for at, kind, score, ticket, key, scope in rows
        ]

    def for_customer(self, customer_id: int) -> list[InteractionRecord]:
        rows = Interaction.objects.filter(customer_id=customer_id).order_by("occurred_at", "id")
        return [record_from_row(row) for row in rows]

    def erase_customer(self, customer_id: int) -> int:
        return Interaction.objects.filter(customer_id=customer_id).update(summary=ERASED_SUMMARY)

    def purge_expired(self, *, now: datetime, limit: int) -> Purged:
        # The rows read are the rows deleted (by id): the customers returned are exactly
        # those whose interactions went, whatever is written meanwhile.
        rows = list(
            Interaction.objects.filter(expires_at__lte=now)
            .order_by("id")
            .values_list("id", "customer_id")[:limit]
        )
        deleted, _ = Interaction.objects.filter(pk__in=[pk for pk, _ in rows]).delete()
        return Purged(deleted, frozenset(customer_id for _, customer_id in rows))


# --- DynamoDB -------------------------------------------------------------------------


def _sk(item: InteractionRecord) -> str:
    at = item.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{at}#{item.source_key}"


def _parse_at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _item_scope(data: dict[str, Any]) -> str:
    """An item's scope (items written before there were scopes have no attribute)."""
    return scope_read(
        kind=data["kind"]["S"],
        source_key=data["source_key"]["S"],
        scope=str(data.get("scope", {}).get("S", "")),
    )


class DynamoInteractionBackend:
    """Items: ``customer_id`` (N, hash), ``sk`` = ``<occurred_at UTC>#<source_key>`` (S,
    range), TTL attribute ``expires_at`` (N, epoch seconds). DynamoDB's TTL deletion runs
    within days, so reads also filter expired items out."""

    name = "dynamodb"

    def __init__(self, client: Any = None, table: str | None = None) -> None:
        self._client = client
        self.table = table or settings.INTERACTIONS_DYNAMODB_TABLE

    @property
    def client(self) -> Any:
        if self._client is None:
            timeout = settings.CONTEXT_AWS_TIMEOUT
            self._client = aws_client(
                "dynamodb",
                endpoint_url=settings.INTERACTIONS_DYNAMODB_ENDPOINT_URL or None,
                connect_timeout=timeout,
                read_timeout=timeout,
            )
        return self._client

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            if aws_error_code(exc) == "ConditionalCheckFailedException":
                raise  # expected by record(): the item was recorded before
            raise aws_error(exc, context=f"DynamoDB {method}") from exc

    def table_create(self) -> None:
        """Create the table with TTL on (tests and first setup; production uses deploy/)."""
        self._call(
            "create_table",
            TableName=self.table,
            KeySchema=[
                {"AttributeName": "customer_id", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "customer_id", "AttributeType": "N"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        self._call(
            "update_time_to_live",
            TableName=self.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )

    def _to_item(self, item: InteractionRecord) -> dict[str, Any]:
        data: dict[str, Any] = {
            "customer_id": {"N": str(item.customer_id)},
            "sk": {"S": _sk(item)},
            "source_key": {"S": item.source_key},
            "channel": {"S": item.channel},
            "kind": {"S": item.kind},
            "summary": {"S": item.summary[:300]},
            "sentiment_label": {"S": item.sentiment_label},
            # always written (empty too): an item without it is one from before scopes
            "scope": {"S": item.scope},
            "occurred_at": {"S": item.occurred_at.astimezone(UTC).isoformat()},
            "expires_at": {"N": str(int(expiry_for(item).timestamp()))},
        }
        if item.ticket_id is not None:
            data["ticket_id"] = {"N": str(item.ticket_id)}
        if item.sentiment_score is not None:
            data["sentiment_score"] = {"N": str(Decimal(str(item.sentiment_score)))}
        return data

    def _from_item(self, data: dict[str, Any]) -> InteractionRecord:
        return InteractionRecord(
            customer_id=int(data["customer_id"]["N"]),
            source_key=data["source_key"]["S"],
            channel=data["channel"]["S"],
            kind=data["kind"]["S"],
            occurred_at=_parse_at(data["occurred_at"]["S"]),
            summary=data.get("summary", {}).get("S", ""),
            ticket_id=int(data["ticket_id"]["N"]) if "ticket_id" in data else None,
            sentiment_score=float(data["sentiment_score"]["N"])
            if "sentiment_score" in data
            else None,
            sentiment_label=data.get("sentiment_label", {}).get("S", ""),
            expires_at=datetime.fromtimestamp(int(data["expires_at"]["N"]), tz=UTC),
            scope=_item_scope(data),
        )

    def record(self, item: InteractionRecord, *, replace: bool = False) -> bool:
        if replace:
            old = self._call(
                "put_item", TableName=self.table, Item=self._to_item(item), ReturnValues="ALL_OLD"
            )
            return "Attributes" not in old
        try:
            self._call(
                "put_item",
                TableName=self.table,
                Item=self._to_item(item),
                ConditionExpression="attribute_not_exists(sk)",
            )
        except ClientError:  # ConditionalCheckFailed: recorded before
            return False
        return True

    def _query(
        self, customer_id: int, *, since: datetime | None = None, newest_first: bool, limit: int = 0
    ) -> list[dict[str, Any]]:
        now = int(timezone.now().timestamp())
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "customer_id = :c",
            "ExpressionAttributeValues": {":c": {"N": str(customer_id)}},
            "ScanIndexForward": not newest_first,
        }
        if since is not None:
            kwargs["KeyConditionExpression"] += " AND sk >= :since"
            since_text = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            kwargs["ExpressionAttributeValues"][":since"] = {"S": since_text}
        items: list[dict[str, Any]] = []
        while True:
            page = self._call("query", **kwargs)
            for raw in page.get("Items", []):
                if int(raw["expires_at"]["N"]) > now:
                    items.append(raw)
            if (limit and len(items) >= limit) or "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items[:limit] if limit else items

    def recent(self, customer_id: int, *, limit: int) -> list[InteractionRecord]:
        return [
            self._from_item(raw) for raw in self._query(customer_id, newest_first=True, limit=limit)
        ]

    def window(self, customer_id: int, *, since: datetime) -> list[ScorePoint]:
        points = []
        for raw in self._query(customer_id, since=since, newest_first=False):
            record = self._from_item(raw)
            points.append(
                ScorePoint(
                    record.occurred_at,
                    record.kind,
                    record.sentiment_score,
                    record.ticket_id,
                    record.scope,
                )
            )
        return points

    def _all(self, customer_id: int) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "customer_id = :c",
            "ExpressionAttributeValues": {":c": {"N": str(customer_id)}},
        }
        items: list[dict[str, Any]] = []
        while True:
            page = self._call("query", **kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def for_customer(self, customer_id: int) -> list[InteractionRecord]:
        return [self._from_item(raw) for raw in self._all(customer_id)]

    def erase_customer(self, customer_id: int) -> int:
        items = self._all(customer_id)
        for raw in items:
            self._call(
                "update_item",
                TableName=self.table,
                Key={"customer_id": raw["customer_id"], "sk": raw["sk"]},
                UpdateExpression="SET summary = :s",
                ExpressionAttributeValues={":s": {"S": ERASED_SUMMARY}},
            )
        return len(items)

    def purge_expired(self, *, now: datetime, limit: int) -> Purged:
        return Purged()  # DynamoDB's TTL deletes expired items; reads skip them until then


_registry: dict[str, Callable[[], InteractionBackend]] = {
    "postgres": PostgresInteractionBackend,
    "dynamodb": DynamoInteractionBackend,
}


def register_backend(name: str, factory: Callable[[], InteractionBackend]) -> None:
    _registry[name] = factory
    _backend.cache_clear()


def get_backend(name: str | None = None) -> InteractionBackend:
    """The configured backend (``INTERACTIONS_BACKEND``), built once per process."""
    return _backend(name or settings.INTERACTIONS_BACKEND)


def reset_backends() -> None:
    _backend.cache_clear()


@lru_cache(maxsize=4)
def _backend(key: str) -> InteractionBackend:
    try:
        return _registry[key]()
    except KeyError:
        raise PermanentError(
            f"INTERACTIONS_BACKEND={key!r} is unknown; use one of {sorted(_registry)}"
        ) from None


def with_summary(item: InteractionRecord, summary: str) -> InteractionRecord:
    return replace(item, summary=summary)
