"""Text for people: sentences cut for the pieces that quote them back (reply drafts from
articles, call summaries from transcripts), and times and lengths of time written the one
way the product writes them.

A full stop after a title or a common abbreviation does not end a sentence: "To locate your
invoices from Ms. Hawkings, please …" is one sentence, not "To locate your invoices from
Ms." and "Hawkings, please …". The same holds after a single-letter initial ("J. Smith").
"""

from __future__ import annotations

import re
from datetime import datetime

from django.utils import timezone

# Lower case, without the final full stop. Words that often end a sentence ("etc", "a.m",
# "inc") are left out: merging two sentences is the lesser harm only where a cut is likely.
ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "mx",
        "dr",
        "prof",
        "rev",
        "sr",
        "jr",
        "st",
        "mt",
        "vs",
        "e.g",
        "i.e",
        "cf",
        "approx",
        "dept",
        "no",
        "nos",
        "tel",
        "ext",
        "ref",
        "fig",
    }
)
_BOUNDARY = re.compile(r"(?<=[.!?])\s+")
_SENTENCE_START = re.compile(r"[A-Z0-9\"'(“‘]")


def _abbreviation_before(text: str) -> bool:
    """Does ``text`` end with an abbreviation or an initial and its full stop?"""
    if not text.endswith("."):
        return False
    word = text.rsplit(None, 1)[-1].lstrip("(\"'“‘").rstrip(".").lower()
    return word in ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def sentences_of(text: str, *, capitalised: bool = False) -> list[str]:
    """The sentences of ``text`` (stripped, none empty): cut after ".", "!" or "?" and white
    space, except after an abbreviation or an initial; with ``capitalised``, only where the
    next sentence starts with a capital, a digit, a quote or a bracket."""
    out: list[str] = []
    start = 0
    for boundary in _BOUNDARY.finditer(text):
        if capitalised and not _SENTENCE_START.match(text, boundary.end()):
            continue
        piece = text[start : boundary.start()]
        if _abbreviation_before(piece):
            continue
        out.append(piece.strip())
        start = boundary.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


def readable_time(when: datetime) -> str:
    """A moment as the workbench and the alerts write it, in the site's time zone:
    "2026-12-04 08:16 UTC"."""
    return timezone.localtime(when).strftime("%Y-%m-%d %H:%M %Z")


def readable_duration(seconds: object) -> str:
    """A length of time (a call's) as people read it: "45 s", "4 min 12 s", "1 h 03 min"
    (from an hour on, to the minute; cut, not rounded). Empty for nothing, a negative
    length (a record whose end came before its start) or what is not a number."""
    if seconds is None or seconds == "":
        return ""
    try:
        total = int(float(str(seconds)))
    except (ValueError, OverflowError):  # not a number, NaN, infinity
        return ""
    if total < 0:
        return ""
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def words(code: object) -> str:
    """A stored code or a vendor's constant as people read it, for values with no label of
    our own (Amazon Connect's ``INBOUND`` and agent states, a sentiment's ``NEUTRAL``):
    "INBOUND" → "Inbound", "queue_transfer" → "Queue transfer", "AfterContactWork" → "After
    contact work". Empty for nothing."""
    text = _CAMEL_BOUNDARY.sub(" ", str(code or "")).replace("_", " ").strip()
    return text[:1].upper() + text[1:].lower()
