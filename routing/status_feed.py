"""The external service-status endpoint's HTTP adapter (seed 004's ``check_service_status``
data source): one request to ``ROUTING_STATUS_URL`` in the shape ``ROUTING_STATUS_FORMAT``
names, its answer read into a :class:`StatusReport` that ``routing.services`` writes onto
``ServiceStatus`` / ``Outage``.

Only this module calls the status endpoint. Two shapes:

- ``services`` (the default, this project's own): ``GET <ROUTING_STATUS_URL>`` answering
  ``{"services": [{"id", "name", "state", "outages": [{"id", "title", "known_issue"}]}]}``.
- ``seed`` (seed 004's Service Status API): ``POST <ROUTING_STATUS_URL>/status/batch`` with
  ``{"service_ids": [...]}`` (the ids of the services this project knows, the
  ``ServiceStatus`` rows) answering ``{"outages": [...], "known_issues": [...],
  "overall_health": "..."}``; each entry an object ``{"service_id", "id", "title"}`` (or
  just a service id as a string).

Both send ``Authorization: Bearer <ROUTING_STATUS_TOKEN>`` when the token is set (never
logged, never in a record) and ``X-Request-ID``; the timeout is ``ROUTING_STATUS_TIMEOUT``;
redirects are not followed (a POST would be re-sent as a GET of the new address).

Failures are :class:`~support.delivery.registry.DeliveryError` s for the delivery engine,
which records each attempt: a timeout or refused connection is retryable, a URL requests
cannot use permanent, an answer that is not JSON or not of the format's shape permanent
(error code ``malformed_answer``, the start of the body kept in the attempt's record).
Parts of another shape inside a well-formed answer are skipped and listed in
``StatusReport.skipped`` (logged, and kept in the attempt's response summary).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings

from routing.ticketing import INVALID_URL
from support.delivery.models import Outcome
from support.delivery.registry import DeliveryError
from support.outbound import AnswerTooLarge, body_read_bounded, outbound_headers

logger = logging.getLogger(__name__)

FORMAT_SERVICES = "services"
FORMAT_SEED = "seed"
STATUS_FORMATS = (FORMAT_SERVICES, FORMAT_SEED)
SEED_BATCH_PATH = "/status/batch"
STATES = ("operational", "degraded", "outage")  # ServiceStatus.State's values
SKIPPED_MAX = 20  # notes kept per answer (the rest are counted)
# A status answer lists services and their outages: a megabyte is thousands of them. A
# larger one is refused unread (recorded as malformed), not read whole into memory.
ANSWER_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class OutageReport:
    external_id: str
    title: str
    known_issue: bool


@dataclass(frozen=True)
class ServiceReport:
    service_id: str
    state: str
    outages: tuple[OutageReport, ...]
    name: str = ""  # empty: keep the name the service has (seed format)


@dataclass
class StatusReport:
    """What one answer said: the services read, the parts skipped (why, for the record),
    and seed 004's ``overall_health`` when the endpoint gave one."""

    services: list[ServiceReport] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    overall_health: str = ""

    def skip(self, why: str) -> None:
        logger.warning("Status endpoint: %s", why)
        self.skipped.append(why)


@dataclass(frozen=True)
class StatusAnswer:
    report: StatusReport
    http_status: int
    request_summary: dict[str, Any]
    response_text: str


def status_format() -> str:
    return str(settings.ROUTING_STATUS_FORMAT).strip().lower() or FORMAT_SERVICES


def status_request_url() -> str:
    """Where the poll goes: the URL itself, or seed 004's ``<endpoint>/status/batch``."""
    url = str(settings.ROUTING_STATUS_URL)
    if status_format() == FORMAT_SEED:
        return url.rstrip("/") + SEED_BATCH_PATH
    return url


def status_fetch(*, service_ids: list[str]) -> StatusAnswer:
    """One request to the status endpoint and its answer read (see the module docstring).
    A non-2xx answer is returned unread (``report`` empty) for the engine to classify."""
    fmt = status_format()
    if fmt not in STATUS_FORMATS:
        raise DeliveryError(
            f"ROUTING_STATUS_FORMAT {fmt!r} is not one of {', '.join(STATUS_FORMATS)}.",
            outcome=Outcome.PERMANENT,
            error_code="not_configured",
        )
    url = status_request_url()
    headers = {"Accept": "application/json"}
    if settings.ROUTING_STATUS_TOKEN:
        headers["Authorization"] = f"Bearer {settings.ROUTING_STATUS_TOKEN}"
    summary: dict[str, Any] = {"url": url, "format": fmt}
    try:
        seed = fmt == FORMAT_SEED  # the seed's POST of the ids, or this project's GET
        if seed:
            summary["service_ids"] = len(service_ids)
        response = requests.request(
            "POST" if seed else "GET",
            url,
            json={"service_ids": service_ids} if seed else None,
            headers=outbound_headers(headers),
            timeout=float(settings.ROUTING_STATUS_TIMEOUT),
            allow_redirects=False,
            stream=True,
        )
        raw = body_read_bounded(
            response, max_bytes=ANSWER_MAX_BYTES, seconds=float(settings.ROUTING_STATUS_TIMEOUT)
        )
    except INVALID_URL as exc:  # configuration: every retry would fail the same way
        raise DeliveryError(
            f"ROUTING_STATUS_URL {url!r} cannot be used ({type(exc).__name__}: {exc}).",
            outcome=Outcome.PERMANENT,
            error_code="invalid_url",
        ) from exc
    except AnswerTooLarge as exc:  # not a passing fault: the endpoint answers this way
        raise _malformed(str(exc), response.status_code, f"({exc}; not read)") from exc
    except requests.RequestException as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", outcome=Outcome.RETRYABLE) from exc
    text = raw[:2000].decode("utf-8", "replace")
    if 300 <= response.status_code < 400:
        location = response.headers.get("Location", "")[:500] or "no Location header"
        raise DeliveryError(
            f"The status endpoint redirected ({location}); it is not followed: set "
            "ROUTING_STATUS_URL to that address.",
            outcome=Outcome.PERMANENT,
            http_status=response.status_code,
            error_code="redirect",
        )
    if not 200 <= response.status_code < 300:
        return StatusAnswer(StatusReport(), response.status_code, summary, text)
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _malformed("the answer is not JSON", response.status_code, text) from exc
    if fmt == FORMAT_SEED:
        report = seed_answer_read(body, asked=service_ids)
    else:
        report = services_answer_read(body)
    return StatusAnswer(report, response.status_code, summary, text)


