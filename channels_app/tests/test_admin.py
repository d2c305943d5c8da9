"""Admin: secrets are never rendered back; dead letters are visible and re-driven."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
import responses
from django.test import Client

from channels_app.models import ChannelAccount, InboundEvent
from channels_app.tests.conftest import make_account
from support.delivery.models import Delivery
from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(supervisor: Any) -> Client:
    client = Client()
    client.force_login(supervisor)
    return client


def test_account_secrets_are_never_shown_back_and_empty_keeps_them(
    admin_client: Client, django_user_model: Any
) -> None:
    django_user_model.objects.filter(username="supervisor").update(is_superuser=True)
    account = make_account("whatsapp", access_token="very-secret-token")
    page = admin_client.get(f"/admin/channels_app/channelaccount/{account.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    for secret in ("test-app-secret", "very-secret-token"):
        assert secret not in html
    assert account.webhook_token in html
    response = admin_client.post(
        f"/admin/channels_app/channelaccount/{account.pk}/change/",
        {
            "channel": "whatsapp",
            "name": "renamed",
            "external_id": "106540352242922",
            "app_secret": "",
            "verify_token": "",
            "access_token": "new-token",
            "consumer_secret": "",
            "inbound_token": "",
            "settings": "{}",
            "is_active": "on",
        },
    )
    assert response.status_code == 302, response.content
    account.refresh_from_db()
    assert (account.name, account.app_secret, account.access_token) == (
        "renamed",
        "test-app-secret",
        "new-token",
    )


def test_dead_inbound_event_is_reprocessed_from_the_admin(
    post_fixture: Any,
    admin_client: Client,
    settings: Any,
    django_user_model: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    django_user_model.objects.filter(username="supervisor").update(is_superuser=True)
    settings.CHANNELS_INBOUND_MAX_ATTEMPTS = 1
    account = make_account("whatsapp")
    with (
        mock.patch("channels_app.services.drain._message_is_plain", return_value=False),
        mock.patch(
            "channels_app.services.ingest._customer_resolve", side_effect=RuntimeError("db hiccup")
        ),
    ):
        response = post_fixture(account, "text_message")
    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert (event.status, event.attempts) == ("dead", 1)
    assert event.error == "RuntimeError: db hiccup"
    assert Ticket.objects.count() == 0
    listing = admin_client.get("/admin/channels_app/inboundevent/?status__exact=dead")
    assert b"db hiccup" in listing.content
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/channels_app/inboundevent/",
            {"action": "reprocess", "_selected_action": [event.pk]},
        )
    event.refresh_from_db()
    assert event.status == "processed"
    assert Ticket.objects.count() == 1
    # the audit log says who re-drove it, and from which status
    from support.models import AuditLog

    entry = AuditLog.objects.get(action="inbound_event.reprocess")
    assert entry.actor is not None
    assert (entry.actor.username, entry.object_id, entry.details["was"]) == (
        "supervisor",
        str(event.pk),
        "dead",
    )


def test_an_erased_delivery_is_not_reprocessed(
    admin_client: Client, django_user_model: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """An erasure removed its body: re-processing it has nothing to read (it failed as a
    malformed delivery), so the action leaves it and says why."""
    django_user_model.objects.filter(username="supervisor").update(is_superuser=True)
    account = make_account("whatsapp")
    erased = InboundEvent.objects.create(
        channel="whatsapp",
        account=account,
        external_id="erased:abc",
        body=b"",
        status="ignored",
        error="erased: personal data removed at the customer's request",
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(
            "/admin/channels_app/inboundevent/",
            {"action": "reprocess", "_selected_action": [erased.pk]},
            follow=True,
        )
    assert not callbacks
    erased.refresh_from_db()
    assert erased.status == "ignored"
    assert b"0 event(s) queued for processing; 1 left as they were (erased" in response.content


def test_a_supervisor_closes_dead_letters_unprocessed_and_the_audit_log_says_who(
    admin_client: Client, supervisor: Any, agent: Any, django_user_model: Any
) -> None:
    """Docs promise staff "re-drive or discard" dead letters; deleting needs Django's
    delete permission (superusers), so a supervisor had no way but re-driving."""
    from support.models import AuditLog

    account = make_account("whatsapp")

    def event(n: int, status: str) -> InboundEvent:
        return InboundEvent.objects.create(
            channel="whatsapp",
            account=account,
            external_id=f"wamid.{n}",
            body=b"{}",
            status=status,
            error="RuntimeError: db hiccup" if status == "dead" else "",
        )

    dead, quarantined, waiting = event(1, "dead"), event(2, "quarantined"), event(3, "received")
    answer = admin_client.post(
        "/admin/channels_app/inboundevent/",
        {
            "action": "close_unprocessed",
            "_selected_action": [dead.pk, quarantined.pk, waiting.pk],
        },
        follow=True,
    )
    assert "2 event(s) closed unprocessed; 1 left as they were" in answer.content.decode()
    for row in (dead, quarantined, waiting):
        row.refresh_from_db()
    # a status of their own: not "ignored", which is an unknown event type
    assert (dead.status, quarantined.status, waiting.status) == ("closed", "closed", "received")
    assert dead.error.startswith("Closed unprocessed by a supervisor (supervisor); was dead")
    assert dead.processed_at is not None  # the raw event retention purges it in time
    assert dead.summary["closed_by"] == "supervisor"
    listing = admin_client.get("/admin/channels_app/inboundevent/").content.decode()
    assert "Closed unprocessed by supervisor" in listing  # not "Ignored (unknown event type)"
    assert "?status__exact=closed" in listing  # the status filter offers them on their own
    unknown = event(5, "ignored")  # an unknown event type
    shown = {
        status: _listed_ids(admin_client, f"?status__exact={status}")
        for status in ("closed", "ignored")
    }
    assert shown == {"closed": {dead.pk, quarantined.pk}, "ignored": {unknown.pk}}
    logged = AuditLog.objects.filter(action="inbound_event.close").order_by("object_id")
    assert [(e.actor, e.object_id) for e in logged] == [
        (supervisor, str(dead.pk)),
        (supervisor, str(quarantined.pk)),
    ]
    # a staff agent given the admin cannot (the role, not a Django permission, decides)
    again = event(4, "dead")
    django_user_model.objects.filter(pk=agent.pk).update(is_staff=True)
    staff = Client()
    staff.force_login(agent)
    staff.post(
        "/admin/channels_app/inboundevent/",
        {"action": "close_unprocessed", "_selected_action": [again.pk]},
    )
    again.refresh_from_db()
    assert again.status == "dead"


def _listed_ids(client: Client, query: str) -> set[int]:
    """The ids of the inbound events the admin's list shows for ``query``."""
    page = client.get(f"/admin/channels_app/inboundevent/{query}")
    assert page.status_code == 200
    rows = page.context["cl"].result_list
    return {row.pk for row in rows}


