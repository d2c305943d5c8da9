"""Routing verdicts (accept / override) given at the same moment, on real threads and
connections against PostgreSQL: a double-click is one verdict and one ticketing sync,
and two people's verdicts are ordered as their changes reach the ticket (review:
"routing verdicts are not ordered or deduplicated").

The interleaving is forced, not hoped for: the thread that reaches ``ticket_update``
first holds there until the other thread is either finished or waiting on a lock this
thread's transaction holds (``pg_blocking_pids``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection, connections

from routing import services as routing_services
from routing.models import RoutingDecision, RoutingFeedback
from routing.selectors import routing_verdicts_latest
from support.auth.roles import AGENTS_GROUP, SUPERVISORS_GROUP
from support.delivery.models import Delivery
from support.delivery.registry import SendResult
from tickets import services as ticket_services
from tickets.models import Customer, Team, Ticket

URL = "https://tickets.example.test/api/routing"
WAIT = 10  # seconds: a bound on a wait that a broken fix would leave hanging


@pytest.fixture
def setup(settings: Any, monkeypatch: pytest.MonkeyPatch, django_user_model: Any) -> Any:
    settings.ROUTING_ENABLED = False  # no automatic routing on ticket.created
    settings.TICKETING_SYSTEM_URL = URL
    settings.TICKETING_SYSTEM_TOKEN = "tok"
    posted: list[dict[str, Any]] = []
    posted_lock = threading.Lock()

    def fake_post(*, body: dict[str, Any], idempotency_key: str) -> SendResult:
        with posted_lock:
            posted.append({"key": idempotency_key, **body})
        return SendResult(http_status=200)

    monkeypatch.setattr(routing_services, "ticketing_post", fake_post)
    supervisors = []
    for name in ("sup1", "sup2"):
        user = django_user_model.objects.create_user(username=name, password="x")
        user.groups.add(Group.objects.get_or_create(name=AGENTS_GROUP)[0])
        user.groups.add(Group.objects.get_or_create(name=SUPERVISORS_GROUP)[0])
        supervisors.append(user)
    billing = Team.objects.create(slug="billing", name="Billing")
    orders = Team.objects.create(slug="orders", name="Orders")
    customer = Customer.objects.create(name="Ada", email="ada@example.com")
    ticket = ticket_services.ticket_create(customer=customer, subject="Refund", body="refund")
    decision = RoutingDecision.objects.create(
        ticket=ticket,
        team=billing,
        team_slug="billing",
        priority="normal",
        confidence=0.5,
        provider="local",
        requires_manual_review=True,
        correlation_id=ticket.correlation_id,
    )
    return {
        "sup": supervisors,
        "ticket": ticket,
        "decision": decision,
        "posted": posted,
        "billing": billing,
        "orders": orders,
    }


def _blocked_by_me() -> bool:
    """Another backend waits on a lock this connection's transaction holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted"
            " AND pg_backend_pid() = ANY(pg_blocking_pids(pid)))"
        )
        return bool(cursor.fetchone()[0])


def _hold_until_other_waits_or_ends(other_done: threading.Event) -> None:
    for _ in range(WAIT * 200):
        if other_done.is_set() or _blocked_by_me():
            return
        other_done.wait(0.005)  # a poll of the condition, not the synchronisation
    raise AssertionError("the other thread neither finished nor waited on this one")


def _run(
    monkeypatch: pytest.MonkeyPatch,
    *,
    holder: str | None = None,
    holding: threading.Event | None = None,
    **fns: Callable[[], Any],
) -> dict[str, Any]:
    """Run ``fns`` on threads named by their keys (started together at a barrier) and
    answer what each returned or raised. The ``holder`` thread (else whichever gets there
    first) holds at ``ticket_update`` (setting ``holding``) until the other thread is
    finished or waits on a lock it holds."""
    done = {name: threading.Event() for name in fns}
    first: list[str] = []
    first_lock = threading.Lock()
    real_update = ticket_services.ticket_update

    def held_update(**kwargs: Any) -> Any:
        name = threading.current_thread().name
        with first_lock:
            holds = not first and (holder is None or name == holder)
            if holds:
                first.append(name)
        if holds:
            [other] = [n for n in fns if n != name]
            if holding is not None:
                holding.set()
            _hold_until_other_waits_or_ends(done[other])
        return real_update(**kwargs)

    monkeypatch.setattr(ticket_services, "ticket_update", held_update)
    barrier = threading.Barrier(len(fns), timeout=WAIT)
    out: dict[str, Any] = {}

    def run(name: str, fn: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            out[name] = fn()
        except Exception as exc:
            out[name] = exc
        finally:
            done[name].set()
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n, fn), name=n) for n, fn in fns.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert not any(thread.is_alive() for thread in threads)
    assert first, "no thread reached ticket_update"
    return out


