"""What one public reply may carry on the channel it really goes out on: each adapter's
``ReplyLimits`` (text length, files), checked in one place.

Registered with the core (``tickets.reply_rules``) in ``ChannelsAppConfig.ready()``: the
core refuses, when an agent sends, a reply that breaks the limits (the API's 400 by
``body`` / ``files``, the workbench's refusal by the reply form) and the ticket page shows
them by the reply box. ``outbound_reply_send`` checks again before it calls the adapter, so
a reply queued earlier (limits since tightened, a re-driven delivery) fails at once with the
same words, never with a provider's 400.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence

from django.conf import settings

from channels_app.adapters.base import (
    ChannelAdapter,
    ReplyLimits,
    get_adapter,
    registered_channels,
)
from channels_app.adapters.parts import kind_words
from channels_app.selectors import channel_account_for_ticket
from tickets.models import Channel, Ticket
from tickets.reply_rules import ReplyBox, ReplyFile, ReplyRules, size_words

#: Content types named in words in the reply box (others are shown as they are).
_TYPE_WORDS = {
    "image/": "images",
    "audio/": "audio",
    "video/": "video",
    "text/": "text files",
    "application/pdf": "PDF",
    # the types the adapters name, in words that do not depend on this machine's
    # mime.types (the others: their usual extension)
    "image/jpeg": "JPG",
    "image/png": "PNG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
    "video/mp4": "MP4",
    "video/3gpp": "3GP",
    "audio/aac": "AAC",
    "audio/amr": "AMR",
    "audio/mpeg": "MP3",
    "audio/mp4": "M4A",
    "audio/x-m4a": "M4A",
    "audio/ogg": "OGG",
    "audio/wav": "WAV",
    "audio/x-wav": "WAV",
    "text/plain": "TXT",
}


def reply_channel(channel: str) -> str:
    """The channel a public reply on a ``channel`` ticket goes out on (the same choice as
    ``outbound_delivery_create``): a chatbot hand-off, and a channel with no adapter of its
    own (API, phone), reply by e-mail; every other channel on itself."""
    if channel == Channel.CHATBOT or channel not in registered_channels():
        return Channel.EMAIL
    return channel


def channel_label(channel: str) -> str:
    return str(Channel(channel).label) if channel in Channel.values else channel


def type_allowed(content_type: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``content_type`` is one of ``allowed`` (exact, or a prefix ending in "/");
    an empty ``allowed``: any type."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if not allowed:
        return True
    return any(kind.startswith(a) if a.endswith("/") else kind == a for a in allowed)


def _type_word(content_type: str) -> str:
    """A type as people name it: "images" for ``image/``, else its usual extension ("PDF",
    "JPG", "DOCX"), else the type itself."""
    if content_type in _TYPE_WORDS:
        return _TYPE_WORDS[content_type]
    extension = mimetypes.guess_extension(content_type, strict=False)
    return extension.lstrip(".").upper() if extension else content_type


def types_words(allowed: tuple[str, ...]) -> str:
    """``ReplyLimits.file_types`` in words, each once ("JPG, PNG, WEBP"); "any type"."""
    if not allowed:
        return "any type"
    return ", ".join(dict.fromkeys(_type_word(a) for a in allowed))


def reply_limits_problems(
    limits: ReplyLimits, *, label: str, text: str, files: Sequence[ReplyFile]
) -> dict[str, list[str]]:
    """What a reply breaks of ``limits`` (``label``: the channel as people name it), by
    field: ``body`` (its length), ``files`` (any at all, how many, how big, which type)."""
    problems: dict[str, list[str]] = {}
    if limits.text_max_chars is not None and len(text) > limits.text_max_chars:
        problems["body"] = [
            f"{label} replies can be at most {limits.text_max_chars:,} characters; "
            f"this one has {len(text):,}."
        ]
    elif limits.text_max_bytes is not None:
        used = len(text.encode("utf-8", "surrogatepass"))
        if used > limits.text_max_bytes:
            problems["body"] = [
                f"{label} replies can be at most {limits.text_max_bytes:,} bytes of text; "
                f"this one has {used:,} (emoji and accented letters take 2–4 bytes each)."
            ]
    if not files:
        return problems
    refused: list[str] = []
    if not limits.files:
        refused.append(limits.files_refusal or f"{label} replies can't carry files.")
    else:
        if limits.files_max_count and len(files) > limits.files_max_count:
            refused.append(
                f"{label} replies can carry at most {limits.files_max_count} "
                f"file{'s' if limits.files_max_count != 1 else ''}; this one has {len(files)}."
            )
        total = sum(item.size for item in files)
        if limits.files_max_total_bytes and total > limits.files_max_total_bytes:
            refused.append(
                f"{label} replies can carry at most {size_words(limits.files_max_total_bytes)} "
                f"of files together; these are {size_words(total)}."
            )
        for item in files:
            largest = limits.max_bytes_for(item.content_type)
            if largest and item.size > largest:
                refused.append(
                    f"{label} {kind_words(limits, item.content_type)} can be at most "
                    f"{size_words(largest)}; {item.filename} is {size_words(item.size)}."
                )
            if not type_allowed(item.content_type, limits.file_types):
                shown = item.content_type or "unknown"
                refused.append(
                    f"{label} replies can't carry {item.filename} ({shown}); they take "
                    f"{types_words(limits.file_types)}."
                )
    if refused:
        problems["files"] = refused
    return problems


def reply_problems_for(
    ticket: Ticket, channel: str, text: str, files: Sequence[ReplyFile]
) -> dict[str, list[str]]:
    """The problems of a public reply on a ``channel`` ticket, against the limits of the
    channel it really goes out on (``reply_channel``)."""
    out = reply_channel(channel)
    return reply_limits_problems(
        ticket_reply_limits(ticket, out), label=channel_label(out), text=text, files=files
    )


def ticket_reply_limits(ticket: Ticket, out: str) -> ReplyLimits:
    """The limits of a reply on ``ticket`` going out on ``out``: the adapter's for the
    account the reply goes through (the ticket's, when it goes out on its own channel)."""
    adapter = get_adapter(out)
    if type(adapter).reply_limits_for is ChannelAdapter.reply_limits_for:
        return adapter.reply_limits  # the same for every account: no need to look it up
    account = channel_account_for_ticket(ticket) if out == ticket.channel else None
    return adapter.reply_limits_for(account)


def sizes_words(limits: ReplyLimits) -> str:
    """The largest file of each kind in words, none above the project's cap on the files of
    one message (``TICKET_REPLY_FILES_MAX_BYTES``: what applies here): "images up to 5 MB,
    video and audio up to 16 MB, documents up to 20 MB"; "up to 25 MB each"; ""."""
    cap = int(settings.TICKET_REPLY_FILES_MAX_BYTES)

    def applies(size: int) -> int:
        return min(size, cap) if cap and size else size

    if not limits.file_max_bytes_by_type:
        largest = applies(limits.file_max_bytes)
        return f"up to {size_words(largest)} each" if largest else ""
    shown: dict[int, list[str]] = {}
    for prefix, size in limits.file_max_bytes_by_type:
        shown.setdefault(applies(size), []).append(kind_words(limits, prefix))
    if limits.file_max_bytes:
        shown.setdefault(applies(limits.file_max_bytes), []).append(limits.other_files_word)
    return ", ".join(
        f"{' and '.join(dict.fromkeys(words))} up to {size_words(size)}"
        for size, words in shown.items()
    )


def reply_box(ticket: Ticket) -> ReplyBox:
    """The figures the reply box shows for public replies on ``ticket``."""
    out = reply_channel(ticket.channel)
    limits = ticket_reply_limits(ticket, out)
    if limits.files:
        parts = [types_words(limits.file_types)]
        if sizes := sizes_words(limits):
            parts.append(sizes)
        if limits.files_max_count:
            count = limits.files_max_count
            parts.append(f"{count} file{'s' if count != 1 else ''} at most")
        # the project's own cap on a message's files is said beside it (the reply box's
        # "At most 20 MB together."): the channel's only where it is the smaller
        if 0 < limits.files_max_total_bytes < int(settings.TICKET_REPLY_FILES_MAX_BYTES):
            parts.append(f"{size_words(limits.files_max_total_bytes)} together")
        words = ", ".join(parts)
    else:
        words = (
            limits.files_refusal.rstrip(".") or f"{channel_label(out)} replies can't carry files"
        )
    return ReplyBox(
        channel_label=channel_label(out),
        text_max_chars=limits.text_max_chars,
        text_max_bytes=limits.text_max_bytes,
        files=limits.files,
        files_max_count=limits.files_max_count,
        file_max_bytes=limits.file_max_bytes,
        accept=",".join(
            f"{t}*" if t.endswith("/") else t for t in (limits.file_types if limits.files else ())
        ),
        files_words=words,
    )


def channel_reply_rules() -> ReplyRules:
    """Registered with the core in ``ChannelsAppConfig.ready()``."""
    return ReplyRules(check=reply_problems_for, box=reply_box)
