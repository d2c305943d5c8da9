"""Workbench pages."""

from __future__ import annotations

import json

import pytest

from calls import services
from calls.models import Call, QueueTeam
from calls.tests.conftest import load, place_result
from tickets.models import Team

pytestmark = pytest.mark.django_db


@pytest.fixture
def billing(agent):
    team = Team.objects.create(name="Billing", slug="billing")
    team.members.add(agent)
    QueueTeam.objects.create(queue_name="BillingQueue", team=team)
    return team


@pytest.fixture
def call(calls_settings, billing, django_capture_on_commit_callbacks):
    ctr = load("ctr_billing.json")
    place_result(ctr["ContactId"], "transcribe.json", load("transcribe_billing.json"))
    with django_capture_on_commit_callbacks(execute=True):
        services.call_events_intake(body=json.dumps(ctr).encode())
    return Call.objects.get()


def test_list_and_detail(client, agent, call, django_assert_max_num_queries):
    client.force_login(agent)
    listing = client.get("/calls/")
    assert listing.status_code == 200
    assert f"/calls/{call.hash}/" in listing.content.decode()
    with django_assert_max_num_queries(12):
        page = client.get(f"/calls/{call.hash}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert call.analytics.call_summary in html
    assert "BillingQueue" in html
    assert 'class="speaker-customer"' in html
    assert "sentiment-positive" in html
    assert "Press 1 for billing, 2 for support" in html
    # Connect's constants as words ("VOICE · INBOUND" and "POSITIVE" before)
    assert "<p>Voice · Inbound · " in html
    assert '<span class="badge sentiment-positive">Positive</span>' in html
    assert client.get("/calls/" + "0" * 32 + "/").status_code == 404


def test_the_call_page_shows_the_duration_in_minutes_and_seconds(client, agent, call):
    """10:03:00 to 10:08:40 is 340 seconds, which the page wrote as "340 s"."""
    assert call.duration_seconds == 340
    client.force_login(agent)
    html = client.get(f"/calls/{call.hash}/").content.decode()
    assert " · 5 min 40 s\n · caller " in html
    assert "340 s" not in html


def test_the_call_page_says_who_produced_the_analysis_once(client, agent, call):
    """It read "produced by Local (offline) (Local)", and said nothing of a Bedrock failure
    the offline analysis stood in for."""
    client.force_login(agent)
    html = client.get(f"/calls/{call.hash}/").content.decode()
    assert "produced by Local (offline)</p>" in html
    call.analytics.bedrock_status = "Failed"
    call.analytics.save(update_fields=["bedrock_status"])
    html = client.get(f"/calls/{call.hash}/").content.decode()
    assert "produced by Local (offline) (Bedrock failed: analysed offline instead)</p>" in html
    # any provider's fallback, not only Bedrock's (an OpenAI one showed nothing)
    call.analytics.bedrock_status = ""
    call.analytics.fallback_from = "openai"
    call.analytics.save(update_fields=["bedrock_status", "fallback_from"])
    html = client.get(f"/calls/{call.hash}/").content.decode()
    assert "produced by Local (offline) (OpenAI failed: analysed offline instead)</p>" in html


def test_the_call_page_says_call_sentiment_is_an_estimate(client, agent, call):
    """docs/benchmarks.md: call sentiment has no labels here and is not measured."""
    client.force_login(agent)
    html = client.get(f"/calls/{call.hash}/").content.decode()
    assert (
        'Sentiment: Positive <span class="muted">(estimated from the transcript\'s words; '
        "its accuracy is not measured)</span>" in html
    )


def test_the_call_page_says_where_categories_came_from(client, agent, call):
    """The keyword rules' categories read as rules, also under a model's analysis (it
    named none of ours); no category is "Uncategorised", not a default presented as
    found."""
    client.force_login(agent)
    html = client.get(f"/calls/{call.hash}/").content.decode()
    assert '<span class="badge category">Billing</span>' in html
    assert '<span class="muted">(keyword rules)</span></p>' in html
    call.analytics.produced_by = "transcribe_model"
    call.analytics.provider = "bedrock"
    call.analytics.save(update_fields=["produced_by", "provider"])
    html = client.get(f"/calls/{call.hash}/").content.decode()
    assert "(keyword rules: the model named none of our categories)" in html
    call.analytics.call_categories = []
    call.analytics.categories_by = ""
    call.analytics.save(update_fields=["call_categories", "categories_by"])
    html = client.get(f"/calls/{call.hash}/").content.decode()
    assert 'Categories: <span class="muted">Uncategorised (no category found)</span>' in html
    assert "keyword rules" not in html
    assert "<td>Uncategorised</td>" in client.get("/calls/").content.decode()


def test_board_is_for_supervisors(client, agent, supervisor, db):
    client.force_login(agent)
    refused = client.get("/calls/board/")
    assert refused.status_code == 403
    assert "<h1>Not allowed</h1>" in refused.content.decode()  # the site's page, its icon
    from django.utils import timezone

    from calls.models import AgentStateSpan

    AgentStateSpan.objects.create(
        agent_arn="arn:agent/1",
        username="jdoe",
        state="AfterContactWork",
        started_at=timezone.now(),
    )
    client.force_login(supervisor)
    page = client.get("/calls/board/")
    assert page.status_code == 200
    assert "/static/js/calls_board.js" in page.content.decode()  # listens on /ws/events/
    assert (
        '<td class="state"><span class="badge">After contact work</span></td>'
        in page.content.decode()
    )


def test_pages_need_login(client, db):
    assert client.get("/calls/").status_code == 302


def test_agents_of_other_teams_do_not_see_the_call(client, other_agent, supervisor, call):
    client.force_login(other_agent)
    assert f"/calls/{call.hash}/" not in client.get("/calls/").content.decode()
    # the search (contact id or caller's number) stays inside the visible calls
    for q in (call.contact_id, call.customer_phone):
        assert f"/calls/{call.hash}/" not in client.get("/calls/", {"q": q}).content.decode()
    assert client.get(f"/calls/{call.hash}/").status_code == 404
    client.force_login(supervisor)
    assert f"/calls/{call.hash}/" in client.get("/calls/").content.decode()
    for q in (call.contact_id, call.customer_phone):
        assert f"/calls/{call.hash}/" in client.get("/calls/", {"q": q}).content.decode()
    assert client.get(f"/calls/{call.hash}/").status_code == 200


def test_unmapped_queue_is_for_supervisors_only(client, agent, supervisor, call):
    QueueTeam.objects.all().delete()
    client.force_login(agent)
    assert client.get(f"/calls/{call.hash}/").status_code == 404
    assert f"/calls/{call.hash}/" not in client.get("/calls/").content.decode()
    client.force_login(supervisor)
    assert client.get(f"/calls/{call.hash}/").status_code == 200


def test_escalation_ticket_is_named_only_when_visible(client, agent, other_agent, call):
    from calls.models import Escalation
    from tickets import services as ticket_services
    from tickets.models import Customer

    other_team = Team.objects.create(name="Other", slug="other")
    other_team.members.add(other_agent)
    customer = Customer.objects.create(name="Caller", phone="+15550001")
    hidden = ticket_services.ticket_create(
        customer=customer, subject="IVR failure", body="x", team=other_team
    )
    Escalation.objects.create(call=call, kind="max_retries", reason="Too many", ticket=hidden)
    client.force_login(agent)
    page = client.get(f"/calls/{call.hash}/").content.decode()
    assert "Max retries: Too many" in page  # "max_retries" before
    assert hidden.number not in page
    client.force_login(other_agent)
    QueueTeam.objects.create(queue_name="BillingQueue", team=other_team)
    assert hidden.number in client.get(f"/calls/{call.hash}/").content.decode()


def test_call_list_query_count_does_not_grow(client, agent, billing, django_assert_max_num_queries):
    from calls.models import CallAnalytics
    from tickets.models import Customer

    for i in range(8):
        customer = Customer.objects.create(name=f"Caller {i}", phone=f"+1555000{i}")
        made = Call.objects.create(
            contact_id=f"c-{i}", queue_name="BillingQueue", customer=customer
        )
        CallAnalytics.objects.create(call=made, call_categories=["Billing"], produced_by="local")
    Call.objects.create(contact_id="hidden", queue_name="VipQueue")
    client.force_login(agent)
    # session, user, groups, the agent's teams, the calls (visibility is a subquery)
    with django_assert_max_num_queries(6):
        page = client.get("/calls/")
    html = page.content.decode()
    assert [f"/calls/{c.hash}/" in html for c in Call.objects.order_by("contact_id")] == [
        True
    ] * 8 + [False]


def test_a_call_page_for_a_hash_that_is_no_md5_digest_is_not_found(client, supervisor, call):
    """A NUL in the path reached PostgreSQL (500): now refused before URL resolution (400,
    support.middleware); a hash too long for one, like an unknown hash, 404."""
    client.force_login(supervisor)
    assert client.get("/calls/%00/").status_code == 400
    assert client.get("/calls/" + "a" * 3000 + "/").status_code == 404


def test_an_unknown_status_filter_answers_400(client, supervisor, call):
    """``?status=`` names a pipeline status; a typo listed no call at all (200, empty). The
    answer is the calls page with the reason (it was the reason alone, as plain text)."""
    client.force_login(supervisor)
    response = client.get("/calls/", {"status": "bogus", "q": "+1415"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "<title>Calls · " in html
    assert (
        '<p class="form-error" role="alert">status must be one of: received, '
        "awaiting_recording, no_recording, transcribing, transcribed, analysed, synced, "
        "failed.</p>"
    ) in html
    assert 'name="q" value="+1415"' in html  # what was typed stays
    assert f"/calls/{call.hash}/" not in html
    listed = client.get("/calls/", {"status": call.pipeline_status}).content.decode()
    assert f"/calls/{call.hash}/" in listed
    assert f'<option value="{call.pipeline_status}" selected>' in listed


def test_the_calls_list_searches_and_says_when_nothing_matches(client, supervisor, call):
    """The list took ``q`` and ``status`` but the page had no field for either."""
    client.force_login(supervisor)
    page = client.get("/calls/").content.decode()
    assert '<input type="search" name="q" value=""' in page
    found = client.get("/calls/", {"q": call.contact_id[:8]}).content.decode()
    assert f"/calls/{call.hash}/" in found
    none = client.get("/calls/", {"q": "no-such-call"}).content.decode()
    assert f"/calls/{call.hash}/" not in none
    assert "No call matches this search." in none


def test_the_calls_list_says_when_it_shows_only_the_newest(client, supervisor, monkeypatch):
    from calls import views

    monkeypatch.setattr(views, "CALL_LIST_LIMIT", 2)
    for i in range(3):
        Call.objects.create(contact_id=f"c-{i}", queue_name="Q")
    client.force_login(supervisor)
    page = client.get("/calls/").content.decode()
    assert sum(f"/calls/{c.hash}/" in page for c in Call.objects.all()) == 2
    assert "The newest 2 calls are shown; search by contact id or phone for older ones." in page
    Call.objects.filter(contact_id="c-0").delete()
    assert "The newest" not in client.get("/calls/").content.decode()


def test_an_agent_who_sees_an_escalation_ticket_sees_its_call(
    client, agent, other_agent, calls_settings, django_capture_on_commit_callbacks
):
    """Seed 002's IVR journey flow ends "Frontend displays journey timeline". A caller who
    failed in the IVR never reached a queue, so the call was for supervisors only, while
    its escalation ticket went to every agent (no team) with a link to the call page that
    answered them 404: whoever followed the failure up never saw the journey. An agent who
    may see one of a call's escalation tickets now sees the call; once routing moves the
    ticket to another team, that team's agents do, and the others no longer."""
    with django_capture_on_commit_callbacks(execute=True):
        services.call_events_intake(body=json.dumps(load("ctr_ivr_failure.json")).encode())
    call = Call.objects.get()
    ticket = call.escalations.get().ticket
    assert ticket is not None
    assert (call.queue_name, ticket.team) == ("", None)
    page = f"/calls/{call.hash}/"
    assert page in ticket.messages.get().body_text
    client.force_login(agent)
    shown = client.get(page)
    assert shown.status_code == 200
    assert "Please enter your account number" in shown.content.decode()  # the journey
    assert page in client.get("/calls/").content.decode()
    elsewhere = Team.objects.create(name="Elsewhere", slug="elsewhere")
    elsewhere.members.add(other_agent)
    Team.objects.create(name="Mine", slug="mine").members.add(agent)
    ticket.team = elsewhere
    ticket.save(update_fields=["team"])
    assert client.get(page).status_code == 404
    assert page not in client.get("/calls/").content.decode()
    client.force_login(other_agent)
    assert client.get(page).status_code == 200


def test_a_caller_matched_by_number_is_marked_unverified(
    client, supervisor, calls_settings, django_capture_on_commit_callbacks
):
    """A call is linked to the customer whose phone is the caller's number, and caller ID
    can be spoofed: the call page and the IVR-failure ticket said who was calling as if
    known."""
    from tickets.models import Customer

    record = load("ctr_ivr_failure.json")
    number = record["CustomerEndpoint"]["Address"]
    known = Customer.objects.create(name="Dana Known", phone=number)
    with django_capture_on_commit_callbacks(execute=True):
        services.call_events_intake(body=json.dumps(record).encode())
    call = Call.objects.get()
    assert call.customer == known
    client.force_login(supervisor)
    page = client.get(f"/calls/{call.hash}/").content.decode()
    assert "caller Dana Known <span" in page
    assert f"(by caller ID {number}, not verified)" in page
    ticket = call.escalations.get().ticket
    assert ticket is not None
    assert ticket.customer == known
    assert f"Caller: {number} (caller ID, not verified" in ticket.messages.get().body_text


def test_a_caller_matched_to_another_teams_customer_is_shown_by_number_only(
    client, agent, other_agent, supervisor, call
):
    """Calls follow queues, customers their tickets: caller ID matched this Billing call to
    a customer only another team's tickets name, and the call page and list named them to
    Billing's agent, whom the customer page answers "Not found" (security review
    2026-12-07). The agent sees the number; a supervisor, and the agent once a ticket of
    the customer is theirs, see the name."""
    from tickets import services as ticket_services
    from tickets.models import Customer

    elsewhere = Team.objects.create(name="Elsewhere", slug="elsewhere")
    elsewhere.members.add(other_agent)
    secret = Customer.objects.create(name="Secret Bcustomer", phone=call.customer_phone)
    ticket_services.ticket_create(customer=secret, subject="Theirs", body="x", team=elsewhere)
    Call.objects.filter(pk=call.pk).update(customer=secret)
    client.force_login(agent)
    assert client.get(f"/customers/{secret.pk}/").status_code == 404
    page = client.get(f"/calls/{call.hash}/").content.decode()
    listing = client.get("/calls/").content.decode()
    assert "Secret Bcustomer" not in page
    assert "Secret Bcustomer" not in listing
    assert f"caller {call.customer_phone} ·" in page
    assert call.customer_phone in listing
    client.force_login(supervisor)
    assert "caller Secret Bcustomer <span" in client.get(f"/calls/{call.hash}/").content.decode()
    assert "Secret Bcustomer" in client.get("/calls/").content.decode()
    ticket_services.ticket_create(customer=secret, subject="Ours", body="x", team=call_team(call))
    client.force_login(agent)
    assert "caller Secret Bcustomer <span" in client.get(f"/calls/{call.hash}/").content.decode()
    assert "Secret Bcustomer" in client.get("/calls/").content.decode()


def call_team(call):
    return QueueTeam.objects.get(queue_name=call.queue_name).team
