"""Turn files into titled sections, and sections into overlapping chunks.

Formats: Markdown, HTML, plain text, PDF (pypdf, pure Python) and JSONL lines
``{"id", "title", "text", "url"?, "tags"?}``. Chunking follows headings: a chunk never spans
two sections, carries its heading path, and consecutive chunks of a section overlap.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from support.errors import InvalidInput
from support.parsing import UnreadableJson, json_loads
from support.safe_urls import http_url
from support.text import sentences_of

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
    ".text": "text",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
}
CHUNK_WORDS = 160  # ~210 word pieces: under MiniLM's 256-token window
OVERLAP_WORDS = 32
# A "word" longer than this (a pasted base64 blob, a minified line) is cut, with "…": a
# passage is at most ~160 x 100 characters, not a megabyte sent whole in every search
# result and suggestion (MiniLM reads a word over 100 characters as one unknown token, and
# PostgreSQL's full text skips words over 2,047 bytes, so neither found it anyway). Titles
# are cut where the document's is (500, ``ParsedDocument``). Output is unchanged for text
# without such words, so CHUNKER_VERSION stays: documents ingested before keep their
# passages until they change.
WORD_MAX_CHARS = 100
TITLE_MAX_CHARS = 500
CHUNKER_VERSION = "1"


@dataclass(frozen=True)
class Section:
    heading_path: str
    text: str


@dataclass
class ParsedDocument:
    """One document as parsed. NUL characters are dropped from every field here, whatever
    the format (a PDF's text layer, a JSONL string's ``\\u0000``): PostgreSQL text cannot
    hold them, and one used to fail the whole upload or batch with a database error."""

    external_id: str
    title: str
    sections: list[Section]
    url: str = ""
    content_type: str = ""
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.external_id = _without_nul(self.external_id)
        self.title = _without_nul(self.title)[:TITLE_MAX_CHARS]  # what Document keeps
        self.url = _without_nul(self.url)
        self.tags = [_without_nul(t) for t in self.tags]
        self.sections = [
            Section(_without_nul(s.heading_path), _without_nul(s.text)) for s in self.sections
        ]


def _without_nul(text: str) -> str:
    return text.replace("\x00", "") if "\x00" in text else text


# Byte-order marks, longest first (UTF-32 LE starts with UTF-16 LE's).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


# A file named .txt, .md or .html that is something else (a careless upload): refused with
# what it looks like, rather than ingested as an article of mojibake.
_MAGIC = (
    (b"%PDF-", "PDF file", " (name it .pdf)"),
    (b"PK\x03\x04", "ZIP archive (DOCX, XLSX...)", ""),
    (b"\x89PNG", "PNG image", ""),
    (b"\xff\xd8\xff", "JPEG image", ""),
    (b"GIF8", "GIF image", ""),
    (b"\xd0\xcf\x11\xe0", "Office 97-2003 file", ""),
)
_NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\ufffd]")
BINARY_MAX_SHARE = 0.2  # control characters and undecodable bytes, of all characters (binary
# files: about half; text with a few stray bytes: a few per cent)


def _refuse_binary(name: str, data: bytes, text: str) -> None:
    for magic, what, hint in _MAGIC:
        if data.startswith(magic):
            raise InvalidInput(f"{name}: a {what}, not text{hint}")
    if text and len(_NOT_TEXT.findall(text)) > BINARY_MAX_SHARE * len(text):
        raise InvalidInput(f"{name}: binary content, not text")


def decode_text(data: bytes) -> str:
    """A text file's characters: UTF-8, or the encoding its byte-order mark names (Windows
    tools save UTF-16 with one); bytes that do not decode become U+FFFD."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data.decode(codec, errors="replace")
    return data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class ChunkDraft:
    position: int
    heading_path: str
    text: str
    kind: str = "body"


def content_type_for(name: str) -> str | None:
    return SUPPORTED_SUFFIXES.get(PurePosixPath(name).suffix.lower())


def document_url(url: str) -> str:
    """The link a document keeps: an http(s) URL, or the ``s3://`` location the S3 reader
    records (never rendered as a link); anything else (``javascript:``, relative paths) is
    dropped, as the workbench links it."""
    url = (url or "").strip()
    if url.startswith("s3://") and not any(ord(c) <= 0x20 for c in url):
        return url
    return http_url(url)


def _title_from_name(name: str) -> str:
    stem = PurePosixPath(name).stem
    return re.sub(r"[-_]+", " ", stem).strip().capitalize()


