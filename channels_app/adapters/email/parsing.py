"""Email helpers: multipart/form-data from SendGrid, MIME, HTML to text, quoted replies."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr
from urllib.parse import urlsplit

from bs4 import BeautifulSoup
from bs4.element import CData, NavigableString, PageElement, Tag

from channels_app.adapters.base import MalformedPayload

BLOCK_TAGS = ["p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"]
TICKET_TOKEN = re.compile(r"\[(T-\d{6,})\]")
MESSAGE_ID = re.compile(r"<[^<>\s]+>")
# Where a mail client's quote of the thread begins: English, and the German, French and
# Spanish forms Outlook, Gmail and Apple Mail write (a quote left in would store our own
# mail, e.g. the survey, as if the customer wrote it; the survey link itself is replaced
# whatever the quote style: ``survey_links_hidden``).
QUOTE_HEADERS = (
    # Gmail / Apple Mail attribution, its long name and address wrapped onto a second
    # line ("On …, Team <\nsupport@acme.test> wrote:")
    re.compile(r"^On (?:[^\n]{0,200}|[^\n]{0,200}\n[^\n]{0,200}) wrote:\s*$", re.MULTILINE),
    re.compile(
        r"^Am (?:[^\n]{0,200}|[^\n]{0,200}\n[^\n]{0,200}) schrieb[^\n]{0,200}:\s*$", re.MULTILINE
    ),
    re.compile(r"^Le (?:[^\n]{0,200}|[^\n]{0,200}\n[^\n]{0,200}) a [ée]crit\s?:\s*$", re.MULTILINE),
    re.compile(r"^El (?:[^\n]{0,200}|[^\n]{0,200}\n[^\n]{0,200}) escribi[óo]:\s*$", re.MULTILINE),
    re.compile(
        r"^-{2,}\s*(?:Original Message|Urspr(?:ü|ue)ngliche Nachricht|Message d'origine"
        r"|Mensaje original)\s*-{2,}",
        re.MULTILINE | re.IGNORECASE,
    ),
    re.compile(r"^_{10,}\s*$", re.MULTILINE),
    re.compile(r"^From: .+\nSent: .+", re.MULTILINE),
    re.compile(r"^Von: .+\n(?:Gesendet|Datum): .+", re.MULTILINE),
    re.compile(r"^De ?: .+\n(?:Envoy[ée] ?: |Date ?: |Enviado(?: el)?: ).+", re.MULTILINE),
)
#: Local parts of addresses that send only automatic mail (bounces, notifications): never a
#: customer writing, and never sent a survey (RFC 3834 section 2; RFC 5321 4.5.1).
AUTOMATED_LOCAL_PARTS = frozenset(
    {
        "mailer-daemon",
        "postmaster",
        "noreply",
        "no-reply",
        "no_reply",
        "donotreply",
        "do-not-reply",
        "do_not_reply",
    }
)


@dataclass
class FormPart:
    name: str
    value: bytes
    filename: str = ""
    content_type: str = ""


@dataclass
class FormData:
    fields: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, FormPart] = field(default_factory=dict)
    dropped_files: int = 0  # file parts past FORM_MAX_FILES, never parsed

    def text(self, name: str, charset: str = "utf-8") -> str:
        raw = self.fields.get(name, b"")
        try:
            return raw.decode(charset or "utf-8")
        except (LookupError, UnicodeDecodeError):
            return decode_fallback(raw)


def decode_fallback(raw: bytes) -> str:
    """Bytes whose declared charset is unknown or wrong: UTF-8 when they are, else
    Windows-1252 (what an undeclared 8-bit Western mail almost always is: every byte but
    five maps), else UTF-8 with the bad bytes replaced."""
    for charset in ("utf-8", "cp1252"):
        try:
            return raw.decode(charset)
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", errors="replace")


def is_automated_address(address: str) -> bool:
    """Whether ``address`` is a mailbox that sends only automatic mail (MAILER-DAEMON@,
    postmaster@, noreply@ …): nobody reads a reply sent there."""
    local = (address or "").rpartition("@")[0].strip().lower()
    return local in AUTOMATED_LOCAL_PARTS


#: File parts of a form read at most (the rest dropped unparsed): the standard library's
#: parser costs about 0.7 ms a part, and 25 MiB of one-byte attachments is ~190,000 parts.
FORM_MAX_FILES = 100


def _without_extra_file_parts(content_type: str, body: bytes) -> tuple[bytes, int]:
    """``body`` without its file parts past the first ``FORM_MAX_FILES`` (one linear pass
    over the bytes, no parsing), and how many were dropped. Fields are all kept, wherever
    they are."""
    holder = Message()
    holder["Content-Type"] = content_type
    boundary = holder.get_boundary()
    if not boundary:
        return body, 0
    delimiter = b"\r\n--" + boundary.encode("latin-1", "replace")
    if body.count(delimiter) <= FORM_MAX_FILES:
        return body, 0
    chunks = (b"\r\n" + body).split(delimiter)
    kept, files, dropped = [chunks[0]], 0, 0
    for chunk in chunks[1:]:
        head = chunk[:4096].split(b"\r\n\r\n", 1)[0].lower()
        if b"filename" in head:
            files += 1
            if files > FORM_MAX_FILES:
                dropped += 1
                continue
        kept.append(chunk)
    return (delimiter.join(kept)[2:], dropped) if dropped else (body, 0)


def parse_form_data(content_type: str, body: bytes) -> FormData:
    """Parse a ``multipart/form-data`` body with the standard library's MIME parser (file
    parts past ``FORM_MAX_FILES`` dropped first, counted in ``dropped_files``)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise MalformedPayload(
            f"Expected multipart/form-data from SendGrid Inbound Parse, got {content_type!r}."
        )
    if "boundary=" not in content_type:
        raise MalformedPayload("The multipart Content-Type has no boundary.")
    body, dropped = _without_extra_file_parts(content_type, body)
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.message_from_bytes(head + body, policy=email.policy.HTTP)
    if not message.is_multipart() or message.defects:
        raise MalformedPayload(
            "The multipart body could not be parsed "
            f"({', '.join(type(d).__name__ for d in message.defects) or 'no parts'})."
        )
    form = FormData(dropped_files=dropped)
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True)
        value = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename() or ""
        if filename:
            form.files[str(name)] = FormPart(
                str(name), value, filename, part.get_content_type() or ""
            )
        else:
            form.fields[str(name)] = value
    if not form.fields and not form.files:
        raise MalformedPayload("The multipart body has no form fields.")
    return form