@responses.activate
def test_dead_outbound_delivery_is_redriven_from_the_admin(
    post_fixture: Any,
    admin_client: Client,
    agent: Any,
    django_user_model: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from tickets.services import message_add

    django_user_model.objects.filter(username="supervisor").update(is_superuser=True)
    account = make_account("whatsapp")
    post_fixture(account, "text_message")
    url = "https://graph.facebook.com/v21.0/106540352242922/messages"
    responses.post(url, status=401, json={"error": {"message": "token expired"}})
    with django_capture_on_commit_callbacks(execute=True):
        message = message_add(ticket=Ticket.objects.get(), body="Hi", author_user=agent)
    delivery = Delivery.objects.get()
    assert delivery.status == "dead"
    page = admin_client.get(f"/admin/delivery/delivery/{delivery.pk}/change/")
    assert b"token expired" in page.content
    responses.replace(responses.POST, url, json={"messages": [{"id": "wamid.OK"}]})
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/delivery/delivery/",
            {"action": "redrive", "_selected_action": [delivery.pk]},
        )
    delivery.refresh_from_db()
    message = Message.objects.get(pk=message.pk)
    assert (delivery.status, delivery.attempt_log.count()) == ("succeeded", 2)
    assert message.delivery_status == "sent"
    assert ChannelAccount.objects.count() == 1


def test_agents_cannot_redrive(post_fixture: Any, client: Client, agent: Any) -> None:
    from django.contrib.admin.sites import site
    from django.test import RequestFactory

    from support.delivery.admin import DeliveryAdmin

    request = RequestFactory().post("/")
    request.user = agent
    admin = DeliveryAdmin(Delivery, site)
    with mock.patch.object(admin, "message_user") as told:
        admin.redrive(request, Delivery.objects.none())
    told.assert_called_once()
    assert "Only supervisors" in told.call_args.args[1]


@responses.activate
def test_deliveries_panel_shows_a_dead_letter_with_its_error(
    post_fixture: Any, agent: Any, supervisor: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from django.template.loader import render_to_string
    from django.test import RequestFactory

    from tickets.panels import panels_for
    from tickets.services import message_add

    account = make_account("whatsapp")
    post_fixture(account, "text_message")
    ticket = Ticket.objects.get()
    [panel] = [p for p in panels_for("sidebar") if p.name == "channel-deliveries"]
    request = RequestFactory().get("/")
    request.user = supervisor
    assert panel.context(request, ticket) is None
    responses.post(
        "https://graph.facebook.com/v21.0/106540352242922/messages",
        status=400,
        json={"error": {"message": "(#131030) Recipient not in allowed list"}},
    )
    with django_capture_on_commit_callbacks(execute=True):
        message_add(ticket=ticket, body="Hello there", author_user=agent)
    context = panel.context(request, ticket)
    assert context is not None
    html = render_to_string(panel.template, context)
    assert "Hello there" in html
    assert "Dead letter (1 attempt), message failed" in html
    assert "http_400" in html
    assert "Recipient not in allowed list" in html
    assert "Re-drive in admin" in html


def test_an_inbound_events_credentials_are_hidden_on_its_admin_page(
    admin_client: Client, django_user_model: Any
) -> None:
    """A web chat visitor's session token (valid for a day) let a supervisor who opened the
    raw event post and read as that visitor; an Authorization header or cookie likewise.
    They stay stored (re-processing verifies them again), but the page hides them."""
    django_user_model.objects.filter(username="supervisor").update(is_superuser=True)
    account = make_account("webchat")
    event = InboundEvent.objects.create(
        channel="webchat",
        account=account,
        headers={
            "X-Webchat-Session": "eyJ2aXNpdG9yIjoiYWJjIn0:1tZk:visitor-session-signature",
            "Authorization": "Bearer abc-secret-bearer",
            "Cookie": "sessionid=cookie-value-123",
            "Content-Type": "application/json",
            "X-Hub-Signature-256": "sha256=0f1e2d",
        },
        body=b'{"text": "hello"}',
    )
    page = admin_client.get(f"/admin/channels_app/inboundevent/{event.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    for secret in ("visitor-session-signature", "abc-secret-bearer", "cookie-value-123"):
        assert secret not in html
    assert "[hidden: 54 characters]" in html
    assert "application/json" in html
    assert "sha256=0f1e2d" in html
    event.refresh_from_db()
    assert event.headers["X-Webchat-Session"].endswith("visitor-session-signature")
