"""The mail a reply becomes, whatever transport carries it, and the transports an e-mail
account may use (``account.settings["transport"]``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from channels_app.adapters.base import OutboundFile, OutboundRequest

#: The account setting that picks how replies leave.
TRANSPORT_SETTING = "transport"
#: SendGrid's v3 Mail Send (the default): what a real mailbox uses.
TRANSPORT_SENDGRID = "sendgrid"
#: ``.eml`` files under ``EMAIL_FILE_PATH`` on this machine, nothing leaves it: the demo
#: mailbox that ``load_demo`` creates. Refused under ``ENVIRONMENT=prod``.
TRANSPORT_LOCAL_FILES = "local_files"


@dataclass(frozen=True)
class EmailOutboundRequest(OutboundRequest):
    """A reply to send by e-mail, with what only e-mail asks of it."""

    #: Written by the system, not a person (the satisfaction survey: a message with no
    #: author): sent with ``Auto-Submitted: auto-generated`` and
    #: ``X-Auto-Response-Suppress: All`` (RFC 3834), so auto-responders do not answer it.
    auto_generated: bool = False


@dataclass(frozen=True)
class OutgoingMail:
    from_email: str
    from_name: str
    to: str
    subject: str
    text: str
    #: Message-ID (ours, stable per message), In-Reply-To, References
    headers: dict[str, str] = field(default_factory=dict)
    ticket_number: str = ""  # empty for a notice (e.g. a web chat code)
    #: The files the agent attached (read when the transport writes the mail).
    files: tuple[OutboundFile, ...] = ()


def files_record(files: tuple[OutboundFile, ...]) -> list[dict[str, object]]:
    """What the delivery's record keeps of the files: names, types, sizes, never the
    bytes (the record is shown to staff and kept with every attempt)."""
    return [{"filename": f.filename, "type": f.content_type, "size": f.size} for f in files]
