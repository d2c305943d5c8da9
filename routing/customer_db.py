"""Seed 004's customer database (``CUSTOMER_DB_ENDPOINT``, "Query customer database for VIP
status"): the HTTP adapter behind the VIP tool's data. Only this module calls it.

With ``ROUTING_CUSTOMER_DB_URL`` set, routing asks ``GET <url>/customers/<customer_id>``
(``Authorization: Bearer <ROUTING_CUSTOMER_DB_TOKEN>`` when set, never logged or recorded;
``X-Request-ID``; timeout ``ROUTING_CUSTOMER_DB_TIMEOUT``, redirects not followed) while it
loads a ticket's context (``routing.context``), before any tool runs. ``customer_id`` is
the id the ticketing system knows the customer by, the one seed 004's ``POST /tickets``
took: the customer's ``external_id`` when it has one (``"CUST-42"``, URL-quoted as one path
segment), else this platform's customer id (``Customer.pk``).

The answer's VIP fields map onto this project's tier (``none/silver/gold/platinum``) and
account type (``individual/business/enterprise``): ``vip_tier`` (or ``tier``) when it is
one of the tiers, else ``is_vip`` (``true``: ``ROUTING_CUSTOMER_DB_VIP_TIER``, ``false``:
``none``); ``account_type`` when it is one of the types, else the local one. The fields may
also sit under ``customer_context`` (seed 004's event schema); top-level ones win.

Any failure (timeout, refused connection, non-2xx, 404: the database does not know the
customer, an answer with neither field) falls back to the customer's local tier and type
(the admin's, or the CSV import's), and the lookup says why. What the lookup did is part of
``check_vip_status``'s output, so every routing decision's tool calls record it; failures
are logged too. Answers (and 404s) are cached per process for
``ROUTING_CUSTOMER_DB_CACHE_SECONDS`` (``support.lru.BoundedLRU``, at most
``ROUTING_CUSTOMER_DB_CACHE_SIZE`` customers); failures are not, so the next ticket asks
again. There is no retry: a person waits for nothing here, but routing must not wait
either, and local data is a sound answer. The customer row is not changed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings

from support.lru import BoundedLRU
from support.outbound import body_read_bounded, outbound_headers
from tickets.models import AccountType, Customer, VipTier

logger = logging.getLogger(__name__)

SOURCE_LOCAL = "local"
SOURCE_CUSTOMER_DB = "customer_db"
# One customer's record: a few hundred bytes. A larger answer is refused unread (a hostile
# or broken endpoint cannot fill a worker's memory).
ANSWER_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class CustomerLookup:
    """The tier and account type routing uses, where they came from, and what the lookup
    did (``record``: empty when no customer database is configured)."""

    vip_tier: str
    account_type: str
    source: str = SOURCE_LOCAL
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def is_vip(self) -> bool:
        return tier_is_vip(self.vip_tier)


def tier_is_vip(tier: str) -> bool:
    """Seed 004's ``is_vip``: any tier but ``none``."""
    return tier not in ("", VipTier.NONE)


# (url, customer id as asked) -> (expires at, monotonic clock; the answer's tier and type,
# or None for a customer the database does not know). Keyed by what the URL says: the
# same id asked is the same answer, whichever customer row it came from.
_cache: BoundedLRU[tuple[str, str], tuple[float, tuple[str, str] | None]] = BoundedLRU(
    lambda: int(settings.ROUTING_CUSTOMER_DB_CACHE_SIZE)
)


def customer_cache_clear() -> None:
    _cache.clear()


class _Unusable(ValueError):
    """The answer does not say the customer's tier."""


def customer_fields_map(body: Any, *, local_account_type: str) -> tuple[str, str]:
    """(tier, account type) from a customer database answer (the module docstring)."""
    if not isinstance(body, dict):
        raise _Unusable("the answer is not a JSON object")
    nested = body.get("customer_context")
    data = {**nested, **body} if isinstance(nested, dict) else body
    raw_tier = data.get("vip_tier", data.get("tier"))
    is_vip = data.get("is_vip")
    if isinstance(raw_tier, str) and raw_tier.strip().lower() in VipTier.values:
        tier = raw_tier.strip().lower()
    elif isinstance(is_vip, bool):
        tier = str(settings.ROUTING_CUSTOMER_DB_VIP_TIER) if is_vip else VipTier.NONE.value
    else:
        raise _Unusable("no vip_tier of a known tier and no is_vip true/false")
    raw_type = data.get("account_type")
    account_type = local_account_type
    if isinstance(raw_type, str) and raw_type.strip().lower() in AccountType.values:
        account_type = raw_type.strip().lower()
    return tier, account_type


