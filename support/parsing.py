"""Parsing untrusted input: ids (ASCII digits only), JSON, NUL characters, file names.

``str.isdigit()`` is true for Unicode digits that ``int()`` refuses ("¹", "²") or reads
("٣" is 3), so ``text.isdigit()`` followed by ``int(text)`` is a 500 waiting for a fuzzer.
Every id that arrives in a URL, a query string or a form goes through :func:`parse_id`.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
import unicodedata
from collections.abc import Callable
from typing import Any

# A PostgreSQL bigint holds 19 digits; 18 keep every value in range.
MAX_ID_DIGITS = 18


def normalise_phone(value: str) -> str:
    """A phone number as customers are matched by it (calls, the contact form): its
    digits and ``+`` only (``+44 20 7946-0000`` → ``+442079460000``)."""
    return "".join(ch for ch in value if ch.isdigit() or ch == "+")


#: A number as people type it (ASCII digits: a full-width or Arabic-Indic digit would be
#: kept as another number by the calls' matching).
_PHONE_TYPED = re.compile(r"\+?[0-9 ()./-]+")


def phone_typed(value: str) -> bool:
    """Whether ``value`` is a phone number as people type it: ASCII digits, spaces and
    ``+ ( ) . / -``, three digits at least (the contact form's check, the Customers
    page's number search)."""
    return bool(_PHONE_TYPED.fullmatch(value)) and sum(c.isdigit() for c in value) >= 3


def parse_id(text: object, *, max_digits: int = MAX_ID_DIGITS) -> int | None:
    """The non-negative integer ``text`` spells in ASCII digits, else None."""
    value = str(text)
    if 0 < len(value) <= max_digits and value.isascii() and value.isdigit():
        return int(value)
    return None


def bounded_key(value: str, max_length: int) -> str:
    """A natural key that fits a ``max_length`` column without losing what makes it
    unique: as it is when it fits, else its beginning and ``#<sha256 of the whole>``. The
    same long key always gives the same value, and two keys that differ only past the
    cut stay two (a plain ``[:n]`` made them one: the second was "already received").
    A ``<…>`` key (an e-mail Message-ID) keeps its closing bracket."""
    if len(value) <= max_length:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    tail = ">" if value.startswith("<") and value.endswith(">") else ""
    return f"{value[: max_length - len(digest) - 1 - len(tail)]}#{digest}{tail}"


#: A query string: ``?`` then ``key=value`` pairs. Signed URLs carry their credential
#: there (a media file's CDN signature, an S3 pre-signed URL, SNS's ``SubscribeURL``
#: token, an OAuth ``code``), and client errors quote the URL they failed on (requests'
#: ``... for url: https://host/path?sig=...``, urllib3's ``Max retries exceeded with url:
#: /path?...``).
_QUERY_STRING = re.compile(
    r"\?[A-Za-z0-9_.~%+\-\[\]]+=[^\s'\"&<>]*(?:&(?:amp;)?[A-Za-z0-9_.~%+\-\[\]]+=[^\s'\"&<>]*)*"
)


def without_query_strings(text: str) -> str:
    """``text`` with every URL query string replaced by ``?<query>``."""
    return _QUERY_STRING.sub("?<query>", text) if "?" in text else text


def content_length(value: str | bytes | None) -> int | None:
    """A declared body size (a ``Content-Length`` value): its ASCII digits, spaces around
    them allowed; None when the header is absent or not a number."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value is None or not value.strip().isascii() or not value.strip().isdigit():
        return None
    return int(value.strip())


def contains_nul(value: object) -> bool:
    """Whether a string, or any key or string inside lists and dicts, holds a NUL
    character (PostgreSQL text and jsonb cannot store one)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(item) for item in value)
    return False


#: A surrogate code point on its own. JSON's ``"\ud800"`` is valid JSON, and Python
#: decodes it to such a string (a pair, ``"\ud83d\ude00"``, becomes the one character it
#: spells); PostgreSQL cannot store it: psycopg raises ``UnicodeEncodeError`` for text,
#: ``DataError`` for jsonb.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def without_nul(value: object) -> object:
    """``value`` with every NUL character and lone UTF-16 surrogate in strings and keys
    replaced by U+FFFD, for keeping a received payload that PostgreSQL could not
    otherwise store."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value.replace("\x00", "\ufffd"))
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value


def without_lone_surrogates(value: object) -> object:
    """``value`` with every lone surrogate in strings and keys (inside lists and dicts)
    replaced by U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {without_lone_surrogates(k): without_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_lone_surrogates(item) for item in value]
    return value