def _clean(text: str) -> str:
    return re.sub(r"[ \t\r\f\v]+", " ", text).strip()


# --- Markdown -----------------------------------------------------------------

# Every pattern here reads a line in time linear in its length (an uploaded file is
# hostile input: "# a" + 3,000 spaces + "b" took 30 s of CPU with a lazy heading pattern
# whose trailing "\s*#*\s*" could split the spaces every way, and "[a](" 20,000 times 5 s
# with link targets read to the line's end from every "[").
_HEADING = re.compile(r"^(#{1,6})[ \t]+(\S.*)$")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
_IMAGE = re.compile(r"!\[([^\[\]\n]{0,500})\]\([^)\n]{0,2000}\)")
_LINK = re.compile(r"\[([^\[\]\n]{1,500})\]\(([^)\n]{0,2000})\)")


def _heading_text(text: str) -> str:
    """A heading's text without its closing ``#`` sequence ("Title ##" is "Title"; "C#" stays:
    a closing sequence follows a space, as CommonMark has it)."""
    text = text.strip()
    bare = text.rstrip("#")
    return bare.strip() if bare and bare != text and bare[-1] in " \t" else text


def _strip_markdown(line: str) -> str:
    line = _IMAGE.sub(r"\1", line)  # images
    line = _LINK.sub(r"\1 (\2)", line)  # links keep their target
    line = re.sub(r"(\*\*|__|~~|`)", "", line)
    line = re.sub(r"^\s*([-*+]|\d+\.)\s+", "", line)  # list markers
    line = re.sub(r"^\s*>\s?", "", line)
    return line


def parse_markdown(text: str, *, name: str = "", title: str = "") -> tuple[str, list[Section]]:
    front = _FRONT_MATTER.match(text)
    if front:
        for line in front.group(1).splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "title" and not title:
                title = value.strip().strip("\"'")
        text = text[front.end() :]
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    buffer: list[str] = []
    in_code = False

    def flush() -> None:
        body = "\n".join(buffer).strip()
        if body:
            sections.append(Section(" > ".join(h for _, h in path), body))
        buffer.clear()

    for raw in text.splitlines():
        if raw.strip().startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else _HEADING.match(raw)
        if match:
            flush()
            level = len(match.group(1))
            heading = _strip_markdown(_heading_text(match.group(2))).strip()
            if level == 1 and not title and not sections and not path:
                title = heading
                continue
            path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, heading)]
            continue
        buffer.append(raw if in_code else _strip_markdown(raw))
    flush()
    return title or _title_from_name(name), sections


# --- HTML ---------------------------------------------------------------------


# BeautifulSoup's html.parser builds ~20,000 elements a second: a 10 MB upload of "<b>x"
# is 2.5 million of them (minutes of CPU, gigabytes of tree). Help pages have a few
# thousand; a file with more start tags than this is refused before it is parsed.
HTML_MAX_TAGS = 100_000
_START_TAG = re.compile(r"<[A-Za-z]")
_HTML_BLOCKS = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "td", "th", "dd", "dt"}


def parse_html(html: str, *, name: str = "") -> tuple[str, list[Section]]:
    from bs4 import BeautifulSoup, Tag

    tags = sum(1 for _ in _START_TAG.finditer(html))
    if tags > HTML_MAX_TAGS:
        raise InvalidInput(f"{name or 'file'}: more than {HTML_MAX_TAGS} HTML elements")
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "nav", "header", "footer", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    body = soup.body or soup
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    buffer: list[str] = []

    def flush() -> None:
        text = "\n".join(b for b in buffer if b).strip()
        if text:
            sections.append(Section(" > ".join(h for _, h in path), text))
        buffer.clear()

    # One walk in document order; a block is taken whole and its inside not walked again,
    # so the work grows with the file's size (looking up each block's ancestors, and
    # reading headings nested in headings, was quadratic: 5,000 unclosed <h2> took a minute).
    stack = list(reversed(body.contents))
    while stack:
        element = stack.pop()
        if not isinstance(element, Tag):
            continue
        if element.name not in _HTML_BLOCKS:
            stack.extend(reversed(element.contents))
            continue
        text = _clean(element.get_text(" ", strip=True))
        if element.name[0] == "h":
            level = int(element.name[1:])
            flush()
            if level == 1 and not title:
                title = text
                continue
            if level == 1 and text == title and not sections:
                continue
            path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, text)]
        else:
            buffer.append(text)
    flush()
    if not sections:
        text = _clean(body.get_text(" ", strip=True))
        if text:
            sections.append(Section("", text))
    return title or _title_from_name(name), sections


