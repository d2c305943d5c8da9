"""The one redaction service for text that leaves the machine for a model provider.

Every provider call that sends text off-machine passes it through :func:`redact` (or
:func:`redact_obj` for JSON-like values) right where the request is built: routing's LLM
agent (``routing.providers.redacting.RedactingModel`` wraps the model, so the prompt, the
tool results and the whole conversation are covered), call summaries and categories on
Bedrock, Bedrock Knowledge Base queries, Titan embeddings and Comprehend sentiment.
Offline providers (the local router, MiniLM, VADER, TextRank) need none and get none.

The text is first put in NFC form ("Zoe" + a combining diaeresis is "Zoë", as are the names),
every Unicode space (no-break, narrow no-break, thin, …) becomes a plain space and
zero-width characters and soft hyphens are dropped.

What is replaced, in this order (the order matters: an e-mail address may hold a name,
an IBAN looks like an account number, an address holds digits a phone rule would take):

1. e-mail addresses → ``[EMAIL]``, also spelled out as call transcripts and people write
   them: ``zq1815 at example dot org``, ``zq1815(at)example(dot)org``, ``[at]``/``[dot]``,
   ``jo @ example dot com`` (with a bare " at ", only a common top-level domain and not
   after a word that ordinary sentences put before "at": "bought it at amazon.com" stays)
2. IBANs (mod-97 checked; groups separated by one or two spaces, a hyphen or a dot)
   → ``[IBAN]``
3. account and order ids matching ``ROUTING_ACCOUNT_PATTERNS`` → ``[ACCOUNT]``
4. payment card numbers (13–19 digits, Luhn checked; groups separated by one or two
   spaces, a hyphen, or dots between groups of 4–6 digits; a number written next to the
   card is left out of it) → ``[CARD]``
5. street addresses → ``[ADDRESS]``: a house number, up to four words and a street type
   (``12 Baker Street``, ``221B Baker St``, ``4 Elm Court``), Romance forms (``10 rue de la
   Paix``, ``Calle Mayor 5``, ``Via Roma, 10``), Germanic and Nordic compounds
   (``Hauptstraße 5``, ``Kalverstraat 92``, ``Storgatan 3``), with a flat/suite and a
   "postcode City" tail when present
6. postcodes in shapes that cannot be something else → ``[POSTCODE]``: UK (``NW1 6XE``,
   and in lower case ``nw1 6xe`` with the letters a postcode may have, not ``ps5 1tb``),
   Canada (``K1A 0B1``), US ZIP+4 and ``<state> <ZIP>`` (``IL 62704``), Dutch
   ``1012 AB City``
7. phone numbers (9–15 digits, not shaped like a date) → ``[PHONE]``; numbers read out
   digit by digit as transcripts write them ("four one one one one one …", "oh two oh
   double seven …") → ``[CARD]`` when they are one, ``[PHONE]`` when 9–15 digits long
8. the names of the ticket's own customer, given by the caller (``names``): each full name
   and each of its parts (two letters or more), case-insensitive, whole words only →
   ``[NAME]``

Plain numbers (``order 12345``), amounts and dates are kept: the model needs them.
No network and no model: regular expressions only, compiled once (the names pattern is
cached per set of names). ``bench/redaction.py`` measures it.
"""

from __future__ import annotations

import re
import unicodedata
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

