from __future__ import annotations

import html as html_module

import pytest
from bs4 import BeautifulSoup
from django.db import connection
from django.test import Client as DjangoClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from support.models import OutboxEvent
from tickets import services
from tickets.models import CannedResponse, Message, Tag, Team, Ticket, TicketRead
from tickets.panels import Panel, _panels, register_panel

pytestmark = pytest.mark.django_db

INBOX_QUERY_BUDGET = 12
TICKET_QUERY_BUDGET = 27  # with the routing, context, deliveries and KB panels (a new
# conversation reads which passages hold its names once: knowledge.retrieval.name_stats)


def _tickets(customer, n, **kwargs):
    made = []
    for i in range(n):
        ticket = services.ticket_create(
            customer=customer, subject=f"Problem {i}", body=f"body {i}", tags=["a", "b"], **kwargs
        )
        made.append(ticket)
    return made


@pytest.fixture
def agent_web(client, agent):
    client.force_login(agent)
    return client


@pytest.fixture
def supervisor_web(client, supervisor):
    client.force_login(supervisor)
    return client


def _count(client, url):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_anonymous_is_sent_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_signed_in_non_agent_is_refused(client, outsider):
    client.force_login(outsider)
    page = client.get("/")
    assert page.status_code == 403
    # the site's page, saying why (not a bare "403 Forbidden" without the site's icon)
    html = page.content.decode()
    assert "<h1>Not allowed</h1>" in html
    assert "The workbench is for agents and supervisors." in html
    assert "favicon.svg" in html
    # htmx asks for a fragment: the message alone, shown in place
    fragment = client.get("/", headers={"HX-Request": "true"})
    assert (fragment.status_code, fragment.content) == (
        403,
        b"The workbench is for agents and supervisors.",
    )


def test_an_unknown_page_is_the_sites_not_found_page(client, agent):
    client.force_login(agent)
    page = client.get("/no-such-page/")
    assert page.status_code == 404
    assert "<h1>Not found</h1>" in page.content.decode()


