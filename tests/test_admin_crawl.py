"""Crawl the Django admin as its users do, with realistic data behind every page.

The world is the demo (``load_demo`` with the apps' steps, ``load_demo_calls``), the
authorization matrix's world (``tests.authz_world``: a supervisor who is only in the
Supervisors group, agents, API keys, KB objects, a reply draft, an alert) and, for the
models they leave with fewer than two rows, rows made through the project's services where
one exists (null relations and erased customers among them). It is built once per module
and rolled back at the end.

For every ModelAdmin of ``admin.site`` (one test each, per user):

- a superuser (the demo's ``admin``) GETs the changelist, its search (``?q=x``), the
  first choice of every filter it shows, its first date-hierarchy link, the add page (when
  allowed), the change pages of the first and last rows, the history and
  delete-confirmation pages of the first, follows the links read-only fields and list
  columns show (each must open for the user who sees it), and runs every action on one
  row (the delete and erase actions only to their confirmation step); every answer is 200
  (or the redirect an action answers with) and shows the model's columns and fields;
- a supervisor (the role: staff in the Supervisors group, no Django permissions) gets the
  same on the pages ``SUPERVISOR_PAGES`` names (docs/security.md) and 403 on the others;
- an agent who is staff (some sign-in setups make every person staff) gets 403 on every
  model page, an agent who is not is sent to the admin sign-in.

The superuser's changelists must cost no more queries for a full page than for one row,
a column showing a nullable relation must be joined (Django's own ``select_related()``
leaves those out), and so must a relation an inline shows (the admin joins nothing there:
a ticket's page took one query per message).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.templatetags.admin_list import date_hierarchy
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, models, transaction
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from support.auth.roles import AGENTS_GROUP, is_supervisor
from tests.authz_world import PASSWORD, World, build_world

DEMO_PASSWORD = "demo-pass-for-tests"
ADMIN_LOGIN = reverse("admin:login")

# What the supervisor role (the Supervisors group, staff, no Django permissions) may open in
# the admin (docs/security.md, "Roles"); every other model page answers it 403.
SUPERVISOR_PAGES = frozenset(
    {
        "tickets.customer",
        "tickets.channelidentity",
        "tickets.team",
        "tickets.tag",
        "tickets.ticket",
        "tickets.cannedresponse",
        "tickets.message",
        "tickets.attachment",
        "tickets.businesscalendar",
        "tickets.slapolicy",
        "tickets.slaevent",
        "tickets.contextdeadletter",
        "axes.accessattempt",
        "calls.queueteam",
        "calls.call",
        "calls.callevent",
        "calls.alertrule",
        "calls.alert",
        "calls.transcript",
        "calls.callanalytics",
        "calls.ivrjourney",
        "calls.escalation",
        "calls.agentstateevent",
        "calls.agentstatespan",
        "channels_app.inboundevent",
        "delivery.delivery",
        "delivery.circuit",
        "support.outboxevent",
        "events_out.outgoingwebhook",
        "alerts.alertrule",
        "alerts.alerttarget",
        "alerts.alert",
        "knowledge.replydraft",
        "knowledge.knowledgesource",
        "knowledge.document",
        "knowledge.ingestionjob",
        "knowledge.objectevent",
        "knowledge.suggestionfeedback",
        "routing.categoryteam",
        "routing.servicestatus",
        "routing.outage",
        "routing.routingfailure",
        "routing.routingdecision",
    }
)

# How many choices of each filter a changelist shows the crawl opens (the first ones).
FILTER_CHOICES = 1

# Actions run only to their confirmation page: running them would destroy the crawl's data.
CONFIRMATION_ONLY = {"delete_selected", "erase_personal_data"}

REGISTRY = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label_lower)
MODEL_IDS = [model._meta.label_lower for model, _ in REGISTRY]


@dataclass
class CrawlWorld:
    matrix: World
    superuser: Any
    supervisor: Any
    staff_agent: Any
    agent: Any


def _fill_gaps(matrix: World, superuser: Any) -> None:
    """One realistic row for each model the demo and the matrix world leave empty."""
    from channels_app.models import InboundEvent, SentMessageEvent
    from channels_app.services import channel_account_upsert
    from channels_app.verification import webchat_verification_request
    from events_out.models import OutgoingWebhook
    from events_out.services import outgoing_webhook_save
    from knowledge.models import ObjectEvent, SuggestionFeedback
    from routing.models import CategoryTeam, Outage, ServiceStatus
    from routing.services import routing_failure_record
    from support.delivery.models import Circuit, CircuitState
    from support.models import OidcIdentity
    from tickets import services as ticket_services
    from tickets.context import privacy
    from tickets.context.services import (
        OrderInput,
        context_dead_letter_record,
        interaction_record,
        order_upsert,
    )
    from tickets.models import ChannelIdentity, Customer

    customer, ticket = matrix.customer, matrix.ticket
    now = timezone.now()
    ChannelIdentity.objects.create(customer=customer, channel="whatsapp", external_id="15550100")
    order_upsert(
        customer=customer,
        data=OrderInput(
            number="ORD-CRAWL-1",
            status="shipped",
            total=Decimal("49.90"),
            placed_at=now - timedelta(days=3),
            items=[{"sku": "KETTLE-1", "quantity": 1}],
        ),
    )
    interaction_record(
        customer_id=customer.pk,
        source_key=f"crawl-{uuid.uuid4()}",
        channel="voice",
        kind="call",
        occurred_at=now - timedelta(days=1),
        summary="Asked about the refund",
        ticket_id=ticket.pk,
        analyse_text="Thanks, that was helpful.",
    )
    # Customer-context work that gave up: a history entry (a ticket's) and a call's (no
    # ticket: the customer only).
    context_dead_letter_record(
        kind="interaction",
        task="tickets.context.tasks.interaction_record_for_message_task",
        args=[ticket.messages.values_list("pk", flat=True).first()],
        error="RetryableError: throttled",
        ticket_id=ticket.pk,
    )
    context_dead_letter_record(
        kind="interaction",
        task="calls.tasks.call_interaction_record_task",
        args=[0],
        error="PermanentError: refused",
        customer_id=customer.pk,
    )
    # An erased customer: its row stays, emptied (null relations and blank fields).
    gone = Customer.objects.create(name="Erase Me", email="erase.me@example.com")
    ticket_services.ticket_create(customer=gone, subject="Delete my data", body="Please.")
    privacy.customer_erase(customer=gone, actor=superuser, via="admin")

    # Raw inbound deliveries: a processed one with credentials in its headers, a dead one,
    # and a sent-mail event it carried.
    email = channel_account_upsert(
        channel="email", name="crawl mail", external_id="crawl", access_token="SG.crawl-key"
    )
    for status, error in (("processed", ""), ("dead", "ValueError: bad payload " * 10)):
        event = InboundEvent.objects.create(
            channel="whatsapp",
            account=matrix.whatsapp,
            external_id=f"wamid.crawl-{status}",
            headers={"Content-Type": "application/json", "Authorization": "Bearer secret"},
            body=b'{"entry": [{"changes": []}]}',
            status=status,
            error=error,
        )
    SentMessageEvent.objects.create(
        channel="email",
        account=email,
        external_id="sg-crawl-1",
        event="bounce",
        outcome="bounced",
        inbound_event=event,
        occurred_at=now,
    )
    webchat_verification_request(
        account=matrix.webchat, visitor_id="crawl-visitor", email="visitor@example.com"
    )
    Circuit.objects.create(
        target_kind="webhook_event",
        target_key="hooks.example.com",
        state=CircuitState.OPEN,
        consecutive_failures=5,
        open_until=now + timedelta(minutes=5),
        opened_at=now,
        times_opened=1,
        last_error="HTTP 503",
        last_failure_at=now,
    )
    Circuit.objects.create(target_kind="salesforce_case", target_key="")
    for name, events in (("CRM", ["ticket.created"]), ("BI", ["ticket.created", "ticket.updated"])):
        outgoing_webhook_save(
            webhook=OutgoingWebhook(
                name=name,
                url=f"https://hooks.example.com/{name.lower()}",
                event_types=events,
                secret="whsec_crawl_secret_0123456789",
            ),
            actor=superuser,
        )
    for via, action in (("sqs", "put"), ("http", "delete")):
        ObjectEvent.objects.create(
            event_key=f"crawl-{uuid.uuid4()}",
            via=via,
            bucket="kb-bucket",
            key="faq/refunds.md",
            action=action,
        )
    SuggestionFeedback.objects.create(
        ticket=ticket,
        chunk=matrix.chunk,
        document=matrix.chunk.document,
        chunk_ref=str(matrix.chunk.pk),
        passage=matrix.chunk.text,
        helpful=True,
        user=matrix.users["agent_in"],
    )
    # Feedback whose passage was deleted since (null chunk and document).
    SuggestionFeedback.objects.create(
        ticket=ticket, chunk_ref="gone-1", helpful=False, user=matrix.users["agent_in"]
    )
    for n, name in enumerate(("agent_in", "supervisor")):
        OidcIdentity.objects.create(
            user=matrix.users[name],
            issuer="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Crawl",
            subject=f"5f1c2a9e-0000-4000-8000-00000000c4a{n}",
        )
    CategoryTeam.objects.create(category="REFUND", team=matrix.team)
    service = ServiceStatus.objects.create(
        service_id="SVC-CRAWL", name="Payments", keywords="payment,card", state="degraded"
    )
    Outage.objects.create(service=service, title="Card payments failing")
    Outage.objects.create(
        service=ServiceStatus.objects.create(service_id="SVC-CRAWL-2", name="Login"),
        title="Slow sign-in",
        is_known_issue=True,
        resolved_at=now,
    )
    CategoryTeam.objects.create(category="ACCOUNT", team=matrix.other_team)
    routing_failure_record(ticket_id=matrix.second_ticket.pk, exc=ValueError("model gone"))


def _second_rows(matrix: World, superuser: Any) -> None:
    """A second row (with its relations set differently) of every model the worlds above
    leave with one: a changelist that queries per row shows it only with two rows."""
    from alerts.models import AlertRule, AlertTarget, TargetKind
    from alerts.services import alert_raise, alert_rule_save, alert_target_save
    from calls.models import AgentStateSpan, Call, Escalation
    from calls.models import Alert as CallAlert
    from calls.models import AlertRule as CallAlertRule
    from channels_app.verification import webchat_verification_request
    from knowledge.models import Document, IngestionJob, KnowledgeSource, ReplyDraft
    from routing.services import default_router, router_model_save, routing_failure_record
    from tickets import services as ticket_services
    from tickets.context import privacy
    from tickets.context.services import OrderInput, interaction_record, order_upsert
    from tickets.models import ChannelIdentity, Customer

    now = timezone.now()
    # Alarm rules: a migration seeds some, but a transactional test elsewhere in the run
    # may have emptied the table.
    for name, enabled in (("Crawl backlog", True), ("Crawl latency", False)):
        alert_rule_save(
            rule=AlertRule(
                name=name,
                source="crawl",
                metric="support_routing_tickets_processed",
                window_seconds=300,
                comparison="gt",
                threshold=100,
                severity="warning",
                enabled=enabled,
            ),
            actor=superuser,
            changed=[],
        )
    alert_raise(fingerprint="crawl-2", title="Queue backlog", summary="", severity="warning")
    alert_target_save(
        target=AlertTarget(
            name="On-call Slack",
            kind=TargetKind.SLACK,
            severities=["critical"],
            secret="https://hooks.slack.com/services/T000/B000/crawl",
        ),
        actor=superuser,
        changed=[],
    )
    rule = CallAlertRule.objects.create(name="Long hold", kind="state_longer_than", state="Hold")
    for span in AgentStateSpan.objects.order_by("pk")[:2]:
        CallAlert.objects.create(rule=rule, span=span, username=span.username, message="Hold")
    call = Call.objects.order_by("pk")[0]
    Escalation.objects.create(call=call, kind="callback", reason="Asked for a callback")
    Escalation.objects.create(
        call=call, kind="ticket", reason="Refund", ticket=matrix.second_ticket
    )
    customer = matrix.customer
    ChannelIdentity.objects.create(customer=customer, channel="email", external_id="g@x.test")
    order_upsert(
        customer=customer,
        data=OrderInput(
            number="ORD-CRAWL-2", status="delivered", total=Decimal("5"), placed_at=now
        ),
    )
    interaction_record(
        customer_id=customer.pk,
        source_key=f"crawl-{uuid.uuid4()}",
        channel="email",
        kind="note",
        occurred_at=now,
    )
    gone = Customer.objects.create(name="Erase Me Too", email="erase.too@example.com")
    privacy.customer_erase(customer=gone, actor=None, via="command")
    photo = ticket_services.ticket_create(
        customer=customer,
        subject="Photo of the box",
        body="See attached.",
        attachments=[
            ticket_services.NewAttachment(
                filename="box.jpg",
                content=b"\xff\xd8\xff crawl",
                content_type="image/jpeg",
                kind="image",
            )
        ],
    )
    webchat_verification_request(
        account=matrix.webchat, visitor_id="crawl-visitor-2", email="other@example.com"
    )
    source = KnowledgeSource.objects.create(name="crawl-manuals", kind="s3", bucket="kb")
    Document.objects.create(
        source=source, external_id="kettle.pdf", title="Kettle manual", error="unreadable"
    )
    IngestionJob.objects.create(source=None, kind="upload", status="failed")
    ReplyDraft.objects.create(
        ticket=matrix.second_ticket,
        user=None,
        channel="email",
        provider="bedrock",
        text="The lid is covered by the warranty.",
        citations=[],
        score=0.5,
        margin=0.1,
    )
    artifact, training, router = default_router()
    router_model_save(
        router=router, name="crawl-router", training=training, activate=False, artifact=artifact
    )
    # a ticket without a decision: a routed one records none (routing_failure_record)
    routing_failure_record(ticket_id=photo.pk, exc=PermissionError("refused"))


def _login_failures() -> None:
    """Failed sign-ins: what axes records (access attempts)."""
    for username in ("agent1", "nobody"):
        response = Client().post(ADMIN_LOGIN, {"username": username, "password": "wrong-one"})
        assert response.status_code == 200, response.status_code


@pytest.fixture(scope="module")
def world(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[CrawlWorld]:
    """Built once (like ``TestCase.setUpTestData``); each test runs in a savepoint."""
    from calls.demo import load_demo_calls
    from support.celery import app
    from tickets.demo import load_demo

    app.conf.task_always_eager = True
    with (
        django_db_blocker.unblock(),
        override_settings(MEDIA_ROOT=tmp_path_factory.mktemp("crawl-media"), S3_ENABLED=False),
    ):
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            load_demo(password=DEMO_PASSWORD, progress=lambda _: None)
            load_demo_calls(progress=lambda _: None)
            matrix = build_world()
            users = get_user_model().objects
            superuser = users.get(username="admin")
            _fill_gaps(matrix, superuser)
            _second_rows(matrix, superuser)
            _login_failures()
            staff_agent = users.create_user("staff-agent", password=PASSWORD, is_staff=True)
            staff_agent.groups.add(Group.objects.get(name=AGENTS_GROUP))
            matrix.team.members.add(staff_agent)
            yield CrawlWorld(
                matrix=matrix,
                superuser=superuser,
                supervisor=matrix.users["supervisor"],
                staff_agent=staff_agent,
                agent=matrix.users["agent_in"],
            )
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


def _signed_in(user: Any, password: str) -> Client:
    """Signs in through the admin's own form, as a person does."""
    client = Client()
    response = client.post(
        ADMIN_LOGIN, {"username": user.username, "password": password, "next": "/admin/"}
    )
    assert response.status_code == 302, f"{user.username} could not sign in"
    return client


