"""Parsing untrusted text into ids: ASCII digits only.

``str.isdigit()`` is true for Unicode digits that ``int()`` refuses ("¹", "²") or reads
("٣" is 3), so ``text.isdigit()`` followed by ``int(text)`` is a 500 waiting for a fuzzer.
Every id that arrives in a URL, a query string or a form goes through :func:`parse_id`.
"""

from __future__ import annotations

# A PostgreSQL bigint holds 19 digits; 18 keep every value in range.
MAX_ID_DIGITS = 18


def parse_id(text: object, *, max_digits: int = MAX_ID_DIGITS) -> int | None:
    """The non-negative integer ``text`` spells in ASCII digits, else None."""
    value = str(text)
    if 0 < len(value) <= max_digits and value.isascii() and value.isdigit():
        return int(value)
    return None


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


def without_nul(value: object) -> object:
    """``value`` with every NUL character in strings and keys replaced by U+FFFD, for
    keeping a received payload that PostgreSQL could not otherwise store."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value