# --- e-mail addresses spelled out -------------------------------------------------------
#
# As call transcripts write them ("zq1815 at example dot org") and as people hide them
# ("zq1815(at)example(dot)org", "[at]", "[dot]", "jo @ example dot com"). A dot is ".",
# " dot " or a bracketed "dot"; the domain has at least two labels. With a bare " at " (an
# ordinary word) the last label must be a common top-level domain and the word before "at"
# must not be one that ordinary sentences put there ("bought it at amazon.com", "log in at
# example dot com", "our website at …") nor a number ("paid £20 at tesco.com"). Single
# spaces only (Transcribe writes those): the look-behinds below then know every position
# where a label follows a dot, so an address starts only at its first label and a long
# "a dot a dot …" run is read once, not once per label.
# Case-insensitive only where words are ("AT", "Dot", "COM"), and the local part read once
# with the word list checked only before " at ": about 9 µs on a 71-character text instead
# of 38 µs (and it runs only on texts holding " at ", "(at)", "[at]", … or "@").
_DOT = r"(?: (?i:dot) |\.| ?[(\[{<](?i:dot)[)\]}>] ?)"
# A repeated group is made possessive with an atomic group, not ``*+``/``++``: before
# Python 3.11.5 a possessive repeat of a group that backtracks inside matched wrongly
# (CPython gh-106052; Debian 12's python3.11 is 3.11.2): these found no address at all.
_SPOKEN_LOCAL = rf"[\w%+-]++(?>(?:{_DOT}[\w%+-]++)*)"
_SPOKEN_LABELS = rf"(?>(?:[^\W_][\w-]*+{_DOT}(?=[^\W_]))+)"
_COMMON_TLDS = (
    "com|org|net|edu|gov|mil|info|biz|io|co|me|ai|app|dev|email|uk|ie|de|fr|es|it|nl|be|ch|at|"
    "se|no|dk|fi|pt|pl|cz|eu|us|ca|au|nz|in|jp|cn|br|mx|za|ru"
)
_NOT_LOCAL = (
    "a|an|the|i|me|my|you|your|us|our|we|him|her|his|them|they|it|its|this|that|is|was|were|"
    "are|be|been|am|and|or|but|not|in|on|up|out|off|to|of|for|from|with|by|here|there|look|"
    "looked|looking|see|online|site|website|web|page|home|stay|stayed|staying|meet|arrive|"
    "arrived|buy|bought|order|ordered|purchased|pay|paid|shop|shopped|shopping|sold|available|"
    "sign|signed|log|logged|login|register|registered|book|booked|check|checked|find|found|"
    "visit|go|went|call|called|email|mail|reach|contact|write|live|lives|work|works|worked"
)
_AT = r"(?i: at )"
SPOKEN_EMAIL_RE = re.compile(
    r"(?<![\w.%+'’-])(?<! (?i:dot) )(?<![(\[{<](?i:dot)[)\]}>])(?<![(\[{<](?i:dot)[)\]}>] )"
    # not a number or one of those words before " at " (the list is read only there)
    rf"(?!(?=[\w.%+-]++{_AT})(?:[\d.%+-]++|(?i:{_NOT_LOCAL})){_AT})"
    rf"{_SPOKEN_LOCAL}(?:{_AT}{_SPOKEN_LABELS}(?i:{_COMMON_TLDS})"
    rf"|(?: ?[(\[{{<](?i:at)[)\]}}>] ?| ?@ ?){_SPOKEN_LABELS}[^\W\d_]{{2,24}})"
    r"(?![\w-])"
)
# What every such address holds (checked first: most texts hold none of them).
_SPOKEN_AT_HINTS = (" at ", "(at)", "[at]", "{at}", "<at>", "@")


def _may_spell_email(text: str) -> bool:
    lower = text.lower()
    return any(hint in lower for hint in _SPOKEN_AT_HINTS)


# --- numbers ------------------------------------------------------------------------------
#
# Between the groups of a card number or an IBAN: one or two spaces (every Unicode space is
# a plain one by then, see ``_normalise``), one hyphen or one dot. The Luhn and mod-97
# checks keep ordinary numbers; a dotted number counts only when dots are its only
# separators and its groups are 4-6 digits long (not amounts, dates or versions).
_GROUP_SEP = r"(?: {1,2}|[.-])"
CARD_RE = re.compile(rf"\b(?:\d{_GROUP_SEP}?){{12,18}}\d\b")
PHONE_RE = re.compile(r"(?<![\w#])\+?\(?\d[\d\s().-]{6,}\d\b")
IBAN_RE = re.compile(
    rf"\b[A-Z]{{2}}\d{{2}}(?:{_GROUP_SEP}?[A-Z0-9]{{4}}){{2,7}}(?:{_GROUP_SEP}?[A-Z0-9]{{1,3}})?\b",
    re.I,
)
# A real date, not any three numbers ("123-45-6789" is a US social security number): year,
# month 1-12 and day 1-31, or day and month (either order) and a 2- or 4-digit year, with
# one separator used twice.
_MONTH = r"(?:0?[1-9]|1[0-2])"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
DATE_SHAPE_RE = re.compile(
    rf"^\s*(?:\d{{4}}([-/.]){_MONTH}\1{_DAY}"
    rf"|(?:{_DAY}([-/.]){_MONTH}|{_MONTH}([-/.]){_DAY})(?:\2|\3)(?:\d{{2}}|\d{{4}}))\s*$"
)

