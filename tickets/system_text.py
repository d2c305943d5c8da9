"""The words a timeline's system entries are shown with on the ticket page.

An app whose system entries quote codes of its own (routing: review reasons that name the
data set's labels) registers a function in its ``AppConfig.ready()`` that rewrites such an
entry's text for people; the ticket page runs each over every system entry
(``{{ m.body_text|system_text }}``, ``tickets.templatetags.workbench``). What is stored, and
what the API returns, stay as written. A function returns any text it does not know as it
is.
"""

from __future__ import annotations

from collections.abc import Callable

SystemTextFn = Callable[[str], str]

_rewriters: dict[str, SystemTextFn] = {}


def register_system_text(name: str, fn: SystemTextFn) -> None:
    _rewriters[name] = fn


def system_text_for_people(text: str) -> str:
    for fn in _rewriters.values():
        text = fn(text)
    return text
