"""The scope registry (``tickets.context.scopes``): the core asks each kind's rule, once
per kind, and shows an agent nothing of a kind without a rule; supervisors see all."""

from __future__ import annotations

from typing import Any

import pytest

from tickets.context import scopes

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