# Numbers read out digit by digit, as call transcripts write them ("four one one one, one
# one one one ...", "oh two oh, double seven ..."): the run is read as its digits and
# replaced when those are a card (Luhn) or a phone-length number, as written digits are.
# Seven tokens or more ("double oh" is one), then nine digits or more.
_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_SPOKEN_TOKEN = rf"(?:(?:double|triple) )?(?:{'|'.join(_DIGIT_WORDS)}|\d)"
SPOKEN_NUMBER_RE = re.compile(
    rf"(?i)(?<![\w-]){_SPOKEN_TOKEN}(?:(?:[ ,.-]| ?, ){_SPOKEN_TOKEN}){{6,}}(?![\w-])"
)


def _may_read_out_number(text: str, has_digit: bool) -> bool:
    """Cheap first look (substring counts, which never miss a token): enough digit words
    for a run, or one beside written digits."""
    lower = text.lower()
    words = sum(lower.count(word) for word in _DIGIT_WORDS)
    return words >= 7 or (words > 0 and has_digit)


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
    # UK in any case ("sw1a 1aa", "e1 6an"): the letters a postcode may have in each place,
    # and not an ordinal or a size ("m25 2nd", "ps5 1tb", "i5 8gb")
    re.compile(
        r"(?<![\w-])[a-pr-uwyz][a-hk-y]?\d[a-z\d]? ?"
        r"\d(?!(?:st|nd|rd|th|gb|tb|lb|hr|hz|px|ft|yd|pt)\b)[abd-hjlnp-uw-z]{2}(?![\w-])",
        re.IGNORECASE,
    ),
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
    compact = re.sub(r"[\s.-]", "", candidate).upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def phone_ok(candidate: str) -> bool:
    """9 to 15 digits and not shaped like a date."""
    digits = re.sub(r"\D", "", candidate)
    return 9 <= len(digits) <= 15 and not DATE_SHAPE_RE.match(candidate)


def card_ok(candidate: str) -> bool:
    """13 to 19 digits passing the Luhn check; dots only as the sole separator between
    groups of 4 to 6 digits."""
    digits = re.sub(r"\D", "", candidate)
    if not (13 <= len(digits) <= 19 and luhn_ok(digits)):
        return False
    if "." not in candidate:
        return True
    return all(4 <= len(group) <= 6 and group.isdigit() for group in candidate.split("."))


def _cards(match: re.Match[str]) -> str:
    text = match.group(0)
    if card_ok(text):
        return CARD
    # A number written before or after the card ("ref 12 4111 1111 1111 1111") is taken in
    # the same match: try the runs of whole groups inside it, of four digits or more each
    # (as cards are grouped: 4-4-4-4, 4-6-5; not a list of 3-digit figures), so at most a
    # few dozen short checks per match.
    parts = re.split(r"(\D+)", text)  # digits, separator, digits, …
    long_groups = [len(group) >= 4 for group in parts[0::2]]
    count = len(long_groups)
    for start in range(count):
        last = start
        while last < count and long_groups[last]:
            last += 1
        for end in range(last, start + 1, -1):
            if (start, end) == (0, count):
                continue
            span = "".join(parts[2 * start : 2 * end - 1])
            if card_ok(span):
                return "".join(parts[: 2 * start]) + CARD + "".join(parts[2 * end - 1 :])
    return text


def _spoken_digits(run: str) -> str:
    digits = []
    repeat = 1
    for word in re.findall(r"[a-z]+|\d", run.lower()):
        if word in ("double", "triple"):
            repeat = 2 if word == "double" else 3
            continue
        digits.append((_DIGIT_WORDS.get(word) or word) * repeat)
        repeat = 1
    return "".join(digits)


def _spoken_numbers(match: re.Match[str]) -> str:
    digits = _spoken_digits(match.group(0))
    if 13 <= len(digits) <= 19 and luhn_ok(digits):
        return CARD
    return PHONE if 9 <= len(digits) <= 15 else match.group(0)


def _phones(match: re.Match[str]) -> str:
    return PHONE if phone_ok(match.group(0)) else match.group(0)


def _ibans(match: re.Match[str]) -> str:
    return IBAN if iban_ok(match.group(0)) else match.group(0)


