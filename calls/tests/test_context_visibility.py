"""A call in the customer context is the viewer's to see only if its call page is.

An analysed call is an entry of the customer context (``call_interaction_record``). With
no escalation ticket it named no ticket, and an entry of no ticket was shown to every agent
who may see the customer: an agent of another team read "Phone call (<queue>)", its
``call:<contact id>`` key, and counted the caller's mood in the sentiment strip, while the
call page answered them 404 (review 2026-12-06, ``test_context_shows_invisible_call``).
Now the entry carries its call as its scope, and is shown and counted under the call
page's rule (``calls.selectors.call_visibility_q``): supervisors, the agents of a team the
call's queue maps to, and those who may see one of its escalation tickets.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from calls.models import Call, Escalation, QueueTeam, Transcript
from calls.services import call_interaction_record
from tickets.context.models import Interaction
from tickets.context.services import interaction_record
from tickets.models import Customer, Team, Ticket
from tickets.selectors import ticket_visibility_q
from tickets.services import ticket_create

pytestmark = pytest.mark.django_db

CONTACT = "SECRET-CONTACT-123"
QUEUE = "VIPFraudQueue"
SUMMARY = f"Phone call ({QUEUE})"


@pytest.fixture
def teams(agent: Any, other_agent: Any) -> tuple[Team, Team]:
    """Team A (``agent``) and team B (``other_agent``, whose team takes the queue)."""
    a = Team.objects.create(name="A", slug="a")
    b = Team.objects.create(name="B", slug="b")
    a.members.add(agent)
    b.members.add(other_agent)
    return a, b


@pytest.fixture
def caller(teams: tuple[Team, Team]) -> Customer:
    """A customer with a ticket in each team, so both agents may see the customer."""
    a, b = teams
    customer = Customer.objects.create(name="Cust", email="c2@example.com")
    ticket_create(customer=customer, subject="visible to A", body="x", team=a)
    ticket_create(customer=customer, subject="visible to B", body="x", team=b)
    return customer


def _call(customer: Customer, *, queue: str = QUEUE, contact: str = CONTACT) -> Call:
    """An analysed call of ``customer`` with the caller's (unhappy) words, logged in the
    context the way the ``call.analysed`` subscriber does."""
    call = Call.objects.create(
        contact_id=contact,
        queue_name=queue,
        customer=customer,
        initiated_at=timezone.now() - timedelta(hours=1),
    )
    Transcript.objects.create(
        call=call,
        source="transcribe",
        text="x",
        segments=[{"speaker": "Customer", "text": "This is awful, I am furious."}],
    )
    assert call_interaction_record(call_id=call.pk) is True
    return call


def _api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _contexts(user: Any, customer: Customer) -> list[dict[str, Any]]:
    """The customer's context as ``user`` reads it from both endpoints (the ticket's
    through a ticket of the customer's that ``user`` may see)."""
    client = _api(user)
    ticket = Ticket.objects.filter(customer=customer).filter(ticket_visibility_q(user)).first()
    assert ticket is not None
    bodies = []
    for url in (f"/api/customers/{customer.pk}/context", f"/api/tickets/{ticket.pk}/context"):
        response = client.get(url)
        assert response.status_code == 200, url
        bodies.append(response.json())
    return bodies


def _counted(body: dict[str, Any]) -> tuple[int, int, float | None]:
    sentiment = body["sentiment"]
    return (
        sentiment["scored_messages_90d"],
        sum(week["count"] for week in sentiment["weekly"]),
        sentiment["last"],
    )


def _call_page(user: Any, call: Call) -> int:
    client = Client()
    client.force_login(user)
    return client.get(f"/calls/{call.hash}/").status_code


def test_an_agent_who_may_not_see_the_call_neither_sees_nor_counts_it(
    caller, teams, agent, other_agent
):
    """The review's reproduction: the queue is team B's, so team A's agent gets 404 on
    the call page; before, the context listed the call (and counted its score)."""
    _, b = teams
    QueueTeam.objects.create(queue_name=QUEUE, team=b)
    call = _call(caller)
    assert _call_page(agent, call) == 404
    for body in _contexts(agent, caller):
        assert body["interactions"]["recent"] == []
        assert _counted(body) == (0, 0, None)
        text = str(body)
        assert CONTACT not in text
        assert QUEUE not in text
    # The customer page and the ticket page's panel say nothing of it either.
    client = Client()
    client.force_login(agent)
    ticket = Ticket.objects.get(customer=caller, team=teams[0])
    for page in (f"/customers/{caller.pk}/", f"/tickets/{ticket.number}/"):
        response = client.get(page)
        assert response.status_code == 200, page
        assert SUMMARY not in response.content.decode()
        assert "Phone call" not in response.content.decode()


