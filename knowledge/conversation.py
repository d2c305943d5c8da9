"""Knowledge-base queries built from a conversation rather than from one string.

A customer's question is usually in their last turn ("Do they have free parking?"), while
what it is about (a product, a place, an order) was named turns earlier, often by the
agent ("How about the Acorn Guest House?"), and greetings, thanks and agent boilerplate
sit around both. ``build_query`` turns a list of turns into a ``ConversationQuery``:

- **focus**: the last customer turn that still says something once small talk is removed
  (a trailing "thanks!" does not become the question);
- **context**: every other turn with content, newest first, each with a weight that
  decays with its distance from the focus (``decay`` per turn) and is lower for agent
  turns (``agent_weight``), capped at ``max_turns`` turns;
- small talk (greetings, thanks, sign-offs, "Is there anything else I can help you
  with?") is dropped sentence by sentence, so a sentence that greets *and* asks is kept.

Retrieval (``knowledge.retrieval``) embeds the focus and the context turns and searches
with their weighted sum, and carries the context's *distinctive* terms (rare in the
knowledge base's titles: names of products, places, order numbers) into the full-text
side. ``ConversationQuery.text`` is a single-string form (focus plus the names and codes
it can spot without the knowledge base) for backends that take one string.

A plain string is a one-turn conversation: its focus is the string without small talk.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from support.errors import InvalidInput
from support.small_talk import STOPWORDS as _STOPWORDS
from support.small_talk import clean as clean  # small talk: read in support.small_talk

CUSTOMER = "customer"
AGENT = "agent"
SPEAKERS = (CUSTOMER, AGENT)
MAX_TURN_CHARS = 2000

# Defaults; the live values come from settings (KB_CONTEXT_*), see docs/knowledge.md.
CONTEXT_WEIGHT = 0.3
AGENT_WEIGHT = 1.0
DECAY = 0.9
MAX_TURNS = 8


@dataclass(frozen=True)
class Turn:
    speaker: str
    text: str


@dataclass(frozen=True)
class WeightedText:
    text: str
    weight: float
    speaker: str = CUSTOMER


@dataclass(frozen=True)
class ConversationQuery:
    """What to search for: the focus turn and the weighted context around it."""

    focus: str
    context: tuple[WeightedText, ...] = field(default_factory=tuple)
    context_weight: float = CONTEXT_WEIGHT

    @property
    def parts(self) -> list[WeightedText]:
        """The focus (weight 1) then the context turns, newest first."""
        return [WeightedText(self.focus, 1.0), *self.context]

    @property
    def text(self) -> str:
        """One string: the focus plus names and codes spotted in the context."""
        focus = self.focus.lower()
        carried = [
            e for e in entity_phrases(c.text for c in self.context) if e.lower() not in focus
        ]
        return " ".join([self.focus, *carried]).strip()

    def __bool__(self) -> bool:
        return bool(self.focus)


# --- names and codes -------------------------------------------------------------------

# Order numbers, SKUs, postcodes: a run of word characters and hyphens, four or more, with a
# digit. Each run is read once (possessive, no look-ahead over the run from every position:
# that took 44 s on 60 KB of "a-a-a-..."); the digit and the length are checked in Python.
_CODE_RUN = re.compile(r"(?<!\w)[A-Za-z0-9][\w-]*+")


def _codes(text: str) -> list[str]:
    runs = (run.rstrip("-") for run in _CODE_RUN.findall(text))
    return [run for run in runs if len(run) >= 4 and any(ch.isdigit() for ch in run)]


_QUOTED = re.compile(r"[\"“]([^\"”]{2,60})[\"”]")
_CAPITALISED = re.compile(
    r"(?<![.!?]\s)(?<!^)\b([A-Z][\w&'-]*(?:\s+(?:of|and|the|de|&)?\s*[A-Z][\w&'-]*)*)"
)


def entity_phrases(texts: Iterable[str]) -> list[str]:
    """Names and codes a string search can carry without the knowledge base: quoted
    phrases, capitalised words not opening a sentence, and tokens with digits."""
    found: list[str] = []
    for text in texts:
        found += _QUOTED.findall(text)
        found += [m for m in _CAPITALISED.findall(text) if m.lower() not in _STOPWORDS]
        found += _codes(text)
    unique: dict[str, str] = {}
    for phrase in found:
        unique.setdefault(phrase.lower(), phrase.strip())
    return list(unique.values())


# --- building ----------------------------------------------------------------------------


def parse_turns(raw: Any) -> list[Turn]:
    """Validate ``[{"speaker": "customer"|"agent", "text": "..."}, ...]``."""
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("turns: a non-empty list of {speaker, text} is required")
    turns = []
    for number, item in enumerate(raw, 1):
        if not isinstance(item, dict):
            raise InvalidInput(f"turns[{number}]: an object with speaker and text is required")
        speaker = item.get("speaker")
        text = item.get("text")
        if speaker not in SPEAKERS:
            raise InvalidInput(f"turns[{number}].speaker: one of {', '.join(SPEAKERS)}")
        if not isinstance(text, str):
            raise InvalidInput(f"turns[{number}].text: a string is required")
        turns.append(Turn(speaker=speaker, text=text[:MAX_TURN_CHARS]))
    if not any(t.speaker == CUSTOMER and t.text.strip() for t in turns):
        raise InvalidInput("turns: at least one customer turn with text is required")
    return turns


def folded(text: str) -> str:
    """``text`` compared loosely: case and runs of spaces ignored."""
    return " ".join(text.casefold().split())


def build_query(
    turns: Sequence[Turn] | str,
    *,
    context_weight: float = CONTEXT_WEIGHT,
    agent_weight: float = AGENT_WEIGHT,
    decay: float = DECAY,
    max_turns: int = MAX_TURNS,
) -> ConversationQuery:
    """The focus (last customer turn with content) and the weighted context before it."""
    if isinstance(turns, str):
        turns = [Turn(CUSTOMER, turns)]
    cleaned = [(t.speaker, clean(t.text)) for t in turns]
    focus_at = next(
        (i for i in range(len(cleaned) - 1, -1, -1) if cleaned[i][0] == CUSTOMER and cleaned[i][1]),
        None,
    )
    if focus_at is None:  # only small talk: fall back to the raw last customer turn
        raw = [t.text.strip() for t in turns if t.speaker == CUSTOMER and t.text.strip()]
        return ConversationQuery(focus=raw[-1] if raw else "", context_weight=context_weight)
    context: list[WeightedText] = []
    repeated = folded(cleaned[focus_at][1])
    for index in range(len(cleaned) - 1, -1, -1):
        speaker, text = cleaned[index]
        # A message sent twice (or an e-mail's subject its body repeats) is the question
        # again, not context: its words would pass for names the conversation mentioned.
        if index == focus_at or not text or folded(text) == repeated:
            continue
        distance = abs(focus_at - index)
        weight = decay ** (distance - 1) * (agent_weight if speaker == AGENT else 1.0)
        context.append(WeightedText(text, weight, speaker))
        if len(context) >= max_turns:
            break
    return ConversationQuery(
        focus=cleaned[focus_at][1], context=tuple(context), context_weight=context_weight
    )