def name_variants(names: Iterable[str]) -> tuple[str, ...]:
    """Each full name and its parts (two letters or more, titles left out), longest first."""
    found: set[str] = set()
    for name in names:
        full = " ".join(_normalise(name or "").split())
        if len(full) < 2:
            continue
        found.add(full.lower())
        for part in re.split(r"[\s,]+", full):
            for piece in {part, *part.split("-")}:
                piece = piece.strip(".'’")
                if len(piece) >= 2 and piece.lower() not in _TITLES:
                    found.add(piece.lower())
    return tuple(sorted(found, key=lambda v: (-len(v), v)))


# --- names, compared in a folded form ----------------------------------------------------
#
# "Séan O'Brien" is written "Sean O’Brien", "José García" "Jose Garcia", "Müller"
# "Mueller": names and text are compared without accents, with one apostrophe, in NFKC
# form (full-width letters are plain ones), and a match replaces the original characters.
_APOSTROPHES = str.maketrans(dict.fromkeys("\u2019\u2018\u02bc\u2032\uff07`\u00b4", "'"))
_GERMAN = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    decomposed = unicodedata.normalize("NFKD", ch)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).translate(_APOSTROPHES)


def _fold(text: str) -> tuple[str, list[int] | None]:
    """``text`` folded, and where each folded character came from (``None``: the same
    place, when every character folded to one)."""
    if text.isascii():
        return text, None
    pieces = [ch if ch < "\x80" else _fold_char(ch) for ch in text]
    folded = "".join(pieces)
    if len(folded) == len(text) and all(len(p) == 1 for p in pieces):
        return folded, None
    origin = [i for i, piece in enumerate(pieces) for _ in piece]
    return folded, origin


#: The folding names are compared in (accents and apostrophes), with where each folded
#: character came from: for other modules that match names as this one does (erasure).
fold = _fold


def _folded_variants(variants: Iterable[str]) -> tuple[str, ...]:
    """Each variant folded, also without its apostrophes ("obrien") and with German
    umlauts written out ("mueller"), longest first."""
    found: set[str] = set()
    for variant in variants:
        for form in {variant, variant.translate(_GERMAN)}:
            folded = _fold(form)[0].lower()
            found.update(v for v in (folded, folded.replace("'", "")) if len(v) >= 2)
    return tuple(sorted(found, key=lambda v: (-len(v), v)))


@lru_cache(maxsize=512)
def _names_re_for(names: tuple[str, ...]) -> re.Pattern[str] | None:
    """The compiled names pattern for a set of names (cached: one per customer)."""
    variants = name_variants(names)
    return _names_re(_folded_variants(variants)) if variants else None


@lru_cache(maxsize=512)
def _names_re(variants: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(v) for v in variants)
    # Whole words, "_" being a boundary ("Sean_OBrien_passport.pdf") and digits allowed
    # after ("@sean_obrien88"), not before.
    return re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W\d_])", re.IGNORECASE)


# A name found inside a tag's name ("<customer_data_…>", the fence around a prompt's
# customer text, ``support.prompt_data``) is a word of the tag, not the customer's name:
# "_" is a boundary only outside tags.
_IN_TAG_RE = re.compile(r"</?[\w-]*\Z")


def _sub_names(names_re: re.Pattern[str], text: str) -> str:
    """``text`` with every name ``names_re`` finds in its folded form replaced."""
    folded, origin = _fold(text)
    out: list[str] = []
    last = 0
    for match in names_re.finditer(folded):
        start, end = match.span()
        if "<" in folded[max(0, start - 80) : start] and _IN_TAG_RE.search(
            folded, max(0, start - 80), start
        ):
            continue
        if origin is not None:
            start, end = origin[start], origin[end - 1] + 1
        out += (text[last:start], NAME)
        last = end
    out.append(text[last:])
    return "".join(out)


