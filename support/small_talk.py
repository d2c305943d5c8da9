"""Small talk: the sentences of a message or a call that say nothing about its subject.

Greetings, thanks, introductions ("Hi, this is Jo Smith."), sign-offs, contact details and
agent boilerplate ("Thank you for calling …", "Is there anything else I can help you
with?"). ``has_content`` tells whether a sentence says anything once they are removed (a
sentence that greets *and* asks has content); ``clean`` keeps the sentences that do.
Knowledge-base queries (``knowledge.conversation``) and the offline call analysis
(``calls.analytics.providers``) read text through it.
"""

from __future__ import annotations

import re

from support.redaction import EMAIL_RE, PHONE_RE

SMALL_TALK = [  # longest first: the first alternative that matches wins
    # agent boilerplate
    r"(is there )?anything else (i|we) can (help|assist) (you )?with( today)?",
    r"(can|may|could) i help (you )?with anything else( today)?",
    r"(how|what) (can|may) (i|we) (help|assist|do for)( you)?( with)?( today)?",
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
SMALL_TALK_RE = re.compile(
    r"\b(" + "|".join(f"(?:{p})" for p in SMALL_TALK) + r")\b", re.IGNORECASE
)
_STOPWORD_TEXT = """a an the and or but so to of for in on at by with from it its it's this
    that these
    those i i'm me my we us our you your yours he she they them their is are was were be
    been am do does did have has had will would can could should shall may might must
    just really very too also again please then there here now well oh ah um hmm lol
    as if not any all some much many more most what's that's"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
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
# A greeting and a name, the whole sentence ("Hi Sam.", "Good morning, Maria!").
_GREETING_NAME_RE = re.compile(
    r"^\W*+(?i:h(?:i|ello|ey)|good (?:morning|afternoon|evening)|dear)\W++"
    r"[A-Z][\w'-]*+(?:\s++[A-Z][\w'-]*+)?\W*+$"
)
_SIGN_OFF_RE = re.compile(
    r"^\W*+(?:(?:many |a lot of )?thanks?(?: you)?(?: again)?|cheers|best|(?:best|kind|warm) "
    r"regards|regards|sincerely|yours(?: truly| sincerely)?)\W++[\w'-]++(?: [\w'-]++)?\W*+$",
    re.IGNORECASE,
)
_URL_RE = re.compile(r"\bhttps?://\S+|\bwww\.\S+", re.IGNORECASE)
_CLAUSE = re.compile(r"[,;]\s+")


def has_content(sentence: str) -> bool:
    """Does ``sentence`` say anything once small talk is removed? Read clause by clause
    (commas, semicolons), so an introduction inside a sentence ("Thank you for calling
    Example Bank, this is John.") is small talk too."""
    if any(p.match(sentence) for p in (_SIGN_OFF_RE, _INTRO_RE, _GREETING_NAME_RE)):
        return False
    clauses = [c for c in _CLAUSE.split(sentence) if c.strip()]
    if len(clauses) < 2:
        return _clause_has_content(sentence)
    return any(not _INTRO_RE.match(c) and _clause_has_content(c) for c in clauses)


def _clause_has_content(text: str) -> bool:
    for pattern in (EMAIL_RE, _URL_RE, PHONE_RE):
        text = pattern.sub(" ", text)
    rest = SMALL_TALK_RE.sub(" ", text.lower())
    words = [w.strip("'.,/-") for w in _WORD.findall(rest)]
    return any(w and w not in STOPWORDS for w in words)


# An e-mail signature starts at a line "-- " (RFC 3676): nothing below it is the question.
_SIGNATURE_RE = re.compile(r"^--[ \t]*$", re.MULTILINE)


def clean(text: str) -> str:
    """The text without its signature and the sentences that are only greetings, thanks,
    introductions, contact details or boilerplate."""
    text = _SIGNATURE_RE.split(text, maxsplit=1)[0]
    kept = [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip() and has_content(s)]
    return " ".join(kept)
