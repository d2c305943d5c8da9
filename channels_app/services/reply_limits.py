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

from collections.abc import Sequence

from django.conf import settings

from channels_app.adapters.base import (
    ChannelAdapter,
    ReplyLimits,
    get_adapter,
    registered_channels,
)
from channels_app.adapters.limits import kind_words, reply_limits_problems, types_words
from channels_app.selectors import channel_account_for_ticket
from channels_app.services.handoff import handoff_callback_url
from tickets.models import Channel, Ticket
from tickets.reply_rules import ReplyBox, ReplyFile, ReplyRules, size_words


def reply_channel(channel: str) -> str:
    """The channel a public reply on a ``channel`` ticket goes out on (the same choice as
    ``outbound_delivery_create``): a chatbot hand-off, and a channel with no adapter of its
    own (API, phone), reply by e-mail; every other channel on itself. A hand-off's files
    are e-mailed, so e-mail's limits are the ones; its bot's callback only lists them, with
    links (``handoff.callback_body``), and adds no limit of its own."""
    if channel == Channel.CHATBOT or channel not in registered_channels():
        return Channel.EMAIL
    return channel


def channel_label(channel: str) -> str:
    return str(Channel(channel).label) if channel in Channel.values else channel


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
        file_max_bytes_by_type=tuple(
            (prefix, size, kind_words(limits, prefix))
            for prefix, size in limits.file_max_bytes_by_type
        ),
        other_files_word=kind_words(limits, ""),
        also_to=(
            "the chatbot that handed it off"
            if ticket.channel == Channel.CHATBOT and handoff_callback_url(ticket)
            else ""
        ),
    )


def channel_reply_rules() -> ReplyRules:
    """Registered with the core in ``ChannelsAppConfig.ready()``."""
    return ReplyRules(check=reply_problems_for, box=reply_box)
