from __future__ import annotations

import json

import pytest
from bs4 import BeautifulSoup

from routing import services
from routing.models import RoutingDecision, RoutingFailure, RoutingFeedback
from tickets import services as ticket_services
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def decision(routing_on, teams, customer, agent):
    teams["orders"].members.add(agent)  # the ticket is routed there; agents see their teams'
    ticket = ticket_services.ticket_create(
        customer=customer, subject="Where is my package", body="track my order please"
    )
    return services.routing_decide(ticket_id=ticket.pk)


def test_get_routing_latest_and_history(agent_client, decision):
    res = agent_client.get(f"/api/tickets/{decision.ticket_id}/routing")
    assert res.status_code == 200
    body = res.json()
    assert body["latest"]["id"] == decision.pk
    assert [d["id"] for d in body["history"]] == [decision.pk]
    latest = body["latest"]
    assert (latest["team"], latest["category"], latest["provider"]) == ("orders", "ORDER", "local")
    assert latest["tool_calls"][0]["name"] == "classify_issue"
    assert latest["feedback"] == []
    assert (body["routing_status"], body["routing_status_reason"]) == ("decided", None)


def test_get_routing_without_decision_and_unknown_ticket(agent_client, customer, settings):
    settings.ROUTING_ENABLED = True  # off in the test settings: "disabled"
    ticket = ticket_services.ticket_create(customer=customer, subject="x")
    assert agent_client.get(f"/api/tickets/{ticket.pk}/routing").json() == {
        "latest": None,
        "history": [],
        "routing_status": "pending",
        "routing_status_reason": "Waiting for the routing decision.",
    }
    # routing failed for good: the API says so, and why, instead of an empty history
    RoutingFailure.objects.create(ticket=ticket, error="PermanentError: no model", permanent=True)
    body = agent_client.get(f"/api/tickets/{ticket.pk}/routing").json()
    assert body["routing_status"] == "failed"
    assert "PermanentError: no model" in body["routing_status_reason"]
    assert agent_client.get("/api/tickets/999999/routing").status_code == 404


def test_override(agent_client, decision):
    res = agent_client.post(
        f"/api/tickets/T-{decision.ticket_id:06d}/routing/override",
        {"team": "billing", "priority": "urgent", "note": "charge dispute"},
        format="json",
    )
    assert res.status_code == 200, res.content
    body = res.json()
    assert body["feedback"]["verdict"] == "overridden"
    assert body["feedback"]["team"] == "billing"
    assert body["decision"]["feedback"][0]["id"] == body["feedback"]["id"]
    decision.ticket.refresh_from_db()
    assert (decision.ticket.team.slug, decision.ticket.priority) == ("billing", "urgent")
    assert RoutingFeedback.objects.count() == 1


def test_override_validation(agent_client, decision):
    url = f"/api/tickets/{decision.ticket_id}/routing/override"
    res = agent_client.post(url, {"team": "nope", "priority": "high"}, format="json")
    assert res.status_code == 400
    assert res.json()["error"]["details"] == {"team": ["Unknown."]}
    res = agent_client.post(url, {"team": "billing", "priority": "meh"}, format="json")
    assert res.status_code == 400
    assert RoutingFeedback.objects.count() == 0


def test_accept_and_accuracy(agent_client, supervisor_client, decision):
    res = agent_client.post(f"/api/tickets/{decision.ticket_id}/routing/accept", {}, format="json")
    assert res.status_code == 200
    assert res.json()["feedback"]["verdict"] == "accepted"
    # the figures are the supervisors' (routing/tests/test_accuracy_access.py)
    assert supervisor_client.get("/api/routing/accuracy").json() == {
        "reviewed": 1,
        "overridden": 0,
        "team_accuracy": 1.0,
        "priority_accuracy": 1.0,
    }


