"""The one redaction service for text that leaves the machine for a model provider.

Every provider call that sends text off-machine passes it through :func:`redact` (or
:func:`redact_obj` for JSON-like values) right where the request is built: routing's LLM
agent (``routing.providers.redacting.RedactingModel`` wraps the model, so the prompt, the
tool results and the whole conversation are covered), call summaries and categories on
Bedrock, Bedrock Knowledge Base queries, Titan embeddings and Comprehend sentiment.
Offline providers (the local router, MiniLM, VADER, TextRank) need none and get none.

What is replaced, in this order (the order matters: an e-mail address may hold a name,
an IBAN looks like an account number, an address holds digits a phone rule would take):

1. e-mail addresses → ``[EMAIL]``
2. IBANs (mod-97 checked) → ``[IBAN]``
3. account and order ids matching ``ROUTING_ACCOUNT_PATTERNS`` → ``[ACCOUNT]``
4. payment card numbers (13–19 digits, Luhn checked) → ``[CARD]``
5. street addresses → ``[ADDRESS]``: a house number, up to four words and a street type
   (``12 Baker Street``, ``221B Baker St``, ``4 Elm Court``), Romance forms (``10 rue de la
   Paix``, ``Calle Mayor 5``, ``Via Roma, 10``), Germanic and Nordic compounds
   (``Hauptstraße 5``, ``Kalverstraat 92``, ``Storgatan 3``), with a flat/suite and a
   "postcode City" tail when present
6. postcodes in shapes that cannot be something else → ``[POSTCODE]``: UK (``NW1 6XE``),
   Canada (``K1A 0B1``), US ZIP+4 and ``<state> <ZIP>`` (``IL 62704``), Dutch
   ``1012 AB City``
7. phone numbers (9–15 digits, not shaped like a date) → ``[PHONE]``
8. the names of the ticket's own customer, given by the caller (``names``): each full name
   and each of its parts (two letters or more), case-insensitive, whole words only →
   ``[NAME]``

Plain numbers (``order 12345``), amounts and dates are kept: the model needs them.
No network and no model: regular expressions only, compiled once (the names pattern is
cached per set of names). ``bench/redaction.py`` measures it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from django.conf import settings

EMAIL = "[EMAIL]"
IBAN = "[IBAN]"
ACCOUNT = "[ACCOUNT]"
CARD = "[CARD]"
ADDRESS = "[ADDRESS]"
POSTCODE = "[POSTCODE]"
PHONE = "[PHONE]"
NAME = "[NAME]"
PLACEHOLDERS = (EMAIL, IBAN, ACCOUNT, CARD, ADDRESS, POSTCODE, PHONE, NAME)

# Letters of any script (``\w``: "søren.kierkegaard@example.dk" goes whole, not leaving
# "sø"). The local part starts where no local-part character precedes it and is taken whole
# (possessive): a long run of such characters without an "@" is read once, not once per
# position inside it (which took seconds on 60 KB of "a-a-a-...").
EMAIL_RE = re.compile(r"(?<![\w.%+-])[\w.%+-]++@[\w.-]+\.[^\W\d_]{2,}\b")
CARD_RE = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
PHONE_RE = re.compile(r"(?<![\w#])\+?\(?\d[\d\s().-]{6,}\d\b")
IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", re.I)
DATE_SHAPE_RE = re.compile(r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\s*$")

# --- street addresses -------------------------------------------------------------------

_UPPER = "A-ZÀ-ÖØ-ÞĀ-Ž"  # capital letters, Latin-1 and Latin Extended-A (roughly)
_CAP_WORD = rf"[{_UPPER}][\w'’.-]*"
_ANY_WORD = r"[^\W\d_][\w'’.-]*"
# Small words inside street names: "rue de la Paix", "Avenue of the Americas".
_PARTICLE = r"(?:de|du|des|la|le|les|di|del|della|dei|da|do|dos|das|van|von|der|den|y|the|of)"
_STREET_NAME = rf"(?:(?:{_PARTICLE}\s+|[dlDL]['’])*{_CAP_WORD})(?:\s+(?:{_PARTICLE}\s+|[dlDL]['’])*{_CAP_WORD}){{0,3}}"  # noqa: E501
_HOUSE = r"(?<![\w+./-])\d{1,5}[A-Za-z]?(?:[-/]\d{1,5}[A-Za-z]?)?"
_UNIT = r"(?:,?\s*(?i:apt|apartment|flat|suite|ste|unit|floor|fl)\.?\s*#?\s*\w{1,6})?"
# "…, 75002 Paris", "…, D-10115 Berlin", "…, 1012 AB Amsterdam"
_CITY_TAIL = rf"(?:,?\s+(?:[A-Z]{{1,2}}-)?\d{{4,5}}(?:\s?[A-Z]{{2}})?\s+{_CAP_WORD})?"
# Street types any-case (hardly ever anything else after a house number and a few words).
_EN_STRONG = r"street|st|road|rd|avenue|ave|boulevard|blvd|lane|ln|highway|hwy|parkway|pkwy|terrace"
# Street types that are ordinary words too ("the way", "hard drive"): capitals required.
_EN_WEAK = (
    r"Drive|Dr|Court|Ct|Place|Pl|Way|Close|Crescent|Cres|Square|Sq|Circle|Cir|Row|Walk|"
    r"Gardens|Grove|Hill|Mews|Parade|Trail|Alley|Park|Green|Rise|View"
)
_ROMANCE = (
    r"rue|avenue|av\.|boulevard|bd|chemin|allée|allee|impasse|quai|place|route|cours|"
    r"calle|c/|avenida|avda\.?|paseo|plaza|carrer|rua|travessa|via|viale|piazza|corso|"
    r"largo|vicolo"
)
_GERMANIC = (
    r"straße|strasse|str\.|weg|gasse|platz|allee|damm|ufer|chaussee|straat|laan|plein|"
    r"gracht|kade|vägen|gatan|gade|vej|veien|katu"
)
ADDRESS_RES = (
    # 12 Baker Street · 221B baker st · 1600 Pennsylvania Avenue NW
    re.compile(
        rf"{_HOUSE},?\s+(?:{_ANY_WORD}\s+){{1,4}}(?i:{_EN_STRONG})\b\.?"
        rf"(?:\s+(?:NW|NE|SW|SE|N|S|E|W)\b)?{_UNIT}{_CITY_TAIL}"
    ),
    # 4 Elm Court · 10 Downing Place
    re.compile(rf"{_HOUSE},?\s+(?:{_CAP_WORD}\s+){{1,3}}(?:{_EN_WEAK})\b\.?{_UNIT}{_CITY_TAIL}"),
    # 10 rue de la Paix · 25, avenue des Champs-Élysées · 12 bis rue Victor Hugo
    re.compile(
        rf"{_HOUSE}(?:\s?(?i:bis|ter))?,?\s+(?i:{_ROMANCE})\s+{_STREET_NAME}{_UNIT}{_CITY_TAIL}"
    ),
    # Calle Mayor 5 · Via Roma, 10 · Rua Augusta, nº 123 (a capitalised street type)
    re.compile(
        rf"(?<!\w)(?:{'|'.join(w[0].upper() + w[1:] for w in _ROMANCE.split('|'))})"
        rf"\s+{_STREET_NAME},?\s+(?:n[º°o.]\s*)?\d{{1,5}}[A-Za-z]?\b{_UNIT}{_CITY_TAIL}"
    ),
    # Hauptstraße 5 · Musterstr. 12a · Berliner Straße 10 · Kalverstraat 92 · Storgatan 3
    # (starts only where a word does, hyphens and dots included: from inside "A-A-A-…" or
    # "A.A.A.…" every position would scan the rest of the run, quadratic in its length)
    re.compile(
        rf"(?<![\w'’.-])(?:{_CAP_WORD}\s+)?(?:[{_UPPER}][\w-]*?)?(?i:{_GERMANIC})\s*\d{{1,5}}[a-z]?\b"
        rf"{_UNIT}{_CITY_TAIL}"
    ),
)
_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|"
    "NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
POSTCODE_RES = (
    re.compile(r"\b(?:[A-Z]{1,2}\d[A-Z\d]?|GIR) ?\d[A-Z]{2}\b"),  # UK
    re.compile(r"\b[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z] ?\d[ABCEGHJ-NPRSTV-Z]\d\b"),  # CA
    re.compile(rf"\b(?:{_US_STATES}),?\s+\d{{5}}(?:-\d{{4}})?\b"),  # US state + ZIP
    re.compile(r"\b\d{5}-\d{4}\b"),  # US ZIP+4
    re.compile(rf"\b[1-9]\d{{3}} ?[A-Z]{{2}}\s+{_CAP_WORD}"),  # NL with its city
)

_TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam"})


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    """ISO 13616 mod-97 check (the country letters and length are not checked)."""
    compact = re.sub(r"\s", "", candidate).upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def phone_ok(candidate: str) -> bool:
    """9 to 15 digits and not shaped like a date."""
    digits = re.sub(r"\D", "", candidate)
    return 9 <= len(digits) <= 15 and not DATE_SHAPE_RE.match(candidate)


def _cards(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return CARD if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group(0)


def _phones(match: re.Match[str]) -> str:
    return PHONE if phone_ok(match.group(0)) else match.group(0)


def _ibans(match: re.Match[str]) -> str:
    return IBAN if iban_ok(match.group(0)) else match.group(0)


def name_variants(names: Iterable[str]) -> tuple[str, ...]:
    """Each full name and its parts (two letters or more, titles left out), longest first."""
    found: set[str] = set()
    for name in names:
        full = " ".join((name or "").split())
        if len(full) < 2:
            continue
        found.add(full.lower())
        for part in re.split(r"[\s,]+", full):
            for piece in {part, *part.split("-")}:
                piece = piece.strip(".'’")
                if len(piece) >= 2 and piece.lower() not in _TITLES:
                    found.add(piece.lower())
    return tuple(sorted(found, key=lambda v: (-len(v), v)))


@lru_cache(maxsize=512)
def _names_re_for(names: tuple[str, ...]) -> re.Pattern[str] | None:
    """The compiled names pattern for a set of names (cached: one per customer)."""
    variants = name_variants(names)
    return _names_re(variants) if variants else None


@lru_cache(maxsize=512)
def _names_re(variants: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(v) for v in variants)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


@lru_cache(maxsize=32)
def _account_res(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


def _sub_all(patterns: Iterable[re.Pattern[str]], placeholder: str, text: str) -> str:
    for pattern in patterns:
        text = pattern.sub(placeholder, text)
    return text


def redact(
    text: str,
    *,
    names: Iterable[str] = (),
    account_patterns: Sequence[str] | None = None,
) -> str:
    """``text`` with personal data replaced by placeholders (see the module docstring).

    ``names``: the names of the customer the text is about (their full name, channel
    display names); ``account_patterns`` defaults to ``ROUTING_ACCOUNT_PATTERNS``.
    """
    if not text:
        return text
    patterns = settings.ROUTING_ACCOUNT_PATTERNS if account_patterns is None else account_patterns
    out = EMAIL_RE.sub(EMAIL, text) if "@" in text else text
    has_digit = any(ch.isdigit() for ch in out)
    if has_digit:
        out = IBAN_RE.sub(_ibans, out)
    out = _sub_all(_account_res(tuple(patterns)), ACCOUNT, out)
    if has_digit:
        out = CARD_RE.sub(_cards, out)
        out = _sub_all(ADDRESS_RES, ADDRESS, out)
        out = _sub_all(POSTCODE_RES, POSTCODE, out)
        out = PHONE_RE.sub(_phones, out)
    names_re = _names_re_for(tuple(names))
    if names_re is not None:
        out = names_re.sub(NAME, out)
    return out


def redact_obj(
    value: Any,
    *,
    names: Iterable[str] = (),
    account_patterns: Sequence[str] | None = None,
) -> Any:
    """Redact every string inside a JSON-like value (keys are kept)."""
    names = tuple(names)
    if isinstance(value, str):
        return redact(value, names=names, account_patterns=account_patterns)
    if isinstance(value, dict):
        return {
            k: redact_obj(v, names=names, account_patterns=account_patterns)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_obj(v, names=names, account_patterns=account_patterns) for v in value]
    return value


__all__ = [
    "CARD_RE",
    "EMAIL_RE",
    "PHONE_RE",
    "PLACEHOLDERS",
    "iban_ok",
    "luhn_ok",
    "name_variants",
    "phone_ok",
    "redact",
    "redact_obj",
]
