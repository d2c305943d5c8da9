"""Review reasons as people read them: the data set's labels in words.

``routing.providers.base.review_reasons`` writes why a decision needs a person with the
labels as the data set spells them ("no known team for category ORDER", "model says
CANCELLATION_FEE, classifier says ORDER"). Those texts are stored on the decision
(``RoutingDecision.review_reasons``) and in the ticket's timeline entry, and the API returns
them as stored: a client or a script may match on them, and the labels are what the
category -> team map and the admin use. The pages people read (the routing panel, the
ticket's timeline) show them through :func:`review_reason_words` and
:func:`review_note_words` instead, at display time: entries written before read the same
way, and nothing stored changes. Only the labels in the reasons that quote them are
rewritten, and the team slugs of "model chose billing, rules say orders" become the
teams' names; any other text (and a label-less "?") is shown as stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from support.text import words

#: The start of the reason a decision sent to review gives its timeline entry
#: (``routing.services._apply``): "Needs review: no → yes (AI routing needs review: …)".
REVIEW_NOTE = "AI routing needs review"

# The reasons that quote labels, each label a named group ("label" or "label2"); the rest
# of the text is kept as it is. A label is what the data set or the model gave: no spaces
# in the data sets, but a model's answer may have them, hence ".+" between fixed words.
_LABELLED = (
    re.compile(r"^no known team for category (?P<label>.+)$"),
    re.compile(r"^model says (?P<label>.+), classifier says (?P<label2>.+)$"),
    re.compile(r"^ambiguous between (?P<label>.+) \([0-9.]+\) and (?P<label2>.+) \([0-9.]+\)$"),
)
# The reason that names two teams by their slugs ("model chose billing, rules say orders");
# the priority one ("model chose priority urgent, rules say normal") is words already.
_TEAMS = re.compile(r"^model chose (?!priority )(?P<label>.+), rules say (?P<label2>.+)$")


def _label_words(label: str) -> str:
    """A label in words and quotes ("CANCELLATION_FEE" → "“Cancellation fee”"); one shown
    already, or none given ("?"), as it is."""
    if label == "?" or label.startswith("“"):
        return label
    return f"“{words(label)}”"


def _team_words(slug: str) -> str:
    """A team's slug as its name in quotes ("orders" → "“Orders & returns”"); a slug no
    team here has (a team deleted since) in words, as a label is."""
    from tickets.models import Team

    if slug.startswith("“"):
        return slug
    name = Team.objects.filter(slug=slug).values_list("name", flat=True).first()
    return f"“{name}”" if name else _label_words(slug)


def _replaced(reason: str, match: re.Match[str], shown: Callable[[str], str]) -> str:
    out, last = [], 0
    for name in ("label", "label2"):
        if name not in match.re.groupindex:
            continue
        start, end = match.span(name)
        out += [reason[last:start], shown(match[name])]
        last = end
    return "".join([*out, reason[last:]])


def review_reason_words(reason: str) -> str:
    """One review reason as people read it: "no known team for category ORDER" → "no
    known team for category “Order”"; "model chose billing, rules say orders" names the
    teams ("“Billing”", "“Orders & returns”"). A reason that quotes no label is returned as
    is."""
    for pattern in _LABELLED:
        match = pattern.match(reason)
        if match is not None:
            return _replaced(reason, match, _label_words)
    match = _TEAMS.match(reason)
    if match is not None:
        return _replaced(reason, match, _team_words)
    return reason


def review_reasons_words(reasons: list[str]) -> list[str]:
    return [review_reason_words(str(reason)) for reason in reasons]


_NOTE = re.compile(rf"\({re.escape(REVIEW_NOTE)}: (?P<reasons>.*)\)$", re.DOTALL)


def review_note_words(text: str) -> str:
    """A timeline entry's text with the review reasons it quotes in words: "Needs review:
    no → yes (AI routing needs review: no known team for category ORDER)" → "… (AI routing
    needs review: no known team for category “Order”)". Any other entry is returned as is."""
    match = _NOTE.search(text)
    if match is None:
        return text
    reasons = match["reasons"].split("; ")
    start, end = match.span("reasons")
    return text[:start] + "; ".join(review_reasons_words(reasons)) + text[end:]
