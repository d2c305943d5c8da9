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
from support.redaction import EMAIL_RE, PHONE_RE

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


# --- small talk --------------------------------------------------------------------------

_SMALL_TALK = [  # longest first: the first alternative that matches wins
    # agent boilerplate
    r"(is there )?anything else (i|we) can (help|assist) (you )?with( today)?",
    r"(can|may|could) i help (you )?with anything else( today)?",
    r"(how|what) (can|may) (i|we) (help|assist|do for) (you )?( with)?( today)?",
    r"you('re| are) (very |most )?welcome",
    r"(it was )?my pleasure|(i'm |i am )?(glad|happy) (i could|to) (help|assist)( you)?",
    r"thank you for (contacting|reaching out to|choosing|using|calling|your patience)[\w ]*",
    r"(please )?(give me|allow me) (a|one) (moment|second|minute)|one moment( please)?",
    r"let me (check|look into|see) (that|this|for you)( for you)?",
    r"(i'm |i am )?sorry (for|about) the (wait|delay|inconvenience)",
    r"(i )?apologi[sz]e for the (wait|delay|inconvenience)",
    r"please (hold|wait)",
    # greetings and openers
    r"h(i|ello|ey|iya|owdy)( there| all| team| guys| again)?",
    r"good (morning|afternoon|evening|day)",
    r"greetings",
    r"dear (team|support|sir|madam|sir or madam|customer service)",
    r"how are you( doing)?( today)?",
    r"i hope (you are|you're) (well|doing well)",
    # thanks and acknowledgements
    r"(many |a lot of )?thanks?( you)?( (so|very) much| a lot| a bunch| again| for (all )?"
    r"(your|the) (help|assistance|time|information|info))?",
    r"thx|ty|cheers|much appreciated",
    r"(i|we) (really )?appreciate (it|that|your help|the help)",
    r"(that|this|it)('s| is| was)? (really |very )?(helps|helped|works|worked|helpful)"
    r"( a lot| (so|very) much)?",
    r"(ok(ay)?|o\.k\.|alright|all right|sure|yes|yeah|yep|no|nope|right|cool|fine|"
    r"great|perfect|awesome|excellent|wonderful|brilliant|lovely|nice|good|got it|"
    r"understood|i see|sounds (good|great|perfect|lovely|fine|nice|wonderful|ideal)|"
    r"that('s| is| would be) (great|perfect|fine|good|helpful|wonderful|all)"
    r"( for now| for today)?)",
    # closings
    r"(good)?bye( now| for now)?|see (you|ya)|take care|talk (to you )?(soon|later)",
    r"have a (nice|good|great|lovely|wonderful) (day|one|evening|night|weekend|trip)",
    r"(best|kind|warm)? ?regards|sincerely|best wishes",
    r"(that('s| is| will be| would be) )?(all|everything)( i need(ed)?)?( for (now|today))?",
    r"(i|we) don't need anything else|nothing else",
    # introductions, contact details and signatures: the customer's own name, address or
    # phone is no article's word
    r"(you can |please )?(reach|contact|call|text|ring|e-?mail) me( back)?( (at|on|via))?",
    r"sent from my [\w ]+",
]
_SMALL_TALK_RE = re.compile(
    r"\b(" + "|".join(f"(?:{p})" for p in _SMALL_TALK) + r")\b", re.IGNORECASE
)
_STOPWORD_TEXT = """a an the and or but so to of for in on at by with from it its it's this
    that these
    those i i'm me my we us our you your yours he she they them their is are was were be
    been am do does did have has had will would can could should shall may might must
    just really very too also again please then there here now well oh ah um hmm lol
    as if not any all some much many more most what's that's"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[\w'#@./-]+")


# A whole sentence that is an introduction ("Hi, this is Jo Smith.", "My name is Ana."; a
# capitalised name: "this is not working" is not one) or a closing and a name ("Thanks,
# Maria", "Kind regards, Jo Smith").
# Possessive quantifiers (``*+``, ``++``): a name's letters, apostrophes and hyphens are
# never given back to the trailing punctuation, so a long run of "-" or "'" costs linear
# time, not quadratic (these run on whatever a customer sends).
_INTRO_RE = re.compile(
    r"^\W*+(?:(?i:h(?:i|ello|ey)(?: there)?)\W++)?(?i:this is|my name is|i am|i'm)\s++"
    r"[A-Z][\w'-]*+(?:\s++[A-Z][\w'-]*+)?(?:\s++(?i:here))?\W*+$"
)
_SIGN_OFF_RE = re.compile(
    r"^\W*+(?:(?:many |a lot of )?thanks?(?: you)?(?: again)?|cheers|best|(?:best|kind|warm) "
    r"regards|regards|sincerely|yours(?: truly| sincerely)?)\W++[\w'-]++(?: [\w'-]++)?\W*+$",
    re.IGNORECASE,
)
_URL_RE = re.compile(r"\bhttps?://\S+|\bwww\.\S+", re.IGNORECASE)


def _has_content(sentence: str) -> bool:
    if _SIGN_OFF_RE.match(sentence) or _INTRO_RE.match(sentence):
        return False
    for pattern in (EMAIL_RE, _URL_RE, PHONE_RE):
        sentence = pattern.sub(" ", sentence)
    rest = _SMALL_TALK_RE.sub(" ", sentence.lower())
    words = [w.strip("'.,/-") for w in _WORD.findall(rest)]
    return any(w and w not in _STOPWORDS for w in words)


# An e-mail signature starts at a line "-- " (RFC 3676): nothing below it is the question.
_SIGNATURE_RE = re.compile(r"^--[ \t]*$", re.MULTILINE)


def clean(text: str) -> str:
    """The text without its signature and the sentences that are only greetings, thanks,
    introductions, contact details or boilerplate."""
    text = _SIGNATURE_RE.split(text, maxsplit=1)[0]
    kept = [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip() and _has_content(s)]
    return " ".join(kept)


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
