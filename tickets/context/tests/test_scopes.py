"""The scope registry (``tickets.context.scopes``): the core asks each kind's rule, once
per kind, and shows an agent nothing of a kind without a rule; supervisors see all."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tickets.context import scopes
from tickets.context.models import Interaction
from tickets.models import Customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, set[str]]]:
    calls: list[tuple[Any, set[str]]] = []

    def even(user: Any, keys: set[str]) -> set[str]:
        calls.append((user, set(keys)))
        return {key for key in keys if int(key) % 2 == 0} | {"99"}  # 99: never asked

    monkeypatch.setattr(scopes, "_rules", {})
    scopes.register_scope_rule("thing", even)
    return calls


def test_each_kind_is_asked_once_with_its_keys(asked, agent):
    named = {"thing:1", "thing:2", "thing:4", "nosuch:2", "nocolon", ""}
    assert scopes.scopes_visible(agent, named) == {"thing:2", "thing:4"}
    assert asked == [(agent, {"1", "2", "4"})]


def test_nothing_named_asks_nothing(asked, agent):
    assert scopes.scopes_visible(agent, {""}) == set()
    assert asked == []


def test_a_supervisor_sees_every_scope_and_no_rule_is_asked(asked, supervisor):
    named = {"thing:1", "nosuch:2"}
    assert scopes.scopes_visible(supervisor, named) == named
    assert asked == []


def test_a_kind_is_a_word_without_a_colon():
    with pytest.raises(ValueError, match="without ':'"):
        scopes.register_scope_rule("call:x", lambda user, keys: keys)
    with pytest.raises(ValueError, match="without ':'"):
        scopes.register_scope_rule("", lambda user, keys: keys)


def _entries(customer: Customer, *named: str) -> None:
    for n, scope in enumerate(named):
        Interaction.objects.create(
            customer=customer,
            source_key=f"test:{n}",
            scope=scope,
            channel="phone",
            kind="note",
            occurred_at=timezone.now(),
        )


def _filtered(user: Any) -> set[str]:
    rows = Interaction.objects.filter(scopes.scope_visibility_q(user))
    return set(rows.values_list("scope", flat=True))


def test_the_filter_shows_the_scopes_the_kinds_rows_name(asked, agent, supervisor, monkeypatch):
    """The rule as a filter (the admin's interactions page): an entry of no scope, and one
    whose kind's ``rows`` name its key; not a key they do not name, a kind without ``rows``
    nor one without a rule; all of them for a supervisor. One query, the rule's ``rows`` a
    subquery of it; the set-shaped rule is not asked."""
    customer = Customer.objects.create(name="2", email="two@example.com")
    Customer.objects.create(name="4", email="four@example.com")
    _entries(customer, "", "thing:2", "thing:4", "thing:3", "nosuch:2", "nocolon", "other:2")
    monkeypatch.setattr(scopes, "_rows", {})
    rule = scopes._rules["thing"]
    scopes.register_scope_rule("thing", rule, rows=lambda user: Customer.objects.values("name"))
    scopes.register_scope_rule("other", lambda user, keys: keys)  # no rows: supervisors'
    shown = scopes.scope_visibility_q(agent)  # reads the viewer's roles
    with CaptureQueriesContext(connection) as captured:
        assert set(Interaction.objects.filter(shown).values_list("scope", flat=True)) == {
            "",
            "thing:2",
            "thing:4",
        }
    assert len(captured) == 1
    assert asked == []
    everything = {"", "thing:2", "thing:4", "thing:3", "nosuch:2", "nocolon", "other:2"}
    assert _filtered(supervisor) == everything
    assert scopes.scope_visibility_q(supervisor) == scopes.Q()
