"""What a public reply may carry on the channel it goes out on (text length, files).

The core does not know the channels: the channels app registers, in its
``AppConfig.ready()``, a ``ReplyRules`` provider (its adapters' limits). The core asks it
in two places: ``tickets.services.message_add`` refuses a queued public reply that breaks
the rules (``InvalidInput`` naming the field, ``body`` or ``files``, and the limit), and the
ticket page shows them by the reply box (``reply_box_for``). Internal notes are never
checked: they go nowhere. With no provider registered nothing is checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from support.errors import InvalidInput
from tickets.models import Ticket


class ReplyFile(Protocol):
    """A file of a reply, as the rules see it (``tickets.services.lifecycle.NewAttachment``
    once measured, ``channels_app.adapters.base.OutboundFile``, ...)."""

    @property
    def filename(self) -> str: ...

    @property
    def content_type(self) -> str: ...

    @property
    def size(self) -> int: ...


@dataclass(frozen=True)
class ReplyFileInfo:
    """A ``ReplyFile`` made of plain values."""

    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class ReplyBox:
    """What the reply box shows for public replies on a ticket."""

    #: The channel the reply goes out on, as people name it ("Messenger", "Email").
    channel_label: str
    text_max_chars: int | None
    files: bool
    files_max_count: int = 0
    file_max_bytes: int = 0
    #: The file input's ``accept`` value ("" for any type).
    accept: str = ""
    #: In words: "PDF, images; up to 16 MB each, 10 files at most" / "no files".
    files_words: str = ""
    #: The longest text in UTF-8 bytes, where the channel counts bytes (Instagram).
    text_max_bytes: int | None = None
    #: The largest file of a type, where the channel's limit depends on it: (type, bytes,
    #: the files it covers in words) in order, the type exact or a prefix ending in "/";
    #: the first match wins, ``file_max_bytes`` (``other_files_word``) for the others.
    file_max_bytes_by_type: tuple[tuple[str, int, str], ...] = ()
    #: What ``file_max_bytes`` covers, in words ("documents"; "files" when it covers all).
    other_files_word: str = "files"
    #: Who else gets a public reply, in words ("the chatbot that handed it off": its
    #: callback), "" for nobody.
    also_to: str = ""

    @property
    def file_max_bytes_by_type_json(self) -> str:
        """``file_max_bytes_by_type`` as the reply box's script reads it (a JSON list)."""
        return json.dumps([list(rule) for rule in self.file_max_bytes_by_type])


@dataclass(frozen=True)
class ReplyRules:
    """A provider of the rules (the channels app's)."""

    #: Problems of a reply on ``channel`` (the message's channel: the ticket's, unless the
    #: caller names another), by field (``body``, ``files``); empty when it may be sent.
    check: Callable[[Ticket, str, str, Sequence[ReplyFile]], dict[str, list[str]]]
    #: The reply box's figures for a ticket; None: nothing to show.
    box: Callable[[Ticket], ReplyBox | None]


_providers: dict[str, ReplyRules] = {}


def size_words(size: int) -> str:
    """``16 MB``, ``20.3 MB``, ``512 KB``, ``80 bytes``: decimal units, as the channels'
    providers state their limits (1 MB = 1,000,000 bytes)."""
    if size >= 1_000_000:
        text = f"{size / 1_000_000:.1f}".removesuffix(".0")
        return f"{text} MB"
    if size >= 1000:
        text = f"{size / 1000:.1f}".removesuffix(".0")
        return f"{text} KB"
    return f"{size} bytes"


def register_reply_rules(name: str, rules: ReplyRules) -> None:
    _providers[name] = rules


def reply_problems(
    *, ticket: Ticket, channel: str, body: str, files: Sequence[ReplyFile]
) -> dict[str, list[str]]:
    """Every registered provider's problems with a public reply, by field."""
    problems: dict[str, list[str]] = {}
    for rules in _providers.values():
        for key, messages in rules.check(ticket, channel, body, files).items():
            problems.setdefault(key, []).extend(messages)
    return problems


def reply_check(*, ticket: Ticket, channel: str, body: str, files: Sequence[ReplyFile]) -> None:
    """Raise ``InvalidInput`` (its message: the first problem, in words; ``details`` by
    field) when a public reply breaks the rules of the channel it goes out on."""
    problems = reply_problems(ticket=ticket, channel=channel, body=body, files=files)
    if problems:
        first = next(iter(problems.values()))[0]
        raise InvalidInput(first, details=problems)


def reply_box_for(ticket: Ticket) -> ReplyBox | None:
    """The first provider's reply box figures for ``ticket`` (None without one)."""
    for rules in _providers.values():
        box = rules.box(ticket)
        if box is not None:
            return box
    return None
