"""A small world for access-control tests: one team's ticket and everything that hangs off
it, the people who may or may not see it, and their API keys.

Used by the authorization matrix (``tests/test_authorization_matrix.py``) and the API fuzz
run (``tests/api_fuzz.py``). Everything is created through the ordinary models and
services; nothing here is committed (callers wrap it in a transaction they roll back).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from support import models as support_models
from support.auth.roles import AGENTS_GROUP, SUPERVISORS_GROUP
from support.services import api_key_create

# The roles every endpoint is tried with, in the matrix's column order.
ROLES = (
    "anon",  # nobody signed in, no key
    "agent_out",  # an agent signed in, member of another team (not the ticket's)
    "agent_in",  # an agent signed in, member of the ticket's team
    "supervisor",  # a supervisor signed in (staff, not superuser)
    "key_agent_out",  # the API key of agent_out
    "key_agent_in",  # the API key of agent_in
    "key_supervisor",  # the API key of the supervisor
    "key_integration",  # an integration-role API key (calls events only)
)
SESSION_ROLES = {"agent_out": "agent_out", "agent_in": "agent_in", "supervisor": "supervisor"}
KEY_ROLES = ("key_agent_out", "key_agent_in", "key_supervisor", "key_integration")

# The integration role lands with issue #13 item 8 (support.models.ApiKeyRole and
# ApiKey.role); until then this branch cannot make an integration key.
INTEGRATION_ROLE_AVAILABLE = hasattr(support_models, "ApiKeyRole")
INTEGRATION_ROLE_MISSING = (
    "support.models.ApiKeyRole is not on this branch yet (issue #13 item 8): the "
    "integration-key column switches on when the role exists"
)

PASSWORD = "pw-for-tests-1"
WEBHOOK_SECRET = "matrix-app-secret"
VERIFY_TOKEN = "matrix-verify-token"
KB_EVENTS_TOKEN = "matrix-kb-events-token"
# The URL kwargs the world has values for (see World.url_kwargs).
URL_KWARG_NAMES = frozenset(
    {"ticket_id", "ref", "customer_id", "attachment_id", "canned_id", "job_id", "chunk_id"}
    | {"draft_id"}
    | {"hash", "channel", "token"}
    | {"alert_id", "agent_alert_id"}
)


@dataclass
class World:
    users: dict[str, Any]
    keys: dict[str, str | None]  # role -> raw API key (None: cannot be made here)
    team: Any
    other_team: Any
    customer: Any
    ticket: Any
    second_ticket: Any
    attachment: Any
    canned: Any
    decision: Any
    job: Any
    chunk: Any
    draft: Any
    call: Any
    whatsapp: Any
    webchat: Any
    chatbot: Any
    feedback_token: str
    extra: dict[str, Any] = field(default_factory=dict)

    def url_kwargs(self) -> dict[str, Any]:
        """Values for the URL kwargs of every pattern, by kwarg name."""
        return {
            "ticket_id": self.ticket.pk,
            "ref": self.ticket.number,
            "customer_id": self.customer.pk,
            "attachment_id": self.attachment.pk,
            "canned_id": self.canned.pk,
            "job_id": self.job.pk,
            "chunk_id": self.chunk.pk,
            "draft_id": self.draft.pk,
            "hash": self.call.hash,
            "channel": "whatsapp",
            "token": self.whatsapp.webhook_token,
            **({"alert_id": self.extra["alert"].pk} if "alert" in self.extra else {}),
            **(
                {"agent_alert_id": self.extra["agent_alert"].pk}
                if "agent_alert" in self.extra
                else {}
            ),
        }

    def key_headers(self, role: str) -> dict[str, str]:
        raw = self.keys.get(role)
        return {"Authorization": f"Api-Key {raw}"} if raw else {}


def _user(username: str, group: str | None, **extra: Any) -> Any:
    user = get_user_model().objects.create_user(
        username=username, password=PASSWORD, email=f"{username}@example.com", **extra
    )
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def integration_key_create(*, user: Any, name: str = "connect-integration") -> str | None:
    """An integration-role key, or None while the role does not exist on this branch."""
    if not INTEGRATION_ROLE_AVAILABLE:
        return None
    key, raw = api_key_create(name=name, user=user, rate_limit_per_minute=10_000_000)
    support_models.ApiKey.objects.filter(pk=key.pk).update(role="integration")
    return raw


def build_world(*, key_rate_limit: int = 10_000_000) -> World:
    """Create the world (call inside a transaction; MEDIA_ROOT should be a temp folder)."""
    from calls.models import Call, CallAnalytics
    from channels_app.services import channel_account_upsert
    from knowledge.models import Chunk, Document, IngestionJob, KnowledgeSource, ReplyDraft
    from routing.testing import routing_decision_create
    from tickets import services
    from tickets.context.services import feedback_token_make
    from tickets.models import Attachment, CannedResponse, Customer, Team

    team = Team.objects.create(name="Matrix Team T", slug="matrix-t")
    other_team = Team.objects.create(name="Matrix Team U", slug="matrix-u")
    users = {
        "agent_out": _user("matrix-agent-out", AGENTS_GROUP),
        "agent_in": _user("matrix-agent-in", AGENTS_GROUP),
        "supervisor": _user("matrix-supervisor", SUPERVISORS_GROUP, is_staff=True),
    }
    other_team.members.add(users["agent_out"])
    team.members.add(users["agent_in"])
    keys: dict[str, str | None] = {}
    for role, owner in (
        ("key_agent_out", "agent_out"),
        ("key_agent_in", "agent_in"),
        ("key_supervisor", "supervisor"),
    ):
        _, keys[role] = api_key_create(
            name=f"matrix {role}", user=users[owner], rate_limit_per_minute=key_rate_limit
        )
    # Owned by a supervisor on purpose: the key's role, not its user's groups, must decide
    # what it may do (refused everywhere but the integration endpoints: call events, the
    # intake of orders and interactions).
    keys["key_integration"] = integration_key_create(user=users["supervisor"])

    # The customer's only tickets are in team T: agents of other teams may not see them.
    customer = Customer.objects.create(
        name="Grace Matrix", email="grace.matrix@example.com", phone="+15550100"
    )
    ticket = services.ticket_create(
        customer=customer,
        subject="Refund for a broken kettle",
        body="The kettle arrived broken, please refund.",
        team=team,
        attachments=[
            services.NewAttachment(
                filename="receipt.pdf",
                content=b"%PDF-1.4 matrix",
                content_type="application/pdf",
                kind="document",
            )
        ],
    )
    second_ticket = services.ticket_create(
        customer=customer, subject="Also: the lid", body="The lid is cracked.", team=team
    )
    attachment = Attachment.objects.get(message__ticket=ticket)
    canned = CannedResponse.objects.create(
        title="Matrix thanks", shortcut="matrix-thanks", body="Thanks {{ customer.name }}"
    )
    decision = routing_decision_create(ticket, team=team, category="REFUND", intent="refund")
    source = KnowledgeSource.objects.create(name="matrix-faq")
    document = Document.objects.create(source=source, external_id="refunds.md", title="Refunds")
    chunk = Chunk.objects.create(document=document, source=source, text="Refunds take 5 days.")
    job = IngestionJob.objects.create(source=source)
    # A reply draft the ticket's agent asked for (supervisors may discard it too).
    draft = ReplyDraft.objects.create(
        ticket=ticket,
        user=users["agent_in"],
        channel=ticket.channel,
        provider="local",
        text="Refunds take 5 days.",
        citations=[{"external_id": "refunds.md", "title": "Refunds", "url": ""}],
        score=0.8,
        margin=0.2,
    )
    # A call on a queue no team is mapped to: supervisors only (issue #13 item 1).
    call = Call.objects.create(
        contact_id=f"matrix-{uuid.uuid4()}",
        queue_name="Unmapped queue",
        channel="VOICE",
        initiated_at=timezone.now(),
        customer=customer,
    )
    CallAnalytics.objects.create(call=call, call_summary="Kettle refund", produced_by="local")
    whatsapp = channel_account_upsert(
        channel="whatsapp",
        name="matrix",
        external_id="100000000000001",
        app_secret=WEBHOOK_SECRET,
        verify_token=VERIFY_TOKEN,
        access_token="matrix-access-token",
    )
    webchat = channel_account_upsert(channel="webchat", name="matrix")
    chatbot = channel_account_upsert(channel="chatbot", name="matrix", app_secret=WEBHOOK_SECRET)
    return World(
        users=users,
        keys=keys,
        team=team,
        other_team=other_team,
        customer=customer,
        ticket=ticket,
        second_ticket=second_ticket,
        attachment=attachment,
        canned=canned,
        decision=decision,
        job=job,
        chunk=chunk,
        draft=draft,
        call=call,
        whatsapp=whatsapp,
        webchat=webchat,
        chatbot=chatbot,
        feedback_token=feedback_token_make(ticket),
        extra={"alert": _alert(), "agent_alert": _agent_alert()},
    )


def _agent_alert() -> Any:
    """An agent-state alert (the board's Acknowledge button: supervisors only)."""
    from django.utils import timezone

    from calls.models import AgentStateSpan, AlertKind, AlertRule
    from calls.services import alert_raise

    rule = AlertRule.objects.create(
        name="Matrix ACW", kind=AlertKind.STATE_LONGER_THAN, state="AfterContactWork"
    )
    span = AgentStateSpan.objects.create(
        agent_arn="arn:aws:connect:agent/matrix",
        username="matrix-agent",
        state="AfterContactWork",
        started_at=timezone.now(),
    )
    return alert_raise(rule=rule, span=span, seconds=600)


def _alert() -> Any:
    """A firing alert (alerts pages: supervisors only)."""
    from alerts.services import alert_raise

    return alert_raise(
        fingerprint="matrix", title="Matrix alarm", summary="", severity="critical"
    ).alert
