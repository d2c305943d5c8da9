"""Email: SendGrid Inbound Parse in (multipart/form-data), SendGrid v3 Mail Send out (or,
for the demo mailbox, ``.eml`` files on this machine: ``local_files.py``)."""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any

from django.conf import settings

from channels_app.adapters.base import (
    ID_MAX,
    ChannelAdapter,
    Event,
    InboundMessage,
    MediaRef,
    OutboundFile,
    OutboundRequest,
    ReplyLimits,
    SendResult,
    SignatureError,
    WebhookRequest,
    constant_time_equal,
    http_call,
)
from channels_app.adapters.email.auth import envelope_sender
from channels_app.adapters.email.events import (
    PUBLIC_KEY_SETTING,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    event_signature_verify,
    events_check,
    events_parse,
    is_event_webhook,
)
from channels_app.adapters.email.local_files import local_files_send
from channels_app.adapters.email.outgoing import (
    TRANSPORT_LOCAL_FILES,
    TRANSPORT_SENDGRID,
    TRANSPORT_SETTING,
    EmailOutboundRequest,
    OutgoingMail,
    files_record,
)
from channels_app.adapters.email.parsing import (
    address,
    header_block,
    header_text,
    html_to_text,
    is_automated_address,
    is_mailbox,
    message_ids,
    mime_container_count,
    mime_first_parts,
    mime_headers,
    mime_part_count,
    mime_parts,
    parse_form_data,
    strip_quoted_reply,
    survey_links_hidden,
)
from support.errors import PermanentError
from support.parsing import json_loads

if TYPE_CHECKING:
    from email.message import Message

    from channels_app.models import ChannelAccount


# A mail whose headers name no sender address at all is kept (nothing received is lost),
# its sender identified by this prefix and a hash of its Message-ID: a guest customer of its
# own, never an identity anyone else's mail could match.
NO_ADDRESS_PREFIX = "no-address:"
MESSAGE_ID_MAX = 998  # RFC 5322's longest line: no longer id can be named in a reply
SENDER_FALLBACKS = ("sender", "reply-to")  # read, in order, when From names no address
# What one e-mail may make us do (anyone can send one): its MIME structure is read only
# when it declares at most this many multipart or message sections, and at most this
# many attachments are kept. Beyond either, the message is still made (headers, and the
# text when it could be read) with a note saying what was not read; the delivery itself
# is kept as it arrived (admin: inbound events).
MIME_MAX_CONTAINERS = 100
MIME_MAX_PARTS = 1000  # the parser costs about 0.65 ms a part
ATTACHMENTS_MAX = 100
#: The files of one reply, together (the e-mail adapter's ``reply_limits``).
REPLY_FILES_MAX_BYTES = 20_000_000
#: SendGrid's v3 Mail Send: "the total size of your email, including attachments, must be
#: less than 30MB" (docs.sendgrid.com, Mail Send limitations).
SENDGRID_MESSAGE_MAX_BYTES = 30_000_000