@lru_cache(maxsize=32)
def _account_res(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


# Every Unicode space (no-break, narrow no-break, figure, thin, …) becomes a plain one and
# invisible characters inside words (zero-width space, word joiner, BOM, soft hyphen) go,
# so "4111\u00a01111…" and "4111\u200b1111…" read as the numbers they show.
_SPACES = str.maketrans(
    {
        **{cp: " " for cp in (0xA0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000)},
        **{cp: None for cp in (0x200B, 0x2060, 0xFEFF, 0xAD)},
        # the NFKC forms of the full-width and small "@" and the full-width dot, so
        # "john.smith＠gmail．com" is an address
        **{0xFF20: "@", 0xFE6B: "@", 0xFF0E: "."},
    }
)


def _normalise(text: str) -> str:
    """NFC (an "e" + a combining diaeresis is "ë") and plain spaces; ASCII is left alone."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFC", text).translate(_SPACES)


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
    out = _normalise(text)
    if "@" in out:
        out = EMAIL_RE.sub(EMAIL, out)
    if _may_spell_email(out):
        out = SPOKEN_EMAIL_RE.sub(EMAIL, out)
    has_digit = any(ch.isdigit() for ch in out)
    if has_digit:
        out = IBAN_RE.sub(_ibans, out)
    out = _sub_all(_account_res(tuple(patterns)), ACCOUNT, out)
    if has_digit:
        out = CARD_RE.sub(_cards, out)
        out = _sub_all(ADDRESS_RES, ADDRESS, out)
        out = _sub_all(POSTCODE_RES, POSTCODE, out)
        out = PHONE_RE.sub(_phones, out)
    if _may_read_out_number(out, has_digit):
        out = SPOKEN_NUMBER_RE.sub(_spoken_numbers, out)
    names_re = _names_re_for(tuple(names))
    if names_re is not None:
        out = _sub_names(names_re, out)
    return out


# How far either side of a cut ``truncate`` reads to see whether the cut splits a personal
# detail: more than the longest one it redacts (an address with a flat and a city, a card
# read out digit by digit with "double"s).
_CUT_CONTEXT = 256
_SPACE_RE = re.compile(r"\s")
_WORD_END_RE = re.compile(r"\S(?=\s)")


def _splits_detail(text: str, cut: int, account_patterns: Sequence[str] | None) -> bool:
    """Whether cutting ``text`` at ``cut`` leaves part of a personal detail before the cut
    (so that redaction no longer sees it whole): redacting the text around the cut, up to
    it, must give the start of what redacting it past the cut gives."""
    start = max(0, cut - _CUT_CONTEXT)
    if start:  # from a word's start, the same for both readings
        space = _SPACE_RE.search(text, start, cut)
        start = space.end() if space else start
    end = min(len(text), cut + _CUT_CONTEXT)
    space = _SPACE_RE.search(text, end, end + _CUT_CONTEXT)
    end = space.start() if space else end
    head = redact(text[start:cut], account_patterns=account_patterns)
    whole = redact(text[start:end], account_patterns=account_patterns)
    return not whole.startswith(head)


def truncate(text: str, limit: int, *, account_patterns: Sequence[str] | None = None) -> str:
    """The start of ``text``, at most ``limit`` characters, for text that is cut before it
    goes to a model provider (which redacts it, ``redact``, when it sends it). Cut at the
    end of a word, never inside one, and never inside a personal detail: a detail the cut
    would split (an address, a card or IBAN in groups, a phone number) is left out whole,
    as its remains would no longer match the patterns and go out unredacted. A text with
    no space in its last ``_CUT_CONTEXT`` characters before the limit (Chinese, Japanese,
    a long link) is cut at the limit when that splits no detail. ``""`` when every
    possible cut would split one."""
    if len(text) <= limit:
        return text
    window = text[: limit + 1]
    ends = [m.end() for m in _WORD_END_RE.finditer(window)]
    cuts = ends[::-1]
    if not ends or ends[-1] < limit - _CUT_CONTEXT:
        cuts.insert(0, limit)
    for cut in cuts:
        if not _splits_detail(text, cut, account_patterns):
            return text[:cut]
    return ""


def redacted_for_provider(
    text: str,
    *,
    limit: int,
    names: Iterable[str] = (),
    account_patterns: Sequence[str] | None = None,
) -> str:
    """``text`` as it may leave the machine in one piece: its start (``truncate``: at most
    ``limit`` characters, no word or personal detail cut in two; a message may be
    megabytes long and the redaction reads no more than is sent), redacted with the
    customer's ``names``."""
    cut = truncate(text.strip(), limit, account_patterns=account_patterns)
    return redact(cut, names=names, account_patterns=account_patterns)


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
    "SPOKEN_EMAIL_RE",
    "card_ok",
    "iban_ok",
    "luhn_ok",
    "name_variants",
    "phone_ok",
    "redact",
    "redact_obj",
    "redacted_for_provider",
    "truncate",
]