def test_a_verdict_sent_again_with_its_idempotency_key_is_answered_not_given_again(
    agent_client, supervisor_client, decision
):
    """Accept and override take ``Idempotency-Key`` (support.idempotency): a client that
    lost the answer sends the request again and gets the verdict it gave, even when
    another verdict came in between (without the key that retry would be a new accept,
    putting the ticket back). Before, the header was ignored."""
    accept = f"/api/tickets/{decision.ticket_id}/routing/accept"
    override = f"/api/tickets/{decision.ticket_id}/routing/override"
    first = agent_client.post(accept, {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 200, first.content
    assert "Idempotent-Replayed" not in first
    res = supervisor_client.post(override, {"team": "orders", "priority": "urgent"}, format="json")
    assert res.status_code == 200, res.content

    again = agent_client.post(accept, {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 200, again.content
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["feedback"] == first.json()["feedback"]
    assert list(RoutingFeedback.objects.order_by("pk").values_list("verdict", flat=True)) == [
        "accepted",
        "overridden",
    ]
    assert Ticket.objects.get(pk=decision.ticket_id).priority == "urgent"  # not put back

    # the same key for another request: refused, nothing written
    reused = agent_client.post(
        override, {"team": "orders", "priority": "low"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert (reused.status_code, reused.json()["error"]["code"]) == (
        422,
        "idempotency_key_reused",
    )
    assert RoutingFeedback.objects.count() == 2

    # an override's key; its decision purged since: 409, the verdict not shown
    body = {"team": "orders", "priority": "high", "note": "n"}
    res = agent_client.post(override, body, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert res.status_code == 200, res.content
    again = agent_client.post(override, body, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert (again.status_code, again["Idempotent-Replayed"]) == (200, "true")
    assert again.json()["feedback"]["id"] == res.json()["feedback"]["id"]
    RoutingDecision.objects.filter(pk=decision.pk).delete()
    gone = agent_client.post(override, body, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert gone.status_code == 409
    assert RoutingFeedback.objects.count() == 3


def test_outsider_is_forbidden(outsider, api_client, decision):
    api_client.force_authenticate(outsider)
    assert api_client.get(f"/api/tickets/{decision.ticket_id}/routing").status_code == 403


def test_panel_renders(rf, agent, decision):
    from django.template.loader import render_to_string

    from routing.panels import panel_context

    request = rf.get("/")
    request.user = agent
    html = render_to_string("routing/panel.html", panel_context(request, decision.ticket), request)
    assert "Orders &amp; Delivery" in html
    assert "classify_issue" in html
    # the override's fields are labelled and offer priorities by their labels
    assert "<label>Team <select" in html
    assert '<label>Priority <select name="priority"><option value="low" >Low</option>' in html
    assert '<p class="form-error routing-error" role="alert" hidden></p>' in html


def test_panel_labels_the_models_own_confidence_apart_from_the_measured_one(
    agent_client, rf, agent, decision
):
    """The panel's "Confidence" is the classifier's calibrated figure; an LLM's own figure is
    shown apart and says what it is; a decision nothing measured says "not measured"."""
    from bs4 import BeautifulSoup
    from django.template.loader import render_to_string

    from routing.panels import panel_context

    def confidence_line() -> str:
        request = rf.get("/")
        request.user = agent
        html = render_to_string(
            "routing/panel.html", panel_context(request, decision.ticket), request
        )
        first = BeautifulSoup(html, "html.parser").select_one("p")
        assert first is not None
        return " ".join(first.get_text().split())

    assert decision.model_stated_confidence is None  # the local provider
    line = confidence_line()
    assert f"Confidence: {decision.confidence:.2f}" in line
    assert "Stated by the model" not in line
    decision.provider, decision.confidence, decision.model_stated_confidence = "bedrock", 0.35, 0.9
    decision.save(update_fields=["provider", "confidence", "model_stated_confidence"])
    line = confidence_line()
    assert line.endswith(
        "Confidence: 0.35 · Stated by the model: 0.90 (its own figure, not measured)"
    )
    latest = agent_client.get(f"/api/tickets/{decision.ticket_id}/routing").json()["latest"]
    assert (latest["confidence"], latest["model_stated_confidence"]) == (0.35, 0.9)
    decision.confidence, decision.review_reasons = 0.0, ["confidence not measured"]
    decision.save(update_fields=["confidence", "review_reasons"])
    assert "Confidence: not measured · Stated by the model: 0.90" in confidence_line()


def test_panel_shows_labels_in_words_and_keeps_them_at_hand(agent_client, client, agent, decision):
    """The panel showed the data set's labels as they are ("CANCELLATION_FEE /
    check_cancellation_fee"); in words now, the labels themselves on hover and under the
    tool trace (the category -> team map and the admin use them), the API unchanged."""
    from bs4 import BeautifulSoup

    decision.category, decision.intent = "CANCELLATION_FEE", "check_cancellation_fee"
    decision.save(update_fields=["category", "intent"])
    client.force_login(agent)
    page = client.get(f"/tickets/T-{decision.ticket_id:06d}/")
    assert page.status_code == 200
    panel = BeautifulSoup(page.content, "html.parser").select_one(".routing-panel")
    assert panel is not None
    shown = panel.select_one(".routing-labels")
    assert shown is not None
    assert shown.get_text() == "Cancellation fee / Check cancellation fee"
    assert shown["title"] == "CANCELLATION_FEE / check_cancellation_fee"
    trace = panel.select_one("details")
    assert trace is not None
    assert [c.get_text() for c in trace.select("p > code")] == [
        "CANCELLATION_FEE",
        "check_cancellation_fee",
    ]
    latest = agent_client.get(f"/api/tickets/{decision.ticket_id}/routing").json()["latest"]
    assert (latest["category"], latest["intent"]) == ("CANCELLATION_FEE", "check_cancellation_fee")

    decision.category, decision.intent = "", ""  # nothing decided: a dash, no empty title
    decision.save(update_fields=["category", "intent"])
    page = client.get(f"/tickets/T-{decision.ticket_id:06d}/")
    shown = BeautifulSoup(page.content, "html.parser").select_one(".routing-labels")
    assert shown is not None
    assert (shown.get_text(), shown.get("title")) == ("— / —", None)


def test_review_reasons_name_the_labels_in_words_on_the_ticket_page(
    agent_client, client, agent, decision
):
    """The panel's "Needs review" line and the timeline entry quoted the data set's labels
    ("no known team for category ORDER", "model says CANCELLATION_FEE, classifier says
    ORDER"). In words on the page now, the reasons as stored on hover; what is stored and
    what the API returns are unchanged (so entries written before read the same way)."""
    from bs4 import BeautifulSoup

    from routing.reasons import REVIEW_NOTE

    reasons = [
        "no known team for category ORDER",
        "model says CANCELLATION_FEE, classifier says ORDER",
    ]
    decision.requires_manual_review, decision.review_reasons = True, reasons
    decision.save(update_fields=["requires_manual_review", "review_reasons"])
    ticket_services.ticket_update(
        ticket=decision.ticket, needs_review=True, reason=f"{REVIEW_NOTE}: {'; '.join(reasons)}"
    )
    client.force_login(agent)
    page = client.get(f"/tickets/T-{decision.ticket_id:06d}/")
    assert page.status_code == 200
    soup = BeautifulSoup(page.content, "html.parser")
    words = (
        "no known team for category “Order”; model says “Cancellation fee”, classifier says “Order”"
    )
    warning = soup.select_one(".routing-panel .warning")
    assert warning is not None
    assert warning.get_text() == f"Needs review: {words}"
    assert warning["title"] == "; ".join(reasons)
    entries = [p.get_text(" ", strip=True) for p in soup.select("#timeline .system-text")]
    [entry] = [e for e in entries if REVIEW_NOTE in e]
    assert entry.startswith(f"⚙ Needs review: no → yes ({REVIEW_NOTE}: {words}) ")
    latest = agent_client.get(f"/api/tickets/{decision.ticket_id}/routing").json()["latest"]
    assert latest["review_reasons"] == reasons
    api = agent_client.get(f"/api/tickets/{decision.ticket_id}").json()
    assert f"({REVIEW_NOTE}: {'; '.join(reasons)})" in api["messages"][-1]["body_text"]


def test_history_tool_lists_only_tickets_the_viewer_may_see(
    routing_on, teams, customer, agent, supervisor_client, agent_client, client
):
    """The router reads the customer's whole history, but the tool trace shown to an agent
    (API and ticket-page panel) names only the past tickets the agent may see."""
    teams["orders"].members.add(agent)
    hidden = ticket_services.ticket_create(
        customer=customer,
        subject="Chargeback on my card",
        body="x",
        team=teams["billing"],
    )
    ticket = ticket_services.ticket_create(
        customer=customer, subject="Where is my package", body="track my order please"
    )
    services.routing_decide(ticket_id=ticket.pk)

    def history(body):
        [call] = [c for c in body["latest"]["tool_calls"] if c["name"] == "get_historical_context"]
        return call["output"]

    everything = history(supervisor_client.get(f"/api/tickets/{ticket.pk}/routing").json())
    assert [t["number"] for t in everything["recent_tickets"]] == [hidden.number]
    mine = history(agent_client.get(f"/api/tickets/{ticket.pk}/routing").json())
    assert mine["recent_tickets"] == []
    assert mine["open_tickets"] is None  # counted the hidden ticket: withheld
    client.force_login(agent)
    page = client.get(f"/tickets/{ticket.number}/").content.decode()
    assert "Chargeback" not in page
    assert hidden.number not in page


def test_a_models_words_do_not_name_tickets_the_viewer_may_not_see(
    routing_on, teams, customer, agent, supervisor_client, agent_client
):
    """A model's reasoning (AI_PROVIDER=bedrock / openai) may quote the history tool: what
    an agent is shown of it names no past ticket the agent may not see, by number or by
    subject; supervisors see it as written."""
    from routing.models import RoutingDecision

    teams["orders"].members.add(agent)
    hidden = ticket_services.ticket_create(
        customer=customer, subject="Chargeback on my card", body="x", team=teams["billing"]
    )
    ticket = ticket_services.ticket_create(
        customer=customer, subject="Where is my package", body="track my order please"
    )
    services.routing_decide(ticket_id=ticket.pk)
    decision = RoutingDecision.objects.filter(ticket=ticket).latest("pk")
    words = f"Earlier {hidden.number} ('chargeback on my card') was a billing dispute."
    RoutingDecision.objects.filter(pk=decision.pk).update(reasoning=words, reasons=[words])

    everything = supervisor_client.get(f"/api/tickets/{ticket.pk}/routing").json()["latest"]
    assert everything["reasoning"] == words
    mine = agent_client.get(f"/api/tickets/{ticket.pk}/routing").json()["latest"]
    for text in (mine["reasoning"], *mine["reasons"]):
        assert hidden.number not in text
        assert "chargeback on my card" not in text.lower()
        assert "[a ticket you cannot see]" in text


@pytest.fixture
def counted(routing_on, teams, customer, agent):
    """A decision on an orders ticket (the agent's team) of a customer whose other ticket
    is billing's (an open, escalated one last week): the history tool counts it."""
    teams["orders"].members.add(agent)
    hidden = ticket_services.ticket_create(
        customer=customer, subject="Chargeback on my card", body="x", team=teams["billing"]
    )
    services.routing_decide(ticket_id=hidden.pk)  # its category: a common issue
    Ticket.objects.filter(pk=hidden.pk).update(team=teams["billing"], priority="urgent")
    ticket = ticket_services.ticket_create(
        customer=customer, subject="Where is my package", body="track my order please"
    )
    return services.routing_decide(ticket_id=ticket.pk)


def _calls(decision: dict) -> dict:
    return {c["name"]: c for c in decision["tool_calls"]}


HISTORY_COUNTS = [
    "tickets_last_7_days",
    "open_tickets",
    "common_issues",
    "past_escalations",
    "escalation_history",
]


def test_an_agent_is_shown_no_count_of_the_customers_tickets_a_supervisor_all(
    counted, supervisor_client, agent_client, agent, client
):
    """The history tool's counts, the priority tool's ``recent_tickets`` and its
    "1 recent ticket(s)" reason counted another team's ticket: an agent is shown none of
    them (API and ticket-page panel: "ticket history summarised for supervisors"); a
    supervisor is shown the trace as stored (the audit record of what the AI saw)."""
    url = f"/api/tickets/{counted.ticket_id}/routing"
    whole = supervisor_client.get(url).json()["latest"]
    history = _calls(whole)["get_historical_context"]["output"]
    assert history["tickets_last_7_days"] == 1
    assert history["open_tickets"] == 1
    assert history["common_issues"] != []
    assert (history["past_escalations"], history["escalation_history"]) == (1, True)
    assert "withheld" not in history
    assert _calls(whole)["calculate_priority"]["input"]["recent_tickets"] == 1
    assert "+5 1 recent ticket(s)" in whole["reasons"]
    assert "+5 1 recent ticket(s)" in whole["reasoning"]
    assert whole["tool_calls"] == counted.tool_calls  # as stored

    mine = agent_client.get(url).json()["latest"]
    history = _calls(mine)["get_historical_context"]["output"]
    assert {key: history[key] for key in HISTORY_COUNTS} == dict.fromkeys(HISTORY_COUNTS)
    assert history["withheld"] == HISTORY_COUNTS
    assert history["recent_tickets"] == []
    priority = _calls(mine)["calculate_priority"]
    assert priority["input"]["recent_tickets"] is None
    assert priority["input"]["withheld"] == ["recent_tickets"]
    assert "ticket history summarised for supervisors" in priority["output"]["reasons"]
    assert "ticket history summarised for supervisors" in mine["reasons"]
    assert "ticket history summarised for supervisors" in mine["reasoning"]
    assert "recent ticket" not in json.dumps(mine)
    # the same decision otherwise; the priority and its score are the decision's
    assert (mine["priority"], mine["priority_score"]) == (
        whole["priority"],
        whole["priority_score"],
    )
    # one serializer for the verdicts' answers too
    verdict = agent_client.post(f"{url}/accept", {}, format="json").json()["decision"]
    assert "recent ticket" not in json.dumps(verdict)
    assert verdict["tool_calls"] == mine["tool_calls"]

    client.force_login(agent)
    page = client.get(f"/tickets/T-{counted.ticket_id:06d}/").content.decode()
    panel = str(BeautifulSoup(page, "html.parser").select_one(".routing-panel"))
    assert "recent ticket" not in panel
    assert "'open_tickets': None" in panel
    assert "'past_escalations': None" in panel
    assert "ticket history summarised for supervisors" in panel
    assert RoutingDecision.objects.get(pk=counted.pk).tool_calls == whole["tool_calls"]


def test_an_llms_reasoning_is_shown_to_supervisors_only(
    counted, supervisor_client, agent_client, agent, client
):
    """An LLM's own words may quote or paraphrase the history's counts ("the third ticket
    this week"): an agent is shown a note in their place, whatever it may see; a
    supervisor the words."""
    words = "Third contact this week, one escalated: orders, high."
    RoutingDecision.objects.filter(pk=counted.pk).update(provider="bedrock", reasoning=words)
    url = f"/api/tickets/{counted.ticket_id}/routing"
    assert supervisor_client.get(url).json()["latest"]["reasoning"] == words
    mine = agent_client.get(url).json()["latest"]["reasoning"]
    assert mine == (
        "The model's own reasoning is shown to supervisors: it may quote the customer's "
        "whole ticket history, other teams' tickets included."
    )
    client.force_login(agent)
    page = client.get(f"/tickets/T-{counted.ticket_id:06d}/").content.decode()
    assert "Third contact" not in page
    assert "shown to supervisors" in page
    # a demo decision's reasoning is the local provider's under "bedrock": rewritten
    demo = "Demo data: priority normal (score 25: +5 1 recent ticket(s))."
    RoutingDecision.objects.filter(pk=counted.pk).update(demo=True, reasoning=demo)
    assert agent_client.get(url).json()["latest"]["reasoning"] == (
        "Demo data: priority normal (score 25: ticket history summarised for supervisors)."
    )


def test_override_refuses_a_category_or_intent_longer_than_stored_with_a_400(
    agent_client, decision
):
    """A label longer than the feedback's columns (64) is bad input, not a database error
    (it was a 500)."""
    url = f"/api/tickets/{decision.ticket_id}/routing/override"
    for field in ("category", "intent"):
        res = agent_client.post(
            url, {"team": "orders", "priority": "high", field: "x" * 65}, format="json"
        )
        assert res.status_code == 400, res.content
        assert list(res.json()["error"]["details"]) == [field]
    assert RoutingFeedback.objects.count() == 0


@pytest.mark.parametrize("verb", ["accept", "override"])
def test_a_decision_id_that_is_not_this_tickets_is_a_400_naming_it(
    verb, agent_client, decision, customer
):
    """``decision_id`` is input: one of another ticket's decisions, one that does not exist,
    and 0 (which used to mean "the latest") are refused with a 400 that names the field,
    like an unknown team; nothing is stored and the ticket is untouched."""
    other = ticket_services.ticket_create(
        customer=customer, subject="Where is my parcel", body="track my order please"
    )
    elsewhere = services.routing_decide(ticket_id=other.pk)
    url = f"/api/tickets/{decision.ticket_id}/routing/{verb}"
    body = {"team": "billing", "priority": "urgent"} if verb == "override" else {}
    for wrong in (elsewhere.pk, elsewhere.pk + 1000, 0):
        res = agent_client.post(url, {**body, "decision_id": wrong}, format="json")
        assert res.status_code == 400, (wrong, res.content)
        error = res.json()["error"]
        assert list(error["details"]) == ["decision_id"]
        assert error["message"].startswith("decision_id: ")
    assert RoutingFeedback.objects.count() == 0
    decision.ticket.refresh_from_db()
    assert (decision.ticket.team.slug, decision.ticket.priority) == ("orders", decision.priority)


def test_accepting_a_decision_that_names_no_team_is_refused(rf, agent, agent_client, decision):
    """A decision whose team is unknown (review reason "no known team") cannot be accepted:
    accepting it used to unassign the ticket and take it out of the review queue. The
    ticket panel offers the override only."""
    from django.template.loader import render_to_string

    from routing.models import RoutingDecision
    from routing.panels import panel_context
    from tickets.models import Ticket

    RoutingDecision.objects.filter(pk=decision.pk).update(
        team=None, team_slug="ghost-team", requires_manual_review=True
    )
    Ticket.objects.filter(pk=decision.ticket_id).update(needs_review=True)
    url = f"/api/tickets/{decision.ticket_id}/routing/accept"
    res = agent_client.post(url, {}, format="json")
    assert res.status_code == 400, res.content
    assert "override" in res.json()["error"]["message"]
    ticket = Ticket.objects.select_related("team").get(pk=decision.ticket_id)
    assert (ticket.team_id, ticket.needs_review) == (decision.team_id, True)
    assert RoutingFeedback.objects.count() == 0

    request = rf.get("/")
    request.user = agent
    html = render_to_string("routing/panel.html", panel_context(request, ticket), request)
    assert "/routing/override" in html
    assert "/routing/accept" not in html  # the panel offers only the override


def test_session_posts_need_the_csrf_token_the_panel_sends(agent, decision):
    """Accept / override from the ticket page are session posts: refused without the CSRF
    token (403, nothing stored), accepted with the X-CSRFToken header panel.js sends."""
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(agent)
    url = f"/api/tickets/{decision.ticket_id}/routing/accept"
    assert client.post(url, "{}", content_type="application/json").status_code == 403
    assert RoutingFeedback.objects.count() == 0
    assert client.get(f"/tickets/{decision.ticket.number}/").status_code == 200
    token = client.cookies["csrftoken"].value
    res = client.post(url, "{}", content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert res.status_code == 200, res.content
    assert RoutingFeedback.objects.count() == 1


def test_the_decision_history_costs_the_same_queries_however_many_verdicts(
    supervisor, supervisor_client, decision, teams, django_assert_num_queries
):
    """Each verdict's team and actor are loaded with the verdicts (they were two queries
    per verdict)."""
    url = f"/api/tickets/{decision.ticket_id}/routing"
    services.routing_decision_accept(decision=decision, actor=supervisor)
    supervisor_client.get(url)  # warm the session and the user's groups

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        assert supervisor_client.get(url).status_code == 200
    for n in range(5):  # five verdicts of their own (a repeat would answer the first)
        services.routing_decision_override(
            decision=decision,
            actor=supervisor,
            team=teams["billing"],
            priority="high",
            note=f"correction {n}",
        )
    with django_assert_num_queries(len(one)):
        res = supervisor_client.get(url)
    assert len(res.json()["latest"]["feedback"]) == 6