#: ``InboundMessage.metadata`` keys the intake acts on (``channels_app.services.ingest``):
#: why a mail was written by a program, not a person (RFC 3834), so it must never reopen a
#: ticket nor draw any automatic mail of ours; and why it came from this account's own
#: address (our own mail coming back), so it never becomes a ticket.
AUTO_SUBMITTED_KEY = "auto_submitted"
OWN_ADDRESS_KEY = "own_address"
#: Why a person's mail must draw no automatic mail of ours (it came through a mailing
#: list, or its sender asked for none): it is a ticket as any other, but no survey or
#: other automatic mail is sent to it (RFC 3834 section 2: no automatic responses to list
#: mail). Not set aside: a person may write through a list or a client that adds these.
NO_AUTO_REPLY_KEY = "no_auto_reply"
#: Precedence values of mail no person wrote (RFC 3834 section 2, RFC 2076).
AUTOMATIC_PRECEDENCE = frozenset({"bulk", "junk", "auto_reply"})
#: Headers whose presence alone marks mail as written by a program (auto-reply markers).
AUTOMATIC_HEADERS = ("X-Autoreply", "X-Autorespond")
#: Headers (and Precedence: list) that ask for no automatic answer, on mail a person may
#: have written: a mailing list's, Microsoft's suppression request.
NO_AUTO_REPLY_HEADERS = ("List-Id", "X-Auto-Response-Suppress")
#: What our own automatic mail carries (RFC 3834 section 5; Microsoft's header), so that
#: the customer's auto-responder does not answer it.
AUTO_GENERATED_HEADERS = {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"}


def _has_header(headers: Message, name: str) -> bool:
    return any(key.lower() == name.lower() for key in headers)


def _envelope_null_sender(envelope: str) -> bool:
    """Whether SendGrid's ``envelope`` field names the null sender (``MAIL FROM:<>``), which
    only bounces and other automatic reports use (RFC 5321 section 4.5.5)."""
    try:
        data = json_loads(envelope or "", what="The envelope field")
    except ValueError:
        return False
    if not isinstance(data, dict) or "from" not in data:
        return False
    sender = data["from"]
    return sender is None or (isinstance(sender, str) and sender.strip() in ("", "<>"))


def automatic_reason(headers: Message, sender: str, envelope: str) -> str:
    """Why this mail was written by a program (an out-of-office reply, a bounce, a
    newsletter, a notification), "" when nothing says so (RFC 3834 section 3.1.7's
    tests, and the usual non-standard markers)."""
    auto = header_text(headers, "auto-submitted").strip()
    if auto and auto.split(";")[0].strip().lower() != "no":
        return f"Auto-Submitted: {auto}"
    precedence = header_text(headers, "precedence").strip().lower()
    if precedence in AUTOMATIC_PRECEDENCE:
        return f"Precedence: {precedence}"
    for name in AUTOMATIC_HEADERS:
        if _has_header(headers, name):
            return f"{name} header"
    content_type = header_text(headers, "content-type").split(";")[0].strip().lower()
    if content_type == "multipart/report":
        return "a delivery or read report (multipart/report)"
    if _envelope_null_sender(envelope):
        return "the null envelope sender (a bounce)"
    if is_automated_address(sender):
        return f"sent from an automatic address ({sender.partition('@')[0]}@)"
    return ""


def no_auto_reply_reason(headers: Message) -> str:
    """Why this mail, perhaps a person's, must draw no automatic mail of ours ("" when
    nothing says so): it came through a mailing list, or asks for no automatic replies."""
    if header_text(headers, "precedence").strip().lower() == "list":
        return "Precedence: list"
    for name in NO_AUTO_REPLY_HEADERS:
        if _has_header(headers, name):
            return f"{name} header"
    return ""


def own_address_reason(account: ChannelAccount, sender: str, envelope: str) -> str:
    """Why ``sender`` is this account's own address (its From address, its inbound
    address, or an address the mail was delivered to), "" when it is not."""
    if not sender:
        return ""
    own = {
        str(account.settings.get("from_email") or "").strip().lower(): "our From address",
        str(account.external_id or "").strip().lower(): "this account's address",
    }
    if own.get(sender):
        return f"sent from {own[sender]} ({sender})"
    try:
        data = json_loads(envelope or "", what="The envelope field")
    except ValueError:
        data = {}
    recipients = data.get("to") if isinstance(data, dict) else None
    if isinstance(recipients, list) and sender in {str(r).strip().lower() for r in recipients}:
        return f"sent from the inbound address it was delivered to ({sender})"
    return ""


def _sender(from_value: str, headers: Message, envelope_from: str) -> tuple[str, str, str]:
    """The sender's name, address and the header the address came from: ``from``; when From
    names none (``From: John Smith``, ``<>``, a group, a parser failure), the Sender header,
    Reply-To, then the SMTP envelope sender (``envelope``); ``none`` when no header has one.
    Whichever it is, sender authentication (SPF / DKIM alignment) is checked against it."""
    name, addr = address(from_value)
    if is_mailbox(addr):
        return name, addr, "from"
    if not name and not set(from_value) & set("<>@:;,"):
        name = " ".join(from_value.split())  # "From: John Smith": a name, no address
    for header in SENDER_FALLBACKS:
        other_name, other = address(header_text(headers, header))
        if is_mailbox(other):
            return name or other_name, other, header
    if is_mailbox(envelope_from):
        return name, envelope_from, "envelope"
    return name, "", "none"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _kind(content_type: str) -> str:
    major = content_type.split("/", 1)[0]
    return {"image": "image", "audio": "audio", "video": "video"}.get(major, "document")


class EmailAdapter(ChannelAdapter):
    """Inbound Parse (``multipart/form-data``) and the signed Event Webhook (JSON, see
    ``events.py``) post to the same URL; the content type says which one it is."""

    channel = "email"
    # the Event Webhook's signature headers are kept so a stored delivery can be re-checked
    kept_headers = (
        "content-type",
        "user-agent",
        SIGNATURE_HEADER.lower(),
        TIMESTAMP_HEADER.lower(),
    )

    # SendGrid takes less than 30 MB a message, attachments included, after base64 (a
    # third more): 20 MB of files is 26.7 MB so encoded, with room for the text.
    reply_limits = ReplyLimits(
        files=True,
        files_max_count=10,
        file_max_bytes=REPLY_FILES_MAX_BYTES,
        files_max_total_bytes=REPLY_FILES_MAX_BYTES,
    )

    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        """Event Webhook: SendGrid's ECDSA signature. Inbound Parse signs nothing: the URL
        carries a secret ``token`` or basic auth does."""
        if is_event_webhook(request):
            event_signature_verify(str(account.settings.get(PUBLIC_KEY_SETTING) or ""), request)
            return
        if not account.inbound_token:
            raise SignatureError("This account has no inbound token configured.", status=403)
        given = request.query.get("token", "")
        auth = request.header("authorization")
        if not given and auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:].strip()).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise SignatureError("Malformed basic auth.", status=401) from None
            given = decoded.partition(":")[2]
        if not given:
            raise SignatureError("Missing inbound token (?token= or basic auth).", status=401)
        if not constant_time_equal(given, account.inbound_token):
            raise SignatureError("The inbound token does not match.", status=403)

    def check_well_formed(self, request: WebhookRequest) -> None:
        if is_event_webhook(request):
            events_check(request.body)
            return
        parse_form_data(request.header("content-type"), request.body)

    def delivery_id(self, request: WebhookRequest) -> str:
        return hashlib.sha256(request.body).hexdigest()

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[Event]:
        if is_event_webhook(request):
            return events_parse(request.body)
        form = parse_form_data(request.header("content-type"), request.body)
        charsets: Any = {}
        if form.fields.get("charsets"):
            try:
                charsets = json_loads(form.text("charsets"), what="The charsets field")
            except ValueError:
                charsets = {}
        if not isinstance(charsets, dict):
            charsets = {}

        def field(name: str) -> str:
            return form.text(name, str(charsets.get(name) or "utf-8"))

        files = list(form.files.values())
        headers: Message
        not_read: list[str] = []
        if "email" in form.fields:  # "POST the raw, full MIME message" mode
            raw = form.fields["email"]
            containers = mime_container_count(raw)
            if containers > MIME_MAX_CONTAINERS:
                text, html, files, mime = "", "", [], mime_headers(raw)
                not_read.append(
                    f"This e-mail declares {containers} nested MIME sections (more than "
                    f"{MIME_MAX_CONTAINERS}): its text and attachments were not read. The "
                    "delivery is kept as it arrived (admin: inbound events)."
                )
            else:
                parts = mime_part_count(raw)
                if parts > MIME_MAX_PARTS:
                    raw = mime_first_parts(raw, MIME_MAX_PARTS)
                    not_read.append(
                        f"This e-mail declares {parts} MIME parts: only the first "
                        f"{MIME_MAX_PARTS} were read. The delivery is kept as it arrived "
                        "(admin: inbound events)."
                    )
                text, html, files, mime = mime_parts(raw)
            headers = mime
            subject = header_text(mime, "subject")
            sender = header_text(mime, "from")
        else:
            text, html = field("text"), field("html")
            headers = header_block(field("headers"))
            subject = field("subject") or header_text(headers, "subject")
            sender = field("from") or header_text(headers, "from")
        # Whatever the sender wrote is kept: NUL, over-long names, addresses and
        # Message-IDs are made storable where the InboundMessage is built (base.py).
        body = text if text.strip() else html_to_text(html) if html else ""
        own_id = message_ids(header_text(headers, "message-id"))
        references = message_ids(header_text(headers, "references"))
        in_reply_to = message_ids(header_text(headers, "in-reply-to"))
        metadata: dict[str, Any] = {
            "subject": subject,
            "to": field("to") or header_text(headers, "to"),
            "spf": field("SPF"),
            "dkim": field("dkim"),
            # SPF is checked for the SMTP envelope sender: kept to align it with From
            "envelope_from": envelope_sender(field("envelope")),
            "spam_score": field("spam_score"),
        }
        name, addr, found_in = _sender(sender, headers, metadata["envelope_from"])
        if found_in != "from":
            metadata["sender_from"] = found_in  # shown: the From header gave no address
        automatic = automatic_reason(headers, addr, field("envelope"))
        if automatic:
            metadata[AUTO_SUBMITTED_KEY] = automatic
        elif no_auto_reply := no_auto_reply_reason(headers):
            metadata[NO_AUTO_REPLY_KEY] = no_auto_reply
        own = own_address_reason(account, addr, field("envelope"))
        if own:
            metadata[OWN_ADDRESS_KEY] = own
        # Our survey's signed link, quoted back in a reply (in any language's quote style),
        # is never stored: whoever reads the ticket could rate it as the customer.
        from channels_app.services.survey_link import SURVEY_LINK_PLACEHOLDER

        text = survey_links_hidden(
            strip_quoted_reply(body),
            site_url=settings.SITE_URL,
            placeholder=SURVEY_LINK_PLACEHOLDER,
        )
        html = survey_links_hidden(
            html, site_url=settings.SITE_URL, placeholder=SURVEY_LINK_PLACEHOLDER
        )
        external_id = own_id[0] if own_id else self.delivery_id(request)
        if len(external_id) > ID_MAX:
            # stored shortened (bounded_id); replies must name the sender's own, whole id
            metadata["message_id"] = external_id[:MESSAGE_ID_MAX]
        attached = len(files) + form.dropped_files
        if attached > ATTACHMENTS_MAX:
            not_read.append(
                f"This e-mail has {attached} attachments: the first {ATTACHMENTS_MAX} are "
                "kept. The delivery is kept as it arrived (admin: inbound events)."
            )
            files = files[:ATTACHMENTS_MAX]
        if not_read:
            metadata["not_read"] = not_read
        media = tuple(
            MediaRef(
                kind=_kind(f.content_type),
                mime_type=f.content_type,
                filename=f.filename,
                content=f.value,
            )
            for f in files
        )
        return [
            InboundMessage(
                external_message_id=external_id,
                # no address anywhere: the mail is kept all the same, under an id of its own
                # (a guest customer, marked; a reply explains that it has nowhere to go)
                sender_id=addr or f"{NO_ADDRESS_PREFIX}{_digest(external_id)}",
                sender_name=name,
                sender_email=addr,
                text=text,
                html=html,
                subject=subject,
                media=media,
                reply_to_external_id=in_reply_to[0] if in_reply_to else "",
                references=references + in_reply_to,
                metadata=metadata,
            )
        ]

    def send(self, account: ChannelAccount, outbound: OutboundRequest) -> SendResult:
        """One reply (or notice) through the account's transport: SendGrid's v3 Mail Send,
        or, for ``transport: local_files`` (the demo mailbox), an ``.eml`` file on this
        machine. Both compose the same mail (``outgoing_mail``)."""
        if not is_mailbox(outbound.recipient_id):
            raise PermanentError(
                "The customer's mail named no sender address: there is no address to reply "
                "to (add the customer's e-mail address to reply by e-mail)."
                if outbound.recipient_id.startswith(NO_ADDRESS_PREFIX)
                else f"{outbound.recipient_id!r} is not an e-mail address to reply to."
            )
        mail = outgoing_mail(account, outbound)
        transport = str(account.settings.get(TRANSPORT_SETTING) or TRANSPORT_SENDGRID)
        if transport == TRANSPORT_LOCAL_FILES:
            return local_files_send(mail)
        if transport != TRANSPORT_SENDGRID:
            raise PermanentError(
                f"Unknown e-mail transport {transport!r} on account {account.name!r} "
                f"(settings {TRANSPORT_SETTING!r}: {TRANSPORT_SENDGRID} or "
                f"{TRANSPORT_LOCAL_FILES})."
            )
        return _sendgrid_send(account, mail, outbound)


