"""PII redaction for anything sent to an external model: emails, phone numbers, payment
card numbers (Luhn-checked) and the configured account-number patterns."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django.conf import settings

EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
CARD_RE = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
PHONE_RE = re.compile(r"(?<![\w#])\+?\(?\d[\d\s().-]{6,}\d\b")


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


DATE_SHAPE_RE = re.compile(r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\s*$")


def phone_ok(candidate: str) -> bool:
    """9 to 15 digits and not shaped like a date."""
    digits = re.sub(r"\D", "", candidate)
    return 9 <= len(digits) <= 15 and not DATE_SHAPE_RE.match(candidate)


def _cards(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group(0)


def _phones(match: re.Match[str]) -> str:
    return "[PHONE]" if phone_ok(match.group(0)) else match.group(0)


def redact(text: str, account_patterns: Sequence[str] | None = None) -> str:
    """Replace PII with placeholders; the order matters (cards before phone numbers)."""
    patterns = settings.ROUTING_ACCOUNT_PATTERNS if account_patterns is None else account_patterns
    out = EMAIL_RE.sub("[EMAIL]", text)
    for pattern in patterns:
        out = re.sub(pattern, "[ACCOUNT]", out, flags=re.IGNORECASE)
    out = CARD_RE.sub(_cards, out)
    return PHONE_RE.sub(_phones, out)


def redact_obj(value: Any) -> Any:
    """Redact every string inside a JSON-like value (tool results sent back to a model)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_obj(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_obj(v) for v in value]
    return value
