"""Admin pages follow the project's visibility rule (docs/security.md "The admin"): a staff
agent given Django permissions to view tickets, customers, calls, messages, files and the
records about them lists, searches, opens and looks up only those of its team
(``support.auth.admin.VisibleRowsAdminMixin``); supervisors and superusers see all.

Before, such an agent listed and opened every team's tickets (and customers, calls,
files...) in the admin, whatever the workbench let it see.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.db import models
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from support.auth.admin import admin_rows_checked
from support.auth.roles import AGENTS_GROUP

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"


@pytest.fixture
def world(db: Any) -> dict[str, Any]:
    """Two teams, each with a customer, a ticket and a call of a queue mapped to it."""
    from calls.models import Call, QueueTeam
    from tickets import services
    from tickets.models import Customer, Team

    world: dict[str, Any] = {}
    for side, name in (("ours", "Ada Ours"), ("theirs", "Quentin Theirs")):
        team = Team.objects.create(name=f"Team {side}", slug=side)
        customer = Customer.objects.create(name=name, email=f"{side}@example.com")
        ticket = services.ticket_create(
            customer=customer, subject=f"Subject of {side}", body="Hello", team=team
        )
        QueueTeam.objects.create(queue_name=f"Queue {side}", team=team)
        call = Call.objects.create(
            contact_id=f"contact-{side}",
            queue_name=f"Queue {side}",
            channel="VOICE",
            initiated_at=timezone.now(),
            customer=customer,
        )
        world[side] = {"team": team, "customer": customer, "ticket": ticket, "call": call}
    return world


def _make(label: str, side: dict[str, Any], user: Any) -> models.Model:
    """One ``label`` object about this side's ticket, customer or call."""
    from alerts.models import Alert
    from calls.models import CallEvent, Escalation, Transcript
    from knowledge.models import SuggestionFeedback
    from routing.models import RoutingFailure
    from routing.testing import routing_decision_create
    from support.delivery.models import Delivery
    from support.models import AuditLog, OutboxEvent
    from tickets.context.models import CsatFeedback, Interaction, Order
    from tickets.models import Attachment, CannedResponse, ChannelIdentity, SlaEvent, Tag

    ticket, customer, call = side["ticket"], side["customer"], side["call"]
    now = timezone.now()

    def tag() -> Tag:
        # named after what the ticket is about: the name is what must not leak
        made = Tag.objects.create(name=f"about-{ticket.subject.split()[-1]}")
        ticket.tags.add(made)
        return made

    makers: dict[str, Callable[[], models.Model]] = {
        "tickets.ticket": lambda: ticket,
        "tickets.customer": lambda: customer,
        "tickets.message": lambda: ticket.messages.order_by("pk").first(),
        "tickets.attachment": lambda: Attachment.objects.create(
            message=ticket.messages.order_by("pk").first(), filename=f"{ticket.subject}.pdf"
        ),
        "tickets.channelidentity": lambda: ChannelIdentity.objects.create(
            customer=customer, channel="whatsapp", external_id=f"wa-{customer.pk}"
        ),
        "tickets.slaevent": lambda: SlaEvent.objects.create(
            ticket=ticket, target="first_response", kind="breached", due_at=now
        ),
        "tickets.interaction": lambda: Interaction.objects.create(
            customer=customer,
            ticket=ticket,
            source_key=f"src-{ticket.pk}",
            channel="whatsapp",
            kind="message",
            occurred_at=now,
        ),
        "tickets.csatfeedback": lambda: CsatFeedback.objects.create(
            ticket=ticket, customer=customer, rating=2
        ),
        "tickets.order": lambda: Order.objects.create(
            customer=customer,
            number=f"ORD-{customer.pk}",
            status="paid",
            total=Decimal("10.00"),
            placed_at=now,
        ),
        "tickets.tag": tag,
        "calls.call": lambda: call,
        "calls.transcript": lambda: Transcript.objects.create(call=call, source="contact_lens"),
        "calls.callevent": lambda: CallEvent.objects.create(
            source="ctr", external_id=f"ctr-{call.pk}", contact_id=call.contact_id
        ),
        "alerts.alert": lambda: Alert.objects.create(
            fingerprint=f"sla:{ticket.pk}:first_response",
            title=f"SLA breached: {ticket.subject}",
            severity="critical",
            subject_type="ticket",
            subject_id=str(ticket.pk),
        ),
        "calls.escalation": lambda: Escalation.objects.create(
            call=call, kind="ivr_failure", reason="stuck", ticket=ticket
        ),
        "routing.routingdecision": lambda: routing_decision_create(
            ticket, category="REFUND", intent="refund", correlation_id=ticket.correlation_id
        ),
        "routing.routingfailure": lambda: RoutingFailure.objects.create(ticket=ticket),
        "knowledge.suggestionfeedback": lambda: SuggestionFeedback.objects.create(
            ticket=ticket, chunk_ref=f"chunk-{ticket.pk}", helpful=True, user=user
        ),
        "delivery.delivery": lambda: Delivery.objects.create(
            target_kind="channel_reply",
            idempotency_key=f"reply-{ticket.pk}",
            subject_type="ticket",
            subject_id=str(ticket.pk),
        ),
        "support.outboxevent": lambda: OutboxEvent.objects.create(
            event_type="ticket.test", aggregate_type="ticket", aggregate_id=str(ticket.pk)
        ),
        "support.auditlog": lambda: AuditLog.objects.create(
            action="customer.export", object_type="customer", object_id=str(customer.pk)
        ),
        # a team's replies tell what the team handles
        "tickets.cannedresponse": lambda: CannedResponse.objects.create(
            title=f"Reply of {ticket.subject}",
            shortcut=f"reply-{side['team'].slug}",
            body="Hello",
            team=side["team"],
        ),
    }
    return makers[label]()


