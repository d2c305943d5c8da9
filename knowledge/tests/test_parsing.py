from __future__ import annotations

import pytest

from knowledge.parsing import (
    ParsedDocument,
    Section,
    chunk_document,
    parse_file,
    parse_jsonl,
)
from knowledge.tests.conftest import make_pdf
from support.errors import InvalidInput


def test_markdown_headings_become_section_paths():
    text = (
        "---\ntitle: Returns policy\n---\n# Ignored H1\nIntro line.\n\n"
        "## Refunds\nMoney back in **5 days**. See [the form](https://x.test/f).\n"
        "### Exceptions\n- Gift cards\n## Exchanges\nSwap sizes freely.\n"
        "```\n# not a heading\n```\n"
    )
    doc = parse_file("docs/returns.md", text.encode())
    assert doc.title == "Returns policy"
    assert doc.content_type == "markdown"
    assert [s.heading_path for s in doc.sections] == [
        "Ignored H1",
        "Ignored H1 > Refunds",
        "Ignored H1 > Refunds > Exceptions",
        "Ignored H1 > Exchanges",
    ]
    assert doc.sections[1].text == "Money back in 5 days. See the form (https://x.test/f)."
    assert doc.sections[2].text == "Gift cards"
    assert doc.sections[3].text == "Swap sizes freely.\n# not a heading"


def test_markdown_title_from_first_h1_else_file_name():
    assert parse_file("a.md", b"# Shipping\nFast.").title == "Shipping"
    assert parse_file("shipping_times.md", b"Fast.").title == "Shipping times"


def test_html_drops_scripts_and_follows_headings():
    html = (
        "<html><head><title>Password reset</title><script>var x=1;</script></head><body>"
        "<nav>Home | Help</nav><h1>Password reset</h1><p>Use the <b>Forgot</b> link.</p>"
        "<h2>No email?</h2><ul><li>Check spam</li><li>Wait 5 minutes</li></ul></body></html>"
    )
    doc = parse_file("reset.html", html.encode())
    assert doc.title == "Password reset"
    assert doc.sections == [
        Section("", "Use the Forgot link."),
        Section("No email?", "Check spam\nWait 5 minutes"),
    ]


def test_plain_text():
    doc = parse_file("notes/opening_hours.txt", b"We open at 9.\n\nWe close at 5.")
    assert (doc.title, doc.sections) == (
        "Opening hours",
        [Section("", "We open at 9.\n\nWe close at 5.")],
    )


def test_pdf_pages_become_sections():
    doc = parse_file("guide.pdf", make_pdf("Warranty lasts two years"))
    assert doc.title == "Guide"
    assert doc.sections == [Section("Page 1", "Warranty lasts two years")]


def test_broken_pdf_is_invalid_input():
    with pytest.raises(InvalidInput, match=r"guide.pdf: unreadable PDF"):
        parse_file("guide.pdf", b"%PDF-1.4 garbage")


def test_unsupported_file_type():
    with pytest.raises(InvalidInput, match="unsupported"):
        parse_file("image.png", b"\x89PNG")


def test_jsonl_lines():
    data = (
        '{"id": "q1", "title": "Reset password", "text": "Click Forgot.", '
        '"url": "https://help.test/q1", "tags": ["account"]}\n\n'
        '{"id": 2, "title": "Delete account", "text": "Go to settings."}\n'
    )
    docs = list(parse_jsonl(data, name="faq.jsonl"))
    assert [(d.external_id, d.title, d.url, d.tags) for d in docs] == [
        ("q1", "Reset password", "https://help.test/q1", ["account"]),
        ("2", "Delete account", "", []),
    ]
    assert docs[1].sections == [Section("", "Go to settings.")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "faq.jsonl:1: invalid JSON"),
        ('{"title": "x"}', "faq.jsonl:1: each line needs an 'id'"),
        ('{"id": "a", "text": 5}', "must be strings"),
    ],
)
def test_jsonl_bad_lines(line, message):
    with pytest.raises(InvalidInput, match=message):
        list(parse_jsonl(line, name="faq.jsonl"))


def test_chunks_overlap_within_a_section_and_start_with_a_title_chunk():
    words = [f"w{i}" for i in range(300)]
    doc = ParsedDocument(
        "x",
        "Title",
        [Section("A", " ".join(words)), Section("B", "short one")],
    )
    chunks = chunk_document(doc, max_words=100, overlap=20)
    assert [(c.position, c.kind, c.heading_path) for c in chunks] == [
        (0, "title", ""),
        (1, "body", "A"),
        (2, "body", "A"),
        (3, "body", "A"),
        (4, "body", "A"),
        (5, "body", "B"),
    ]
    first, second = chunks[1].text.split(), chunks[2].text.split()
    assert len(first) == 100
    assert second[:20] == first[-20:]
    covered = {w for c in chunks[1:5] for w in c.text.split()}
    assert covered == set(words)
    assert chunks[5].text == "short one"


def test_paragraphs_are_packed_until_the_limit():
    paragraphs = "\n\n".join(" ".join(f"p{p}w{i}" for i in range(30)) for p in range(5))
    doc = ParsedDocument("x", "", [Section("", paragraphs)])
    chunks = chunk_document(doc, max_words=100, overlap=10)
    assert [len(c.text.split()) for c in chunks] == [90, 70]
    assert chunks[1].text.split()[:10] == chunks[0].text.split()[-10:]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Track it under My orders.\n\nCustomers ask this as, for example: wheres my parcel",
            "Track it under My orders.",
        ),
        (
            "Track it under My orders. Users phrase this as: where is it; not here",
            "Track it under My orders.",
        ),
        ("People write this as: refund pls; money back", ""),
        (
            "Most customers ask this as their first question. Track it under My orders.",
            "Most customers ask this as their first question. Track it under My orders.",
        ),
        ("1. Log in.\n2. Open My orders.", "1. Log in.\n2. Open My orders."),
    ],
)
def test_example_phrasings_are_left_out_of_the_answer(text, expected):
    from knowledge.parsing import without_example_phrasings

    assert without_example_phrasings(text) == expected
