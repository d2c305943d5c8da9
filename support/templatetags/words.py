"""Text for people in templates. ``{{ value|words }}``: a stored code as words
(``support.text.words``): "INBOUND" → "Inbound", "AfterContactWork" → "After contact work".
``{{ seconds|duration }}``: a length of time (``support.text.readable_duration``): 252 →
"4 min 12 s", 3780 → "1 h 03 min"."""

from __future__ import annotations

from django import template

from support import text

register = template.Library()


@register.filter(name="words")
def words(value: object) -> str:
    return text.words(value)


@register.filter(name="duration")
def duration(seconds: object) -> str:
    return text.readable_duration(seconds)