# --- PDF and text ---------------------------------------------------------------


# A PDF's text is read page by page with pypdf (pure Python, ~3 us per token of a page's
# content). A few kilobytes of compressed drawing operations can hold millions of them, so
# the work is bounded: pages, operators and operands over the whole file (~10-18 s of CPU
# at the limit, measured with Helvetica text operations),
# and tokens per content stream (pypdf's own limit, lowered).
PDF_MAX_PAGES = 2000
PDF_MAX_WORK = 1_000_000
PDF_STREAM_MAX_WORK = 1_000_000
# Work no count above sees: pypdf skips a content stream's comments byte by byte in Python
# (a 70 MB comment, 4.5 s), again for every page and every drawing of a form XObject that
# holds it. So a file's reading stops after this much CPU time of the reading thread
# (checked at each operator and page: past it by one stream's parse at most), streams
# decompress to at most PDF_STREAM_MAX_BYTES, and a page draws at most
# PDF_MAX_FORM_DRAWS form XObjects (pypdf's defaults: 75 MB and 5,000).
PDF_MAX_CPU_SECONDS = 20.0
PDF_STREAM_MAX_BYTES = 20_000_000
PDF_MAX_FORM_DRAWS = 200


class _PdfTooBusy(Exception):
    pass


def parse_pdf(data: bytes, *, name: str = "") -> tuple[str, list[Section]]:
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import PyPdfError

    label = name or "file"
    budget = PDF_MAX_WORK
    deadline = time.thread_time() + PDF_MAX_CPU_SECONDS

    def spend(operator: Any, operands: Any, cm: Any, tm: Any) -> None:
        nonlocal budget
        budget -= 1 + sum(len(o) if isinstance(o, list | dict) else 1 for o in operands)
        if budget < 0 or time.thread_time() > deadline:
            raise _PdfTooBusy

    limits: dict[str, Any] = {
        "stream_parsing_work_maximum_count": PDF_STREAM_MAX_WORK,
        "xform_maximum_invocations_per_extraction": PDF_MAX_FORM_DRAWS,
        **{
            f"{kind}_maximum_output_length": PDF_STREAM_MAX_BYTES
            for kind in ("zlib", "lzw", "run_length", "brotli", "array_based_stream")
        },
    }
    try:
        with apply_configuration(**limits):
            reader = PdfReader(io.BytesIO(data))
            if len(reader.pages) > PDF_MAX_PAGES:
                raise InvalidInput(f"{label}: more than {PDF_MAX_PAGES} pages")
            pages = []
            for page in reader.pages:
                if time.thread_time() > deadline:
                    raise _PdfTooBusy
                pages.append(page.extract_text(visitor_operand_before=spend) or "")
            meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except _PdfTooBusy:
        raise InvalidInput(
            f"{label}: too much to read (over {PDF_MAX_WORK} drawing operations or "
            f"{PDF_MAX_CPU_SECONDS:.0f} s of reading)"
        ) from None
    # PyPdfError: PdfReadError, LimitReachedError...; the others: what pypdf raises on
    # malformed objects it does not check (a hostile file is not a 500).
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise InvalidInput(f"{label}: unreadable PDF ({exc})") from exc
    except RecursionError:
        raise InvalidInput(f"{label}: unreadable PDF (nested too deeply)") from None
    sections = [Section(f"Page {i}", t.strip()) for i, t in enumerate(pages, 1) if t.strip()]
    return str(meta_title).strip() or _title_from_name(name), sections


def parse_text(text: str, *, name: str = "") -> tuple[str, list[Section]]:
    text = text.strip()
    return _title_from_name(name), [Section("", text)] if text else []


def parse_file(name: str, data: bytes, *, external_id: str | None = None) -> ParsedDocument:
    """Parse one file (not JSONL) by its suffix."""
    kind = content_type_for(name)
    if kind is None or kind == "jsonl":
        raise InvalidInput(f"{name}: unsupported file type")
    if kind == "pdf":
        title, sections = parse_pdf(data, name=name)
    else:
        text = decode_text(data)
        _refuse_binary(name, data, text)
        if kind == "markdown":
            title, sections = parse_markdown(text, name=name)
        elif kind == "html":
            title, sections = parse_html(text, name=name)
        else:
            title, sections = parse_text(text, name=name)
    if not any(s.text.strip() for s in sections):  # an article with nothing to find or cite
        hint = " (a scanned PDF? only a text layer is read)" if kind == "pdf" else ""
        raise InvalidInput(f"{name}: no text found{hint}")
    return ParsedDocument(external_id or name, title, sections, content_type=kind)


