"""Who may call what: every URL pattern and websocket route × every role, from one table.

The URL patterns come from Django's resolver (and the websocket routes from
``support.websocket_urls``), so a new endpoint without a row here fails
``test_every_url_pattern_has_a_row`` with the pattern's name. Each row is one pattern name
and one HTTP method; its columns are the roles of ``tests.authz_world.ROLES``:

    anon · agent_out (another team) · agent_in (the ticket's team) · supervisor ·
    the API keys of those three · an integration-role key

The world (``tests.authz_world``) is one ticket in team T, its customer (whose only
tickets are in T), an attachment, a routing decision, a call, KB objects, channel accounts.
URL kwargs are filled from it by name.

Outcomes:

``allow``   the request got past access control: 2xx, 3xx (not to a login page), or a
            400/409 about the input.
``401``     not authenticated (API).        ``403``  authenticated, not allowed.
``404``     not found: what the role may not see does not exist for it.
``login``   redirected to the sign-in page (workbench pages: API keys are not accepted).
``signed``  authenticated by a signature or token, not by a login or key: without it every
            role gets 401/403 (``test_signed_rows_accept_a_valid_signature`` checks the
            positive side).
``public``  anyone, on purpose (health, sign-in, the API schema, starting a web chat).

``!N`` after an outcome: the issue #13 rule that today's code does not meet yet, fixed by
item N on another branch; the cell is an ``xfail(strict=True)``, so it fails loudly once
the fix is merged and the mark has to come off.

The admin is a family: a few representative rows here, and
``test_every_admin_url_requires_staff`` walks every URL of ``admin.site.urls``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import admin
from django.db import transaction
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.views import APIView

from channels_app.adapters.meta.common import meta_signature
from channels_app.adapters.webchat.adapter import SESSION_HEADER, session_issue
from support.websocket_urls import websocket_urlpatterns
from tests.authz_world import (
    INTEGRATION_ROLE_AVAILABLE,
    INTEGRATION_ROLE_MISSING,
    KB_EVENTS_TOKEN,
    ROLES,
    SESSION_ROLES,
    URL_KWARG_NAMES,
    VERIFY_TOKEN,
    WEBHOOK_SECRET,
    World,
    build_world,
)
from tickets.tests.ws import BoundedCommunicator

# Where each issue #13 fix lives until the lead merges it; then its `!N` marks come off.
FIXED_ON: dict[int, str] = {}

ADMIN_LOGIN = "/admin/login/"
# GET /metrics: a bearer token of its own, not a login or an API key.
METRICS_TOKEN = "matrix-metrics-token"

# fmt: off
# name (URL name)               method anon   ag_out ag_in  sup    k_out  k_in   k_sup  k_int
TABLE_TEXT = """
favicon                         GET    public public public public public public public public
health                          GET    public public public public public public public public
health-live                     GET    public public public public public public public public
health-ready                    GET    public public public public public public public public
metrics                         GET    signed signed signed signed signed signed signed signed
login                           GET    public public public public public public public public
login                           POST   public public public public public public public public
logout                          POST   public public public public public public public public
logout                          GET    public public public public public public public public
attachment-download             GET    login  404    allow  allow  login  login  login  login

inbox                           GET    login  allow  allow  allow  login  login  login  login
inbox-bulk                      POST   login  allow  allow  allow  login  login  login  login
ticket-new                      GET    login  allow  allow  allow  login  login  login  login
ticket-new                      POST   login  allow  allow  allow  login  login  login  login
ticket                          GET    login  404    allow  allow  login  login  login  login
ticket-live                     GET    login  404    allow  allow  login  login  login  login
ticket-message                  POST   login  404    allow  allow  login  login  login  login
ticket-update                   POST   login  404    allow  allow  login  login  login  login
ticket-merge                    POST   login  404    allow  allow  login  login  login  login
ticket-canned                   GET    login  404    allow  allow  login  login  login  login
customers                       GET    login  allow  allow  allow  login  login  login  login
customer                        GET    login  404    allow  allow  login  login  login  login
customer-contact                POST   login  404    allow  allow  login  login  login  login
context-feedback                GET    signed signed signed signed signed signed signed signed
context-feedback                POST   signed signed signed signed signed signed signed signed
calls:list                      GET    login  allow  allow  allow  login  login  login  login
calls:board                     GET    login  403    403    allow  login  login  login  login
calls:board-alert-acknowledge   POST   login  403    403    allow  login  login  login  login
calls:detail                    GET    login  404    404    allow  login  login  login  login

