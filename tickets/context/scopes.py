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

The same rule comes in two shapes: for the scopes a context names (:func:`scopes_visible`,
a set of keys asked of each kind's ``rule``) and as a filter on the rows that hold a scope
(:func:`scope_visibility_q`, each kind's ``rows`` as a subquery: the admin's interactions
page, which lists every customer's entries). A kind registered without ``rows`` is for
supervisors only in the filter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from django.db.models import Q, QuerySet
from django.db.models.functions import Substr
from django.db.models.lookups import In

from support.auth.roles import is_supervisor

#: ``rule(user, keys)``: the keys among ``keys`` (the part after ``<kind>:``) of the things
#: ``user`` may see, read live (never cached), in one query whatever the number of keys.
ScopeRule = Callable[[Any, set[str]], set[str]]
#: ``rows(user)``: the same rule as a subquery, the keys of all the things ``user`` may see
#: as one column (``Call.objects.filter(...).values("contact_id")``), never evaluated alone.
ScopeRows = Callable[[Any], QuerySet[Any]]

_rules: dict[str, ScopeRule] = {}
_rows: dict[str, ScopeRows] = {}


def register_scope_rule(kind: str, rule: ScopeRule, *, rows: ScopeRows | None = None) -> None:
    """``kind``'s visibility rule for the entries scoped ``<kind>:<key>``: for a set of
    keys (``rule``) and as a subquery (``rows``, for :func:`scope_visibility_q`)."""
    if not kind or ":" in kind:
        raise ValueError(f"A scope kind is a word without ':' (got {kind!r}).")
    _rules[kind] = rule
    if rows is None:
        _rows.pop(kind, None)
    else:
        _rows[kind] = rows


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


def scope_visibility_q(user: Any, *, field: str = "scope") -> Q:
    """The rows whose scope (in ``field``) ``user`` may see, as a filter: every row for a
    supervisor; for anyone else the rows of no scope and those whose kind's ``rows`` name
    their key, in the query it filters (a subquery per kind, no row checked one by one).
    A scope of a kind without ``rows`` (or without a rule) is for supervisors only, as in
    :func:`scopes_visible`. The ticket rule is the caller's."""
    if is_supervisor(user):
        return Q()
    seen = Q(**{field: ""})
    for kind, rows in sorted(_rows.items()):
        if kind not in _rules:
            continue
        prefix = scope_make(kind, "")
        key = Substr(field, len(prefix) + 1)
        seen |= Q(**{f"{field}__startswith": prefix}) & Q(In(key, rows(user)))
    return seen