LABELS = [
    "tickets.ticket",
    "tickets.customer",
    "tickets.message",
    "tickets.attachment",
    "tickets.channelidentity",
    "tickets.slaevent",
    "tickets.interaction",
    "tickets.csatfeedback",
    "tickets.order",
    "tickets.tag",
    "calls.call",
    "calls.transcript",
    "calls.callevent",
    "calls.escalation",
    "routing.routingdecision",
    "routing.routingfailure",
    "knowledge.suggestionfeedback",
    "delivery.delivery",
    "support.outboxevent",
    "support.auditlog",
    "alerts.alert",
    "tickets.cannedresponse",
]


def _staff_agent(django_user_model: Any, team: Any, *codenames: str) -> Any:
    user = django_user_model.objects.create_user("staff-agent", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=AGENTS_GROUP)[0])
    team.members.add(user)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def _browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _url(obj: models.Model, page: str) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{page}", args=[obj.pk])


def _listed(client: Client, obj: models.Model, query: str = "") -> bool:
    opts = obj._meta
    response = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist") + query)
    assert response.status_code == 200
    return _url(obj, "change") in response.content.decode()


@pytest.mark.parametrize("label", LABELS)
def test_a_staff_agent_lists_and_opens_only_its_teams_objects(
    django_user_model: Any, world: dict[str, Any], label: str
) -> None:
    model_name = label.split(".")[1]
    codenames = [f"view_{model_name}", f"change_{model_name}", f"delete_{model_name}"]
    viewer = _staff_agent(django_user_model, world["ours"]["team"], *codenames)
    ours = _make(label, world["ours"], viewer)
    theirs = _make(label, world["theirs"], viewer)
    browser = _browser(viewer)

    assert _listed(browser, ours)
    assert not _listed(browser, theirs)
    assert browser.get(_url(ours, "change")).status_code == 200
    pages = ["change", "history", "delete"]
    if label == "tickets.channelidentity":
        # deleting an identity is a supervisor's whatever the Django permissions (as
        # changing one is): refused before the row is looked up, for any identity
        pages.remove("delete")
        for obj in (ours, theirs):
            assert browser.get(_url(obj, "delete")).status_code == 403
    for page in pages:
        response = browser.get(_url(theirs, page), follow=True)
        assert response.redirect_chain == [("/admin/", 302)], (page, response.redirect_chain)
        assert "doesn’t exist" in response.content.decode(), page
    # Nor may it be deleted (or acted on) through the list's actions.
    opts = theirs._meta
    browser.post(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        {"action": "delete_selected", "_selected_action": [theirs.pk], "post": "yes"},
    )
    assert type(theirs)._default_manager.filter(pk=theirs.pk).exists()