api-tickets                     GET    401    allow  allow  allow  allow  allow  allow  403
api-tickets                     POST   401    allow  allow  allow  allow  allow  allow  403
api-ticket                      GET    401    404    allow  allow  404    allow  allow  403
api-ticket                      PATCH  401    404    allow  allow  404    allow  allow  403
api-ticket-messages             POST   401    404    allow  allow  404    allow  allow  403
api-ticket-merge                POST   401    404    allow  allow  404    allow  allow  403
api-ticket-status               GET    401    404    allow  allow  404    allow  allow  403
api-ticket-context              GET    401    404    allow  allow  404    allow  allow  403
api-ticket-feedback             POST   401    404    allow  allow  404    allow  allow  403
api-customer-context            GET    401    404    allow  allow  404    allow  allow  403
api-customers-orders-intake     POST   401    403    403    403    403    403    403    allow
api-customers-interactions-intake POST  401    403    403    403    403    403    403    allow
ticket-routing                  GET    401    404    allow  allow  404    allow  allow  403
ticket-routing-override         POST   401    404    allow  allow  404    allow  allow  403
ticket-routing-accept           POST   401    404    allow  allow  404    allow  allow  403
routing-accuracy                GET    401    403    403    allow  403    403    allow  403
api-ticket-suggestions          GET    401    404    allow  allow  404    allow  allow  403
api-ticket-suggestion-feedback  POST   401    404    allow  allow  404    allow  allow  403
api-ticket-drafts               POST   401    404    allow  allow  404    allow  allow  403
api-ticket-draft-discard        POST   401    404    allow  allow  404    allow  allow  403
api-kb-sync                     POST   401    403    403    allow  403    403    allow  403
api-kb-job                      GET    401    allow  allow  allow  allow  allow  allow  403
api-kb-documents                POST   401    403    403    allow  403    403    allow  403
api-kb-search                   GET    401    allow  allow  allow  allow  allow  allow  403
api-kb-feedback                 GET    401    403    403    allow  403    403    allow  403
api-kb-events                   POST   signed signed signed signed signed signed signed signed
calls-events                    POST   401    403    403    403    403    403    403    allow
calls-sns                       POST   signed signed signed signed signed signed signed signed
analytics-list                  GET    401    allow  allow  allow  allow  allow  allow  403
analytics-detail                GET    401    404    404    allow  404    404    allow  403
api-chatbot-handoff             POST   401    401    401    401    allow  allow  allow  403
api-chatbot-file                GET    404    404    404    404    404    404    404    404
api-channel-webhook             GET    signed signed signed signed signed signed signed signed
api-channel-webhook             POST   signed signed signed signed signed signed signed signed
api-webchat-session             POST   public public public public public public public public
api-webchat-messages            GET    signed signed signed signed signed signed signed signed
api-webchat-verify              POST   signed signed signed signed signed signed signed signed
api-webchat-verify-confirm      POST   signed signed signed signed signed signed signed signed
api-webchat-file                GET    404    404    404    404    404    404    404    404
api-webchat-upload              POST   signed signed signed signed signed signed signed signed
api-schema                      GET    401    allow  allow  allow  allow  allow  allow  403
seed-tickets                    POST   401    allow  allow  allow  allow  allow  allow  403
seed-ticket                     GET    401    404    allow  allow  404    allow  allow  403
seed-ticket-context             GET    401    404    allow  allow  404    allow  allow  403
seed-ticket-feedback            POST   401    404    allow  allow  404    allow  allow  403
seed-kb-sync                    POST   401    403    403    allow  403    403    allow  403
seed-analytics-list             GET    401    allow  allow  allow  allow  allow  allow  403
seed-analytics-detail           GET    401    404    404    allow  404    404    allow  403
seed-api-tickets-create         POST   401    allow  allow  allow  allow  allow  allow  403
seed-api-ticket                 GET    401    404    allow  allow  404    allow  allow  403
seed-api-ticket                 PATCH  401    404    allow  allow  404    allow  allow  403
seed-api-ticket                 PUT    401    404    allow  allow  404    allow  allow  403
seed-api-ticket-message         POST   401    404    allow  allow  404    allow  allow  403
seed-api-webhook                GET    signed signed signed signed signed signed signed signed
seed-api-webhook                POST   signed signed signed signed signed signed signed signed
api-docs                        GET    401    allow  allow  allow  allow  allow  allow  403

