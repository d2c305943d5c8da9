"""Who may see an interaction that is about something with its own visibility rule.

An interaction names its ticket (``ticket_id``), and an agent is shown it only if they may
see that ticket. Some entries are about something else that has its own rule, which the
core does not know (an analysed call: the call page's rule is the calls app's,
``calls.selectors.call_visibility_q``). Such an entry carries a **scope**,
``<kind>:<key>`` (``call:<contact id>``), and the app that owns ``<kind>`` registers a rule
here (in its ``AppConfig.ready()``), the way apps plug their erasers into
``tickets.context.privacy``: the core imports no feature app.

An agent is shown an entry when it may see its ticket (if it names one) **and** its scope
(if it has one); supervisors see every entry. A scope whose kind has no rule (an app
removed, a writer's typo) is for supervisors only: an entry is never shown to everyone for
want of a rule.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from support.auth.roles import is_supervisor

#: ``rule(user, keys)``: the keys among ``keys`` (the part after ``<kind>:``) of the things
#: ``user`` may see, read live (never cached), in one query whatever the number of keys.
ScopeRule = Callable[[Any, set[str]], set[str]]

_rules: dict[str, ScopeRule] = {}


def register_scope_rule(kind: str, rule: ScopeRule) -> None:
    """``kind``'s visibility rule for the entries scoped ``<kind>:<key>``."""
    if not kind or ":" in kind:
        raise ValueError(f"A scope kind is a word without ':' (got {kind!r}).")
    _rules[kind] = rule


def scope_make(kind: str, key: str) -> str:
    """The scope of an entry about ``kind``'s ``key`` (``scope_make("call", contact_id)``)."""
    return f"{kind}:{key}"


def scopes_visible(user: Any, scopes: Iterable[str]) -> set[str]:
    """The scopes among ``scopes`` that ``user`` may see: all of them for a supervisor (no
    query); for anyone else, each kind's rule once (one query per kind named; none when
    no scope is named), and nothing of a kind without a rule."""
    wanted = {scope for scope in scopes if scope}
    if not wanted or is_supervisor(user):
        return wanted
    keys: defaultdict[str, set[str]] = defaultdict(set)
    for scope in wanted:
        kind, sep, key = scope.partition(":")
        if sep and kind in _rules:
            keys[kind].add(key)
    return {
        scope_make(kind, key)
        for kind, named in sorted(keys.items())
        for key in _rules[kind](user, named) & named
    }