def outgoing_mail(account: ChannelAccount, outbound: OutboundRequest) -> OutgoingMail:
    """The mail a reply becomes, whatever carries it: ``Re: <subject> [T-000123]``, our
    Message-ID, and In-Reply-To / References for the thread."""
    # One line: a ticket's subject is the customer's (an encoded CR LF in an inbound
    # Subject decodes to a line break), and a header may not hold one.
    subject = " ".join((outbound.subject or "").split()) or "Your request"
    if outbound.ticket_number:  # a reply on a ticket (else a notice, e.g. a code)
        if not subject.lower().startswith("re:"):
            subject = f"Re: {subject}"
        if f"[{outbound.ticket_number}]" not in subject:
            subject = f"{subject} [{outbound.ticket_number}]"
    headers: dict[str, str] = {"Message-ID": outbound.outgoing_message_id}
    if outbound.thread_message_ids:
        headers["In-Reply-To"] = outbound.thread_message_ids[-1]
        headers["References"] = " ".join(_references_kept(outbound.thread_message_ids))
    if isinstance(outbound, EmailOutboundRequest) and outbound.auto_generated:
        # written by the system (the survey): auto-responders must not answer it
        headers.update(AUTO_GENERATED_HEADERS)
    return OutgoingMail(
        from_email=str(account.settings.get("from_email") or account.external_id),
        from_name=str(account.settings.get("from_name") or ""),
        to=outbound.recipient_id,
        subject=subject,
        text=outbound.text,
        headers=headers,
        ticket_number=outbound.ticket_number,
        files=outbound.files,
    )