def test_the_agent_whose_team_takes_the_queue_sees_and_counts_it(caller, teams, other_agent):
    _, b = teams
    QueueTeam.objects.create(queue_name=QUEUE, team=b)
    call = _call(caller)
    assert _call_page(other_agent, call) == 200
    score = Interaction.objects.get(source_key=f"call:{CONTACT}").sentiment_score
    assert score is not None
    assert score < 0
    for body in _contexts(other_agent, caller):
        [entry] = body["interactions"]["recent"]
        assert (entry["source_key"], entry["summary"]) == (f"call:{CONTACT}", SUMMARY)
        assert _counted(body) == (1, 1, score)
    client = Client()
    client.force_login(other_agent)
    assert SUMMARY in client.get(f"/customers/{caller.pk}/").content.decode()


def test_a_supervisor_sees_and_counts_every_call(caller, supervisor):
    """An unmapped queue: the call is for supervisors only (its page and its entry)."""
    call = _call(caller)
    assert _call_page(supervisor, call) == 200
    for body in _contexts(supervisor, caller):
        [entry] = body["interactions"]["recent"]
        assert entry["summary"] == SUMMARY
        assert _counted(body)[:2] == (1, 1)


def test_the_rule_is_read_live_like_the_call_pages(caller, teams, agent, other_agent):
    """Mapping the queue to a team later shows the call to that team at once (the cached
    context is the same; which calls a viewer may see is read per request), and an
    escalation ticket the agent may see shows its call, as on the call page."""
    a, b = teams
    call = _call(caller)
    for user in (agent, other_agent):
        assert all(body["interactions"]["recent"] == [] for body in _contexts(user, caller))
    QueueTeam.objects.create(queue_name=QUEUE, team=b)
    assert [len(body["interactions"]["recent"]) for body in _contexts(other_agent, caller)] == [
        1,
        1,
    ]
    assert all(body["interactions"]["recent"] == [] for body in _contexts(agent, caller))
    # an escalation ticket in team A: its agents may open the call page, and see the entry
    ticket = ticket_create(customer=caller, subject="IVR failure", body="x", team=a)
    Escalation.objects.create(call=call, kind="max_retries", reason="r", ticket=ticket)
    assert call_interaction_record(call_id=call.pk) is False  # now names the ticket
    assert _call_page(agent, call) == 200
    for body in _contexts(agent, caller):
        [entry] = body["interactions"]["recent"]
        assert entry["ticket_id"] == ticket.pk
        assert _counted(body)[:2] == (1, 1)


def test_an_entry_of_no_ticket_and_no_call_is_shown_to_whom_may_see_the_customer(caller, agent):
    """What a CRM import logs (no ticket, no scope): shown as before, and counted."""
    interaction_record(
        customer_id=caller.pk,
        source_key="crm:42",
        channel="phone",
        kind="call",
        occurred_at=timezone.now() - timedelta(hours=2),
        summary="Logged in the CRM",
        analyse_text="Thanks, that was great help, I am very happy.",
    )
    for body in _contexts(agent, caller):
        [entry] = body["interactions"]["recent"]
        assert (entry["summary"], entry["scope"]) == ("Logged in the CRM", "")
        assert _counted(body)[:2] == (1, 1)


def test_an_unknown_scope_is_for_supervisors_only(caller, agent, supervisor):
    """A scope no app registered a rule for (an app removed, a typo) hides the entry from
    agents rather than showing it to all of them."""
    interaction_record(
        customer_id=caller.pk,
        source_key="other:1",
        channel="phone",
        kind="note",
        occurred_at=timezone.now(),
        summary="Scoped elsewhere",
        scope="nosuchapp:1",
    )
    assert all(body["interactions"]["recent"] == [] for body in _contexts(agent, caller))
    assert all(len(body["interactions"]["recent"]) == 1 for body in _contexts(supervisor, caller))


