"""Hostile or careless input to the knowledge base: uploads and source files that once
answered 500, stopped a whole sync or burnt minutes of CPU. Each case gives a 400 or a
per-file failure with its reason, and the rest of the run goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from knowledge.models import Chunk, Document, KnowledgeSource
from knowledge.readers import read_path
from knowledge.services import documents_ingest, source_get_or_create
from knowledge.tests.conftest import pdf_of
from support.middleware import NUL_PATH_MESSAGE

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_500(supervisor) -> Client:
    """A client that returns a 500 response instead of raising, as a browser sees it."""
    client = Client(raise_request_exception=False)
    client.force_login(supervisor)
    return client


def upload(client: Client, name: str, data: bytes):
    return client.post("/api/kb/documents", {"file": SimpleUploadedFile(name, data)})


def texts(external_id: str) -> list[str]:
    return list(
        Chunk.objects.filter(document__external_id=external_id)
        .order_by("position")
        .values_list("text", flat=True)
    )


@pytest.mark.parametrize(
    ("name", "data", "passage"),
    [
        ("nul.txt", b"Refunds take\x00 five days.", "Refunds take five days."),
        ("nul.md", b"# Refunds\x00\nThey take\x00 five days.", "They take five days."),
        ("utf16.txt", "Refunds take five days.".encode("utf-16"), "Refunds take five days."),
        ("utf8bom.txt", b"\xef\xbb\xbfRefunds take five days.", "Refunds take five days."),
        (
            "nul.jsonl",
            json.dumps(
                {"id": "r\u0000", "title": "Refunds\u0000", "text": "Five\u0000 days."}
            ).encode(),
            "Five days.",
        ),
    ],
)
def test_nul_characters_and_utf16_files_are_read_not_a_500(client_500, name, data, passage):
    response = upload(client_500, name, data)
    assert response.status_code == 201, response.content
    assert response.json()["created"] == 1
    [document] = Document.objects.all()
    assert "\x00" not in document.external_id + document.title
    assert texts(document.external_id)[-1] == passage


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("latin1.jsonl", b'{"id": "a", "title": "caf\xe9", "text": "x"}', "not UTF-8"),
        ("deep.jsonl", b"[" * 100_000 + b"]" * 100_000, "nested more than"),
    ],
)
def test_unreadable_jsonl_uploads_are_a_400(client_500, name, data, message):
    response = upload(client_500, name, data)
    assert response.status_code == 400, response.content
    assert message in response.json()["error"]["message"]
    assert not Document.objects.exists()


def test_an_id_too_long_to_store_is_a_failed_item_and_the_others_are_kept(client_500):
    lines = [
        {"id": "x" * 2000, "title": "Long", "text": "An id of 2000 characters."},
        {"id": "ok", "title": "Fine", "text": "A normal article."},
    ]
    response = upload(client_500, "faq.jsonl", "\n".join(map(json.dumps, lines)).encode())
    assert response.status_code == 400, response.content
    body = response.json()
    assert (body["created"], body["failed"]) == (1, 1)
    assert body["errors"][0]["error"] == "id longer than 1000 characters"
    assert list(Document.objects.values_list("external_id", "status")) == [
        ("faq.jsonl#ok", "active")
    ]


def test_a_bad_jsonl_file_in_a_folder_is_one_failure_not_a_failed_sync(tmp_path: Path):
    (tmp_path / "good.md").write_text("# Returns\nWithin 30 days.")
    (tmp_path / "bad.jsonl").write_bytes(b'{"id": "a", "title": "t", "text": "x"}\nnot json\n')
    (tmp_path / "latin1.jsonl").write_bytes(b'{"id": "b", "title": "caf\xe9", "text": "x"}')
    source = source_get_or_create(name="docs", kind=KnowledgeSource.Kind.FOLDER, path=str(tmp_path))
    counts = documents_ingest(source=source, items=read_path(tmp_path), delete_missing=True)
    assert (counts.created, counts.failed) == (1, 2)
    assert sorted(e["id"] for e in counts.errors) == ["bad.jsonl", "latin1.jsonl"]
    assert "bad.jsonl:2: invalid JSON" in counts.errors[0]["error"]
    assert list(Document.objects.filter(status="active").values_list("external_id", flat=True)) == [
        "good.md"
    ]


def _calls(fn, *args, **kwargs) -> int:
    """How many Python function calls ``fn`` makes: a measure of work that does not
    depend on the machine's speed or load."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.runcall(fn, *args, **kwargs)
    return pstats.Stats(profile).total_calls  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize(
    "shape",
    [
        lambda n: "<h2>x" * n,  # headings left open nest: each held the rest as its text
        lambda n: "<div>" * n + "<p>x</p>" * (n // 10),  # each passage walked every div
    ],
)
def test_html_work_grows_linearly_with_nesting(shape):
    from knowledge.parsing import parse_html

    small, large = _calls(parse_html, shape(1000)), _calls(parse_html, shape(4000))
    assert large < 5 * small, (small, large)  # quadratic: 16 times


def busy_pdf(*, pages: int, operations: int) -> bytes:
    """``pages`` pages sharing one content stream of ``operations`` text operations."""
    import zlib

    stream = zlib.compress(b"BT /F1 12 Tf 72 720 Td (Refunds take five days) Tj ET\n" * operations)
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    return pdf_of(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
            + stream
            + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
        + [
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
            b"/Resources << /Font << /F1 4 0 R >> >> >>"
        ]
        * pages
    )


def test_a_pdf_with_too_much_drawing_work_is_a_failed_file(client_500, monkeypatch):
    from knowledge import parsing

    monkeypatch.setattr(parsing, "PDF_MAX_WORK", 5_000, raising=False)
    ok = upload(client_500, "short.pdf", busy_pdf(pages=1, operations=100))
    assert ok.status_code == 201, ok.content
    response = upload(client_500, "bomb.pdf", busy_pdf(pages=50, operations=200))
    assert response.status_code == 400, response.content
    [error] = response.json()["errors"]
    assert error["error"] == (
        "bomb.pdf: too much to read (over 5000 drawing operations or 20 s of reading)"
    )
    assert Document.objects.get(external_id="bomb.pdf").status == "failed"


def test_a_pdf_over_the_page_limit_is_a_failed_file(client_500, monkeypatch):
    from knowledge import parsing

    monkeypatch.setattr(parsing, "PDF_MAX_PAGES", 3, raising=False)
    response = upload(client_500, "manual.pdf", busy_pdf(pages=4, operations=1))
    assert response.status_code == 400, response.content
    [error] = response.json()["errors"]
    assert error["error"] == "manual.pdf: more than 3 pages"


def test_pypdf_limits_are_a_failed_file_not_a_500(client_500, monkeypatch):
    from pypdf import apply_configuration

    from knowledge import parsing

    # pypdf's own limit on one content stream raises LimitReachedError (no PdfReadError)
    monkeypatch.setattr(parsing, "PDF_STREAM_MAX_WORK", 100, raising=False)
    with apply_configuration(stream_parsing_work_maximum_count=100):
        response = upload(client_500, "dense.pdf", busy_pdf(pages=1, operations=100))
    assert response.status_code == 400, response.content
    [error] = response.json()["errors"]
    assert error["error"].startswith("dense.pdf: unreadable PDF (")


def test_a_pdf_is_read_for_a_bounded_cpu_time(client_500, monkeypatch):
    """Work the operator count does not see (comments pypdf skips byte by byte, again for
    each page and each form drawing) is bounded by the reading's CPU time: past it, a
    failed file (0 s here: every PDF is over it)."""
    from knowledge import parsing

    monkeypatch.setattr(parsing, "PDF_MAX_CPU_SECONDS", 0.0, raising=False)
    response = upload(client_500, "slow.pdf", busy_pdf(pages=2, operations=10))
    assert response.status_code == 400, response.content
    [error] = response.json()["errors"]
    assert (
        error["error"]
        == "slow.pdf: too much to read (over 1000000 drawing operations or 0 s of reading)"
    )


def test_a_pdf_stream_decompresses_to_a_bounded_size(client_500, monkeypatch):
    """A content stream is decompressed to at most ``PDF_STREAM_MAX_BYTES`` (pypdf's own
    default is 75 MB, a 70 MB comment 4.5 s of CPU per reading); over it, a failed file."""
    from knowledge import parsing

    monkeypatch.setattr(parsing, "PDF_STREAM_MAX_BYTES", 1_000, raising=False)
    response = upload(client_500, "big.pdf", busy_pdf(pages=1, operations=100))
    assert response.status_code == 400, response.content
    [error] = response.json()["errors"]
    assert error["error"].startswith("big.pdf: unreadable PDF (Limit reached while decompressing")


_LINEAR_PROBE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_CPU, (20, 20))
sys.path.insert(0, {root!r})
from knowledge.parsing import parse_markdown
for text in (
    "# a" + " " * 20000 + "b",
    "x " + "[a](" * 20000,
    "x " + "![" * 20000,
    "x " + "[" * 40000,
):
    parse_markdown(text, name="a.md")