#: References names the thread's first Message-ID and its latest ones, this many: the
#: whole thread of a long conversation (merged tickets included) makes a header some
#: servers refuse (RFC 5322 section 3.6.4 leaves trimming to the sender).
REFERENCES_LATEST = 10


def _references_kept(ids: tuple[str, ...]) -> tuple[str, ...]:
    if len(ids) <= REFERENCES_LATEST + 1:
        return ids
    return (ids[0], *ids[-REFERENCES_LATEST:])


def _sendgrid_attachments(files: tuple[OutboundFile, ...]) -> list[dict[str, str]]:
    """The v3 Mail Send ``attachments``: each file's bytes in base64, its type and name,
    shown as an attachment (not inline)."""
    return [
        {
            "content": base64.b64encode(item.read()).decode("ascii"),
            "type": item.content_type or "application/octet-stream",
            "filename": item.filename,
            "disposition": "attachment",
        }
        for item in files
    ]


def _sendgrid_send(
    account: ChannelAccount, mail: OutgoingMail, outbound: OutboundRequest
) -> SendResult:
    base = str(getattr(settings, "SENDGRID_API_BASE", "https://api.sendgrid.com")).rstrip("/")
    sender: dict[str, str] = {"email": mail.from_email}
    if mail.from_name:
        sender["name"] = mail.from_name
    body = {
        "personalizations": [{"to": [{"email": mail.to}]}],
        "from": sender,
        "subject": mail.subject,
        "content": [{"type": "text/plain", "value": mail.text}],
        "headers": mail.headers,
        "custom_args": {
            "ticket_id": str(outbound.ticket_id),
            "message_id": str(outbound.message_id),
        },
    }
    record = dict(body)
    if mail.files:
        body["attachments"] = attachments = _sendgrid_attachments(mail.files)
        encoded = sum(len(a["content"]) for a in attachments) + len(mail.text.encode())
        if encoded >= SENDGRID_MESSAGE_MAX_BYTES:
            raise PermanentError(
                f"This e-mail would be {encoded:,} bytes with its files in base64; SendGrid "
                f"takes less than {SENDGRID_MESSAGE_MAX_BYTES:,} bytes a message."
            )
        # the record keeps what was attached, never the bytes
        record["attachments"] = files_record(mail.files)
    response = http_call(
        "POST",
        f"{base}/v3/mail/send",
        json=body,
        headers={"Authorization": f"Bearer {account.access_token}"},
    )
    return SendResult(
        external_message_id=outbound.outgoing_message_id,
        http_status=response.status_code,
        request_body=record,
        response_body=response.headers.get("X-Message-Id", ""),
    )