#: An e-mail's HTML is read for its text only this far (the HTML itself is kept whole).
HTML_TEXT_MAX_CHARS = 2_000_000
_SKIPPED_TAGS = frozenset({"script", "style", "head", "blockquote", "template"})


def html_to_text(html: str) -> str:
    """The text of an HTML part: blocks and ``<br>`` make lines; scripts, styles and quoted
    replies (``<blockquote>``) are left out.

    One walk over the tree with a stack of its own. Before, each block element got a
    trailing newline through ``Tag.append``, which walks to the element's last descendant:
    HTML nested N deep cost N² steps (220 KB of nested ``<div>`` took 72 s, in the drain,
    where a soft time limit then rolled back the inbox's whole batch, again and again).
    Only the first ``HTML_TEXT_MAX_CHARS`` characters are read."""
    soup = BeautifulSoup(html[:HTML_TEXT_MAX_CHARS], "html.parser")
    out: list[str] = []
    stack: list[PageElement | None] = [soup]  # None: the end of a block element
    while stack:
        node = stack.pop()
        if node is None:
            out.append("\n")
        elif isinstance(node, NavigableString):
            if type(node) in (NavigableString, CData):  # not comments, doctypes, scripts
                out.append(str(node))
        elif isinstance(node, Tag) and node.name not in _SKIPPED_TAGS:
            if node.name == "br":
                out.append("\n")
                continue
            if node.name in BLOCK_TAGS:
                stack.append(None)
            stack.extend(reversed(node.contents))
    text = "".join(out)
    lines = [re.sub(r"[ \t\xa0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


#: The feedback page's path under ``SITE_URL`` (``tickets.context.urls``) and a signed
#: token's characters (``django.core.signing``: URL-safe base64 and ``:``; ``%`` and ``=``
#: for a link a mail client percent-encoded).
_FEEDBACK_PATH_RE = r"/feedback/[A-Za-z0-9_\-:%=]+"


def survey_links_hidden(text: str, *, site_url: str, placeholder: str) -> str:
    """``text`` with every satisfaction survey link of ours (``<site_url>/feedback/<token>``,
    any scheme) replaced by ``placeholder``: a customer's reply quoting our survey would
    otherwise store the signed link, with which whoever reads the ticket can rate it as the
    customer. Whatever the quote looks like (quote markers are only recognised in a few
    languages), the link does not survive intake."""
    netloc = urlsplit(site_url).netloc
    if not netloc or "/feedback/" not in text:
        return text
    prefix = re.escape(netloc + urlsplit(site_url).path.rstrip("/"))
    pattern = re.compile(rf"(?:https?://)?{prefix}{_FEEDBACK_PATH_RE}", re.IGNORECASE)
    return pattern.sub(placeholder, text)


def strip_quoted_reply(text: str) -> str:
    """Keep what the customer wrote, not the thread quoted below it."""
    cut = len(text)
    for pattern in QUOTE_HEADERS:
        match = pattern.search(text)
        if match and match.start() > 0:
            cut = min(cut, match.start())
    kept = [line for line in text[:cut].splitlines() if not line.lstrip().startswith(">")]
    return "\n".join(kept).strip() or text.strip()


def header_text(message: Message, name: str) -> str:
    """A header's value as text, "" when absent. The standard library parses a header
    when it is read, and its parser fails on some values anyone can send (Python 3.11:
    ``Message-ID: <a@[`` raises ``UnboundLocalError``; fuzzed From, To and Message-ID
    values raise ``IndexError`` or ``AttributeError``): then the raw value is kept."""
    try:
        return str(message.get(name) or "")
    except Exception:  # noqa: BLE001 - any parser failure: the raw text is kept
        for key, value in message.raw_items():
            if key.lower() == name.lower():
                return str(value)
        return ""


def part_text(part: Message) -> str:
    """A MIME part's text; when the part names an unknown charset (``LookupError``) or
    cannot be decoded as it says, its bytes as :func:`decode_fallback` reads them."""
    try:
        return str(part.get_content())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a charset or transfer encoding we cannot apply
        payload = part.get_payload(decode=True)
        return decode_fallback(payload) if isinstance(payload, bytes) else ""


def header_block(raw: str) -> Message:
    return email.message_from_string(raw.strip() + "\n\n", policy=email.policy.default)


def message_ids(value: str) -> tuple[str, ...]:
    return tuple(MESSAGE_ID.findall(value or ""))


def address(value: str) -> tuple[str, str]:
    try:
        name, addr = parseaddr(value or "")
    except Exception:  # noqa: BLE001 - unparseable: the whole value is the address
        return "", (value or "").strip().lower()
    return name, addr.strip().lower()


_MAILBOX = re.compile(r"[^@\s<>,;:]+@[^@\s<>,;:.][^@\s<>,;:]*")


def is_mailbox(value: str) -> bool:
    """Whether ``value`` is an address a reply can go to (``local@domain``): not the bare
    name ``parseaddr`` returns for ``From: John Smith``, nor ``<>`` or ``john@``."""
    return bool(_MAILBOX.fullmatch(value or ""))


def addresses(value: str) -> list[str]:
    return [addr.lower() for _, addr in getaddresses([value or ""]) if addr]


_MIME_CONTAINER = re.compile(rb"(?im)^content-type:[ \t\r\n]*(?:multipart|message)/")


def mime_container_count(raw: bytes) -> int:
    """How many multipart or message sections a raw MIME message declares (each nests the
    parts after it): the standard library's parser checks every line against every open
    boundary (N² in the depth) and walks the tree recursively (``RecursionError`` past
    about a thousand levels)."""
    return len(_MIME_CONTAINER.findall(raw))


_MIME_PART = re.compile(rb"(?im)^content-type:")


def mime_part_count(raw: bytes) -> int:
    """How many parts (or messages) a raw MIME message declares a type for."""
    return len(_MIME_PART.findall(raw))


def mime_first_parts(raw: bytes, limit: int) -> bytes:
    """``raw`` cut before the boundary line that opens its part number ``limit + 1`` (the
    parser then reads the first ``limit`` parts; the missing closing boundaries are
    defects it tolerates)."""
    for number, match in enumerate(_MIME_PART.finditer(raw), start=1):
        if number > limit:
            cut = raw.rfind(b"\n--", 0, match.start())
            return raw[: cut if cut > 0 else match.start()]
    return raw


def mime_headers(raw: bytes) -> EmailMessage:
    """Only the top-level header block of a raw MIME message (its body left unparsed)."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    msg = email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def mime_parts(raw: bytes) -> tuple[str, str, list[FormPart], EmailMessage]:
    """Text, HTML and attachments of a raw MIME message (SendGrid's "send raw" mode)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    text = part_text(text_part) if text_part is not None else ""
    html = part_text(html_part) if html_part is not None else ""
    files = []
    for part in msg.iter_attachments():
        payload = part.get_payload(decode=True)
        try:
            filename = part.get_filename() or "attachment"
        except Exception:  # noqa: BLE001 - a Content-Disposition the parser fails on
            filename = "attachment"
        files.append(
            FormPart(
                "attachment",
                payload if isinstance(payload, bytes) else b"",
                filename,
                part.get_content_type(),
            )
        )
    return text, html, files, msg