def _malformed(why: str, http_status: int, text: str) -> DeliveryError:
    logger.warning("Status endpoint: malformed answer (%s); nothing changed", why)
    return DeliveryError(
        f"Malformed status answer: {why}; nothing was changed.",
        outcome=Outcome.PERMANENT,
        http_status=http_status,
        error_code="malformed_answer",
        response_text=text,
    )


# --- the project's own shape ------------------------------------------------------------------


def services_answer_read(body: Any) -> StatusReport:
    """``{"services": [...]}``. An answer without a ``services`` list is malformed; inside it
    a service of another shape is skipped whole (a service whose ``outages`` is not a list
    too: reading it as none would resolve its open outages), an outage entry of another
    shape is skipped and the service read."""
    if not isinstance(body, dict) or not isinstance(body.get("services", []), list):
        raise _malformed("'services' is not a list", 200, repr(body)[:2000])
    report = StatusReport()
    for item in body.get("services", []):
        if not isinstance(item, dict) or not isinstance(item.get("outages", []), list):
            report.skip(f"skipped a service of another shape: {item!r:.200}")
            continue
        state = item.get("state", "operational")
        if not item.get("id") or not isinstance(state, str) or state not in STATES:
            report.skip(f"skipped a service without an id or a known state: {item!r:.200}")
            continue
        outages = []
        for outage in item.get("outages", []):
            if not isinstance(outage, dict) or not str(outage.get("id", "")):
                report.skip(f"skipped an outage of another shape: {outage!r:.200}")
                continue
            ext = str(outage["id"])[:100]
            outages.append(
                OutageReport(
                    external_id=ext,
                    title=str(outage.get("title", ext))[:200],
                    known_issue=bool(outage.get("known_issue", False)),
                )
            )
        report.services.append(
            ServiceReport(
                service_id=str(item["id"])[:32],
                name=str(item.get("name", item["id"]))[:100],
                state=state,
                outages=tuple(outages),
            )
        )
    return report


# --- seed 004's /status/batch --------------------------------------------------------------

SEED_LISTS = (("outages", False), ("known_issues", True))


def seed_answer_read(body: Any, *, asked: list[str]) -> StatusReport:
    """Seed 004's ``{"outages", "known_issues", "overall_health"}`` for the ``asked`` ids.

    Each entry names its service (``service_id``; a bare string is a service id) and
    optionally ``id`` (the outage's id at the endpoint; else its ``title``, else one per
    service and list) and ``title`` (or ``description``). Every asked service is read:
    with an entry in ``outages`` it is in ``outage``, with only ``known_issues`` entries
    ``degraded``, with none ``operational`` (its outages the answer no longer lists are
    resolved). An answer that is not an object, or whose ``outages`` / ``known_issues`` is
    not a list, or ``overall_health`` not a string, is malformed (nothing changes: reading
    it as "no outages" would resolve them all); entries of another shape or naming a
    service not asked about are skipped."""
    if not isinstance(body, dict):
        raise _malformed("the answer is not a JSON object", 200, repr(body)[:2000])
    for name, _ in SEED_LISTS:
        if not isinstance(body.get(name, []), list):
            raise _malformed(f"'{name}' is not a list", 200, repr(body)[:2000])
    health = body.get("overall_health", "")
    if not isinstance(health, str):
        raise _malformed("'overall_health' is not a string", 200, repr(body)[:2000])
    report = StatusReport(overall_health=health[:32])
    by_service: dict[str, dict[str, OutageReport]] = {sid: {} for sid in asked}
    for name, known_issue in SEED_LISTS:
        for entry in body.get(name, []):
            if isinstance(entry, str):
                entry = {"service_id": entry}
            service_id = entry.get("service_id") if isinstance(entry, dict) else None
            if not isinstance(service_id, str) or not service_id:
                report.skip(f"skipped an entry of '{name}' without a service_id: {entry!r:.200}")
                continue
            if service_id not in by_service:
                report.skip(
                    f"skipped an entry of '{name}' for a service not asked about: "
                    f"{service_id!r:.40}"
                )
                continue
            title = entry.get("title") or entry.get("description") or ""
            ext = entry.get("id") or title or name
            if not isinstance(title, str) or not isinstance(ext, str | int):
                report.skip(f"skipped an entry of '{name}' of another shape: {entry!r:.200}")
                continue
            default_title = "Known issue" if known_issue else "Outage"
            outage = OutageReport(
                external_id=str(ext)[:100],
                title=(title or default_title)[:200],
                known_issue=known_issue,
            )
            # an id listed as an outage and as a known issue: the outage wins
            by_service[service_id].setdefault(outage.external_id, outage)
    for service_id, outages in by_service.items():
        listed = tuple(outages.values())
        if any(not o.known_issue for o in listed):
            state = "outage"
        elif listed:
            state = "degraded"
        else:
            state = "operational"
        report.services.append(ServiceReport(service_id=service_id, state=state, outages=listed))
    return report