print("read")
"""


def test_markdown_lines_are_read_in_linear_time():
    """Hostile Markdown lines: a heading of spaces ("# a" + 3,000 spaces + "b" took 30 s of
    CPU, the cube of its length), unclosed link and image openers (quadratic). Each is read
    in a child process allowed 20 s of CPU (killed past it); they take milliseconds now."""
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-c", _LINEAR_PROBE.format(root=root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.strip() == "read", (done.returncode, done.stderr[-500:])


@pytest.mark.parametrize(
    ("line", "heading"),
    [
        ("## Refunds", "Refunds"),
        ("## Refunds ##", "Refunds"),
        ("## Refunds ##   ", "Refunds"),
        ("## Learn C#", "Learn C#"),
        ("##   Spaced   ", "Spaced"),
    ],
)
def test_markdown_headings_keep_their_text(line, heading):
    from knowledge.parsing import parse_markdown

    _, sections = parse_markdown(f"# Title\n{line}\nbody text", name="a.md")
    assert sections[0].heading_path == heading


def test_html_with_more_elements_than_the_limit_is_a_failed_file(client_500, monkeypatch):
    from knowledge import parsing

    monkeypatch.setattr(parsing, "HTML_MAX_TAGS", 1_000, raising=False)
    ok = upload(client_500, "page.html", b"<p>Refunds take five days.</p>" * 1_000)
    assert ok.status_code == 201, ok.content
    response = upload(client_500, "tags.html", b"<b>x" * 1_001)
    assert response.status_code == 400, response.content
    [error] = response.json()["errors"]
    assert error["error"] == "tags.html: more than 1000 HTML elements"


def test_a_folder_file_over_the_size_limit_is_a_failed_item(tmp_path: Path, monkeypatch):
    from knowledge import readers

    monkeypatch.setattr(readers, "SOURCE_FILE_MAX_BYTES", 100, raising=False)
    (tmp_path / "small.md").write_text("# Returns\nWithin 30 days.")
    (tmp_path / "huge.txt").write_text("x " * 100)
    counts = documents_ingest(source=source_get_or_create(name="docs"), items=read_path(tmp_path))
    assert (counts.created, counts.failed) == (1, 1)
    assert counts.errors == [
        {"id": "huge.txt", "error": "huge.txt: larger than 100 bytes (200 bytes)"}
    ]


def test_a_nul_character_in_a_suggestion_id_is_a_400(agent, customer):
    from tickets.services import ticket_create

    ticket = ticket_create(customer=customer, subject="Refund", body="Where is my refund?")
    client = Client(raise_request_exception=False)
    client.force_login(agent)
    response = client.post(
        f"/api/tickets/{ticket.pk}/suggestions/a%00b/feedback",
        {"helpful": True},
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    # refused before URL resolution (support.middleware), as every path with a NUL
    assert response.json()["error"]["message"] == NUL_PATH_MESSAGE


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        # (a zero-byte upload is refused before it is read: test_uploads.py)
        ("blank.md", b"  \n\n\t\n", "blank.md: no text found"),
        (
            "empty.html",
            b"<html><head><title>Hi</title></head><body></body></html>",
            "empty.html: no text found",
        ),
        ("scan.pdf", None, "scan.pdf: no text found (a scanned PDF? only a text layer is read)"),
    ],
)
def test_a_file_without_text_is_a_failed_file_not_an_empty_article(client_500, name, data, message):
    if data is None:
        data = busy_pdf(pages=1, operations=0)  # a page with nothing drawn on it
    response = upload(client_500, name, data)
    assert response.status_code == 400, response.content
    [error] = response.json()["errors"]
    assert error["error"].startswith(message)
    assert list(Document.objects.values_list("external_id", "status")) == [(name, "failed")]
    assert not Chunk.objects.exists()


def test_uploads_go_only_to_upload_sources(client_500, tmp_path: Path):
    (tmp_path / "a.md").write_text("# A\nalpha")
    source_get_or_create(name="docs", kind=KnowledgeSource.Kind.FOLDER, path=str(tmp_path))
    response = client_500.post(
        "/api/kb/documents",
        {"file": SimpleUploadedFile("b.md", b"# B\nbeta"), "source": "docs"},
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["message"] == (
        "source: 'docs' is a folder source, re-read from where it lives; upload to an upload source"
    )
    assert not Document.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "file: faq.jsonl is empty (0 bytes)"),  # test_uploads.py: any empty file
        (b"\n  \n", "file: faq.jsonl holds no documents"),
    ],
)
def test_a_jsonl_upload_without_documents_is_a_400(client_500, data, message):
    response = upload(client_500, "faq.jsonl", data)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["message"] == message


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.txt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "notes.txt: a PNG image"),
        ("guide.md", None, "guide.md: a PDF file, not text (name it .pdf)"),
        ("manual.html", b"PK\x03\x04" + b"\x14\x00" * 300, "manual.html: a ZIP archive"),
        ("blob.txt", bytes(range(256)) * 8, "blob.txt: binary content, not text"),
    ],
)
def test_a_binary_file_under_a_text_name_is_a_failed_file(client_500, name, data, message):
    if data is None:
        data = busy_pdf(pages=1, operations=3)
    response = upload(client_500, name, data)
    assert response.status_code == 400, response.content
    [error] = response.json()["errors"]
    assert error["error"].startswith(message)
    assert not Chunk.objects.exists()


def test_text_with_a_few_odd_bytes_is_still_text(client_500):
    data = b"Refunds take five days \xff\xfe and arrive \x01 on your card. " * 20
    assert upload(client_500, "refunds.txt", data).status_code == 201


def test_an_enormous_line_makes_passages_of_bounded_size(client_500):
    """A pasted base64 blob or a minified line: one "word" of a megabyte became one
    passage of a megabyte, sent whole in every search result and suggestion."""
    blob = "QUJD" * 250_000
    data = f"# {'Very long title ' * 5_000}\nRefunds take five days. {blob} Thanks.\n".encode()
    response = upload(client_500, "pasted.md", data)
    assert response.status_code == 201, response.content
    lengths = [len(t) for t in Chunk.objects.values_list("text", flat=True)]
    assert max(lengths) <= 20_000, lengths
    body = Chunk.objects.get(kind="body").text
    assert body.startswith("Refunds take five days. QUJDQUJD")
    assert body.endswith("… Thanks.")


def test_an_upload_with_more_passages_than_the_limit_is_a_400(client_500, monkeypatch):
    """Uploads are embedded inside the request: ~17 ms of CPU a passage, so 10 MB of
    text (~13,000 passages) held a web thread and both cores for minutes."""
    from knowledge import services

    monkeypatch.setattr(services, "UPLOAD_MAX_CHUNKS", 5, raising=False)
    fits = " ".join(f"word{i}" for i in range(4 * 128))  # title + 4 passages
    assert upload(client_500, "fits.txt", fits.encode()).status_code == 201
    response = upload(client_500, "book.txt", (fits + " more" * 40).encode())
    assert response.status_code == 400, response.content
    assert response.json()["error"]["message"] == (
        "file: book.txt makes 6 passages; an upload takes at most 5 "
        "(they are embedded during the request): load it with kb_ingest or from S3"
    )
    assert list(Document.objects.values_list("external_id", flat=True)) == ["fits.txt"]