@pytest.mark.parametrize("label", LABELS)
def test_a_supervisor_and_a_superuser_see_every_team(
    supervisor: Any, django_user_model: Any, world: dict[str, Any], label: str
) -> None:
    root = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    ours = _make(label, world["ours"], root)
    theirs = _make(label, world["theirs"], root)
    viewers = [_browser(root)]
    if admin.site._registry[type(theirs)].has_view_permission(_request(supervisor)):
        viewers.append(_browser(supervisor))
    for browser in viewers:
        assert _listed(browser, ours)
        assert _listed(browser, theirs)
        assert browser.get(_url(theirs, "change")).status_code == 200


def _request(user: Any) -> Any:
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_a_staff_agent_in_no_team_sees_only_tickets_of_no_team(
    django_user_model: Any, world: dict[str, Any], customer: Any
) -> None:
    """The workbench's rule as it is: unassigned-team tickets are every agent's."""
    from tickets import services
    from tickets.models import Team

    loose = services.ticket_create(customer=customer, subject="No team yet", body="Hi")
    viewer = _staff_agent(django_user_model, Team.objects.create(name="Empty"), "view_ticket")
    browser = _browser(viewer)
    assert _listed(browser, loose)
    assert not _listed(browser, world["ours"]["ticket"])


def test_search_and_lookups_do_not_reveal_other_teams_objects(
    django_user_model: Any, world: dict[str, Any]
) -> None:
    """Searching by another team's ticket subject finds nothing; the raw-id lookup (the
    related page as a popup) and the autocomplete view offer only the agent's own."""
    viewer = _staff_agent(
        django_user_model, world["ours"]["team"], "view_ticket", "view_customer", "view_call"
    )
    browser = _browser(viewer)
    theirs, ours = world["theirs"]["ticket"], world["ours"]["ticket"]
    assert not _listed(browser, theirs, "?q=Subject+of+theirs")
    assert _listed(browser, ours, "?q=Subject+of+ours")
    popup = browser.get("/admin/tickets/customer/?_to_field=id&_popup=1").content.decode()
    assert "Quentin Theirs" not in popup
    assert "Ada Ours" in popup
    # Django's autocomplete view answers from the related admin's own rows and search.
    for term, found in (("Quentin", False), ("Ada", True)):
        response = browser.get(
            "/admin/autocomplete/",
            {
                "term": term,
                "app_label": "calls",
                "model_name": "call",
                "field_name": "customer",
            },
        )
        assert response.status_code == 200
        assert (term in response.content.decode()) is found, term


def test_names_on_forms_and_the_delete_summary_follow_the_rule(
    django_user_model: Any, world: dict[str, Any]
) -> None:
    """The raw-id box of an editable form names the chosen object only for those who may
    see it (a ticket merged into another team's); deleting a customer whose tickets the
    agent may not all see names none of the hidden ones and is refused (Django listed
    them, named and linked, as what blocks the deletion)."""
    from tickets import services
    from tickets.models import Ticket

    ours, theirs = world["ours"], world["theirs"]
    # Their customer also wrote to our team: the agent sees that customer.
    shared = services.ticket_create(
        customer=theirs["customer"], subject="Asked us too", body="Hi", team=ours["team"]
    )
    Ticket.objects.filter(pk=ours["ticket"].pk).update(merged_into=theirs["ticket"])
    viewer = _staff_agent(
        django_user_model,
        ours["team"],
        "view_ticket",
        "change_ticket",
        "view_customer",
        "delete_customer",
        "delete_ticket",
        "delete_message",
    )
    browser = _browser(viewer)
    page = browser.get(_url(ours["ticket"], "change")).content.decode()
    assert "Subject of theirs" not in page
    assert "(a ticket you cannot see)" in page

    summary = browser.get(_url(theirs["customer"], "delete")).content.decode()
    assert "Cannot delete customer" in summary
    assert "Subject of theirs" not in summary
    assert _url(theirs["ticket"], "change") not in summary
    browser.post(_url(theirs["customer"], "delete"), {"post": "yes"})
    assert Ticket.objects.filter(pk=theirs["ticket"].pk).exists()
    assert shared.pk


def _relations(model: type[models.Model], ruled: set[Any]) -> list[Any]:
    """The model's foreign keys and many-to-many fields to objects under a rule."""
    return [
        f
        for f in model._meta.get_fields()
        if f.concrete and f.is_relation and f.related_model in ruled  # type: ignore[union-attr]
    ]