def test_the_calls_cost_an_agent_one_query(caller, teams, agent, other_agent):
    """Which calls the viewer may see is one query, whatever the number of calls, and
    only when the context names a call; a supervisor's costs none."""
    _, b = teams
    QueueTeam.objects.create(queue_name=QUEUE, team=b)
    url = f"/api/customers/{caller.pk}/context"
    client = _api(other_agent)

    def queries() -> int:
        client.get(url)  # warm: the context cached, the user's roles and teams read
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    without = queries()
    for n in range(5):
        _call(caller, contact=f"CALL-{n}")
    assert queries() == without + 1


def test_the_calls_app_registers_the_call_pages_rule_as_the_call_scopes():
    from calls.selectors import CALL_SCOPE, call_scope_visible
    from tickets.context import scopes

    assert scopes._rules[CALL_SCOPE] is call_scope_visible
    contact_id = Call._meta.get_field("contact_id").max_length
    assert contact_id is not None
    assert Interaction._meta.get_field("scope").max_length == 140 >= len("call:") + contact_id


def _staff(user: Any) -> Client:
    """``user`` made staff with the interactions' view permission (and nothing else)."""
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.user_permissions.add(Permission.objects.get(codename="view_interaction"))
    client = Client()
    client.force_login(user)
    return client


def _admin_sees(client: Client, entry: Interaction) -> tuple[bool, bool]:
    """Whether the interactions' changelist lists ``entry`` and its change page opens."""
    listed = client.get(reverse("admin:tickets_interaction_changelist"))
    assert listed.status_code == 200
    change = reverse("admin:tickets_interaction_change", args=[entry.pk])
    page = client.get(change)
    assert page.status_code in (200, 302)
    return change in listed.content.decode(), page.status_code == 200


def test_the_admin_lists_and_opens_a_call_entry_only_for_whom_may_see_the_call(
    caller, teams, agent, other_agent, supervisor
):
    """The admin's interactions page follows the context's rule (the entry's scope), not
    only its customer and ticket: a staff agent of team A given the view permission saw
    team B's call entry in the list and opened it (review 2026-12-06), though the call
    page and the context hid it. Its page now answers as a missing row does."""
    _, b = teams
    QueueTeam.objects.create(queue_name=QUEUE, team=b)
    call = _call(caller)
    entry = Interaction.objects.get(source_key=f"call:{CONTACT}")
    assert entry.scope == f"call:{CONTACT}"
    assert entry.ticket_id is None
    assert _call_page(agent, call) == 404
    hidden = _staff(agent)
    assert _admin_sees(hidden, entry) == (False, False)
    response = hidden.get(reverse("admin:tickets_interaction_change", args=[entry.pk]))
    assert response.status_code == 302  # Django's "doesn't exist" redirect to the index
    assert response["Location"] == reverse("admin:index")
    listed = hidden.get(reverse("admin:tickets_interaction_changelist")).content.decode()
    assert CONTACT not in listed
    assert "0 interactions" in listed
    # the agent of the team that takes the queue, and a supervisor, see and open it
    assert _admin_sees(_staff(other_agent), entry) == (True, True)
    assert _admin_sees(_staff(supervisor), entry) == (True, True)


def test_the_admin_scopes_an_old_calls_entry_by_its_key(
    caller, teams, agent, other_agent, supervisor
):
    """An analysed call's entry written before entries carried a scope (or by the previous
    release during the deploy that added them) is scoped by its key ``call:<contact id>``,
    in the admin as in the context: the admin listed and opened it to every staff agent
    who saw its customer (it has no ticket), the call page and the context did not."""
    _, b = teams
    QueueTeam.objects.create(queue_name=QUEUE, team=b)
    call = _call(caller)
    Interaction.objects.filter(source_key=f"call:{CONTACT}").update(scope="")
    entry = Interaction.objects.get(source_key=f"call:{CONTACT}")
    assert _call_page(agent, call) == 404
    assert all(body["interactions"]["recent"] == [] for body in _contexts(agent, caller))
    assert _admin_sees(_staff(agent), entry) == (False, False)
    assert _admin_sees(_staff(other_agent), entry) == (True, True)
    assert _admin_sees(_staff(supervisor), entry) == (True, True)