admin:login                     GET    public public public public public public public public
admin:index                     GET    login  login  login  allow  login  login  login  login
admin:tickets_ticket_changelist GET    login  login  login  allow  login  login  login  login
admin:tickets_customer_change   GET    login  login  login  allow  login  login  login  login
admin:support_apikey_changelist GET    login  login  login  403    login  login  login  login
admin:calls_queueteam_changelist GET   login  login  login  allow  login  login  login  login
admin:knowledge_replydraft_changelist GET login login login allow login login login login
admin:knowledge_ingestionjob_changelist GET login login login allow login login login login
admin:routing_routingfailure_changelist GET login login login allow login login login login
admin:routing_categoryteam_add  GET    login  login  login  allow  login  login  login  login
admin:routing_routermodel_changelist GET login login login 403  login  login  login  login
admin:channels_app_inboundevent_changelist GET login login login allow login login login login
admin:support_outboxevent_changelist GET login login login allow login login login login
admin:events_out_outgoingwebhook_changelist GET login login login allow login login login login
admin:events_out_outgoingwebhook_add GET login login login allow login login login login
alerts:list                     GET    login  403    403    allow  login  login  login  login
alerts:detail                   GET    login  403    403    allow  login  login  login  login
alerts:acknowledge              POST   login  403    403    allow  login  login  login  login
alerts:resolve                  POST   login  403    403    allow  login  login  login  login
admin:alerts_alerttarget_changelist GET login login login allow login login login login
admin:alerts_alertrule_changelist GET login login login allow login login login login
landing                         GET    login  allow  allow  allow  login  login  login  login
dashboard                       GET    login  403    403    allow  login  login  login  login
dashboard-widget                GET    login  403    403    allow  login  login  login  login
dashboard-data                  GET    login  403    403    allow  login  login  login  login
admin:tickets_slapolicy_changelist GET login login login allow login login login login
"""

# Websocket routes (they have no names): the route string. A refused socket is closed with
# 4401 (no agent signed in) or 4403 (no valid web chat session); keys do not open sockets.
# route                                anon   ag_out ag_in  sup    k_out  k_in   k_sup  k_int
WS_TABLE_TEXT = """
ws/events/                             4401   allow  allow  allow  4401   4401   4401   4401
ws/workbench/                          4401   allow  allow  allow  4401   4401   4401   4401
ws/webchat/<str:token>/                signed signed signed signed signed signed signed signed
"""
# fmt: on

# Patterns that exist only with an optional feature on; they need a row all the same.
OPTIONAL_PATTERNS = {
    # mozilla_django_oidc.urls, included under oidc/ when OIDC_ENABLED: the sign-in flow.
    "oidc_authentication_init": "public",
    "oidc_authentication_callback": "public",
    "oidc_logout": "public",
}


@dataclass(frozen=True)
class Cell:
    expected: str
    fixed_by_item: int | None


@dataclass(frozen=True)
class Row:
    key: str  # URL name or websocket route
    method: str
    cells: dict[str, Cell]


def _parse(text: str, *, with_method: bool) -> list[Row]:
    rows = []
    for line in text.strip().splitlines():
        if not line.strip():
            continue
        parts = line.split()
        key, rest = parts[0], parts[1:]
        method = rest.pop(0) if with_method else "CONNECT"
        assert len(rest) == len(ROLES), f"row {key} {method}: {len(rest)} cells, not {len(ROLES)}"
        cells = {}
        for role, raw in zip(ROLES, rest, strict=True):
            expected, _, item = raw.partition("!")
            cells[role] = Cell(expected, int(item) if item else None)
        rows.append(Row(key, method, cells))
    return rows


TABLE = _parse(TABLE_TEXT, with_method=True)
WS_TABLE = _parse(WS_TABLE_TEXT, with_method=False)
ROWS = {(row.key, row.method): row for row in TABLE}
assert len(ROWS) == len(TABLE), "a (name, method) appears twice in TABLE_TEXT"

# --- request details per row: bodies, queries and kwargs from the world ---------------------

Body = Callable[[World], dict[str, Any]]
BODIES: dict[tuple[str, str], Body] = {
    ("login", "POST"): lambda w: {"username": "matrix-agent-in", "password": "wrong"},
    ("inbox-bulk", "POST"): lambda w: {"action": "tag", "value": "matrix", "ids": [w.ticket.pk]},
    ("ticket-new", "POST"): lambda w: {
        "customer_email": "phoned.in@example.com",
        "subject": "Phoned in",
        "description": "Hello",
        "channel": "phone",
        "priority": "normal",
    },
    ("customer-contact", "POST"): lambda w: {"name": "Matrix Name"},
    ("ticket-message", "POST"): lambda w: {"body": "Looking into it", "kind": "internal_note"},
    ("ticket-update", "POST"): lambda w: {"priority": "high"},
    ("ticket-merge", "POST"): lambda w: {"into": w.second_ticket.number},
    ("context-feedback", "POST"): lambda w: {"rating": "5"},
    ("api-tickets", "POST"): lambda w: {
        "subject": "New question",
        "description": "Hello",
        "customer": {"email": "new.matrix@example.com", "name": "New"},
    },
    ("api-ticket", "PATCH"): lambda w: {"priority": "high"},
    ("api-ticket-messages", "POST"): lambda w: {"body": "On it", "kind": "internal_note"},
    ("api-ticket-merge", "POST"): lambda w: {"into": str(w.second_ticket.pk)},
    ("api-ticket-feedback", "POST"): lambda w: {"rating": 5, "comment": "ok"},
    ("api-customers-orders-intake", "POST"): lambda w: {
        "customer_id": w.customer.pk,
        "number": "MATRIX-ORDER-1",
        "status": "paid",
        "total": "10.00",
        "placed_at": timezone.now().isoformat(),
    },
    ("api-customers-interactions-intake", "POST"): lambda w: {
        "customer_id": w.customer.pk,
        "id": "matrix-1",
        "occurred_at": timezone.now().isoformat(),
        "channel": "phone",
        "kind": "note",
        "summary": "Matrix",
    },
    ("ticket-routing-override", "POST"): lambda w: {"team": w.team.slug, "priority": "high"},
    ("ticket-routing-accept", "POST"): lambda w: {},
    ("api-ticket-suggestion-feedback", "POST"): lambda w: {"helpful": True},
    ("api-kb-sync", "POST"): lambda w: {"source": "matrix-faq"},
    ("api-kb-events", "POST"): lambda w: {"detail-type": "Object Created"},
    ("calls-events", "POST"): lambda w: {
        "EventType": "INITIATED",
        "ContactId": "matrix-contact-2",
        "Channel": "VOICE",
        "InitiationMethod": "INBOUND",
        "InitiationTimestamp": "2026-11-01T10:00:00Z",
    },
    ("calls-sns", "POST"): lambda w: {
        "Type": "Notification",
        "MessageId": "matrix",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:recordings",
        "Message": "{}",
    },
    ("api-chatbot-handoff", "POST"): lambda w: {
        "source": "matrix-bot",
        "customer_email": "bot.matrix@example.com",
        "subject": "Bot hand-off",
        "initial_message": "I need a person",
        "session_id": "matrix-session",
    },
    ("api-channel-webhook", "POST"): lambda w: {"object": "whatsapp_business_account"},
    ("seed-tickets", "POST"): lambda w: {
        "subject": "Seed question",
        "description": "Hello",
        "customer": {"email": "seed.matrix@example.com", "name": "Seed"},
    },
    ("seed-ticket-feedback", "POST"): lambda w: {"rating": 5, "comment": "ok"},
    ("seed-kb-sync", "POST"): lambda w: {"source": "matrix-faq"},
    ("seed-api-tickets-create", "POST"): lambda w: {
        "subject": "Seed 001 question",
        "description": "Hello",
        "customer": {"email": "seed001.matrix@example.com", "name": "Seed"},
    },
    ("seed-api-ticket", "PATCH"): lambda w: {"priority": "high"},
    ("seed-api-ticket", "PUT"): lambda w: {"priority": "high"},
    ("seed-api-ticket-message", "POST"): lambda w: {"body": "On it", "kind": "internal_note"},
    ("seed-api-webhook", "POST"): lambda w: {"object": "whatsapp_business_account"},
    ("api-webchat-session", "POST"): lambda w: {"name": "Visitor", "email": "v@example.com"},
}
QUERIES: dict[tuple[str, str], Callable[[World], dict[str, str]]] = {
    ("api-kb-search", "GET"): lambda w: {"q": ""},  # 400 after the role check: cheap
    ("seed-api-webhook", "GET"): lambda w: {
        "hub.mode": "subscribe",
        "hub.challenge": "1158201444",
        "hub.verify_token": "not-the-token",
    },
    ("api-channel-webhook", "GET"): lambda w: {
        "hub.mode": "subscribe",
        "hub.challenge": "1158201444",
        "hub.verify_token": "not-the-token",
    },
}
# Plain Django views that read a JSON body (the others read a form).
JSON_PLAIN_VIEWS = {
    "api-channel-webhook",
    "seed-api-webhook",
    "api-webchat-session",
    "api-webchat-messages",
}
# The multipart upload endpoint (an empty form: 400 "file is required" after the role check).
FORM_ROWS = {("api-kb-documents", "POST")}
KWARGS: dict[str, Callable[[World], dict[str, Any]]] = {
    "context-feedback": lambda w: {"token": "forged-token"},
    "api-webchat-session": lambda w: {"token": w.webchat.webhook_token},
    "api-webchat-messages": lambda w: {"token": w.webchat.webhook_token},
    "api-webchat-verify": lambda w: {"token": w.webchat.webhook_token},
    "api-webchat-verify-confirm": lambda w: {"token": w.webchat.webhook_token},
    # no session, or one whose visitor was sent no such file: the same 404 (the visitor's
    # own file: channels_app/tests/test_webchat_files.py)
    "api-webchat-file": lambda w: {"token": w.webchat.webhook_token},
    "api-webchat-upload": lambda w: {"token": w.webchat.webhook_token},
    # no signed URL a bot's callback gave: the same 404 for every login and key (the bot's
    # own signed URL: channels_app/tests/test_handoff_files.py)
    "api-chatbot-file": lambda w: {"attachment_id": w.attachment.pk},
    "admin:tickets_customer_change": lambda w: {"object_id": w.customer.pk},
    "seed-api-webhook": lambda w: {"seed_channel": "whatsapp"},
    "dashboard-widget": lambda w: {"name": "backlog"},
    "dashboard-data": lambda w: {"name": "backlog"},
}

# --- the URL patterns, from the resolver ----------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    name: str  # "namespace:name"
    route: str
    kwargs: tuple[str, ...]
    callback: Any
    namespace: str

    @property
    def is_admin(self) -> bool:
        return self.namespace.startswith("admin:")

    def drf_methods(self) -> set[str] | None:
        """The methods a DRF view answers (None for plain Django views)."""
        cls = getattr(self.callback, "cls", None)
        if not (isinstance(cls, type) and issubclass(cls, APIView)):
            return None
        return {
            m.upper()
            for m in cls.http_method_names
            if m not in ("options", "head") and hasattr(cls, m)
        }


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> Iterator[Pattern]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = namespace
            if entry.namespace:
                ns = f"{namespace}{entry.namespace}:"
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            names = tuple(entry.pattern.regex.groupindex)
            route = prefix + str(entry.pattern)
            name = f"{namespace}{entry.name}" if entry.name else f"<unnamed {route}>"
            yield Pattern(name, route, names, entry.callback, namespace)


def url_patterns() -> list[Pattern]:
    return list(_walk(get_resolver().url_patterns))


def admin_patterns() -> list[Pattern]:
    return [p for p in url_patterns() if p.is_admin]


# --- coverage: every pattern and route has rows ---------------------------------------------


def test_every_url_pattern_has_a_row() -> None:
    problems = []
    patterns = url_patterns()
    known_names = {p.name for p in patterns}
    for pattern in patterns:
        if pattern.is_admin:
            continue  # the admin family: test_every_admin_url_requires_staff
        if pattern.name.startswith("<unnamed"):
            problems.append(f"{pattern.name}: give the pattern a name and add rows for it")
            continue
        rows = {method for (name, method) in ROWS if name == pattern.name}
        if not rows:
            problems.append(
                f"{pattern.name} ({pattern.route}) has no row in TABLE_TEXT: add one per "
                "method with the expected outcome for each role"
            )
            continue
        drf = pattern.drf_methods()
        if drf is not None and drf != rows:
            if drf - rows:
                problems.append(f"{pattern.name}: no row for {', '.join(sorted(drf - rows))}")
            if rows - drf:
                problems.append(f"{pattern.name}: rows for unanswered {sorted(rows - drf)}")
        for kwarg in pattern.kwargs:
            if kwarg not in URL_KWARG_NAMES and pattern.name not in KWARGS:
                problems.append(f"{pattern.name}: no value for the URL kwarg {kwarg!r}")
    for name, method in ROWS:
        if name not in known_names and name not in OPTIONAL_PATTERNS:
            problems.append(f"row {name} {method}: no such URL pattern any more")
    assert not problems, "\n".join(problems)


def test_optional_patterns_have_rows() -> None:
    """The OIDC sign-in URLs are only routed when OIDC is on; they are the provider's flow."""
    from mozilla_django_oidc import urls as oidc_urls

    names = {p.name for p in oidc_urls.urlpatterns}
    assert names == set(OPTIONAL_PATTERNS), sorted(names ^ set(OPTIONAL_PATTERNS))