def _request(user: Any) -> Any:
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def _url(model: type[models.Model], page: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{page}", args=args)


def _one(model_admin: Any, request: Any) -> Any:
    obj = model_admin.get_queryset(request).order_by("pk").first()
    assert obj is not None, f"no {model_admin.model._meta.label} in the crawl's world"
    return obj


def _text(response: Any) -> str:
    return response.content.decode(errors="replace")


class Crawl:
    """One user's visit of one model's pages; ``problems`` lists what went wrong."""

    def __init__(self, client: Client, user: Any, model: type[models.Model], model_admin: Any):
        self.client, self.user, self.model, self.ma = client, user, model, model_admin
        self.request = _request(user)
        self.problems: list[str] = []

    def get(self, url: str, expected: int = 200) -> Any:
        response = self.client.get(url)
        if response.status_code != expected:
            where = response.get("Location", "") or _text(response)[:300]
            self.problems.append(f"GET {url}: {response.status_code}, not {expected} ({where})")
            return None
        return response

    def shows_fields(self, response: Any, names: list[str], what: str) -> None:
        html = _text(response)
        missing = [n for n in names if f"field-{n}" not in html]
        if missing:
            self.problems.append(f"{what} does not show {missing}")

    def follows_links(self, response: Any, what: str, shown: list[str] | None = None) -> None:
        """The links a read-only field shows (a ticket, a delivery, a file, a relation,
        in the form or a tabular inline) open for the user who sees them: a link is shown
        only to someone the page behind it lets in (``support.auth.admin.admin_link``)."""
        html = _text(response)
        if shown is None:
            shown = re.findall(r'<div class="readonly">(.*?)</div>', html, re.S)
            shown += re.findall(r'<td class="field-[^"]*">\s*<p>(.*?)</p>', html, re.S)
        for href in sorted({h for block in shown for h in re.findall(r'href="([^"]+)"', block)}):
            if href.startswith("/"):
                target = self.client.get(href)
                if target.status_code != 200:
                    self.problems.append(f"{what} links to {href}: {target.status_code}")

    def changelist(self, *, lookups: bool = True) -> Any:
        url = _url(self.model, "changelist")
        with CaptureQueriesContext(connection) as queries:
            response = self.get(url)
        if response is None:
            return None
        cl = response.context["cl"]
        if cl.result_count == 0:
            self.problems.append(f"{url}: no rows")
        columns = [n for n in cl.list_display if n != "action_checkbox" and isinstance(n, str)]
        self.shows_fields(response, columns, f"{url}'s rows")
        # A column's own links (a ticket, a delivery), not the row's link to its page.
        cells = re.findall(r'<td class="field-[^"]*">(.*?)</td>', _text(response), re.S)
        self.follows_links(response, f"{url}'s rows", cells)
        if not lookups:
            return cl
        self.queries_per_row(url, len(queries), len(cl.result_list))
        if self.ma.get_search_fields(self.request):
            self.get(f"{url}?q=x")
        for spec in cl.filter_specs:
            choices = [c for c in spec.choices(cl) if not c.get("selected")][:FILTER_CHOICES]
            if not choices:
                self.problems.append(f"{url}: the filter {spec.title!r} offers no choice")
            for choice in choices:
                self.filtered(url, choice["query_string"])
        hierarchy = date_hierarchy(cl) if cl.date_hierarchy else None
        if hierarchy and hierarchy["choices"] and hierarchy["choices"][0].get("link"):
            self.filtered(url, hierarchy["choices"][0]["link"])
        return cl

    def queries_per_row(self, url: str, full: int, rows: int) -> None:
        """The page costs no more queries than the same page with one row: a column that
        follows a relation or counts something is joined or annotated in the list's query,
        not asked for row by row (the demo has 200 tickets, 700 messages, 60 customers)."""
        first = _one(self.ma, self.request)
        with CaptureQueriesContext(connection) as queries:
            self.get(f"{url}?{self.model._meta.pk.name}__exact={first.pk}")
        # Filtered, the page counts the unfiltered total too: one query more, not fewer.
        if rows > 1 and full > len(queries):
            self.problems.append(
                f"{url}: {full} queries for {rows} rows, {len(queries)} for one row"
            )

    def filtered(self, url: str, query_string: str) -> None:
        response = self.get(url + query_string)
        if response is not None and "e=1" in response.request.get("QUERY_STRING", ""):
            self.problems.append(f"{url}{query_string}: the admin refused the filter")

    def object_pages(self, obj: Any) -> None:
        # The last row too: the worlds' variants (null relations, erased) come last.
        last = self.ma.get_queryset(self.request).order_by("pk").last()
        for each in (obj, last) if last.pk != obj.pk else (obj,):
            change = _url(self.model, "change", each.pk)
            response = self.get(change)
            if response is not None:
                fields = flatten_fieldsets(self.ma.get_fieldsets(self.request, each))
                self.shows_fields(response, fields, change)
                self.follows_links(response, change)
        self.get(_url(self.model, "history", obj.pk))
        delete = _url(self.model, "delete", obj.pk)
        if self.ma.has_delete_permission(self.request, obj):
            response = self.get(delete)
            # The question, or what stops the delete (protected rows, rows this user may
            # not delete).
            html = _text(response) if response is not None else ""
            if response is not None and not re.search("Are you sure|Cannot delete", html):
                self.problems.append(f"{delete}: no confirmation question")
        else:
            self.get(delete, 403)

    def add_page(self) -> None:
        add = _url(self.model, "add")
        if self.ma.has_add_permission(self.request):
            response = self.get(add)
            if response is not None:
                fields = flatten_fieldsets(self.ma.get_fieldsets(self.request))
                self.shows_fields(response, fields, add)
                self.follows_links(response, add)
        else:
            self.get(add, 403)

    def actions(self, obj: Any) -> None:
        url = _url(self.model, "changelist")
        for name in self.ma.get_actions(self.request):
            sid = transaction.savepoint()
            try:
                response = self.client.post(
                    url, {"action": name, ACTION_CHECKBOX_NAME: [obj.pk], "index": 0}
                )
            finally:
                transaction.savepoint_rollback(sid)
            expected = (200,) if name in CONFIRMATION_ONLY else (200, 302)
            if response.status_code not in expected:
                self.problems.append(f"action {name}: {response.status_code}")
            elif response.status_code == 302 and not response["Location"].startswith(url):
                self.problems.append(f"action {name}: sent to {response['Location']}")

    def everything(self, *, lookups: bool = True) -> None:
        obj = _one(self.ma, self.request)
        self.changelist(lookups=lookups)
        self.add_page()
        self.object_pages(obj)
        self.actions(obj)

    def refused(self) -> None:
        obj = self.model._default_manager.order_by("pk").first()
        self.get(_url(self.model, "changelist"), 403)
        self.get(_url(self.model, "add"), 403)
        if obj is not None:
            for page in ("change", "history", "delete"):
                self.get(_url(self.model, page, obj.pk), 403)


def test_every_registered_model_has_rows(world: CrawlWorld, db: Any) -> None:
    """The crawl opens one object of each model, and a changelist that queries per row
    shows it only with two rows or more."""
    thin = [
        f"{model._meta.label_lower}: {count}"
        for model, _ in REGISTRY
        if (count := model._default_manager.count()) < 2
    ]
    assert not thin, "\n".join(thin)


@pytest.mark.parametrize(("model", "model_admin"), REGISTRY, ids=MODEL_IDS)
def test_superuser_crawl(world: CrawlWorld, db: Any, model: Any, model_admin: Any) -> None:
    crawl = Crawl(_signed_in(world.superuser, DEMO_PASSWORD), world.superuser, model, model_admin)
    crawl.everything()
    assert not crawl.problems, "\n".join(crawl.problems)


@pytest.mark.parametrize(("model", "model_admin"), REGISTRY, ids=MODEL_IDS)
def test_supervisor_crawl(world: CrawlWorld, db: Any, model: Any, model_admin: Any) -> None:
    user = world.supervisor
    crawl = Crawl(_signed_in(user, PASSWORD), user, model, model_admin)
    if model._meta.label_lower in SUPERVISOR_PAGES:
        # Search and filters run the same code as for the superuser: not again.
        crawl.everything(lookups=False)
    else:
        crawl.refused()
    assert not crawl.problems, "\n".join(crawl.problems)


def test_the_demo_supervisor_is_the_role_and_the_superuser_a_login_of_its_own(
    world: CrawlWorld, db: Any
) -> None:
    """The demo's `supervisor` was a superuser: whoever tried the product as a supervisor
    saw API keys, channel accounts and users, which a deployment's supervisors never do."""
    demo_supervisor = get_user_model().objects.get(username="supervisor")
    assert not demo_supervisor.is_superuser
    assert is_supervisor(demo_supervisor)
    client = _signed_in(demo_supervisor, DEMO_PASSWORD)
    assert client.get(reverse("admin:tickets_ticket_changelist")).status_code == 200
    assert client.get(reverse("admin:support_apikey_changelist")).status_code == 403
    assert world.superuser.username == "admin"
    assert world.superuser.is_superuser


def test_ticket_page_does_not_query_per_message(world: CrawlWorld, db: Any) -> None:
    """The ticket's change page shows its messages inline, with their authors: a long
    conversation costs no more queries than a short one."""
    from tickets import services
    from tickets.models import Ticket

    client = _signed_in(world.superuser, DEMO_PASSWORD)
    customer, agent = world.matrix.customer, world.matrix.users["agent_in"]
    ticket = services.ticket_create(customer=customer, subject="Where is it?", body="Hello?")
    url = _url(Ticket, "change", ticket.pk)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    queries()  # the first request also loads the session and per-process caches
    short = queries()
    for n in range(3):
        services.message_add(
            ticket=ticket,
            body=f"Still waiting ({n})",
            direction="inbound",
            author_customer=customer,
        )
        services.message_add(ticket=ticket, body=f"On its way ({n})", author_user=agent)
    assert queries() == short


def _nullable_columns_not_joined(model_admin: Any, request: Any) -> list[str]:
    """Columns showing a nullable foreign key that the changelist's query does not join:
    Django's automatic ``select_related()`` follows only non-null keys, so each row with a
    value costs a query."""
    joined = model_admin.get_list_select_related(request)
    names = set(joined) if isinstance(joined, list | tuple) else set()
    selected = model_admin.get_queryset(request).query.select_related
    if isinstance(selected, dict):
        names |= set(selected)
    opts = model_admin.model._meta
    missing = []
    for name in model_admin.get_list_display(request):
        field = next((f for f in opts.get_fields() if f.name == name), None)
        if field is None or not (field.many_to_one or field.one_to_one) or field.auto_created:
            continue
        if field.null and name not in names:
            missing.append(f"{opts.label_lower}.{name}")
    return missing


def test_nullable_relation_columns_are_joined(world: CrawlWorld, db: Any) -> None:
    request = _request(world.superuser)
    missing = [m for _, ma in REGISTRY for m in _nullable_columns_not_joined(ma, request)]
    assert not missing, "\n".join(missing)


def _inline_relations_not_joined(model_admin: Any, request: Any) -> list[str]:
    """Read-only relations an inline shows that its query does not join: an inline's
    queryset is not ``select_related`` by the admin at all, so each row costs a query."""
    missing = []
    for inline in model_admin.get_inline_instances(request):
        opts = inline.model._meta
        selected = inline.get_queryset(request).query.select_related
        joined = set(selected) if isinstance(selected, dict) else set()
        for name in inline.get_readonly_fields(request):
            field = next((f for f in opts.get_fields() if f.name == name), None)
            if field is None or not (field.many_to_one or field.one_to_one):
                continue
            if not field.auto_created and name not in joined:
                missing.append(f"{type(inline).__name__}.{name}")
    return missing


def test_inline_relations_are_joined(world: CrawlWorld, db: Any) -> None:
    request = _request(world.superuser)
    missing = {m for _, ma in REGISTRY for m in _inline_relations_not_joined(ma, request)}
    assert not missing, "\n".join(sorted(missing))