def test_every_admin_of_objects_under_the_rule_applies_it() -> None:
    """A new admin page (or inline) of tickets, customers, calls, messages, files or a
    record about one lists them only as the rule allows: every registered admin whose
    model is, or points at, one of them uses ``VisibleRowsAdminMixin`` with that relation
    in ``visible_through``; an inline, unless what it points at is its page's object."""
    from support.auth.admin import _VISIBLE_ROWS

    ruled = set(_VISIBLE_ROWS)
    exempt = {
        "calls.Call.customer",  # a call is its queue's; its caller is named as the rule says
        "knowledge.ReplyDraft.sent_message",  # a message of the draft's own ticket
        # A ticket's messages are the ticket's; the author, read-only, is named by
        # admin_link (a message moved by a merge may name a customer the agent may not see).
        "tickets.Message.author_customer",
    }
    missing = []

    def check(model_admin: Any, model: type[models.Model], relations: list[Any]) -> None:
        relations = [f for f in relations if f"{model._meta.label}.{f.name}" not in exempt]
        if not relations:
            return
        if not admin_rows_checked(model_admin):
            missing.append(f"{type(model_admin).__name__} ({model._meta.label})")
            return
        through = set(getattr(model_admin, "visible_through", ()))
        missing.extend(
            f"{model._meta.label}.{f.name}"
            for f in relations
            if f.name not in through and "" not in through
        )

    for model, model_admin in admin.site._registry.items():
        if model in ruled and not admin_rows_checked(model_admin):
            missing.append(f"{type(model_admin).__name__} ({model._meta.label})")
        check(model_admin, model, _relations(model, ruled))
        for inline_class in model_admin.inlines:
            inline = inline_class(model, admin.site)
            # Rows of the page's own object (a ticket's messages) are that object's.
            others = [f for f in _relations(inline.model, ruled) if f.related_model is not model]
            check(inline, inline.model, others)
    assert not missing