def customer_vip_get(customer: Customer) -> CustomerLookup:
    """A customer's VIP tier and account type, the one answer for everything that states
    them for routing or to another system: the VIP tool (``routing.context``) and seed
    004's ``TicketReceived`` event (``events_out``: the seed's ingestion "Query customer
    database for VIP status" before it publishes). The customer database's when it is
    configured and answers, else the customer row. Asked by the customer's
    ``external_id`` when it has one (the ticketing system's own id), else by its id."""
    return customer_lookup(
        customer_id=customer.external_id or customer.pk,
        vip_tier=customer.vip_tier,
        account_type=customer.account_type,
    )


def customer_lookup(*, customer_id: int | str, vip_tier: str, account_type: str) -> CustomerLookup:
    """The customer's tier and account type: the customer database's when it is set and
    answers, else the local ``vip_tier`` / ``account_type`` given. ``customer_id`` is the
    id the database knows (``customer_vip_get``), quoted as one path segment."""
    local = CustomerLookup(vip_tier=vip_tier, account_type=account_type)
    base = str(settings.ROUTING_CUSTOMER_DB_URL)
    if not base:
        return local
    asked = str(customer_id)
    key = (base, asked)
    now = time.monotonic()
    cached = _cache.get(key)
    if cached is not None and cached[0] > now:
        if cached[1] is None:
            return _fallback(local, {"status": "not_found", "cached": True})
        return CustomerLookup(
            vip_tier=cached[1][0],
            account_type=cached[1][1],
            source=SOURCE_CUSTOMER_DB,
            record={"status": "ok", "cached": True},
        )
    ttl = max(0.0, float(settings.ROUTING_CUSTOMER_DB_CACHE_SECONDS))
    # safe="": a "/" or "?" in someone's id must not make it another path or a query
    url = f"{base.rstrip('/')}/customers/{quote(asked, safe='')}"
    headers = {"Accept": "application/json"}
    if settings.ROUTING_CUSTOMER_DB_TOKEN:
        headers["Authorization"] = f"Bearer {settings.ROUTING_CUSTOMER_DB_TOKEN}"
    started = time.monotonic()
    try:
        response = requests.get(
            url,
            headers=outbound_headers(headers),
            timeout=float(settings.ROUTING_CUSTOMER_DB_TIMEOUT),
            allow_redirects=False,
            stream=True,
        )
        # the whole answer within the timeout and a few KB: routing waits for it
        body = body_read_bounded(
            response,
            max_bytes=ANSWER_MAX_BYTES,
            seconds=float(settings.ROUTING_CUSTOMER_DB_TIMEOUT),
        )
    except requests.RequestException as exc:
        return _failed(local, asked, started, None, type(exc).__name__)
    if response.status_code == 404:
        if ttl:
            _cache.put(key, (time.monotonic() + ttl, None))
        record = {"status": "not_found", "http_status": 404, "ms": _ms(started)}
        return _fallback(local, record)
    if not 200 <= response.status_code < 300:
        return _failed(local, asked, started, response.status_code, f"HTTP {response.status_code}")
    try:
        tier, kind = customer_fields_map(json.loads(body), local_account_type=account_type)
    except ValueError as exc:  # not JSON (requests' JSONDecodeError), or _Unusable
        why = str(exc) if isinstance(exc, _Unusable) else "the answer is not JSON"
        return _failed(local, asked, started, response.status_code, f"malformed: {why}")
    if ttl:
        _cache.put(key, (time.monotonic() + ttl, (tier, kind)))
    return CustomerLookup(
        vip_tier=tier,
        account_type=kind,
        source=SOURCE_CUSTOMER_DB,
        record={"status": "ok", "http_status": response.status_code, "ms": _ms(started)},
    )


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _fallback(local: CustomerLookup, record: dict[str, Any]) -> CustomerLookup:
    return CustomerLookup(
        vip_tier=local.vip_tier,
        account_type=local.account_type,
        source=SOURCE_LOCAL,
        record=record,
    )


def _failed(
    local: CustomerLookup, customer_id: str, started: float, http_status: int | None, error: str
) -> CustomerLookup:
    logger.warning(
        "Customer database lookup of customer %s failed (%s); local tier used",
        customer_id,
        error,
    )
    record: dict[str, Any] = {"status": "failed", "error": error, "ms": _ms(started)}
    if http_status is not None:
        record["http_status"] = http_status
    return _fallback(local, record)
