from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from support.errors import Conflict
from support.models import ApiKeyRole, OutboxEvent
from support.services import api_key_create
from tickets import services as core
from tickets.context import services
from tickets.context.cache import context_cache_key
from tickets.context.models import CsatFeedback, Interaction
from tickets.context.services import OrderInput
from tickets.models import ChannelIdentity, Team, Ticket

pytestmark = pytest.mark.django_db


def _order(customer, number, status="delivered", days_ago=5, total="20.00"):
    return services.order_upsert(
        customer=customer,
        data=OrderInput(
            number=number,
            status=status,
            total=Decimal(total),
            placed_at=timezone.now() - timedelta(days=days_ago),
            items=[{"sku": "A1", "name": "Kettle", "quantity": 1, "unit_price": total}],
        ),
    )[0]


def test_ticket_context_returns_profile_orders_interactions_and_churn(
    agent_client, supervisor_client, customer, django_capture_on_commit_callbacks
):
    customer.vip_tier = "gold"
    customer.save()
    ChannelIdentity.objects.create(customer=customer, channel="whatsapp", external_id="+4412345")
    _order(customer, "ORD-1", status="refunded", days_ago=3)
    _order(customer, "ORD-2", days_ago=40, total="15.50")
    with django_capture_on_commit_callbacks(execute=True):
        ticket = core.ticket_create(
            customer=customer,
            subject="Refund again?!",
            body="This is awful, the kettle broke again. I am furious.",
            channel="whatsapp",
        )
    response = agent_client.get(f"/api/tickets/{ticket.number}/context")
    assert response.status_code == 200
    body = response.json()
    assert body["ticket_id"] == ticket.pk
    assert body["customer"] == {
        "id": customer.pk,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+441234",
        "vip_tier": "gold",
        "is_vip": True,
        "account_type": "individual",
        "created_at": customer.created_at.isoformat(),
        "erased": False,
    }
    assert body["identities"] == [
        {"channel": "whatsapp", "external_id": "+4412345", "display_name": ""}
    ]
    assert body["orders"]["count"] == 2
    assert [o["number"] for o in body["orders"]["recent"]] == ["ORD-1", "ORD-2"]
    assert body["orders"]["lifetime_value"] == {"USD": {"total": "35.50", "refunded": "0.00"}}
    assert body["tickets"]["open"] == 1
    [interaction] = body["interactions"]["recent"]
    assert (interaction["kind"], interaction["sentiment_label"]) == ("message", "negative")
    assert body["sentiment"]["scored_messages_90d"] == 1
    assert len(body["sentiment"]["weekly"]) == 12
    assert body["sentiment"]["weekly"][-1]["count"] == 1
    churn = body["churn"]
    assert churn["level"] == "high"
    # an agent: the reasons that count tickets or contacts are one line, their points
    # summed (test_customer_visibility.py); a supervisor reads each
    assert [(r["code"], r["points"]) for r in churn["reasons"]] == [
        ("negative_sentiment", 30),
        ("ticket_history", 10 + 5),
        ("refunds", 10),
    ]
    assert churn["score"] == 30 + 10 + 10 + 5
    whole = supervisor_client.get(f"/api/tickets/{ticket.number}/context").json()
    assert [r["code"] for r in whole["churn"]["reasons"]] == [
        "negative_sentiment",
        "recent_unhappy_contact",
        "refunds",
        "open_tickets",
    ]
    assert whole["churn"]["score"] == churn["score"]
    # the rest is the same when the agent may see every ticket of the customer
    assert {k: v for k, v in whole.items() if k != "churn"} == {
        k: v for k, v in body.items() if k != "churn"
    }