def test_a_form_keeps_the_hidden_value_it_holds_and_refuses_to_choose_one(
    django_user_model: Any, world: dict[str, Any]
) -> None:
    """The choices of a relation to a ticket or customer are those the agent may see, so
    it cannot point a row at another team's (an identity at their customer, a ticket
    merged into theirs); the value a row already holds stays valid when saved."""
    from tickets.models import ChannelIdentity, Ticket

    ours, theirs = world["ours"], world["theirs"]
    viewer = _staff_agent(
        django_user_model, ours["team"], "view_channelidentity", "change_channelidentity"
    )
    identity = ChannelIdentity.objects.create(
        customer=ours["customer"], channel="whatsapp", external_id="wa-ours"
    )
    browser = _browser(viewer)
    form = {"customer": theirs["customer"].pk, "channel": "whatsapp", "external_id": "wa-ours"}
    response = browser.post(_url(identity, "change"), form)
    assert response.status_code == 200  # the form again, with the error
    identity.refresh_from_db()
    assert identity.customer_id == ours["customer"].pk

    Ticket.objects.filter(pk=ours["ticket"].pk).update(merged_into=theirs["ticket"])
    editor = django_user_model.objects.create_user("editor", password=PASSWORD, is_staff=True)
    editor.groups.add(Group.objects.get(name=AGENTS_GROUP))
    ours["team"].members.add(editor)
    editor.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_ticket", "change_ticket"])
    )
    ticket = Ticket.objects.get(pk=ours["ticket"].pk)
    response = _browser(editor).post(
        _url(ticket, "change"),
        {
            "customer": ticket.customer_id,
            "subject": "Renamed by our agent",
            "status": ticket.status,
            "priority": ticket.priority,
            "team": ticket.team_id,
            "channel": ticket.channel,
            "merged_into": theirs["ticket"].pk,
            "messages-TOTAL_FORMS": "0",
            "messages-INITIAL_FORMS": "0",
            "routing_decisions-TOTAL_FORMS": "0",
            "routing_decisions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    ticket.refresh_from_db()
    assert ticket.subject == "Renamed by our agent"
    assert ticket.merged_into_id == theirs["ticket"].pk


def test_raw_inbound_deliveries_are_for_supervisors_only(
    django_user_model: Any, world: dict[str, Any], supervisor: Any
) -> None:
    """A raw delivery is a customer's message as received, tied to no ticket: a staff agent
    given the Django permission to view them saw every team's customers' messages."""
    from channels_app.models import ChannelAccount, InboundEvent

    account = ChannelAccount.objects.create(channel="webchat", name="Chat", external_id="chat")
    event = InboundEvent.objects.create(
        channel="webchat", account=account, external_id="raw-1", body=b'{"text": "Hi"}'
    )
    viewer = _staff_agent(django_user_model, world["ours"]["team"], "view_inboundevent")
    assert not _listed(_browser(viewer), event)
    assert _browser(viewer).get(_url(event, "change")).status_code == 302
    assert _listed(_browser(supervisor), event)


def test_a_web_chat_verification_naming_no_customer_is_for_supervisors(
    django_user_model: Any, world: dict[str, Any]
) -> None:
    """Before it names a customer a verification is an address a visitor typed, tied to
    no ticket: a staff agent given the permission to view them saw every visitor's."""
    from datetime import timedelta

    from channels_app.models import ChannelAccount, WebchatVerification

    account = ChannelAccount.objects.create(channel="webchat", name="Chat", external_id="chat")
    expires = timezone.now() + timedelta(minutes=10)
    unlinked, ours, theirs = (
        WebchatVerification.objects.create(
            account=account,
            visitor_id=f"visitor-{n}",
            email=f"v{n}@example.com",
            code_salt="s",
            expires_at=expires,
            customer=customer,
        )
        for n, customer in enumerate((None, world["ours"]["customer"], world["theirs"]["customer"]))
    )
    viewer = _browser(
        _staff_agent(django_user_model, world["ours"]["team"], "view_webchatverification")
    )
    assert _listed(viewer, ours)
    assert not _listed(viewer, theirs)
    assert not _listed(viewer, unlinked)
    assert viewer.get(_url(unlinked, "change")).status_code == 302
    root = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    assert all(_listed(_browser(root), row) for row in (unlinked, ours, theirs))


def test_deliveries_and_events_about_alerts_and_visitors_codes_are_for_supervisors(
    django_user_model: Any, world: dict[str, Any], supervisor: Any
) -> None:
    """A delivery or an outbox event names its subject by type and id; only tickets and
    calls were placed by the rule, so a staff agent given the permission to view them saw
    every alert's notification and every web chat visitor's code delivery (the address
    the visitor typed, before it names any customer). Rows about a ticket still follow the
    ticket; rows of a type no rule places are for supervisors."""
    from support.delivery.models import Delivery
    from support.models import OutboxEvent

    ticket = world["ours"]["ticket"]
    ours = Delivery.objects.create(
        target_kind="channel_reply",
        idempotency_key="reply-ours",
        subject_type="ticket",
        subject_id=str(ticket.pk),
    )
    code = Delivery.objects.create(
        target_kind="webchat_verification",
        idempotency_key="code-1",
        subject_type="webchat_verification",
        subject_id="1",
        payload={"email": "typed@example.com"},
    )
    alert = Delivery.objects.create(
        target_kind="alert_target", idempotency_key="alert-1", subject_type="alert", subject_id="1"
    )
    event = OutboxEvent.objects.create(
        event_type="alert.changed", aggregate_type="alert", aggregate_id="1"
    )
    viewer = _browser(
        _staff_agent(django_user_model, world["ours"]["team"], "view_delivery", "view_outboxevent")
    )
    assert _listed(viewer, ours)
    for row in (code, alert, event):
        assert not _listed(viewer, row)
        assert viewer.get(_url(row, "change")).status_code == 302
    assert all(_listed(_browser(supervisor), row) for row in (ours, code, alert))
    root = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    assert all(_listed(_browser(root), row) for row in (ours, code, alert, event))


def test_tag_names_of_other_teams_tickets_are_not_offered(
    django_user_model: Any, supervisor: Any, world: dict[str, Any]
) -> None:
    """The ticket list's tag filter and a ticket form's tag choices (its autocomplete, since
    tags are too many for a select) name only the tags of tickets the agent may see, and
    tags on no ticket (before: every tag, as the inbox's filter did before the 2026-12-06
    review); a supervisor's and a superuser's list offer every tag."""
    from tickets.models import Tag

    ours = _make("tickets.tag", world["ours"], None)
    theirs = _make("tickets.tag", world["theirs"], None)
    unused = Tag.objects.create(name="just-created")
    assert isinstance(ours, Tag)
    assert isinstance(theirs, Tag)
    viewer = _staff_agent(
        django_user_model, world["ours"]["team"], "view_ticket", "change_ticket", "view_tag"
    )
    browser = _browser(viewer)
    listing = browser.get(reverse("admin:tickets_ticket_changelist")).content.decode()
    assert ours.name in listing
    assert theirs.name not in listing
    form = browser.get(_url(world["ours"]["ticket"], "change")).content.decode()
    assert f">{ours.name}<" in form  # the ticket's own tag, chosen
    assert theirs.name not in form
    lookup = {"app_label": "tickets", "model_name": "ticket", "field_name": "tags", "term": ""}
    answer = browser.get(reverse("admin:autocomplete"), lookup)
    offered = {row["text"] for row in answer.json()["results"]}
    assert ours.name in offered
    assert unused.name in offered  # a new tag can be put on a ticket
    assert theirs.name not in offered
    root = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    for user in (supervisor, root):
        page = _browser(user).get(reverse("admin:tickets_ticket_changelist"))
        listing = page.content.decode()
        assert ours.name in listing
        assert theirs.name in listing
        assert unused.name in listing


def test_reply_draft_totals_count_only_the_drafts_listed(
    django_user_model: Any, world: dict[str, Any]
) -> None:
    """The outcome totals above the reply drafts' list are of the drafts the viewer may
    see (before: of every team's drafts, above a list filtered by the rule)."""
    from knowledge.models import ReplyDraft

    for side, n in (("ours", 1), ("theirs", 3)):
        for _ in range(n):
            ReplyDraft.objects.create(
                ticket=world[side]["ticket"],
                channel="email",
                provider="local",
                text="Draft",
                score=0.9,
                margin=0.1,
            )
    viewer = _staff_agent(django_user_model, world["ours"]["team"], "view_replydraft")
    response = _browser(viewer).get(reverse("admin:knowledge_replydraft_changelist"))
    assert response.status_code == 200
    assert response.context["draft_metrics"]["offered"] == 1
    root = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    response = _browser(root).get(reverse("admin:knowledge_replydraft_changelist"))
    assert response.context["draft_metrics"]["offered"] == 4


def test_a_redrive_of_a_delivery_the_agent_may_not_see_is_as_unknown(
    django_user_model: Any, world: dict[str, Any]
) -> None:
    """The re-drive button's URL answers 404 for a delivery about another team's ticket,
    as for an id that does not exist or is no number (before: a redirect to its page with
    "Only supervisors can re-drive", telling that it exists; a 500 for a non-number)."""
    from support.delivery.models import Delivery

    visible = _make("delivery.delivery", world["ours"], None)
    hidden = _make("delivery.delivery", world["theirs"], None)
    Delivery.objects.filter(pk__in=[visible.pk, hidden.pk]).update(status="dead")
    viewer = _staff_agent(
        django_user_model, world["ours"]["team"], "view_delivery", "change_delivery"
    )
    browser = _browser(viewer)
    # one it may see: refused as before (supervisors re-drive), back on its page
    assert browser.post(f"/admin/delivery/delivery/{visible.pk}/redrive/").status_code == 302
    for object_id in (hidden.pk, hidden.pk + 1000, "abc", "%C2%B2"):  # "²" is a digit
        response = browser.post(f"/admin/delivery/delivery/{object_id}/redrive/")
        assert response.status_code == 404, object_id
    assert Delivery.objects.get(pk=hidden.pk).status == "dead"


def test_a_staff_agent_files_canned_responses_under_its_own_teams_or_none(
    django_user_model: Any, world: dict[str, Any]
) -> None:
    """Global responses are everyone's (the workbench offers them to all); the team
    field offers the agent's own teams only, and the list's team filter is not shown
    (it names every team)."""
    from tickets.models import CannedResponse

    viewer = _staff_agent(
        django_user_model,
        world["ours"]["team"],
        "view_cannedresponse",
        "change_cannedresponse",
        "add_cannedresponse",
    )
    common = CannedResponse.objects.create(title="Thanks", shortcut="thanks", body="Thanks!")
    browser = _browser(viewer)
    assert _listed(browser, common)
    listing = browser.get(reverse("admin:tickets_cannedresponse_changelist")).content.decode()
    assert "Team theirs" not in listing
    form = browser.get(reverse("admin:tickets_cannedresponse_add")).content.decode()
    assert "Team ours" in form
    assert "Team theirs" not in form
    refused = browser.post(
        reverse("admin:tickets_cannedresponse_add"),
        {
            "title": "Sneaky",
            "shortcut": "sneaky",
            "body": "x",
            "team": world["theirs"]["team"].pk,
            "is_active": "on",
        },
    )
    assert refused.status_code == 200  # the form again, the choice refused
    assert not CannedResponse.objects.filter(shortcut="sneaky").exists()