def test_every_websocket_route_has_a_row() -> None:
    routes = {str(p.pattern) for p in websocket_urlpatterns}
    rows = {row.key for row in WS_TABLE}
    assert not routes - rows, f"websocket routes without a row in WS_TABLE_TEXT: {routes - rows}"
    assert not rows - routes, f"rows for websocket routes that no longer exist: {rows - routes}"


# --- the world, once per module, inside a transaction that is rolled back ----------------------


@pytest.fixture(scope="module")
def world(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[World]:
    """Built once (like ``TestCase.setUpTestData``): each test runs in a savepoint inside
    this transaction, which is rolled back at the end of the module."""
    media = tmp_path_factory.mktemp("matrix-media")
    with (
        django_db_blocker.unblock(),
        override_settings(
            MEDIA_ROOT=media,
            KB_EVENTS_TOKEN=KB_EVENTS_TOKEN,
            METRICS_TOKEN=METRICS_TOKEN,
            S3_ENABLED=False,
        ),
    ):
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            yield build_world()
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


def _client(world: World, role: str) -> tuple[Client, dict[str, str]]:
    client = Client()
    if role in SESSION_ROLES:
        client.force_login(world.users[SESSION_ROLES[role]])
    return client, world.key_headers(role)


def _cell_marks(cell: Cell, role: str) -> list[Any]:
    marks = []
    if role == "key_integration" and not INTEGRATION_ROLE_AVAILABLE:
        marks.append(pytest.mark.skip(reason=INTEGRATION_ROLE_MISSING))
    if cell.fixed_by_item is not None:
        item = cell.fixed_by_item
        marks.append(
            pytest.mark.xfail(
                strict=True,
                reason=f"issue #13 item {item}: fixed on branch {FIXED_ON.get(item, '?')}",
            )
        )
    return marks


def _cells(table: list[Row]) -> list[Any]:
    return [
        pytest.param(
            row, role, marks=_cell_marks(row.cells[role], role), id=f"{row.key}-{row.method}-{role}"
        )
        for row in table
        for role in ROLES
    ]


def classify(response: Any) -> str:
    status = response.status_code
    if status in (301, 302, 303, 307, 308):
        location = response["Location"]
        to_login = location.startswith((settings.LOGIN_URL, ADMIN_LOGIN)) and "next=" in location
        return "login" if to_login else "allow"
    if status in (401, 403, 404, 405) or status >= 500:
        return str(status)
    return "allow"  # 2xx, or 400/409/... about the input once past access control


def matches(expected: str, outcome: str) -> bool:
    if expected == "signed":
        return outcome in ("401", "403")
    if expected == "public":
        return outcome == "allow"
    return expected == outcome


def send(world: World, row: Row, role: str, **extra: Any) -> Any:
    client, headers = _client(world, role)
    pattern = PATTERNS[row.key]
    values = {**world.url_kwargs(), **KWARGS.get(row.key, lambda w: {})(world)}
    url = reverse(row.key, kwargs={k: values[k] for k in pattern.kwargs})
    key = (row.key, row.method)
    query = extra.pop("query", None) or QUERIES.get(key, lambda w: {})(world)
    body = extra.pop("body", None) or BODIES.get(key, lambda w: {})(world)
    headers.update(extra.pop("headers", {}))
    if row.method == "GET":
        return client.get(url, query, headers=headers)
    if key in FORM_ROWS:
        return client.post(url, {}, headers=headers)
    if pattern.drf_methods() is not None or row.key in JSON_PLAIN_VIEWS:
        call = getattr(client, row.method.lower())
        return call(url, json.dumps(body), content_type="application/json", headers=headers)
    return client.generic(
        row.method,
        url,
        _form(body),
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )


def _form(body: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return urlencode(body, doseq=True)


PATTERNS = {p.name: p for p in url_patterns()}


@pytest.fixture
def _no_celery_ping(monkeypatch: pytest.MonkeyPatch) -> None:
    """/health asks Celery workers to answer; none runs here (the health tests cover it)."""
    monkeypatch.setattr("support.health.check_celery", lambda: {"status": "ok", "workers": 1})


@pytest.mark.usefixtures("_no_celery_ping")
@pytest.mark.parametrize(("row", "role"), _cells(TABLE))
def test_http(world: World, db: Any, row: Row, role: str) -> None:
    cell = row.cells[role]
    response = send(world, row, role)
    outcome = classify(response)
    assert matches(cell.expected, outcome), (
        f"{row.method} {row.key} as {role}: expected {cell.expected}, got {outcome} "
        f"(HTTP {response.status_code}) {_excerpt(response)}"
    )


# --- rows whose "allow" says more ----------------------------------------------------------------

MERGE_ROWS = [ROWS[("ticket-merge", "POST")], ROWS[("api-ticket-merge", "POST")]]


@pytest.mark.parametrize(("row", "role"), _cells(MERGE_ROWS))
def test_merge_into_a_ticket_with_no_team(world: World, db: Any, row: Row, role: str) -> None:
    """The rows merge into a ticket of team T; into the customer's ticket with no team,
    T's conversation would reach every agent, a move to no team by another door: for the
    ticket's agents it is refused as that move is (400, the same reason, on both paths),
    a supervisor merges; every other cell answers as in its row."""
    from tickets import services
    from tickets.models import Ticket

    open_ticket = services.ticket_create(customer=world.customer, subject="Hi", body="Hello")
    into = open_ticket.number if row.key == "ticket-merge" else str(open_ticket.pk)
    response = send(world, row, role, body={"into": into})
    merged_into = Ticket.objects.get(pk=world.ticket.pk).merged_into_id
    expected = row.cells[role].expected
    seen = (response.status_code, merged_into, _excerpt(response))
    if expected != "allow":
        assert (matches(expected, classify(response)), merged_into) == (True, None), seen
    elif role in ("supervisor", "key_supervisor"):
        assert response.status_code in (200, 302), seen
        assert merged_into == open_ticket.pk, seen
    else:
        assert (response.status_code, merged_into) == (400, None), seen
        assert services.NO_TEAM_REFUSAL in response.content.decode(), seen


# Rows an agent of another team is "allowed" because they list or change only what it may
# see: that it is shown nothing of team T's ticket, and changes nothing of it, is checked
# here (the ticket's agent, who sees it, checks the check).
SCOPED_ROWS = [
    ("api-tickets", "GET", "agent_out"),
    ("api-tickets", "GET", "key_agent_out"),
    ("api-tickets", "GET", "key_agent_in"),
    ("inbox", "GET", "agent_out"),
    ("inbox", "GET", "agent_in"),
    ("inbox-bulk", "POST", "agent_out"),
    ("inbox-bulk", "POST", "agent_in"),
]


@pytest.mark.parametrize(("key", "method", "role"), SCOPED_ROWS)
def test_allowed_rows_show_and_change_only_visible_tickets(
    world: World, db: Any, key: str, method: str, role: str
) -> None:
    from tickets.models import Ticket

    sees = role.endswith("agent_in")
    ticket = world.ticket
    before = set(ticket.tags.values_list("name", flat=True))
    # the inbox's "all" view: its default, "mine", lists only the agent's own tickets
    query = {"view": "all"} if key == "inbox" else None
    response = send(world, ROWS[(key, method)], role, query=query)
    assert classify(response) == "allow", _excerpt(response)
    if key == "inbox-bulk":
        after = set(Ticket.objects.get(pk=ticket.pk).tags.values_list("name", flat=True))
        assert after == (before | {"matrix"} if sees else before)
        return
    if key == "inbox":
        body = response.content.decode()
        listed = ticket.number in body or ticket.subject in body
    else:
        listed = ticket.number in [t["number"] for t in response.json()["results"]]
    assert listed == sees


def _excerpt(response: Any) -> str:
    if getattr(response, "streaming", False):
        return "<streamed>"
    location = response.get("Location")
    return f"-> {location}" if location else response.content[:200].decode(errors="replace")


# --- signed rows: the right signature gets in --------------------------------------------------


def _signed_positive(world: World) -> dict[tuple[str, str], Callable[[], Any]]:
    from tickets.models import TicketStatus

    def webhook_post() -> Any:
        body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
        return Client().post(
            reverse(
                "api-channel-webhook",
                kwargs={"channel": "whatsapp", "token": world.whatsapp.webhook_token},
            ),
            body,
            content_type="application/json",
            HTTP_X_HUB_SIGNATURE_256=meta_signature(WEBHOOK_SECRET, body),
        )

    def webhook_get() -> Any:
        return Client().get(
            reverse(
                "api-channel-webhook",
                kwargs={"channel": "whatsapp", "token": world.whatsapp.webhook_token},
            ),
            {
                "hub.mode": "subscribe",
                "hub.challenge": "1158201444",
                "hub.verify_token": VERIFY_TOKEN,
            },
        )

    def webchat_messages() -> Any:
        session = session_issue(world.webchat, name="Visitor", email="v@example.com")["session"]
        return Client().get(
            reverse("api-webchat-messages", kwargs={"token": world.webchat.webhook_token}),
            headers={SESSION_HEADER: session},
        )

    def webchat_verify(name: str, body: dict[str, str]) -> Callable[[], Any]:
        # With a valid session the request reaches the verification service: 202 (code
        # sent), 409 (no email channel) or 400 (no pending code) are all past the gate.
        def call() -> Any:
            session = session_issue(world.webchat, name="Visitor", email="v@example.com")
            return Client().post(
                reverse(name, kwargs={"token": world.webchat.webhook_token}),
                json.dumps(body),
                content_type="application/json",
                headers={SESSION_HEADER: session["session"]},
            )

        return call

    def webchat_upload() -> Any:
        # A valid session gets past the gate to the file checks (here: no file, 400).
        session = session_issue(world.webchat, name="Visitor", email="v@example.com")
        return Client().post(
            reverse("api-webchat-upload", kwargs={"token": world.webchat.webhook_token}),
            {"text": "hello"},
            headers={SESSION_HEADER: session["session"]},
        )

    def feedback(method: str) -> Callable[[], Any]:
        def call() -> Any:
            world.ticket.status = TicketStatus.RESOLVED
            world.ticket.save(update_fields=["status"])
            url = reverse("context-feedback", kwargs={"token": world.feedback_token})
            client = Client()
            return client.get(url) if method == "GET" else client.post(url, {"rating": "5"})

        return call

    def kb_events() -> Any:
        return Client().post(
            reverse("api-kb-events"),
            json.dumps({"detail-type": "Object Created", "detail": {}}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {KB_EVENTS_TOKEN}",
        )

    def seed_webhook(method: str) -> Callable[[], Any]:
        # Seed 001's /api/webhooks/whatsapp: the account is found by its secret/token.
        def call() -> Any:
            url = reverse("seed-api-webhook", kwargs={"seed_channel": "whatsapp"})
            if method == "GET":
                query = {
                    "hub.mode": "subscribe",
                    "hub.challenge": "1158201444",
                    "hub.verify_token": VERIFY_TOKEN,
                }
                return Client().get(url, query)
            body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
            return Client().post(
                url,
                body,
                content_type="application/json",
                HTTP_X_HUB_SIGNATURE_256=meta_signature(WEBHOOK_SECRET, body),
            )

        return call

    return {
        ("api-channel-webhook", "POST"): webhook_post,
        ("api-channel-webhook", "GET"): webhook_get,
        ("seed-api-webhook", "POST"): seed_webhook("POST"),
        ("seed-api-webhook", "GET"): seed_webhook("GET"),
        ("api-webchat-messages", "GET"): webchat_messages,
        ("api-webchat-upload", "POST"): webchat_upload,
        ("api-webchat-verify", "POST"): webchat_verify("api-webchat-verify", {}),
        ("api-webchat-verify-confirm", "POST"): webchat_verify(
            "api-webchat-verify-confirm", {"code": "123456"}
        ),
        ("context-feedback", "GET"): feedback("GET"),
        ("context-feedback", "POST"): feedback("POST"),
        ("api-kb-events", "POST"): kb_events,
        ("metrics", "GET"): lambda: Client().get(
            reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}"
        ),
    }


# SNS messages are signed with an AWS certificate (calls/tests cover a real one).
SIGNED_POSITIVE_ELSEWHERE = {("calls-sns", "POST"): "calls/tests/test_api.py (SNS signatures)"}


def test_signed_rows_accept_a_valid_signature(world: World, db: Any) -> None:
    positives = _signed_positive(world)
    signed = {
        (row.key, row.method)
        for row in TABLE
        if all(cell.expected == "signed" for cell in row.cells.values())
    }
    assert signed == set(positives) | set(SIGNED_POSITIVE_ELSEWHERE), "signed rows without a check"
    failures = []
    for key, call in positives.items():
        sid = transaction.savepoint()
        response = call()
        transaction.savepoint_rollback(sid)
        if classify(response) != "allow":
            failures.append(f"{key}: HTTP {response.status_code} {_excerpt(response)}")
    assert not failures, "\n".join(failures)


def test_chatbot_hand_off_accepts_its_hmac(world: World, db: Any) -> None:
    """The hand-off also takes an HMAC of the body instead of a key (the bot's own secret)."""
    body = json.dumps(BODIES[("api-chatbot-handoff", "POST")](world)).encode()
    response = Client().post(
        reverse("api-chatbot-handoff"),
        body,
        content_type="application/json",
        HTTP_X_SIGNATURE_256=meta_signature(WEBHOOK_SECRET, body),
    )
    assert response.status_code == 201, response.content
    forged = Client().post(
        reverse("api-chatbot-handoff"),
        body,
        content_type="application/json",
        HTTP_X_SIGNATURE_256=meta_signature("not-the-secret", body),
    )
    assert forged.status_code == 403


# --- the admin family ---------------------------------------------------------------------------


def test_every_admin_url_requires_staff(world: World, db: Any) -> None:
    """Every URL of ``admin.site.urls`` sends non-staff (anonymous, an agent, any API key)
    to the admin sign-in; only the sign-in page itself answers them."""
    assert admin.site.name == "admin"
    patterns = admin_patterns()
    assert len(patterns) > 50, "the admin family looks empty: has admin.site.urls moved?"
    failures = []
    clients = {role: _client(world, role) for role in ("anon", "agent_in", "key_supervisor")}
    for pattern in patterns:
        url = _admin_url(pattern, world)
        for role, (client, headers) in clients.items():
            response = client.get(url, headers=headers)
            outcome = classify(response)
            if pattern.name == "admin:login":
                ok = outcome == "allow"
            elif pattern.name == "admin:logout":
                # Non-staff are sent to the admin index, which sends them to sign in.
                ok = response.status_code == 302 and response["Location"] == reverse("admin:index")
            else:
                ok = outcome == "login" and response["Location"].startswith(ADMIN_LOGIN)
            if not ok:
                status = response.status_code
                failures.append(f"{pattern.name} ({url}) as {role}: {status} {_excerpt(response)}")
    assert not failures, "\n".join(failures[:30])


def _admin_url(pattern: Pattern, world: World) -> str:
    values = {
        "object_id": str(world.customer.pk),
        "app_label": "tickets",
        "content_type_id": "1",
        "url": "nowhere/",
    }
    kwargs = {name: values.get(name, "1") for name in pattern.kwargs}
    if not pattern.name.startswith("<unnamed"):
        return reverse(pattern.name, kwargs=kwargs)
    # Unnamed: the admin's redirect to an object's change page, and its catch-all.
    if pattern.route.endswith("(?P<url>.*)$"):
        return "/admin/nowhere/"
    assert pattern.route.endswith("<path:object_id>/"), pattern.route
    return "/" + pattern.route.replace("<path:object_id>", kwargs["object_id"])


# --- websockets -----------------------------------------------------------------------------------


def _ws_connect(
    world: World,
    route: str,
    role: str,
    query: str = "",
    origin: str = "http://testserver",
    subprotocols: list[str] | None = None,
) -> tuple[bool, int | None]:
    from support.asgi import application

    path = "/" + route.replace("<str:token>", world.webchat.webhook_token)
    client, key_headers = _client(world, role)
    headers = [(b"origin", origin.encode()), (b"host", b"testserver")]
    if "sessionid" in client.cookies:
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    for name, value in key_headers.items():
        headers.append(
            (name.removeprefix("HTTP_").lower().replace("_", "-").encode(), value.encode())
        )
    scope = {
        "type": "websocket",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": headers,
        "subprotocols": subprotocols or [],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }

    async def run() -> tuple[bool, int | None]:
        communicator = BoundedCommunicator(application, scope)
        await communicator.send_input({"type": "websocket.connect"})
        answer = await communicator.receive_output(timeout=3)
        accepted = answer["type"] == "websocket.accept"
        code = None if accepted else answer.get("code")
        await communicator.send_input({"type": "websocket.disconnect", "code": code or 1000})
        # The consumer stops at once; the Redis channel layer's pending receive can take
        # seconds to wind down, so it is cancelled after a moment.
        await communicator.wait(timeout=0.3)
        return accepted, code

    return async_to_sync(run)()


@pytest.fixture
def _keep_test_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Channels closes "old" connections around each database call, which would close the
    test's open transaction (the world lives in it)."""
    monkeypatch.setattr("channels.db.close_old_connections", lambda: None)


@pytest.mark.usefixtures("_keep_test_connection")
@pytest.mark.parametrize(("row", "role"), _cells(WS_TABLE))
def test_websocket(world: World, db: Any, row: Row, role: str) -> None:
    accepted, code = _ws_connect(world, row.key, role)
    outcome = "allow" if accepted else str(code)
    expected = row.cells[role].expected
    ok = outcome in ("4401", "4403") if expected == "signed" else outcome == expected
    assert ok, f"websocket {row.key} as {role}: expected {expected}, got {outcome}"


@pytest.mark.usefixtures("_keep_test_connection")
def test_webchat_socket_opens_with_a_session(world: World, db: Any) -> None:
    session = session_issue(world.webchat, name="Visitor", email="v@example.com")["session"]
    accepted, code = _ws_connect(world, "ws/webchat/<str:token>/", "anon", f"session={session}")
    assert (accepted, code) == (True, None)


@pytest.mark.usefixtures("_keep_test_connection")
def test_the_webchat_socket_opens_from_the_site_that_embeds_the_widget(
    world: World, db: Any
) -> None:
    """The widget runs on the shop's own site: its socket (token-authenticated, no cookie
    read) opens from any origin, as its HTTP endpoints answer any origin. Staff sockets
    (cookie-authenticated) stay closed to other origins, or any page an agent visits could
    open one with their cookie."""
    session = session_issue(world.webchat, name="Visitor", email="v@example.com")["session"]
    shop = "https://shop.example"
    offered = ["webchat", "session." + session.replace(":", ".")]
    assert _ws_connect(
        world, "ws/webchat/<str:token>/", "anon", origin=shop, subprotocols=offered
    ) == (True, None)
    # without a session it is still refused, whatever the origin
    assert _ws_connect(world, "ws/webchat/<str:token>/", "anon", origin=shop) == (False, 4401)
    for route in ("ws/events/", "ws/workbench/"):
        assert _ws_connect(world, route, "supervisor") == (True, None)
        accepted, _ = _ws_connect(world, route, "supervisor", origin=shop)
        assert not accepted, route