def may_hold_lone_surrogates(raw: str | bytes) -> bool:
    """Whether JSON text can decode to a lone surrogate: only through a ``\\uD8..``-
    ``\\uDF..`` escape (strict UTF-8 decoding refuses encoded ones), so a cheap test
    spares walking nearly every payload."""
    if isinstance(raw, bytes):
        return b"\\ud" in raw or b"\\uD" in raw
    return "\\ud" in raw or "\\uD" in raw


# --- JSON from clients ----------------------------------------------------------------

# Deeper than any payload a channel, AWS or the widget sends (they nest under 20 levels);
# shallow enough that code walking the parsed value recursively (``without_nul``, saving
# it as jsonb) stays far from Python's recursion limit.
JSON_MAX_DEPTH = 100


class UnreadableJson(ValueError):
    """Text that is not JSON we read; the message says why, for a 400."""


def json_loads(data: bytes | str, *, what: str = "The body") -> Any:
    """``json.loads`` for what a client sent: UTF-8 only, and ``UnreadableJson`` (a
    ``ValueError``) with a clear message for text that is not UTF-8, not JSON, or nested
    more than ``JSON_MAX_DEPTH`` levels. (A 2 KB ``[[[…]]]`` makes ``json.loads`` raise
    ``RecursionError``, which is no ``ValueError``: every caller answered it with a 500.)
    ``NaN`` and ``Infinity`` are refused as DRF's parser refuses them: they are not JSON,
    and PostgreSQL's jsonb cannot store them (keeping such a payload was a 500).
    A lone surrogate (``"\\ud800"``: valid JSON, but neither text nor jsonb can store it)
    becomes U+FFFD, as ``without_nul`` makes a NUL one.
    Every JSON body or field that arrives from outside is read with this."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise UnreadableJson(f"{what} is not UTF-8 ({exc.reason}).") from None
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant(what), parse_float=_finite_float(what)
        )
    except UnreadableJson:
        raise  # NaN, Infinity or a number past a float's range (``_finite_float``)
    except json.JSONDecodeError as exc:
        raise UnreadableJson(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
    except ValueError as exc:
        # a number Python will not convert (more than ``sys.get_int_max_str_digits()``
        # digits): a plain ValueError, which callers catching UnreadableJson let through
        raise UnreadableJson(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        value = None
        deep = True
    else:
        deep = not json_depth_within(value, JSON_MAX_DEPTH)
    if deep:
        raise UnreadableJson(f"{what} is nested more than {JSON_MAX_DEPTH} levels deep.")
    return without_lone_surrogates(value) if may_hold_lone_surrogates(text) else value


def _refuse_constant(what: str) -> Callable[[str], Any]:
    def refuse(name: str) -> Any:
        raise UnreadableJson(f"{what} is not valid JSON: {name} is not a JSON number.")

    return refuse


def _finite_float(what: str) -> Callable[[str], float]:
    """``parse_float`` refusing a number past a float's range (``1e400``): ``json``
    reads it as ``inf``, which PostgreSQL's jsonb refuses (keeping it was a 500)."""

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise UnreadableJson(
                f"{what} is not valid JSON here: the number {text[:40]} is out of range."
            )
        return value

    return finite


def json_numbers_finite(value: object) -> bool:
    """Whether every float in a parsed JSON value is finite (no recursion): what a parser
    without a ``parse_float`` hook (DRF's) read from ``1e400`` is ``inf``."""
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def json_depth_within(value: object, limit: int) -> bool:
    """Whether lists and objects in ``value`` nest at most ``limit`` levels (no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > limit:
            return False
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


# --- file names from senders ----------------------------------------------------------

FILE_NAME_MAX_BYTES = 200  # UTF-8 bytes: file systems allow 255 per path component


def safe_file_name(name: object, *, fallback: str = "attachment") -> str:
    """A sender's file name made safe to show and to store: its last path component
    (``../../invoice.pdf`` → ``invoice.pdf``, either slash), without control characters
    (NUL included), at most ``FILE_NAME_MAX_BYTES`` UTF-8 bytes with its extension kept;
    ``fallback`` when nothing usable is left ("", ".", "..")."""
    text = "".join(ch for ch in str(name or "") if unicodedata.category(ch) not in ("Cc", "Cf"))
    base = posixpath.basename(text.replace("\\", "/")).strip()
    if base.strip(".") == "":
        return fallback
    if len(base.encode("utf-8")) <= FILE_NAME_MAX_BYTES:
        return base
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem or len(ext) > 16:
        stem, ext = base, ""
    suffix = f".{ext}" if ext else ""
    room = FILE_NAME_MAX_BYTES - len(suffix.encode("utf-8"))
    cut = stem.encode("utf-8")[:room].decode("utf-8", errors="ignore").rstrip()
    return (cut + suffix) if cut.strip(".") else fallback