def test_sign_in_page_renders_and_signs_in(client, agent):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b'name="username"' in page.content
    response = client.post(
        "/accounts/login/", {"username": "agent", "password": "pw-for-tests-1", "next": "/"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/start/"  # the landing page: "Mine" or "Unassigned"


def test_a_failed_sign_in_keeps_the_username(client, agent):
    """The form came back empty: the username had to be typed again."""
    page = client.post("/accounts/login/", {"username": "agent", "password": "wrong"})
    html = page.content.decode()
    assert page.status_code == 200
    assert "didn't match" in html
    assert 'name="username" value="agent" autocomplete="username" required>' in html
    assert 'autocomplete="current-password" required autofocus>' in html  # the password next


def test_sign_out_by_address_shows_the_button_not_a_blank_page(client, agent):
    """GET /accounts/logout/ (typed or bookmarked) was an empty 405 page."""
    client.force_login(agent)
    page = client.get("/accounts/logout/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "You are signed in as agent." in html
    assert '<form method="post" action="/accounts/logout/">' in html
    assert "_auth_user_id" in client.session  # a GET signs nobody out
    assert client.post("/accounts/logout/").status_code == 302
    assert "_auth_user_id" not in client.session
    assert "You are signed out" in client.get("/accounts/logout/").content.decode()


def test_error_pages_django_renders_without_a_request_look_like_the_site(rf):
    """500, 400 and a refused CSRF token were Django's bare pages ("Server Error (500)",
    "Bad Request (400)", and the CSRF page's explanation for developers)."""
    from django.core.exceptions import SuspiciousOperation
    from django.views import defaults

    error = defaults.server_error(rf.get("/"))
    assert error.status_code == 500
    assert '<h1 id="error-title">Something went wrong</h1>' in error.content.decode()
    assert "/css/app" in error.content.decode()
    bad = defaults.bad_request(rf.get("/"), SuspiciousOperation("x"))
    assert bad.status_code == 400
    assert '<h1 id="error-title">Bad request</h1>' in bad.content.decode()


def test_a_form_sent_without_its_csrf_token_says_what_to_do(agent):
    client = DjangoClient(enforce_csrf_checks=True)
    page = client.post("/accounts/login/", {"username": "agent", "password": "pw-for-tests-1"})
    html = page.content.decode()
    assert page.status_code == 403
    assert '<h1 id="error-title">This form is out of date</h1>' in html
    assert "reload the page and send the form again" in html
    assert "CSRF verification failed" not in html


def test_inbox_queries_do_not_grow_with_rows(agent_web, customer, django_assert_max_num_queries):
    _tickets(customer, 3)
    small = _count(agent_web, "/?view=all")
    _tickets(customer, 27)
    with django_assert_max_num_queries(INBOX_QUERY_BUDGET):
        response = agent_web.get("/?view=all")
    assert len(response.context["result"].tickets) == 30
    assert _count(agent_web, "/?view=all") == small


def test_the_inbox_offers_only_tags_of_tickets_the_agent_may_see(
    client, agent, other_agent, supervisor, customer, teams
):
    """The tag filter listed every tag, so another team's ticket's tag ("legal-hold-…")
    told an agent what that ticket was about (security review 2026-12-06). A tag on no
    ticket tells nothing: offered to everyone (the admin's tag choices too)."""
    billing, shipping = teams
    services.ticket_create(customer=customer, subject="s", body="b", team=billing, tags=["refund"])
    services.ticket_create(customer=customer, subject="s", body="b", tags=["no-team"])
    services.ticket_create(
        customer=customer, subject="s", body="b", team=shipping, tags=["legal-hold-acme"]
    )
    theirs = services.ticket_create(
        customer=customer, subject="s", body="b", team=shipping, tags=["given-to-agent"]
    )
    services.ticket_assign(ticket=theirs, assignee=agent, actor=supervisor)
    Tag.objects.create(name="on-no-ticket")

    def offered(user):
        client.force_login(user)
        page = client.get("/?view=all")
        assert page.status_code == 200
        return [tag.name for tag in page.context["tags"]]

    assert offered(agent) == ["given-to-agent", "no-team", "on-no-ticket", "refund"]
    assert offered(other_agent) == ["given-to-agent", "legal-hold-acme", "no-team", "on-no-ticket"]
    assert offered(supervisor) == [
        "given-to-agent",
        "legal-hold-acme",
        "no-team",
        "on-no-ticket",
        "refund",
    ]


def test_inbox_partial_for_htmx(agent_web, customer):
    _tickets(customer, 2)
    response = agent_web.get("/?view=all", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="inbox-list")
    assert response.status_code == 200
    assert response.templates[0].name == "tickets/_inbox_list.html"
    assert b"<html" not in response.content


def test_inbox_views_and_filters(agent_web, agent, customer, other_agent):
    mine, unassigned, others = _tickets(customer, 3)
    services.ticket_assign(ticket=mine, assignee=agent)
    services.ticket_assign(ticket=others, assignee=other_agent)
    services.ticket_update(ticket=unassigned, needs_review=True)

    def numbers(url):
        return [t.pk for t in agent_web.get(url).context["result"].tickets]

    assert numbers("/?view=mine") == [mine.pk]
    assert numbers("/?view=unassigned") == [unassigned.pk]
    assert numbers("/?view=review") == [unassigned.pk]
    assert numbers(f"/?view=all&assignee={other_agent.pk}") == [others.pk]
    assert numbers("/?view=all&sort=oldest") == [mine.pk, unassigned.pk, others.pk]
    services.ticket_update(ticket=mine, status="resolved")
    assert numbers("/?view=mine") == []
    assert numbers("/?view=mine&status=resolved") == [mine.pk]


def test_inbox_repeated_status_adds_up_like_a_comma_list(agent_web, customer):
    new, pending, resolved = _tickets(customer, 3)
    services.ticket_update(ticket=pending, status="pending")
    services.ticket_update(ticket=resolved, status="resolved")

    def numbers(url):
        return sorted(t.pk for t in agent_web.get(url).context["result"].tickets)

    assert numbers("/?view=all&status=new&status=pending") == [new.pk, pending.pk]
    assert numbers("/?view=all&status=new,pending") == [new.pk, pending.pk]


def test_an_empty_inbox_says_why_and_where_to_look(agent_web, customer):
    _tickets(customer, 1)  # unassigned
    mine = agent_web.get("/?view=mine").content.decode()
    assert "Nothing is assigned to you" in mine
    assert 'href="/?view=unassigned"' in mine
    filtered = agent_web.get("/?view=all&status=resolved").content.decode()
    assert "No ticket matches these filters" in filtered
    assert 'href="/?view=all">Clear them' in filtered
    searched = agent_web.get("/?view=all&q=zzzqqq").content.decode()
    assert "No ticket matches this search" in searched


def test_an_empty_inbox_echoes_nothing_a_visitor_typed_unescaped(agent_web, customer):
    """The empty-list message links back with the view (an unknown one never gets there) and
    never repeats the search or filter values raw."""
    hostile = '"><script>alert(1)</script>'
    # an unknown status: back to the inbox, which shows why (escaped)
    page = agent_web.get("/", {"view": "all", "q": hostile, "status": hostile}, follow=True)
    assert page.redirect_chain == [("/", 302)]
    assert "status: unknown value" in page.content.decode()
    assert "<script>alert(1)" not in page.content.decode()
    unknown = agent_web.get("/", {"view": hostile})  # an unknown view: back to the inbox
    assert (unknown.status_code, unknown["Location"]) == (302, "/")
    searched = agent_web.get("/", {"view": "all", "q": hostile}).content.decode()
    assert "No ticket matches this search" in searched
    assert "<script>alert(1)" not in searched


def test_inbox_search_covers_subject_messages_and_customer(agent_web, customer):
    first = services.ticket_create(customer=customer, subject="Refund please", body="x")
    second = services.ticket_create(customer=customer, subject="Other", body="My parcel is lost")
    services.message_add(ticket=second, body="tracking number 123", author_user=None)

    def found(q):
        return [t.pk for t in agent_web.get("/", {"view": "all", "q": q}).context["result"].tickets]

    assert found("refund") == [first.pk]
    assert found("parcels") == [second.pk]
    assert sorted(found("lovelace")) == sorted([first.pk, second.pk])
    assert found(first.number) == [first.pk]
    assert found("nothing-matches-this") == []


def test_agent_sees_only_own_team_tickets(agent_web, agent, customer):
    mine = Team.objects.create(name="Mine", slug="mine")
    other = Team.objects.create(name="Other", slug="other")
    mine.members.add(agent)
    visible, hidden = _tickets(customer, 2)
    services.ticket_update(ticket=visible, team=mine)
    services.ticket_update(ticket=hidden, team=other)
    result = agent_web.get("/?view=all").context["result"]
    assert [t.pk for t in result.tickets] == [visible.pk]
    assert agent_web.get(f"/tickets/{hidden.number}/").status_code == 404


def test_inbox_pagination(agent_web, customer):
    _tickets(customer, 3)
    from tickets import selectors

    page = selectors.inbox_page(user=agent_web_user(agent_web), view="all", page_size=2)
    assert (len(page.tickets), page.has_next) == (2, True)
    page2 = selectors.inbox_page(user=agent_web_user(agent_web), view="all", page=2, page_size=2)
    assert (len(page2.tickets), page2.has_next) == (1, False)


@pytest.mark.parametrize("page", ["0", "-1", "abc", "1.5", "999999999999999999", "1001", "%C2%B2"])
def test_inbox_bad_page_numbers_are_refused_saying_why(agent_web, customer, page):
    """A page that is not a whole number from 1 to the last one allowed is refused; a huge
    one used to reach PostgreSQL as an OFFSET out of bigint range (a 500)."""
    _tickets(customer, 1)
    partial = agent_web.get(
        f"/?view=all&page={page}", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="inbox-list"
    )
    assert partial.status_code == 400
    assert partial.content.decode().startswith("page must be a whole number from 1 to 1000")
    full = agent_web.get(f"/?view=all&page={page}")
    assert (full.status_code, full["Location"]) == (302, "/")
    said = [str(m) for m in full.wsgi_request._messages]
    assert len(said) == 1
    assert said[0].startswith("page must be a whole number from 1 to 1000"), said
    assert agent_web.get("/?view=all&page=1000").status_code == 200  # the last allowed


def test_the_last_allowed_inbox_page_offers_no_next_page(agent_web, customer, monkeypatch):
    from tickets import selectors

    _tickets(customer, 3)
    monkeypatch.setattr(selectors, "INBOX_MAX_PAGE", 2)
    user = agent_web_user(agent_web)
    assert selectors.inbox_page(user=user, view="all", page=1, page_size=1).has_next
    last = selectors.inbox_page(user=user, view="all", page=2, page_size=1)
    assert (len(last.tickets), last.has_next) == (1, False)  # page 3 would be refused


def test_the_pager_says_previous_and_next_whatever_the_sort(agent_web, customer, monkeypatch):
    """It said "← Newer" / "Older →", wrong under every sort but the newest first."""
    from functools import partial

    from tickets import selectors

    _tickets(customer, 3)
    monkeypatch.setattr(selectors, "inbox_page", partial(selectors.inbox_page, page_size=1))
    html = agent_web.get("/?view=all&sort=oldest&page=2").content.decode()
    assert 'rel="prev">← Previous</a>' in html
    assert 'rel="next">Next →</a>' in html
    assert "Newer" not in html
    assert "Older" not in html


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=bogus", "status"), ("priority=asap", "priority"), ("channel=fax", "channel")],
)
def test_inbox_unknown_filter_values_are_refused_naming_them(agent_web, customer, query, field):
    """An unknown status, priority or channel used to show an empty list as if nothing
    matched; the inbox says which value is wrong."""
    _tickets(customer, 1)
    partial = agent_web.get(
        f"/?view=all&{query}", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="inbox-list"
    )
    assert partial.status_code == 400
    assert partial.content.decode().startswith(f"{field}: unknown value")


def agent_web_user(client):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username="agent")


def test_ticket_page_queries_do_not_grow_with_timeline(
    agent_web, customer, django_assert_max_num_queries
):
    CannedResponse.objects.create(title="Hi", shortcut="hi", body="Hi")
    [ticket] = _tickets(customer, 1)
    _count(agent_web, f"/tickets/{ticket.number}/")  # first visit also creates the read marker
    small = _count(agent_web, f"/tickets/{ticket.number}/")
    for i in range(15):
        services.message_add(ticket=ticket, body=f"reply {i}", author_user=None)
        services.message_add(ticket=ticket, body=f"note {i}", kind="internal_note")
    with django_assert_max_num_queries(TICKET_QUERY_BUDGET):
        response = agent_web.get(f"/tickets/{ticket.number}/")
    assert len(response.context["timeline"]) == 31
    assert _count(agent_web, f"/tickets/{ticket.number}/") == small


def test_ticket_page_renders_timeline_kinds_and_panel_placeholders(
    agent_web, agent, customer, monkeypatch
):
    from tickets import panels

    monkeypatch.setattr(panels, "_panels", {})  # no app has registered a panel
    [ticket] = _tickets(customer, 1)
    services.message_add(ticket=ticket, body="We are on it", author_user=agent)
    services.message_add(ticket=ticket, body="secret note", kind="internal_note", author_user=agent)
    html = agent_web.get(f"/tickets/{ticket.number}/").content.decode()
    assert 'data-kind="internal_note"' in html
    assert "not sent to the customer" in html
    assert 'data-delivery="queued"' in html
    assert 'data-slot="routing"' in html
    assert "No routing panel installed yet" in html
    assert TicketRead.objects.filter(ticket=ticket).count() == 1


def test_registered_panel_is_rendered(agent_web, customer, tmp_path, settings):
    template_dir = tmp_path / "templates"
    (template_dir / "x").mkdir(parents=True)
    (template_dir / "x" / "panel.html").write_text("<p>score {{ panel.score }}</p>")
    base = settings.TEMPLATES[0]
    settings.TEMPLATES = [{**base, "DIRS": [*base["DIRS"], template_dir]}]
    register_panel(
        Panel("test-route", "Routing", "x/panel.html", lambda r, t: {"score": 7}, 1, "routing")
    )
    try:
        [ticket] = _tickets(customer, 1)
        html = agent_web.get(f"/tickets/{ticket.number}/").content.decode()
    finally:
        _panels.pop("test-route")
    assert "<p>score 7</p>" in html
    assert "No routing panel installed yet" not in html


def test_reply_and_note_from_composer(agent_web, agent, customer):
    [ticket] = _tickets(customer, 1)
    OutboxEvent.objects.all().delete()
    url = reverse("ticket-message", kwargs={"ref": ticket.number})
    assert agent_web.post(url, {"kind": "public", "body": "Hello"}).status_code == 302
    response = agent_web.post(
        url, {"kind": "internal_note", "body": "psst"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert b"psst" in response.content
    reply, note = Message.objects.filter(ticket=ticket, direction="outbound").order_by("id")
    assert (reply.kind, reply.delivery_status, reply.author_user) == ("public", "queued", agent)
    assert (note.kind, note.delivery_status) == ("internal_note", "")
    refused = agent_web.post(url, {"kind": "system", "body": "x"}, HTTP_HX_REQUEST="true")
    assert (refused.status_code, refused.content) == (400, b"kind must be public or internal_note.")


def test_update_controls_and_agent_cannot_assign_others(agent_web, agent, other_agent, customer):
    [ticket] = _tickets(customer, 1)
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    response = agent_web.post(url, {"status": "pending", "priority": "high", "tags": "x, y"})
    assert response.status_code == 302
    ticket.refresh_from_db()
    assert (ticket.status, ticket.priority) == ("pending", "high")
    assert sorted(ticket.tags.values_list("name", flat=True)) == ["x", "y"]
    assert agent_web.post(url, {"assignee": "me"}).status_code == 302
    assert agent_web.post(url, {"assignee": str(other_agent.pk)}).status_code == 403
    ticket.refresh_from_db()
    assert ticket.assignee == agent


@pytest.mark.parametrize("team", ["abc", "9" * 25, "\u00b2"])
def test_update_with_a_team_that_is_no_id_changes_nothing(agent_web, agent, customer, team):
    """A team value that is not an id (nor empty, "No team") used to take the ticket out of
    its team, as if "No team" had been chosen."""
    billing = Team.objects.create(name="Billing", slug="billing")
    billing.members.add(agent)
    [ticket] = _tickets(customer, 1, team=billing)
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    response = agent_web.post(url, {"team": team}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    assert response.content.decode() == "team must be a team id, or empty for no team."
    assert Ticket.objects.get(pk=ticket.pk).team_id == billing.pk
    # "No team" is a supervisor's (test_only_supervisors_take_one_ticket_out_of_its_team)
    assert agent_web.post(url, {"team": ""}).status_code == 400
    assert Ticket.objects.get(pk=ticket.pk).team_id == billing.pk


@pytest.mark.parametrize("htmx", [True, False])
def test_moving_a_ticket_out_of_view_goes_back_to_the_inbox_saying_so(
    agent_web, agent, customer, htmx
):
    """An agent who moves a ticket to a team it is not in no longer sees it: the answer is
    the inbox with a note (htmx: a redirect header), not the moved ticket's live panel
    (its timeline, notes and customer: before, for htmx) nor a 404 (before, without)."""
    billing = Team.objects.create(name="Billing", slug="billing")
    billing.members.add(agent)
    legal = Team.objects.create(name="Legal", slug="legal")
    [ticket] = _tickets(customer, 1, team=billing)
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    extra = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    response = agent_web.post(url, {"team": str(legal.pk)}, **extra)
    assert Ticket.objects.get(pk=ticket.pk).team_id == legal.pk
    if htmx:
        assert response.status_code == 204
        assert response["HX-Redirect"] == reverse("inbox")
        assert response.content == b""
    else:
        assert response.status_code == 302
        assert response["Location"] == reverse("inbox")
    inbox = agent_web.get(reverse("inbox"))
    assert f"{ticket.number} is no longer in your view." in inbox.content.decode()


def _team_options(response):
    select = _soup(response).select_one("#ticket-controls select[name=team]")
    assert select is not None
    return [str(o["value"]) for o in select.select("option")]


@pytest.mark.parametrize("no_team", ["", "none"])
def test_only_supervisors_take_one_ticket_out_of_its_team(
    agent_web, agent, supervisor, customer, no_team
):
    """A ticket with no team is visible to every agent, and its customer with it: the
    ticket's controls offer "No team" to supervisors only, and an agent's post of it is
    refused saying why (the plain text for htmx; the page with the reason by the controls
    and the ticket's team still chosen without), nothing changed. The bulk move had this
    rule; one ticket at a time did not."""
    billing = Team.objects.create(name="Billing", slug="billing")
    billing.members.add(agent)
    legal = Team.objects.create(name="Legal", slug="legal")
    [ticket] = _tickets(customer, 1, team=billing)
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    page = f"/tickets/{ticket.number}/"
    assert _team_options(agent_web.get(page)) == [str(billing.pk), str(legal.pk)]
    OutboxEvent.objects.all().delete()
    fragment = agent_web.post(url, {"team": no_team, "assignee": "me"}, HTTP_HX_REQUEST="true")
    assert (fragment.status_code, fragment.content.decode()) == (400, services.NO_TEAM_REFUSAL)
    refused = agent_web.post(url, {"team": no_team, "priority": "high"})
    assert refused.status_code == 400
    values, reason = _controls(refused)
    assert (values["team"], values["priority"], reason) == (
        str(billing.pk),
        "high",
        services.NO_TEAM_REFUSAL,
    )
    ticket = Ticket.objects.get(pk=ticket.pk)
    assert (ticket.team_id, ticket.priority, ticket.assignee_id) == (billing.pk, "normal", None)
    assert not OutboxEvent.objects.exists()
    # another team, one the agent is not in: still the agent's to choose (a transfer)
    assert agent_web.post(url, {"team": str(legal.pk)}).status_code == 302
    assert Ticket.objects.get(pk=ticket.pk).team_id == legal.pk
    agent_web.force_login(supervisor)
    assert _team_options(agent_web.get(page)) == ["", str(billing.pk), str(legal.pk)]
    assert agent_web.post(url, {"team": no_team}).status_code == 302
    assert Ticket.objects.get(pk=ticket.pk).team_id is None
    # a ticket with no team: an agent's select shows it as its value, and saves the
    # ticket's other fields with it
    agent_web.force_login(agent)
    assert _team_options(agent_web.get(page)) == ["", str(billing.pk), str(legal.pk)]
    assert agent_web.post(url, {"team": "", "priority": "high"}).status_code == 302
    ticket = Ticket.objects.get(pk=ticket.pk)
    assert (ticket.team_id, ticket.priority) == (None, "high")


def test_the_no_team_rule_is_the_services_whoever_calls_them(agent, supervisor, customer):
    """``ticket_update`` applies the rule itself (the admin's save, a routing override by a
    person, any later caller); the system (no actor: routing, SLA escalations) may."""
    from support.errors import InvalidInput

    billing = Team.objects.create(name="Billing", slug="billing")
    [ticket] = _tickets(customer, 1, team=billing)
    with pytest.raises(InvalidInput) as refused:
        services.ticket_update(ticket=ticket, actor=agent, team=None)
    assert (refused.value.message, refused.value.details) == (
        services.NO_TEAM_REFUSAL,
        {"team": ["Supervisors only."]},
    )
    assert Ticket.objects.get(pk=ticket.pk).team_id == billing.pk
    services.ticket_update(ticket=ticket, actor=supervisor, team=None)
    assert Ticket.objects.get(pk=ticket.pk).team_id is None
    services.ticket_update(ticket=ticket, actor=None, team=billing)
    services.ticket_update(ticket=ticket, actor=None, team=None)
    assert Ticket.objects.get(pk=ticket.pk).team_id is None


def test_workbench_assigns_agents_and_supervisors_only(supervisor_web, outsider, customer):
    [ticket] = _tickets(customer, 1)
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    response = supervisor_web.post(url, {"assignee": str(outsider.pk)}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    assert response.content.decode() == "assignee: outsider is not an agent or supervisor."
    bulk = supervisor_web.post(
        "/tickets/bulk", {"action": "assign", "value": str(outsider.pk), "ids": [ticket.pk]}
    )
    assert bulk.status_code == 400
    assert _bulk(bulk)[-1] == "assignee: outsider is not an agent or supervisor."
    assert Ticket.objects.get(pk=ticket.pk).assignee_id is None


def test_admin_form_assigns_agents_and_supervisors_only(customer, outsider, other_agent):
    from django.forms.models import model_to_dict

    from tickets.admin import TicketAdminForm

    [ticket] = _tickets(customer, 1)
    data = {k: v for k, v in model_to_dict(ticket).items() if v is not None}
    data["tags"] = [t.pk for t in ticket.tags.all()]
    form = TicketAdminForm(instance=ticket, data={**data, "assignee": outsider.pk})
    assert not form.is_valid()
    assert form.errors["assignee"] == ["outsider is not an agent or supervisor."]
    assert TicketAdminForm(instance=ticket, data={**data, "assignee": other_agent.pk}).is_valid()


@pytest.mark.parametrize("change", [{"team": "abc"}, {"status": "open"}, {"team": "999999"}])
def test_workbench_refused_update_changes_nothing(agent_web, customer, change):
    """Taking a ticket and a refused change in one form: the ticket was taken anyway."""
    [ticket] = _tickets(customer, 1)
    services.ticket_update(ticket=ticket, status="closed")  # closed is final
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    response = agent_web.post(url, {"assignee": "me", **change}, HTTP_HX_REQUEST="true")
    assert response.status_code in (400, 404)
    assert Ticket.objects.get(pk=ticket.pk).assignee_id is None


def test_workbench_assignment_rule_reads_the_ticket_as_it_is_written(
    agent_web, other_agent, customer, monkeypatch
):
    from tickets import selectors

    [ticket] = _tickets(customer, 1)
    real = selectors.ticket_get_visible

    def read_then_reassigned(ref, *, user, for_update=False):
        seen = real(ref, user=user, for_update=for_update)
        if not for_update:  # nobody's when first read
            services.ticket_assign(ticket=seen, assignee=other_agent)  # a supervisor, meanwhile
        return seen

    monkeypatch.setattr(selectors, "ticket_get_visible", read_then_reassigned)
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    response = agent_web.post(url, {"assignee": "none"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 403
    assert Ticket.objects.get(pk=ticket.pk).assignee_id == other_agent.pk


def test_workbench_leaves_a_ticket_moved_out_of_view_meanwhile(
    agent_web, agent, customer, monkeypatch
):
    from tickets import selectors

    [ticket] = _tickets(customer, 1)
    other = Team.objects.create(name="Elsewhere", slug="elsewhere")
    real = selectors.ticket_get_visible

    def read_then_moved(ref, *, user, for_update=False):
        seen = real(ref, user=user, for_update=for_update)
        if not for_update:  # visible when the page's request first read it
            services.ticket_update(ticket=seen, actor=None, team=other)  # meanwhile
        return seen

    monkeypatch.setattr(selectors, "ticket_get_visible", read_then_moved)
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    response = agent_web.post(url, {"assignee": str(agent.pk)}, HTTP_HX_REQUEST="true")
    assert response.status_code == 404
    assert Ticket.objects.get(pk=ticket.pk).assignee_id is None


def test_composer_takes_what_the_api_takes(agent_web, customer):
    """The API caps a reply at 50,000 characters; the workbench composer took any length
    (up to the 25 MB upload limit) and queued it for delivery."""
    [ticket] = _tickets(customer, 1)
    url = reverse("ticket-message", kwargs={"ref": ticket.number})
    too_long = agent_web.post(url, {"body": "x" * 50_001}, HTTP_HX_REQUEST="true")
    assert too_long.status_code == 400
    assert too_long.content.decode() == "body: at most 50000 characters (this one has 50001)."
    assert ticket.messages.count() == 1  # the customer's first message only
    assert agent_web.post(url, {"body": "x" * 50_000}).status_code == 302
    assert ticket.messages.count() == 2


def _composer(response):
    """The composer of a ticket page: (text in its box, kind checked, reason shown or None)."""
    form = BeautifulSoup(response.content, "html.parser").select_one("form#composer")
    assert form is not None
    textarea, checked, box = (
        form.select_one(css) for css in ("textarea", "input[name=kind][checked]", ".form-error")
    )
    assert textarea is not None
    assert checked is not None
    assert box is not None
    text = textarea.get_text()
    text = text[1:] if text.startswith("\n") else text  # a browser drops this line break
    return text, str(checked["value"]), None if box.has_attr("hidden") else box.get_text()


@pytest.mark.parametrize(
    ("kind", "body", "says"),
    [
        ("public", "   \n ", "A message needs a body or an attachment."),
        ("public", "x" * 50_001, "body: at most 50000 characters (this one has 50001)."),
        ("internal_note", "\n<b>Ask</b> them & wait\n" + "y" * 50_000, "body: at most 50000"),
        ("system", "Hello", "kind must be public or internal_note."),
    ],
)
def test_a_reply_refused_without_javascript_keeps_its_text(agent_web, customer, kind, body, says):
    """A plain form post (no htmx) of a refused reply went back to the page by a redirect,
    with the reason at the top and the text typed gone. It is the ticket page again (400):
    the text in the composer, its type still chosen, the reason under it."""
    [ticket] = _tickets(customer, 1)
    url = reverse("ticket-message", kwargs={"ref": ticket.number})
    response = agent_web.post(url, {"kind": kind, "body": body})
    assert response.status_code == 400
    assert "tickets/ticket.html" in [t.name for t in response.templates]
    text, checked, reason = _composer(response)
    assert text == body
    assert checked == ("internal_note" if kind == "internal_note" else "public")
    assert reason is not None
    assert reason.startswith(says)
    assert ticket.messages.count() == 1  # the customer's first message only
    # a page drawn afresh has an empty composer and no reason
    assert _composer(agent_web.get(f"/tickets/{ticket.number}/")) == ("", "public", None)


def test_a_replys_line_breaks_are_stored_and_counted_once(agent_web, customer):
    """Browsers send a form's line breaks as CR LF: a reply of 40,000 characters in 20,000
    lines arrived as 60,000 and was refused as over the 50,000 limit, and what was accepted
    was stored with CR LF where the API and the channels store "\n"."""
    [ticket] = _tickets(customer, 1)
    url = reverse("ticket-message", kwargs={"ref": ticket.number})
    response = agent_web.post(url, {"kind": "internal_note", "body": "x\r\n" * 20_000})
    assert response.status_code == 302, response.content[:300]
    note = ticket.messages.get(kind="internal_note")
    assert note.body_text == "x\n" * 20_000
    agent_web.post(url, {"kind": "internal_note", "body": "Hello\r\nsecond line"})
    assert ticket.messages.filter(body_text="Hello\nsecond line").count() == 1


def test_a_reply_to_a_merged_ticket_refused_without_javascript_keeps_its_text(
    agent_web, supervisor, customer
):
    source, target = _tickets(customer, 2)
    services.ticket_merge(source=source, target=target, actor=supervisor)
    url = reverse("ticket-message", kwargs={"ref": source.number})
    response = agent_web.post(url, {"kind": "public", "body": "On its way"})
    assert response.status_code == 400
    assert _composer(response) == (
        "On its way",
        "public",
        f"{source.number} was merged into {target.number}.",
    )


def test_supervisor_may_assign_others(supervisor_web, other_agent, customer):
    [ticket] = _tickets(customer, 1)
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    assert supervisor_web.post(url, {"assignee": str(other_agent.pk)}).status_code == 302
    ticket.refresh_from_db()
    assert ticket.assignee == other_agent


def test_bulk_actions(agent_web, agent, other_agent, customer):
    a, b, c = _tickets(customer, 3)
    post = {"ids": [a.pk, b.pk], "action": "assign", "value": "me"}
    assert agent_web.post("/tickets/bulk", post).status_code == 302
    assert list(Ticket.objects.filter(assignee=agent).order_by("pk")) == [a, b]
    agent_web.post("/tickets/bulk", {"ids": [a.pk, c.pk], "action": "tag", "value": "Urgent"})
    assert sorted(Ticket.objects.filter(tags__name="urgent").values_list("pk", flat=True)) == [
        a.pk,
        c.pk,
    ]
    agent_web.post("/tickets/bulk", {"ids": [a.pk, b.pk], "action": "status", "value": "closed"})
    assert set(Ticket.objects.filter(status="closed")) == {a, b}
    refused = {"ids": [c.pk], "action": "assign", "value": str(other_agent.pk)}
    assert agent_web.post("/tickets/bulk", refused).status_code == 403
    assert Ticket.objects.get(pk=c.pk).assignee is None


@pytest.mark.parametrize(
    ("action", "value", "says"),
    [
        ("status", "bogus", "status: unknown value 'bogus'; one of new, open"),
        ("status", "", "status: unknown value ''"),
        ("tag", "  ", "tag: give a tag name."),
    ],
)
def test_bulk_with_an_unknown_value_is_refused_saying_so(agent_web, customer, action, value, says):
    """An unknown status was reported as "skipped (not allowed)" and an empty tag as
    "updated", with nothing done either way."""
    [ticket] = _tickets(customer, 1)
    post = {"ids": [ticket.pk], "action": action, "value": value}
    response = agent_web.post("/tickets/bulk", post, HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    assert response.content.decode().startswith(says)
    page = agent_web.post("/tickets/bulk", post)  # without JavaScript: the reason by the form
    assert page.status_code == 400
    reason = _bulk(page)[-1]
    assert reason is not None
    assert reason.startswith(says)
    assert not [str(m) for m in page.context["messages"]]


def test_bulk_move_to_team_moves_the_visible_tickets_as_the_controls_do(
    agent_web, agent, other_agent, customer
):
    """The inbox's "Move to team" empties a team before it is deleted (a team with tickets is not:
    test_team_deletion.py). Each ticket goes through ``ticket_update`` (timeline entry,
    ``ticket.updated`` event); a ticket the agent may not see is skipped, untouched."""
    ours = Team.objects.create(name="Ours", slug="ours")
    ours.members.add(agent)
    legal = Team.objects.create(name="Legal", slug="legal")
    sales = Team.objects.create(name="Sales", slug="sales")
    a, b = _tickets(customer, 2, team=ours)
    [hidden] = _tickets(customer, 1, team=legal)
    OutboxEvent.objects.all().delete()
    post = {"ids": [a.pk, b.pk, hidden.pk], "action": "team", "value_team": str(sales.pk)}
    response = agent_web.post("/tickets/bulk", post, follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        "2 ticket(s) updated, 1 skipped (not allowed, merged or not in your view)."
    ]
    assert dict(Ticket.objects.values_list("pk", "team_id")) == {
        a.pk: sales.pk,
        b.pk: sales.pk,
        hidden.pk: legal.pk,
    }
    events = OutboxEvent.objects.filter(event_type="ticket.updated").order_by("aggregate_id")
    assert [(e.aggregate_id, e.payload["changes"]["team"]) for e in events] == [
        (str(a.pk), ["Ours", "Sales"]),
        (str(b.pk), ["Ours", "Sales"]),
    ]
    # the form offers the teams, and no "No team" to an agent
    form = _soup(agent_web.get("/?view=all")).select_one("select[name=value_team]")
    assert form is not None
    assert [o["value"] for o in form.select("option")] == [str(t.pk) for t in (legal, ours, sales)]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("999999", "team: no team 999999."),
        ("legal", "team: 'legal' is not a team id."),
        ("", "team: choose the team to move the tickets to."),
    ],
)
def test_bulk_move_to_an_unknown_team_is_refused_saying_so(supervisor_web, customer, value, says):
    [ticket] = _tickets(customer, 1)
    post = {"ids": [ticket.pk], "action": "team", "value_team": value}
    fragment = supervisor_web.post("/tickets/bulk", post, HTTP_HX_REQUEST="true")
    assert (fragment.status_code, fragment.content.decode()) == (400, says)
    Team.objects.create(name="Legal", slug="legal")  # something to choose from
    page = supervisor_web.post("/tickets/bulk", post, HTTP_REFERER="http://testserver/?view=all")
    assert page.status_code == 400
    ticked, action, field, _value, reason = _bulk(page)
    assert (ticked, action, field, reason) == ([ticket.pk], "team", "value_team", says)
    assert Ticket.objects.get(pk=ticket.pk).team_id is None


def test_only_supervisors_bulk_move_tickets_to_no_team(agent_web, agent, supervisor, customer):
    """No team widens who sees the tickets to every agent: an agent may not do it to a
    batch (nor is it offered); a supervisor may."""
    legal = Team.objects.create(name="Legal", slug="legal")
    legal.members.add(agent)
    [ticket] = _tickets(customer, 1, team=legal)
    post = {"ids": [ticket.pk], "action": "team", "value_team": "none"}
    refused = agent_web.post("/tickets/bulk", post, HTTP_HX_REQUEST="true")
    assert (refused.status_code, refused.content.decode()) == (
        403,
        "Only supervisors move tickets to no team in bulk (every agent would see them).",
    )
    assert Ticket.objects.get(pk=ticket.pk).team_id == legal.pk
    agent_web.force_login(supervisor)
    form = _soup(agent_web.get("/?view=all")).select_one("select[name=value_team]")
    assert form is not None
    assert [o["value"] for o in form.select("option")] == [str(legal.pk), "none"]
    assert agent_web.post("/tickets/bulk", post).status_code == 302
    assert Ticket.objects.get(pk=ticket.pk).team_id is None


LONG_TAG = "customer-asked-for-a-refund-of-the-second-order-in-the-spring-sale"


def test_a_tag_over_64_characters_is_refused_by_the_controls_and_bulk(agent_web, customer):
    """The controls' and bulk tagging's tags went to the services, which cut them to 64
    characters without a word; refused now, saying which and why, and nothing changes."""
    assert len(LONG_TAG) == 66
    says = f"tags: {LONG_TAG!r} is 66 characters long; a tag has at most 64 characters."
    [ticket] = _tickets(customer, 1)  # tagged a and b
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    data = {"tags": f"a, b, {LONG_TAG.title()}", "priority": "high"}
    fragment = agent_web.post(url, data, HTTP_HX_REQUEST="true")
    assert (fragment.status_code, fragment.content.decode()) == (400, says)
    page = agent_web.post(url, data)  # without JavaScript: the reason by the controls
    assert (page.status_code, _controls(page)[1]) == (400, says)
    bulk = {"ids": [ticket.pk], "action": "tag", "value": f" {LONG_TAG} "}
    fragment = agent_web.post("/tickets/bulk", bulk, HTTP_HX_REQUEST="true")
    assert (fragment.status_code, fragment.content.decode()) == (400, says)
    page = agent_web.post("/tickets/bulk", bulk, HTTP_REFERER="http://testserver/")
    assert (page.status_code, _bulk(page)[-1]) == (400, says)
    ticket.refresh_from_db()
    assert ticket.priority == "normal"
    assert sorted(t.name for t in ticket.tags.all()) == ["a", "b"]
    assert not Tag.objects.filter(name__startswith="customer-asked").exists()


PLAIN = "text/plain; charset=utf-8"


def _said(client, url):
    """The notes the page at ``url`` shows (the flash messages)."""
    return [str(m) for m in client.get(url).context["messages"]]


def test_refusals_answer_htmx_with_their_reason_as_plain_text(agent_web, other_agent, customer):
    """workbench.js shows an htmx refusal's text by the form that sent it. A 403 was HTML
    and a 404 the whole "Not found" page, which it cannot show as a reason."""
    [ticket] = _tickets(customer, 1)
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    refused = agent_web.post(url, {"assignee": str(other_agent.pk)}, HTTP_HX_REQUEST="true")
    assert (refused.status_code, refused["Content-Type"], refused.content.decode()) == (
        403,
        PLAIN,
        "Only supervisors assign tickets to other people.",
    )
    gone = agent_web.get("/tickets/T-999999/live", HTTP_HX_REQUEST="true")
    assert (gone.status_code, gone["Content-Type"], gone.content.decode()) == (
        404,
        PLAIN,
        "No ticket 'T-999999'.",
    )


@pytest.mark.parametrize(
    ("who", "field", "value", "says"),
    [
        ("agent_web", "team", "999999", "team: no team 999999."),
        ("supervisor_web", "assignee", "999999", "assignee: no user '999999'."),
        ("agent_web", "assignee", "abc", "assignee: no user 'abc'."),
    ],
)
def test_an_unknown_team_or_user_in_the_controls_is_refused_saying_so(
    request, customer, who, field, value, says
):
    """A team deleted (or a user removed) since the page was drawn: the answer was the "Not
    found" page, as if the ticket were gone."""
    client = request.getfixturevalue(who)
    [ticket] = _tickets(customer, 1)
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    data = {field: value, "priority": "high"}
    fragment = client.post(url, data, HTTP_HX_REQUEST="true")
    assert (fragment.status_code, fragment.content.decode()) == (400, says)
    page = client.post(url, data)  # without JavaScript: the reason by the controls
    assert (page.status_code, _controls(page)[1]) == (400, says)
    assert Ticket.objects.get(pk=ticket.pk).priority == "normal"  # all or nothing


def test_an_agent_naming_anyone_else_learns_nothing_of_them(agent_web, other_agent, customer):
    """Who may assign is checked before the id is looked up: an agent learnt which user ids
    exist ("no user 999999" against "Only supervisors...")."""
    [ticket] = _tickets(customer, 1)
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    answers = {
        agent_web.post(url, {"assignee": value}, HTTP_HX_REQUEST="true").content.decode()
        for value in ("999999", str(other_agent.pk))
    }
    assert answers == {"Only supervisors assign tickets to other people."}


@pytest.mark.parametrize(
    ("into", "says"),
    [
        ("", "Give the number of the ticket to merge into (e.g. T-000123)."),
        ("  ", "Give the number of the ticket to merge into (e.g. T-000123)."),
        ("T-999999", "No ticket 'T-999999' to merge into: check the number."),
        ("hello", "No ticket 'hello' to merge into: check the number."),
        ("hidden", "No ticket '{hidden}' to merge into: check the number."),
    ],
)
def test_merge_into_a_mistyped_number_says_so_on_the_ticket(agent_web, customer, into, says):
    """A typo in "Merge into another ticket" opened the "Not found" page; a ticket the
    agent may not see reads like an unknown number (numbers do not leak)."""
    [source] = _tickets(customer, 1)
    [hidden] = _tickets(customer, 1, team=Team.objects.create(name="Hidden", slug="hidden"))
    into = hidden.number if into == "hidden" else into
    says = says.format(hidden=hidden.number)
    url = reverse("ticket-merge", kwargs={"ref": source.number})
    response = agent_web.post(url, {"into": into})
    assert response.status_code == 400
    assert _merge(response) == (True, into, False, says)  # the ticket page, the form open
    assert Ticket.objects.filter(merged_into__isnull=False).count() == 0


@pytest.mark.parametrize("ids", [[], ["abc"], ["\u00b2"]])
def test_bulk_with_no_ticket_selected_says_so(agent_web, customer, ids):
    """It said "0 ticket(s) updated." as a success."""
    [ticket] = _tickets(customer, 1)
    post = {"ids": ids, "action": "tag", "value": "x"}
    fragment = agent_web.post("/tickets/bulk", post, HTTP_HX_REQUEST="true")
    says = "Select at least one ticket (the boxes on the left), then apply."
    assert (fragment.status_code, fragment.content.decode()) == (400, says)
    response = agent_web.post("/tickets/bulk", post)
    assert (response.status_code, _bulk(response)[-1]) == (400, says)
    unknown = agent_web.post("/tickets/bulk", {**post, "ids": [ticket.pk], "action": "zap"})
    assert unknown.status_code == 400
    assert _bulk(unknown)[-1] == "action must be assign, status, tag or team."
    assert not ticket.tags.filter(name="x").exists()


def test_back_after_a_form_is_the_referer_only_on_this_site(agent_web, customer):
    """After a bulk action the page goes back to the Referer; one naming another site (or
    a script URL) goes to the inbox instead: no open redirect. (A refused change answers
    with its page again, not a redirect; a refused bulk action reads the Referer's inbox
    query the same way: test_a_bulk_action_refused_without_javascript_keeps_the_selection.)"""
    [ticket] = _tickets(customer, 1)
    bulk = {"ids": [ticket.pk], "action": "tag", "value": "x"}
    inbox = reverse("inbox")
    for url, data in (("/tickets/bulk", bulk),):
        for referer, expected in (
            ("https://evil.example/phish", inbox),
            ("//evil.example/phish", inbox),
            ("javascript:alert(1)", inbox),
            ("http://testserver/tickets/?view=mine", "http://testserver/tickets/?view=mine"),
            ("/tickets/?view=all", "/tickets/?view=all"),
            ("", inbox),
        ):
            response = agent_web.post(url, data, HTTP_REFERER=referer)
            assert response.status_code == 302, (url, referer)
            assert response["Location"] == expected, (url, referer)
    # Over https, an http Referer of this site is not followed either.
    response = agent_web.post(
        "/tickets/bulk", bulk, HTTP_REFERER="http://testserver/tickets/", secure=True
    )
    assert response["Location"] == inbox


def test_merge_moves_timeline_and_redirects_old_number(agent_web, agent, customer):
    from tickets.models import ChannelIdentity, Customer

    other = Customer.objects.create(name="Bob", email="bob@example.com")
    services.channel_identity_link(customer=other, channel="whatsapp", external_id="+4477")
    [target] = _tickets(customer, 1)
    source = services.ticket_create(customer=other, subject="dup", body="same issue")
    url = reverse("ticket-merge", kwargs={"ref": source.number})
    # Two customers: the agent confirms that Bob's identities move to Ada.
    response = agent_web.post(url, {"into": target.number, "confirm_customer_merge": "1"})
    assert response.status_code == 302
    assert response["Location"] == f"/tickets/{target.number}/"
    source.refresh_from_db()
    assert (source.merged_into, source.status) == (target, "closed")
    assert Message.objects.filter(ticket=target, body_text="same issue").exists()
    assert list(Message.objects.filter(ticket=source).values_list("kind", flat=True)) == ["system"]
    assert ChannelIdentity.objects.get(external_id="+4477").customer == customer
    redirect = agent_web.get(f"/tickets/{source.number}/")
    assert (redirect.status_code, redirect["Location"]) == (302, f"/tickets/{target.number}/")
    again = agent_web.post(url, {"into": target.number})
    assert again.status_code == 409  # the merged ticket's page, saying so by the form
    reason = _merge(again)[-1]
    assert reason is not None
    assert "merged" in reason
    assert Ticket.objects.get(pk=source.pk).merged_into == target


def test_a_ticket_merged_into_one_the_agent_may_not_see_opens_itself(
    agent_web, supervisor, customer
):
    """The old number of a ticket merged (by a supervisor) into a ticket of another team
    opens the closed ticket with a note, not a redirect to a 404 page."""
    billing = Team.objects.create(name="Billing", slug="billing")
    source = services.ticket_create(customer=customer, subject="dup", body="same issue")
    target = services.ticket_create(customer=customer, subject="orig", body="x", team=billing)
    services.ticket_merge(source=source, target=target, actor=supervisor)
    page = agent_web.get(f"/tickets/{source.number}/")
    assert page.status_code == 200
    assert "merged into a ticket you cannot see" in page.content.decode()
    live = agent_web.get(reverse("ticket-live", kwargs={"ref": source.number}))
    assert live.status_code == 200
    assert "HX-Redirect" not in live


def test_a_ticket_merged_out_of_view_never_names_its_target(agent_web, supervisor, customer):
    """The page's note said "merged into a ticket you cannot see" while its timeline entry
    said "Merged into T-…" and a reply was refused naming the target: nowhere now (the
    API's ``merged_into`` agrees)."""
    billing = Team.objects.create(name="Billing", slug="billing")
    source = services.ticket_create(customer=customer, subject="dup", body="same issue")
    target = services.ticket_create(customer=customer, subject="orig", body="x", team=billing)
    services.ticket_merge(source=source, target=target, actor=supervisor)
    page = agent_web.get(f"/tickets/{source.number}/").content.decode()
    live = agent_web.get(reverse("ticket-live", kwargs={"ref": source.number})).content.decode()
    for html in (page, live):
        assert "Merged into a ticket you cannot see." in html
        assert target.number not in html
    url = reverse("ticket-message", kwargs={"ref": source.number})
    reply = agent_web.post(url, {"body": "hi"}, HTTP_HX_REQUEST="true")
    assert reply.status_code == 400
    assert reply.content.decode() == f"{source.number} was merged into another ticket."
    # the entry itself is kept whole: a supervisor (redirected to the target) can read it
    note = Message.objects.get(ticket=source, kind="system")
    assert note.body_text == f"Merged into {target.number}."


def test_the_ticket_a_merge_went_to_never_names_a_source_the_agent_may_not_see(
    agent_web, agent_client, supervisor, customer
):
    """The reverse of the above: a supervisor merges another team's ticket into one the
    agent sees; the target's timeline said "T-… merged into this ticket" (and the API the
    same), naming a ticket the agent may not open. The messages that moved are shown, as
    they are now the target's."""
    billing = Team.objects.create(name="Billing", slug="billing")
    source = services.ticket_create(
        customer=customer, subject="dup", body="moved text", team=billing
    )
    target = services.ticket_create(customer=customer, subject="orig", body="x")
    services.ticket_merge(source=source, target=target, actor=supervisor)
    page = agent_web.get(f"/tickets/{target.number}/").content.decode()
    api = agent_client.get(f"/api/tickets/{target.pk}").json()
    bodies = [m["body_text"] for m in api["messages"]]
    assert "A ticket you cannot see was merged into this one (1 timeline entries moved)." in bodies
    assert "A ticket you cannot see was merged into this one" in page
    assert "moved text" in page
    assert source.number not in page
    assert source.number not in str(api)
    note = Message.objects.get(ticket=target, kind="system")
    assert note.body_text.startswith(f"{source.number} merged into this ticket")
    supervisor_client = DjangoClient()
    supervisor_client.force_login(supervisor)
    assert source.number in supervisor_client.get(f"/tickets/{target.number}/").content.decode()


def test_canned_response_placeholders(agent_web, agent, customer):
    agent.first_name = "Ann"
    agent.save()
    [ticket] = _tickets(customer, 1)
    canned = CannedResponse.objects.create(
        title="Hi",
        shortcut="hi",
        body="Hi {{ customer.first_name }}, re {{ticket.number}}. {{ agent.first_name }} {{ x.y }}",
    )
    url = reverse("ticket-canned", kwargs={"ref": ticket.number, "canned_id": canned.pk})
    response = agent_web.get(url)
    assert response.json() == {"body": f"Hi Ada, re {ticket.number}. Ann {{{{ x.y }}}}"}
    team = Team.objects.create(name="T", slug="t")
    other = CannedResponse.objects.create(title="T", shortcut="t", body="x", team=team)
    url = reverse("ticket-canned", kwargs={"ref": ticket.number, "canned_id": other.pk})
    assert agent_web.get(url).status_code == 404


def test_merge_api(agent_client, customer):
    target, source = _tickets(customer, 2)
    response = agent_client.post(
        f"/api/tickets/{source.number}/merge", {"into": target.number}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["id"] == target.pk
    again = agent_client.post(
        f"/api/tickets/{source.number}/merge", {"into": target.number}, format="json"
    )
    assert again.status_code == 409
    assert again.json()["error"]["message"] == f"{source.number} was already merged."


def test_supervisor_only_assignment_refused_to_agents_in_ui_and_api(
    agent_web, agent_client, other_agent, customer
):
    [ticket] = _tickets(customer, 1)
    ui = agent_web.post(
        reverse("ticket-update", kwargs={"ref": ticket.number}), {"assignee": other_agent.pk}
    )
    api = agent_client.patch(
        f"/api/tickets/{ticket.pk}", {"assignee_id": other_agent.pk}, format="json"
    )
    assert (ui.status_code, api.status_code) == (403, 403)
    ticket.refresh_from_db()
    assert ticket.assignee is None


def test_admin_is_for_supervisors(client, agent, supervisor, customer):
    [ticket] = _tickets(customer, 1)
    client.force_login(agent)
    assert client.get(f"/admin/tickets/ticket/{ticket.pk}/change/").status_code == 302
    client.force_login(supervisor)
    services.message_add(ticket=ticket, body="a note in the timeline", kind="internal_note")
    page = client.get(f"/admin/tickets/ticket/{ticket.pk}/change/")
    assert page.status_code == 200
    assert b"in the workbench" in page.content
    assert b"a note in the timeline" in page.content
    response = client.post(
        "/admin/tickets/ticket/",
        {"action": "set_priority_urgent", "_selected_action": [ticket.pk]},
    )
    assert response.status_code == 302
    ticket.refresh_from_db()
    assert ticket.priority == "urgent"
    assert client.get("/admin/tickets/cannedresponse/add/").status_code == 200
    assert client.get("/admin/tickets/team/add/").status_code == 200
    # Editing users (roles, superuser flag) stays with superusers.
    assert client.get(f"/admin/auth/user/{agent.pk}/change/").status_code == 403


# --- bulk actions against concurrent changes (real transactions) ---------------------


def _commit_once_waited_on(change):
    """Run ``change`` in a transaction of its own (another connection, another thread)
    and commit it only once a request of this thread waits for one of its row locks: the
    change lands between the request's first look at the tickets and its write, whichever
    of the two takes the lock. The caller joins the returned thread after the request
    (:func:`_bulk_while_committing`)."""
    import threading
    import time

    from django.db import connections, transaction

    holding, failed = threading.Event(), []

    def run() -> None:
        try:
            with transaction.atomic(), connections["default"].cursor() as cursor:
                change()
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
                holding.set()
                for _ in range(2000):  # a bound, not a timing: commit anyway after ~20 s
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE %s = ANY(pg_blocking_pids(pid))",
                        [pid],
                    )
                    if cursor.fetchone()[0]:
                        break
                    time.sleep(0.01)
        except Exception as exc:  # reported by the test, not lost in the thread
            failed.append(exc)
        finally:
            holding.set()
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    assert holding.wait(20)
    return thread, failed


def _bulk_while_committing(client, change, post, **extra):
    """POST a bulk action while ``change`` commits in another transaction, once the bulk
    action waits for it (:func:`_commit_once_waited_on`)."""
    thread, failed = _commit_once_waited_on(change)
    try:
        response = client.post("/tickets/bulk", post, **extra)
    finally:
        thread.join()
    assert failed == []
    return response


ONE_DONE_ONE_SKIPPED = "1 ticket(s) updated, 1 skipped (not allowed, merged or not in your view)."


def _assigned(ticket, user):
    from django.db import transaction

    with transaction.atomic():
        services.ticket_assign(ticket=ticket, assignee=user)


@pytest.mark.django_db(transaction=True)
def test_bulk_release_reads_the_tickets_as_they_are_written(
    agent_web, agent, other_agent, customer
):
    """Bulk assign read the tickets unlocked and applied the rule to what it read: a
    ticket a supervisor gave to someone else meanwhile was released by the agent who had
    read it as its own (single-ticket assignment already locked the row first)."""
    first, second = _tickets(customer, 2)
    _assigned(first, agent)
    _assigned(second, agent)
    response = _bulk_while_committing(
        agent_web,
        lambda: services.ticket_assign(ticket=second, assignee=other_agent),
        {"ids": [first.pk, second.pk], "action": "assign", "value": "none"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 403
    expected = f"{second.number}: Only supervisors assign tickets to other people."
    assert response.content.decode() == expected
    # all or nothing: the agent's own ticket stays as it was too
    assigned = dict(Ticket.objects.values_list("pk", "assignee_id"))
    assert assigned == {first.pk: agent.pk, second.pk: other_agent.pk}


@pytest.mark.django_db(transaction=True)
def test_bulk_assign_leaves_out_a_ticket_merged_meanwhile(agent_web, agent, supervisor, customer):
    """A ticket merged into another while the bulk action waited for it was assigned
    anyway (the merged-or-not filter was read before the lock)."""
    first, second, target = _tickets(customer, 3)
    response = _bulk_while_committing(
        agent_web,
        lambda: services.ticket_merge(source=second, target=target, actor=supervisor),
        {"ids": [first.pk, second.pk], "action": "assign", "value": "me"},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [ONE_DONE_ONE_SKIPPED]
    assigned = dict(Ticket.objects.values_list("pk", "assignee_id"))
    assert assigned == {first.pk: agent.pk, second.pk: None, target.pk: None}
    assert Ticket.objects.get(pk=second.pk).merged_into_id == target.pk


@pytest.mark.django_db(transaction=True)
def test_bulk_status_skips_a_ticket_closed_meanwhile(agent_web, customer):
    """The allowed-transition check read the status before the lock: a ticket closed in
    between failed the service's own check, and the whole batch was refused."""
    first, second = _tickets(customer, 2)
    response = _bulk_while_committing(
        agent_web,
        lambda: services.ticket_update(ticket=second, status="closed"),
        {"ids": [first.pk, second.pk], "action": "status", "value": "pending"},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [ONE_DONE_ONE_SKIPPED]
    statuses = dict(Ticket.objects.values_list("pk", "status"))
    assert statuses == {first.pk: "pending", second.pk: "closed"}


@pytest.mark.django_db(transaction=True)
def test_admin_unassign_action_works_outside_a_request_transaction(supervisor_web, agent, customer):
    """``ticket_assign`` locks the row but opened no transaction of its own (the decorator
    sat on ``assignee_refusal``): the admin's "Unassign selected tickets", which runs in
    autocommit, failed with a 500 on every ticket."""
    first, second = _tickets(customer, 2)
    _assigned(first, agent)
    _assigned(second, agent)
    response = supervisor_web.post(
        "/admin/tickets/ticket/",
        {"action": "unassign", "_selected_action": [first.pk, second.pk]},
    )
    assert response.status_code == 302
    assert list(Ticket.objects.values_list("assignee_id", flat=True)) == [None, None]
    notes = Message.objects.filter(kind="system", body_text=f"Assignee: {agent.username} → —")
    assert notes.count() == 2


# --- the other forms refused without JavaScript -------------------------------------------


def _soup(response):
    return BeautifulSoup(response.content, "html.parser")


def _selected(form, name):
    """The value a <select> of ``form`` sends as drawn: its selected option, else its first."""
    select = form.select_one(f"select[name={name}]")
    assert select is not None
    option = select.select_one("option[selected]") or select.select_one("option")
    return None if option is None else str(option["value"])


def _reason(box):
    """The text of a reason box, or None when it is hidden."""
    assert box is not None
    return None if box.has_attr("hidden") else box.get_text()


def _controls(response):
    """The ticket controls as drawn: the values their form sends, and the reason shown."""
    card = _soup(response).select_one("#ticket-controls")
    assert card is not None
    form = card.select_one("form.stack")
    assert form is not None
    tags = form.select_one("input[name=tags]")
    assert tags is not None
    values = {name: _selected(form, name) for name in ("status", "priority", "team", "assignee")}
    return {**values, "tags": str(tags["value"])}, _reason(card.select_one(".form-error"))


@pytest.mark.parametrize(
    ("sent", "says", "status", "shown"),
    [
        # every field kept, the long tag list as typed
        (
            {"tags": f"a, b, {LONG_TAG}, c"},
            f"tags: {LONG_TAG!r} is 66 characters long; a tag has at most 64 characters.",
            400,
            {"tags": f"a, b, {LONG_TAG}, c"},
        ),
        # a team deleted since the page was drawn: no option for it, the ticket's own shown
        ({"team": "999999"}, "team: no team 999999.", 400, {"team": ""}),
        # an agent giving the ticket to someone else: 403, the ticket's assignee shown
        (
            {"assignee": "other"},
            "Only supervisors assign tickets to other people.",
            403,
            {"assignee": "none"},
        ),
    ],
)
def test_the_controls_refused_without_javascript_keep_what_was_sent(
    agent_web, agent, other_agent, customer, sent, says, status, shown
):
    """A plain form post (no htmx) of a refused change went back to the page by a redirect,
    with the reason at the top and the controls showing the ticket's values again (a long
    tag list had to be typed again). It is the ticket page again, the values sent in the
    controls (those the form offers) and the reason at the top of their card."""
    billing = Team.objects.create(name="Billing", slug="billing")
    billing.members.add(agent)
    [ticket] = _tickets(customer, 1)
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    data = {
        "status": "pending",
        "priority": "high",
        "team": str(billing.pk),
        "assignee": "me",
        "tags": "a, b, c",
        **sent,
    }
    if data["assignee"] == "other":
        data["assignee"] = str(other_agent.pk)
    response = agent_web.post(url, data)
    assert response.status_code == status
    assert "tickets/ticket.html" in [t.name for t in response.templates]
    expected = {
        "status": "pending",
        "priority": "high",
        "team": str(billing.pk),
        "assignee": str(agent.pk),
        "tags": "a, b, c",
        **sent,
        **shown,
    }
    assert _controls(response) == (expected, says)
    assert _composer(response) == ("", "public", None)  # the other forms say nothing
    ticket = Ticket.objects.get(pk=ticket.pk)  # all or nothing
    assert (ticket.status, ticket.priority, ticket.team_id, ticket.assignee_id) == (
        "new",
        "normal",
        None,
        None,
    )
    assert sorted(t.name for t in ticket.tags.all()) == ["a", "b"]
    # a page drawn afresh shows the ticket's values and no reason
    fresh = agent_web.get(f"/tickets/{ticket.number}/")
    assert _controls(fresh) == (
        {"status": "new", "priority": "normal", "team": "", "assignee": "none", "tags": "a, b"},
        None,
    )


def test_the_quick_take_it_refused_without_javascript_says_why_in_the_controls(
    agent_web, other_agent, customer
):
    """ "Take it" (a form of its own in the controls) refused: the reason in the card."""
    [ticket] = _tickets(customer, 1)
    services.ticket_update(ticket=ticket, status="closed")
    url = reverse("ticket-update", kwargs={"ref": ticket.number})
    response = agent_web.post(url, {"assignee": "me", "status": "open"})
    assert response.status_code == 400
    values, reason = _controls(response)
    assert reason == "A closed ticket cannot become open."
    assert values["status"] == "closed"  # no option to open a closed ticket
    assert Ticket.objects.get(pk=ticket.pk).assignee_id is None


def _merge(response):
    """The merge form as drawn: open or not, the number in it, the box ticked, the reason."""
    soup = _soup(response)
    details = soup.select_one("details.merge")
    form = soup.select_one("form#merge-form")
    assert details is not None
    assert form is not None
    into, confirm = (
        form.select_one("input[name=into]"),
        form.select_one("input[name=confirm_customer_merge]"),
    )
    assert into is not None
    assert confirm is not None
    return (
        details.has_attr("open"),
        str(into.get("value", "")),
        confirm.has_attr("checked"),
        _reason(form.select_one(".form-error")),
    )


def test_a_merge_refused_without_javascript_keeps_what_was_sent(agent_web, customer):
    """The merge form is a plain form post (with JavaScript too): refused, it went back to
    the ticket by a redirect, the reason at the top, the form closed and empty."""
    from tickets.models import Customer

    [source] = _tickets(customer, 1)
    [other] = _tickets(Customer.objects.create(name="Bob", email="bob@example.com"), 1)
    url = reverse("ticket-merge", kwargs={"ref": source.number})
    response = agent_web.post(url, {"into": "T-999999", "confirm_customer_merge": "1"})
    assert response.status_code == 400
    assert "tickets/ticket.html" in [t.name for t in response.templates]
    says = "No ticket 'T-999999' to merge into: check the number."
    assert _merge(response) == (True, "T-999999", True, says)
    assert _controls(response)[1] is None
    # another customer's ticket without the confirmation: the number kept, the box not ticked
    response = agent_web.post(url, {"into": other.number})
    assert response.status_code == 400
    opened, into, ticked, reason = _merge(response)
    assert (opened, into, ticked) == (True, other.number, False)
    assert reason is not None
    assert "confirm" in reason
    assert Ticket.objects.filter(merged_into__isnull=False).count() == 0
    assert _merge(agent_web.get(f"/tickets/{source.number}/")) == (False, "", False, None)


def _bulk(response):
    """The inbox's bulk form as drawn: the tickets ticked, the action, the field of its
    value (each action has one) and the value in it, and the reason."""
    soup = _soup(response)
    form = soup.select_one("form#bulk")
    assert form is not None
    ticked = sorted(int(str(box["value"])) for box in soup.select("input[name=ids][checked]"))
    action = _selected(form, "action")
    label = form.select_one(f"label.bulk-value[data-for={action}]")
    assert label is not None
    assert not label.has_attr("hidden")
    field = label.select_one("select, input")
    assert field is not None
    assert not field.has_attr("disabled")
    value = _selected(label, field["name"]) if field.name == "select" else field.get("value")
    return (ticked, action, field["name"], value, _reason(form.select_one(".form-error")))


def test_a_bulk_action_refused_without_javascript_keeps_the_selection(agent_web, customer):
    """A refused bulk action went back to the inbox by a redirect: the reason at the top,
    the boxes unticked, the action and the tag typed gone. It is the inbox again (400), as
    the Referer showed it (its view and filters), with all of that kept."""
    a, b, c = _tickets(customer, 3)
    services.ticket_update(ticket=c, priority="high")
    post = {"ids": [a.pk, c.pk], "action": "tag", "value": f" {LONG_TAG} "}
    says = f"tags: {LONG_TAG!r} is 66 characters long; a tag has at most 64 characters."
    response = agent_web.post("/tickets/bulk", post, HTTP_REFERER="http://testserver/?view=all")
    assert response.status_code == 400
    assert "tickets/inbox.html" in [t.name for t in response.templates]
    assert _bulk(response) == (sorted([a.pk, c.pk]), "tag", "value_tag", f" {LONG_TAG} ", says)
    listed = {int(str(row["data-ticket-id"])) for row in _soup(response).select("tr.ticket-row")}
    assert listed == {a.pk, b.pk, c.pk}
    # the Referer's filters still apply; the page's links lead to the inbox, not to
    # /tickets/bulk (a GET there is refused)
    referer = "http://testserver/?view=all&priority=high"
    response = agent_web.post("/tickets/bulk", post, HTTP_REFERER=referer)
    assert response.status_code == 400
    listed = {int(str(row["data-ticket-id"])) for row in _soup(response).select("tr.ticket-row")}
    assert listed == {c.pk}
    assert _bulk(response)[0] == [c.pk]  # a ticked ticket not listed is not sent again
    soup = _soup(response)
    assert not [a["href"] for a in soup.select("a[href^='?']")]
    filters = soup.select_one("form#filters")
    assert filters is not None
    assert filters["action"] == reverse("inbox")
    # a status for a ticket that may not take it is skipped, not refused; an unknown one is
    refused = {"ids": [b.pk], "action": "status", "value": "bogus"}
    response = agent_web.post("/tickets/bulk", refused, HTTP_REFERER="http://testserver/?view=all")
    ticked, action, shown, _value, reason = _bulk(response)
    assert (ticked, action, shown) == ([b.pk], "status", "value_status")
    assert reason is not None
    assert reason.startswith("status: unknown value 'bogus'")
    # a Referer naming another site is not read: the inbox as first drawn
    response = agent_web.post("/tickets/bulk", post, HTTP_REFERER="https://evil.example/?view=all")
    assert response.status_code == 400
    assert response.context["result"].view == "mine"
    assert sorted(t.name for t in c.tags.all()) == ["a", "b"]
    assert not Tag.objects.filter(name__startswith="customer-asked").exists()


def _sent_without_javascript(form, choose):
    """What a browser without JavaScript sends for ``form``: its enabled fields as drawn,
    ``choose`` ({field's data-for or name: value}) set by the person first."""
    data: dict[str, list[str]] = {}
    for field in form.select("input[name], select[name]"):
        if field.has_attr("disabled") or field.get("type") == "checkbox":
            continue
        name = str(field["name"])
        key = str(field.get("data-for") or name)
        if key in choose:
            value = choose[key]
        elif field.name == "select":
            value = _selected(form, name) if name == "action" else _first_selected(field)
        else:
            value = str(field.get("value", ""))
        data.setdefault(name, []).append(value)
    return data


def _first_selected(select):
    option = select.select_one("option[selected]") or select.select_one("option")
    return str(option["value"])


@pytest.mark.parametrize(
    ("action", "value"), [("status", "pending"), ("tag", "vip"), ("assign", "me")]
)
def test_bulk_actions_work_without_javascript(agent_web, agent, customer, action, value):
    """The bulk form drew the status and tag fields hidden and disabled, for workbench.js to
    show the one the action needs: without JavaScript only "Assign to" could be used ("Set
    status" sent the assignee's field, "me", and was refused as an unknown status)."""
    a, b = _tickets(customer, 2)
    form = _soup(agent_web.get("/?view=all")).select_one("form#bulk")
    assert form is not None
    data = _sent_without_javascript(form, {"action": action, action: value})
    response = agent_web.post("/tickets/bulk", {**data, "ids": [a.pk, b.pk]})
    assert response.status_code == 302, _bulk(response)[-1]
    a.refresh_from_db()
    done = {
        "status": a.status == "pending",
        "tag": a.tags.filter(name="vip").exists(),
        "assign": a.assignee_id == agent.pk,
    }
    assert done == {key: key == action for key in done}


def _composer_key(agent_web, ticket):
    import re

    page = agent_web.get(f"/tickets/{ticket.number}/").content.decode()
    found = re.search(r'name="submit_key" id="composer-key" value="([0-9a-f]{32})"', page)
    assert found, "the composer carries a key"
    return found.group(1)


def test_a_reply_sent_again_with_its_form_key_is_not_sent_twice(agent_web, agent, customer):
    """The API had Idempotency-Key; the composer had nothing: a send whose answer was lost
    (or a double click), sent again, was a second reply to the customer (reliability
    review 2026-12-07). The form's key, drawn with the page, makes the repeat the same
    reply; another text under the same key is refused, not taken for the first."""
    [ticket] = _tickets(customer, 1)
    url = reverse("ticket-message", kwargs={"ref": ticket.number})
    key = _composer_key(agent_web, ticket)
    assert key != _composer_key(agent_web, ticket)  # a new one per page
    sent = {"kind": "public", "body": "Your refund is on its way", "submit_key": key}
    first = agent_web.post(url, sent)
    again = agent_web.post(url, sent)
    assert (first.status_code, again.status_code) == (302, 302)
    assert again["Location"] == first["Location"]
    said = [str(m) for m in again.wsgi_request._messages]
    assert said == ["This reply was sent already: it is on the ticket once."]
    htmx = agent_web.post(url, sent, HTTP_HX_REQUEST="true")
    assert htmx.status_code == 200
    replies = Message.objects.filter(ticket=ticket, direction="outbound", kind="public")
    assert list(replies.values_list("body_text", flat=True)) == ["Your refund is on its way"]
    other = agent_web.post(url, {**sent, "body": "Something else"}, HTTP_HX_REQUEST="true")
    assert other.status_code == 400  # htmx: the reason as text, shown by the composer
    assert b"sent already with another text" in other.content
    page = agent_web.post(url, {**sent, "body": "Something else"})  # no JavaScript
    assert page.status_code == 409
    assert "sent already with another text" in html_module.unescape(page.content.decode())
    assert "Something else" in page.content.decode()  # what was typed, kept
    assert replies.count() == 1
    # a page's new key is a new reply; a form without a key (a page drawn before) too
    fresh = agent_web.post(url, {**sent, "submit_key": _composer_key(agent_web, ticket)})
    keyless = agent_web.post(url, {"kind": "public", "body": "Your refund is on its way"})
    assert (fresh.status_code, keyless.status_code) == (302, 302), fresh.content[:500]
    assert replies.count() == 3


def test_a_refused_reply_leaves_its_key_free_and_a_malformed_key_is_refused(
    agent_web, agent, customer
):
    [ticket] = _tickets(customer, 1)
    url = reverse("ticket-message", kwargs={"ref": ticket.number})
    key = _composer_key(agent_web, ticket)
    refused = agent_web.post(url, {"kind": "system", "body": "x", "submit_key": key})
    assert refused.status_code == 400
    fixed = agent_web.post(url, {"kind": "public", "body": "x", "submit_key": key})
    assert fixed.status_code == 302
    assert Message.objects.filter(ticket=ticket, direction="outbound").count() == 1
    malformed = agent_web.post(
        url, {"kind": "public", "body": "y", "submit_key": "x" * 300}, HTTP_HX_REQUEST="true"
    )
    assert (malformed.status_code, malformed.content) == (400, b"submit_key: malformed.")
    assert Message.objects.filter(ticket=ticket, direction="outbound").count() == 1


def test_the_composer_draws_a_new_key_after_each_send() -> None:
    from pathlib import Path

    script = (Path(__file__).resolve().parents[2] / "static/js/workbench.js").read_text()
    assert 'document.getElementById("composer-key")' in script
    assert "key.value = newFormKey()" in script