def parse_jsonl(data: bytes | str, *, name: str = "") -> Iterator[ParsedDocument]:
    """One document per line ``{"id", "title", "text", "url"?, "tags"?}``; bad lines raise
    (as does a file that is not UTF-8, or a line nested deeper than JSON we read)."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    else:
        text = data
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json_loads(line, what="the line")
        except UnreadableJson as exc:
            raise InvalidInput(f"{name}:{number}: invalid JSON ({exc})") from None
        if not isinstance(row, dict) or not str(row.get("id", "")).strip():
            raise InvalidInput(f"{name}:{number}: each line needs an 'id'")
        if not isinstance(row.get("text", ""), str) or not isinstance(row.get("title", ""), str):
            raise InvalidInput(f"{name}:{number}: 'title' and 'text' must be strings")
        title, sections = parse_markdown(row.get("text", ""), title=row.get("title", ""))
        tags = row.get("tags") or []
        raw_url = str(row.get("url") or "")
        url = http_url(raw_url)
        if raw_url and not url:
            logger.warning("%s:%s: url dropped (only http(s) URLs are kept)", name, number)
        yield ParsedDocument(
            external_id=str(row["id"]),
            title=title,
            sections=sections,
            url=url,
            content_type="jsonl",
            tags=[str(t) for t in tags] if isinstance(tags, list) else [],
        )


# --- Chunking ---------------------------------------------------------------------


def _paragraphs(text: str) -> list[str]:
    parts = [p.strip() for p in re.split(r"\n\s*\n", text)]
    return [re.sub(r"\s+", " ", p) for p in parts if p]


def chunk_document(
    doc: ParsedDocument, *, max_words: int = CHUNK_WORDS, overlap: int = OVERLAP_WORDS
) -> list[ChunkDraft]:
    """A title chunk (when there is a title) then body chunks, section by section.

    Paragraphs are packed up to ``max_words``; an over-long paragraph is cut into windows;
    each new chunk of a section starts with the last ``overlap`` words of the previous one.
    """
    drafts: list[ChunkDraft] = []
    if doc.title.strip():
        drafts.append(ChunkDraft(0, "", doc.title.strip(), kind="title"))
    step = max(1, max_words - overlap)
    for section in doc.sections:
        words_in_section: list[list[str]] = []
        current: list[str] = []
        for paragraph in _paragraphs(section.text):
            words = [
                w if len(w) <= WORD_MAX_CHARS else f"{w[:WORD_MAX_CHARS]}…"
                for w in paragraph.split()
            ]
            if current and len(current) + len(words) > max_words:
                words_in_section.append(current)
                current = current[-overlap:] if overlap else []
            if len(current) + len(words) <= max_words:
                current = current + words
                continue
            combined = current + words
            for start in range(0, len(combined), step):
                window = combined[start : start + max_words]
                if start and len(window) <= overlap:
                    break
                words_in_section.append(window)
            current = words_in_section.pop() if words_in_section else []
        if current:
            words_in_section.append(current)
        for words in words_in_section:
            drafts.append(ChunkDraft(len(drafts), section.heading_path, " ".join(words)))
    return drafts


# --- example phrasings ------------------------------------------------------------------

# An article may list how customers put its question ("Customers ask this as, for example:
# ..."): the words help search find it, but they are no answer to show or send.
EXAMPLE_PHRASINGS = re.compile(r"^\s*(customers|users|people) (ask|phrase|write) this", re.I)
_MENTIONS_PHRASINGS = re.compile(r"\b(customers|users|people) (ask|phrase|write) this", re.I)


def without_example_phrasings(text: str) -> str:
    """``text`` without its example phrasings: from the sentence that opens them to the end
    of its line (they run to the line's end); lines left empty are dropped, so text that is
    nothing but example phrasings comes back empty."""
    lines = []
    for line in text.split("\n"):
        if _MENTIONS_PHRASINGS.search(line) is None:
            lines.append(line)
            continue
        kept = []
        for sentence in sentences_of(line, capitalised=True):
            if EXAMPLE_PHRASINGS.match(sentence):
                break  # the phrasings run to the end of the line
            kept.append(sentence)
        if kept:
            lines.append(" ".join(kept))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