def test_customer_context_and_not_found(supervisor_client, agent_client, customer):
    response = supervisor_client.get(f"/api/customers/{customer.pk}/context")
    assert response.status_code == 200
    assert response.json()["churn"] == {"level": "low", "score": 0, "reasons": []}
    assert supervisor_client.get("/api/customers/999999/context").status_code == 404
    assert supervisor_client.get("/api/customers/abc/context").status_code == 404
    assert supervisor_client.get("/api/customers/\u00b9/context").status_code == 404
    # A customer with no ticket an agent may see is not the agent's to see.
    assert agent_client.get(f"/api/customers/{customer.pk}/context").status_code == 404
    core.ticket_create(customer=customer, subject="Hello", body="Hi")  # no team: visible
    assert agent_client.get(f"/api/customers/{customer.pk}/context").status_code == 200


def test_context_needs_an_agent(api_client, customer):
    assert api_client.get(f"/api/customers/{customer.pk}/context").status_code in (401, 403)


def test_cache_warm_hit_uses_one_query_and_new_order_shows_at_once(supervisor_client, customer):
    url = f"/api/customers/{customer.pk}/context"
    assert supervisor_client.get(url).json()["orders"]["count"] == 0
    assert cache.get(context_cache_key(customer.pk)) is not None
    with CaptureQueriesContext(connection) as queries:
        supervisor_client.get(url)
    assert len(queries) == 1  # the customer row; the rest comes from the cache
    _order(customer, "ORD-9")
    assert cache.get(context_cache_key(customer.pk)) is None
    assert supervisor_client.get(url).json()["orders"]["count"] == 1


def test_profile_edit_elsewhere_is_never_served_stale(supervisor_client, customer):
    url = f"/api/customers/{customer.pk}/context"
    supervisor_client.get(url)
    customer.name = "Ada King"
    customer.save()  # e.g. the admin: no explicit invalidation
    assert supervisor_client.get(url).json()["customer"]["name"] == "Ada King"


def test_cold_context_query_budget(supervisor_client, agent_client, customer):
    for n in range(30):
        _order(customer, f"ORD-{n}", days_ago=n)
    with CaptureQueriesContext(connection) as queries:
        supervisor_client.get(f"/api/customers/{customer.pk}/context")
    # auth groups + customer + 10 reads, whatever the number of orders
    assert len(queries) <= 12
    for n in range(5):
        core.ticket_create(customer=customer, subject=f"Order {n}", body="Where is it?")
    cache.clear()
    with CaptureQueriesContext(connection) as queries:
        assert agent_client.get(f"/api/customers/{customer.pk}/context").status_code == 200
    # + the agent's teams and one query for which listed tickets the agent may see
    assert len(queries) <= 14