def _verdict_deliveries() -> list[Delivery]:
    return list(
        Delivery.objects.filter(
            target_kind="ticketing_sync", idempotency_key__startswith="routing-verdict-"
        ).order_by("pk")
    )


@pytest.mark.django_db(transaction=True)
def test_a_double_click_on_accept_is_one_verdict_and_one_sync(setup, monkeypatch):
    """Before: two verdict rows and two ticketing POSTs (two idempotency keys)."""
    decision, sup = setup["decision"], setup["sup"][0]

    def click() -> int:
        fresh = RoutingDecision.objects.get(pk=decision.pk)
        return routing_services.routing_decision_accept(decision=fresh, actor=sup).pk

    out = _run(monkeypatch, a=click, b=click)
    assert isinstance(out["a"], int), out
    assert isinstance(out["b"], int), out
    [verdict] = RoutingFeedback.objects.filter(decision=decision)
    assert out["a"] == out["b"] == verdict.pk
    assert (verdict.verdict, verdict.team_id, verdict.actor_id) == (
        "accepted",
        setup["billing"].pk,
        sup.pk,
    )
    [delivery] = _verdict_deliveries()
    assert delivery.idempotency_key == f"routing-verdict-{verdict.pk}"
    assert [p["key"] for p in setup["posted"]] == [delivery.idempotency_key]
    ticket = Ticket.objects.get(pk=setup["ticket"].pk)
    assert (ticket.team_id, ticket.needs_review) == (setup["billing"].pk, False)


@pytest.mark.django_db(transaction=True)
def test_verdicts_at_once_are_ordered_as_they_reach_the_ticket(setup, monkeypatch):
    """One supervisor overrides to orders while another accepts billing. The override's
    thread holds just before its team change; the accept starts once it holds there.
    Before: the override's verdict was written first (older pk and time) but its team
    reached the ticket last, so the ticket stayed on orders while the latest verdict
    (accuracy, the training label) and the newest ``updated_at`` sent to the ticketing
    system said billing. Now the accept waits for the ticket, and both verdicts stay,
    in the order their changes reached it."""
    decision = setup["decision"]
    holding = threading.Event()

    def override() -> int:
        fresh = RoutingDecision.objects.get(pk=decision.pk)
        return routing_services.routing_decision_override(
            decision=fresh,
            actor=setup["sup"][0],
            team=setup["orders"],
            priority="high",
            note="orders",
        ).pk

    def accept() -> int:
        assert holding.wait(WAIT)  # the override is at its team change
        fresh = RoutingDecision.objects.get(pk=decision.pk)
        return routing_services.routing_decision_accept(decision=fresh, actor=setup["sup"][1]).pk

    out = _run(monkeypatch, holder="override", holding=holding, override=override, accept=accept)
    assert isinstance(out["override"], int), out
    assert isinstance(out["accept"], int), out

    verdicts = list(RoutingFeedback.objects.filter(decision=decision).order_by("pk"))
    # both are kept (a different person's verdict is one of its own), override first
    assert [(v.pk, v.verdict) for v in verdicts] == [
        (out["override"], "overridden"),
        (out["accept"], "accepted"),
    ]
    assert verdicts[0].created_at <= verdicts[1].created_at
    ticket = Ticket.objects.get(pk=setup["ticket"].pk)
    [latest] = routing_verdicts_latest().filter(decision=decision)
    assert latest.pk == out["accept"]
    assert (ticket.team_id, ticket.priority) == (latest.team_id, latest.priority)
    assert ticket.team_id == setup["billing"].pk
    # the ticketing system keeps the newest updated_at: the verdict the ticket shows
    deliveries = _verdict_deliveries()
    assert [d.idempotency_key for d in deliveries] == [f"routing-verdict-{v.pk}" for v in verdicts]
    sent_at = [datetime.fromisoformat(d.payload["updated_at"]) for d in deliveries]
    assert sent_at[0] < sent_at[1]
    newest = deliveries[sent_at.index(max(sent_at))]
    assert newest.payload["assignment"]["team"] == "billing"
