"""Email: SendGrid Inbound Parse in (multipart/form-data), SendGrid v3 Mail Send out (or,
for the demo mailbox, ``.eml`` files on this machine: ``local_files.py``)."""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any

from django.conf import settings

from channels_app.adapters.base import (
    ChannelAdapter,
    Event,
    InboundMessage,
    MediaRef,
    OutboundRequest,
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
    OutgoingMail,
)
from channels_app.adapters.email.parsing import (
    address,
    header_block,
    header_text,
    html_to_text,
    message_ids,
    mime_parts,
    parse_form_data,
    strip_quoted_reply,
)
from support.errors import PermanentError
from support.parsing import json_loads

if TYPE_CHECKING:
    from email.message import Message

    from channels_app.models import ChannelAccount


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
        if "email" in form.fields:  # "POST the raw, full MIME message" mode
            text, html, files, mime = mime_parts(form.fields["email"])
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
        name, addr = address(sender)
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
                external_message_id=own_id[0] if own_id else self.delivery_id(request),
                sender_id=addr,
                sender_name=name,
                sender_email=addr,
                text=strip_quoted_reply(body),
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
        headers["References"] = " ".join(outbound.thread_message_ids)
    return OutgoingMail(
        from_email=str(account.settings.get("from_email") or account.external_id),
        from_name=str(account.settings.get("from_name") or ""),
        to=outbound.recipient_id,
        subject=subject,
        text=outbound.text,
        headers=headers,
        ticket_number=outbound.ticket_number,
    )


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
    response = http_call(
        "POST",
        f"{base}/v3/mail/send",
        json=body,
        headers={"Authorization": f"Bearer {account.access_token}"},
    )
    return SendResult(
        external_message_id=outbound.outgoing_message_id,
        http_status=response.status_code,
        request_body=body,
        response_body=response.headers.get("X-Message-Id", ""),
    )