def test_create_ticket_with_include_context(agent_client, customer):
    _order(customer, "ORD-7")
    first = core.ticket_create(customer=customer, subject="Hello", body="Hi")
    # A cached context from before the new ticket must not be served.
    assert agent_client.get(f"/api/customers/{customer.pk}/context").json()["tickets"] == {
        "total": 1,
        "open": 1,
        "recent": [
            {
                "id": first.pk,
                "number": first.number,
                "subject": "Hello",
                "status": "new",
                "channel": "api",
                "created_at": first.created_at.isoformat(),
            }
        ],
    }
    response = agent_client.post(
        "/api/tickets?include=context",
        {"subject": "Where is my order?", "customer_id": customer.pk, "description": "Hi"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["number"].startswith("T-")
    assert body["context"]["customer"]["id"] == customer.pk
    assert body["context"]["orders"]["count"] == 1
    assert body["context"]["tickets"]["open"] == 2


def test_create_ticket_with_unknown_include_writes_nothing(agent_client, customer):
    response = agent_client.post(
        "/api/tickets?include=context,nonsense",
        {"subject": "x", "customer_id": customer.pk},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"include": ["Unknown: nonsense."]}
    assert Ticket.objects.count() == 0


def _resolved_ticket(customer):
    ticket = core.ticket_create(customer=customer, subject="Broken kettle", body="Help")
    return core.ticket_update(ticket=ticket, status="resolved")


def test_feedback_with_signed_token_needs_no_login(
    api_client, customer, django_capture_on_commit_callbacks
):
    ticket = _resolved_ticket(customer)
    token = services.feedback_token_make(ticket)
    assert services.feedback_link_build(ticket).endswith(f"/feedback/{token}")
    OutboxEvent.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):  # the relay writes the interaction
        response = api_client.post(
            f"/api/tickets/{ticket.pk}/feedback",
            {"rating": 2, "comment": "Slow and unhelpful.", "token": token},
            format="json",
        )
    assert response.status_code == 201
    assert response.json() == {
        "ticket_id": ticket.pk,
        "rating": 2,
        "comment": "Slow and unhelpful.",
        "created": True,
    }
    feedback = CsatFeedback.objects.get()
    assert (feedback.customer_id, feedback.via_link) == (customer.pk, True)
    assert list(OutboxEvent.objects.values_list("event_type", flat=True)) == ["csat.submitted"]
    assert Interaction.objects.get().kind == "feedback"
    # A second answer replaces the first.
    again = api_client.post(
        f"/api/tickets/{ticket.pk}/feedback", {"rating": 4, "token": token}, format="json"
    )
    assert again.status_code == 200
    assert CsatFeedback.objects.get().rating == 4


def test_feedback_rejects_bad_tokens_and_other_tickets(api_client, customer):
    ticket = _resolved_ticket(customer)
    other = _resolved_ticket(customer)
    url = f"/api/tickets/{ticket.pk}/feedback"
    forged = api_client.post(url, {"rating": 5, "token": "nope"}, format="json")
    assert forged.status_code == 403
    wrong = api_client.post(
        url, {"rating": 5, "token": services.feedback_token_make(other)}, format="json"
    )
    assert wrong.status_code == 403
    anonymous = api_client.post(url, {"rating": 5}, format="json")
    assert anonymous.status_code == 401
    assert CsatFeedback.objects.count() == 0


def test_feedback_expired_token(api_client, customer, settings):
    ticket = _resolved_ticket(customer)
    token = services.feedback_token_make(ticket)
    settings.FEEDBACK_LINK_MAX_AGE_DAYS = -1
    response = api_client.post(
        f"/api/tickets/{ticket.pk}/feedback", {"rating": 5, "token": token}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This feedback link has expired."


def test_feedback_by_agent_and_only_after_resolution(agent_client, customer):
    ticket = core.ticket_create(customer=customer, subject="Open one", body="Help")
    url = f"/api/tickets/{ticket.pk}/feedback"
    early = agent_client.post(url, {"rating": 5}, format="json")
    assert early.status_code == 400
    assert early.json()["error"]["details"] == {"status": ["Not resolved yet."]}
    core.ticket_update(ticket=ticket, status="resolved")
    assert agent_client.post(url, {"rating": 6}, format="json").status_code == 400
    ok = agent_client.post(url, {"rating": 5, "comment": "Great help"}, format="json")
    assert ok.status_code == 201
    assert CsatFeedback.objects.get().via_link is False


def test_an_agent_cannot_replace_the_customers_own_answer(agent_client, api_client, customer):
    """Agents may record CSAT for a customer (a phone call's answer) and correct their own,
    but the customer's answer from the signed link is theirs: an agent replacing a 1 with
    a 5 rewrote the figures agents are judged by. The customer may still change it, and
    who recorded an answer is kept."""
    ticket = _resolved_ticket(customer)
    url = f"/api/tickets/{ticket.pk}/feedback"
    recorded = agent_client.post(url, {"rating": 3}, format="json")
    assert recorded.status_code == 201
    first = CsatFeedback.objects.get()
    assert first.recorded_by is not None
    assert first.recorded_by.username == "agent"
    token = services.feedback_token_make(ticket)
    own = api_client.post(url, {"rating": 1, "comment": "Awful", "token": token}, format="json")
    assert own.status_code == 200  # the customer's answer replaces the agent's
    assert CsatFeedback.objects.get().recorded_by is None
    refused = agent_client.post(url, {"rating": 5, "comment": "Great"}, format="json")
    assert refused.status_code == 409
    assert "feedback link" in refused.json()["error"]["message"]
    feedback = CsatFeedback.objects.get()
    assert (feedback.rating, feedback.comment, feedback.via_link) == (1, "Awful", True)
    again = api_client.post(url, {"rating": 2, "token": token}, format="json")
    assert again.status_code == 200
    assert CsatFeedback.objects.get().rating == 2


def test_staff_holding_the_link_answer_as_themselves_never_as_the_customer(
    agent, agent_client, api_client, client, customer
):
    """The signed link is the customer's: a signed-in agent, supervisor or user API key
    that sends it is recorded as itself (``via_link`` false, ``recorded_by`` set), so it
    can neither pass for the customer nor replace the customer's own answer."""
    ticket = _resolved_ticket(customer)
    token = services.feedback_token_make(ticket)
    url = f"/api/tickets/{ticket.pk}/feedback"
    recorded = agent_client.post(url, {"rating": 5, "token": token}, format="json")
    assert recorded.status_code == 201
    feedback = CsatFeedback.objects.get()
    assert (feedback.rating, feedback.via_link, feedback.recorded_by) == (5, False, agent)
    # a user API key acting as the agent: the same
    key = api_key_create(name="agent-key", user=agent)[1]
    keyed = APIClient()
    keyed.credentials(HTTP_X_API_KEY=key)
    assert keyed.post(url, {"rating": 4, "token": token}, format="json").status_code == 200
    feedback = CsatFeedback.objects.get()
    assert (feedback.rating, feedback.via_link, feedback.recorded_by) == (4, False, agent)
    # the page behind the link, signed in: the agent's answer too
    client.force_login(agent)
    page = client.get(f"/feedback/{token}")
    assert "recorded as yours, not the customer's" in page.content.decode()
    assert client.post(f"/feedback/{token}", {"rating": "3"}).status_code == 200
    feedback = CsatFeedback.objects.get()
    assert (feedback.rating, feedback.via_link, feedback.recorded_by) == (3, False, agent)
    # the customer (no login) answers; then no agent can replace it, link or not
    assert api_client.post(url, {"rating": 1, "token": token}, format="json").status_code == 200
    assert agent_client.post(url, {"rating": 5, "token": token}, format="json").status_code == 409
    assert client.post(f"/feedback/{token}", {"rating": "5"}).status_code == 400
    feedback = CsatFeedback.objects.get()
    assert (feedback.rating, feedback.via_link, feedback.recorded_by) == (1, True, None)


def test_a_link_sent_with_other_credentials_is_refused(
    outsider, customer, client, django_user_model
):
    """Signed in without an agent's role, or with an integration key: not the customer
    either, and no role to record an answer with (403; nothing recorded)."""
    ticket = _resolved_ticket(customer)
    token = services.feedback_token_make(ticket)
    url = f"/api/tickets/{ticket.pk}/feedback"
    signed_in = APIClient()
    signed_in.force_authenticate(outsider)
    assert signed_in.post(url, {"rating": 5, "token": token}, format="json").status_code == 403
    service = django_user_model.objects.create_user(username="svc")
    raw = api_key_create(name="svc", user=service, role=ApiKeyRole.INTEGRATION)[1]
    machine = APIClient()
    machine.credentials(HTTP_X_API_KEY=raw)
    assert machine.post(url, {"rating": 5, "token": token}, format="json").status_code == 403
    client.force_login(outsider)
    assert client.post(f"/feedback/{token}", {"rating": "5"}).status_code == 403
    assert not CsatFeedback.objects.exists()


def test_feedback_by_agent_only_on_tickets_the_agent_may_see(agent_client, customer):
    """Signed in without the link, an agent of another team gets 404 (found by the
    authorization matrix): recording a rating on a ticket it cannot see is refused."""
    elsewhere = Team.objects.create(name="Elsewhere", slug="elsewhere")
    ticket = core.ticket_create(customer=customer, subject="Theirs", body="Help", team=elsewhere)
    core.ticket_update(ticket=ticket, status="resolved")
    response = agent_client.post(f"/api/tickets/{ticket.pk}/feedback", {"rating": 1}, format="json")
    assert response.status_code == 404
    assert not CsatFeedback.objects.exists()


def test_feedback_page_via_signed_link(client, customer):
    ticket = _resolved_ticket(customer)
    url = f"/feedback/{services.feedback_token_make(ticket)}"
    page = client.get(url)
    assert page.status_code == 200
    assert ticket.number in page.content.decode()
    done = client.post(url, {"rating": "1", "comment": "Bad"})
    assert done.status_code == 200
    assert "Thank you" in done.content.decode()
    assert CsatFeedback.objects.get().rating == 1
    assert client.get("/feedback/forged").status_code == 403


def test_a_refused_feedback_answer_keeps_what_the_customer_chose_and_wrote(client, customer):
    """The page came back with the rating unchosen and the comment box empty."""
    ticket = _resolved_ticket(customer)
    url = f"/feedback/{services.feedback_token_make(ticket)}"
    refused = client.post(url, {"rating": "9", "comment": "The <b>app</b> kept crashing"})
    assert refused.status_code == 400
    html = refused.content.decode()
    assert '<p class="form-error" role="alert">' in html
    assert (
        '<textarea id="comment" name="comment" rows="4" maxlength="5000">'
        "The &lt;b&gt;app&lt;/b&gt; kept crashing</textarea>"
    ) in html
    assert " checked>" not in html  # 9 is none of the five
    again = client.post(url, {"rating": "abc", "comment": ""}).content.decode()
    assert " checked>" not in again
    assert not CsatFeedback.objects.exists()


def test_feedback_page_is_rate_limited_per_ip(
    client, customer, settings, django_capture_on_commit_callbacks
):
    """The public page shares the API's per-IP limit: over it, 429 with Retry-After and
    nothing written (each answer writes an interaction and an event)."""
    from support.redis_client import get_redis

    ip = "203.0.113.77"
    for key in get_redis().scan_iter(f"ratelimit:ip:{ip}:*"):
        get_redis().delete(key)
    settings.API_ANON_RATE_LIMIT_PER_MINUTE = 2
    ticket = _resolved_ticket(customer)
    url = f"/feedback/{services.feedback_token_make(ticket)}"
    OutboxEvent.objects.all().delete()
    for rating in ("1", "2"):  # each answer's interaction written before the next answer
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post(url, {"rating": rating}, REMOTE_ADDR=ip).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        refused = client.post(url, {"rating": "3", "comment": "again"}, REMOTE_ADDR=ip)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "Too many answers from this address" in refused.content.decode()
    assert CsatFeedback.objects.get().rating == 2
    assert Interaction.objects.count() == 2
    assert OutboxEvent.objects.filter(event_type="csat.submitted").count() == 2
    # Another address is not affected; viewing the page is not limited.
    assert client.post(url, {"rating": "4"}, REMOTE_ADDR="203.0.113.78").status_code == 200
    assert client.get(url, REMOTE_ADDR=ip).status_code == 200


def test_the_same_answer_twice_writes_nothing_more(
    client, customer, django_capture_on_commit_callbacks
):
    """A form sent twice (or a replayed request) adds no interaction, event or sentiment
    call; a different answer still replaces the first (last answer wins)."""
    ticket = _resolved_ticket(customer)
    url = f"/feedback/{services.feedback_token_make(ticket)}"
    OutboxEvent.objects.all().delete()
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(url, {"rating": "2", "comment": " Slow. "})
        assert response.status_code == 200
        assert "Thank you" in response.content.decode()
    assert Interaction.objects.count() == 1
    assert OutboxEvent.objects.filter(event_type="csat.submitted").count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, {"rating": "4", "comment": "Fixed now"}).status_code == 200
    assert (CsatFeedback.objects.get().rating, Interaction.objects.count()) == (4, 2)
    assert OutboxEvent.objects.filter(event_type="csat.submitted").count() == 2


def test_order_figures_per_currency_and_churn_signals(customer):
    from tickets.context.selectors import customer_context_build

    _order(customer, "A", status="delivered", total="10.00")
    _order(customer, "B", status="failed", total="99.00")
    _order(customer, "C", status="cancelled", total="5.00", days_ago=200)
    services.order_upsert(
        customer=customer,
        data=OrderInput(
            number="D",
            status="partially_refunded",
            total=Decimal("50.00"),
            refunded_amount=Decimal("20.00"),
            currency="EUR",
            placed_at=timezone.now() - timedelta(days=1),
        ),
    )
    data = customer_context_build(customer)
    assert data["orders"]["count"] == 4
    assert data["orders"]["lifetime_value"] == {
        "EUR": {"total": "50.00", "refunded": "20.00"},
        "USD": {"total": "10.00", "refunded": "0.00"},
    }
    assert [(r["code"], r["points"]) for r in data["churn"]["reasons"]] == [
        ("failed_orders", 10),  # C was placed more than 90 days ago
        ("refunds", 10),
    ]


def test_a_csat_answer_is_saved_without_the_interactions_store_or_the_analyser(
    customer, monkeypatch, django_capture_on_commit_callbacks
):
    """The answer and its event are one transaction that calls neither the interactions
    store nor the sentiment analyser (either may be an outside service: DynamoDB,
    Comprehend); the interaction is written from the event, once, and an answer replaced
    before its task ran is not logged (the newer answer's event logs that one)."""
    from datetime import datetime

    from tickets.context import services as context_services

    ticket = _resolved_ticket(customer)

    def refuse(*args, **kwargs):
        raise AssertionError("called while saving the answer")

    with monkeypatch.context() as patched:
        patched.setattr(context_services, "get_backend", refuse)
        patched.setattr(context_services, "sentiment_analyse", refuse)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            _, created = services.feedback_submit(ticket=ticket, rating=1, comment="Awful")
            services.feedback_submit(ticket=ticket, rating=5, comment="Sorted, thanks")
    assert created
    assert callbacks  # the relay, after commit
    assert Interaction.objects.count() == 0
    events = list(OutboxEvent.objects.filter(event_type="csat.submitted").order_by("pk"))
    assert len(events) == 2
    stamps = [datetime.fromisoformat(e.payload["submitted_at"]) for e in events]
    assert stamps[1] == CsatFeedback.objects.get().updated_at
    # The first answer was replaced before its task ran: nothing is logged for it.
    assert not services.interaction_record_for_csat(ticket_id=ticket.pk, submitted_at=stamps[0])
    assert services.interaction_record_for_csat(ticket_id=ticket.pk, submitted_at=stamps[1])
    assert not services.interaction_record_for_csat(ticket_id=ticket.pk, submitted_at=stamps[1])
    [interaction] = Interaction.objects.all()
    assert interaction.summary == "CSAT 5/5: Sorted, thanks"
    assert interaction.sentiment_label == "positive"


# --- merged tickets take no CSAT answer and count in no CSAT figure (review r5) ----------


def _merged_pair(customer, supervisor):
    target = _resolved_ticket(customer)
    source = _resolved_ticket(customer)
    core.ticket_merge(source=source, target=target, actor=supervisor)
    return Ticket.objects.get(pk=source.pk), target


def test_csat_figures_leave_merged_tickets_out(customer, supervisor):
    from tickets.context.stats import csat_summary

    source, target = _merged_pair(customer, supervisor)
    services.feedback_submit(ticket=target, rating=5)
    # an answer the duplicate took before it was merged (or before this fix)
    CsatFeedback.objects.create(ticket=source, customer=customer, rating=1)
    now = timezone.now()
    summary = csat_summary(start=now - timedelta(days=1), end=now + timedelta(minutes=1))
    assert summary == {
        "responses": 1,
        "average": 5.0,
        "satisfied_ratio": 1.0,
        "ratings": {1: 0, 2: 0, 3: 0, 4: 0, 5: 1},
    }


def test_a_merged_tickets_feedback_link_is_refused_with_a_clear_page(
    client, api_client, customer, supervisor
):
    source, _ = _merged_pair(customer, supervisor)
    token = services.feedback_token_make(source)
    page = client.get(f"/feedback/{token}")
    assert page.status_code == 409
    text = page.content.decode()
    assert "This request was merged" in text
    assert services.MERGED_FEEDBACK_MESSAGE in text
    assert client.post(f"/feedback/{token}", {"rating": "1"}).status_code == 409
    api = api_client.post(
        f"/api/tickets/{source.pk}/feedback", {"rating": 1, "token": token}, format="json"
    )
    assert api.status_code == 409
    assert api.json()["error"]["details"] == {"ticket": ["Merged."]}
    with pytest.raises(Conflict):
        services.feedback_submit(ticket=source, rating=1)
    assert not CsatFeedback.objects.exists()


def test_context_csat_and_churn_leave_merged_tickets_out(customer, supervisor):
    """Before: the context's CSAT average, count and last answer, and the churn score's
    low-rating points, counted a merged duplicate's answer (csat_summary did not)."""
    from tickets.context.selectors import customer_context_build

    source, target = _merged_pair(customer, supervisor)
    services.feedback_submit(ticket=target, rating=5)
    CsatFeedback.objects.create(ticket=source, customer=customer, rating=1)
    data = customer_context_build(customer)
    assert (data["csat"]["average"], data["csat"]["count"]) == (5.0, 1)
    assert data["csat"]["last"]["ticket_id"] == target.pk
    assert "low_csat" not in {r["code"] for r in data["churn"]["reasons"]}


def test_last_contact_rule_judges_the_last_contact_itself(customer):
    """Docs: "last contact within 7 days and it was negative". Before: the last *scored*
    message's sentiment was used, so an unscored call yesterday after an angry message
    20 days ago read "Last contact (1 d ago) was negative"."""
    from tickets.context.selectors import customer_context_build

    now = timezone.now()

    def log(key, kind, days_ago, score):
        Interaction.objects.create(
            customer=customer,
            source_key=key,
            channel="email",
            kind=kind,
            sentiment_score=score,
            occurred_at=now - timedelta(days=days_ago),
        )

    log("message:1", "message", 20, -0.8)
    log("call:1", "call", 1, None)
    reasons = {r["code"] for r in customer_context_build(customer)["churn"]["reasons"]}
    assert "recent_unhappy_contact" not in reasons
    assert "negative_sentiment" in reasons  # the angry message still counts in the mean
    log("message:2", "message", 0, -0.6)
    reasons = {r["code"] for r in customer_context_build(customer)["churn"]["reasons"]}
    assert "recent_unhappy_contact" in reasons


def test_a_ticket_moved_to_another_customer_drops_both_cached_contexts(customer):
    """Before: only the payload's (new) customer was dropped; the one the ticket left kept
    listing it for CUSTOMER_CONTEXT_CACHE_TTL seconds."""
    from tickets.context.selectors import customer_context_get
    from tickets.context.wiring import on_ticket_changed
    from tickets.models import Customer

    other = Customer.objects.create(name="Other", email="other@example.com")
    for who in (customer, other):
        customer_context_get(who)
        assert cache.get(context_cache_key(who.pk)) is not None
    event = OutboxEvent(
        event_type="ticket.updated",
        payload={
            "ticket_id": 1,
            "customer_id": other.pk,
            "changes": {"customer_id": [customer.pk, other.pk]},
        },
    )
    on_ticket_changed(event)
    assert cache.get(context_cache_key(customer.pk)) is None
    assert cache.get(context_cache_key(other.pk)) is None
