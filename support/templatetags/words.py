"""``{{ value|words }}``: a stored code as words (``support.text.words``): "INBOUND" →
"Inbound", "AfterContactWork" → "After contact work"."""

from __future__ import annotations

from django import template

from support import text

register = template.Library()


@register.filter(name="words")
def words(value: object) -> str:
    return text.words(value)
