"""Search snippets show where they cut their passage."""

from __future__ import annotations

import pytest

from knowledge.retrieval import _MARK_END, _MARK_START, framed, highlight_html

PASSAGE = (
    'Open your account. Go to the "Billing" or "Invoices" section and pick the month. '
    "Download the PDF."
)


@pytest.mark.parametrize(
    ("headline", "expected"),
    [
        # a window opening inside the quotation: the cut shows on both sides
        (
            f'Billing" or "Invoices" section and pick the {_MARK_START}month{_MARK_END}',
            '… Billing" or "Invoices" section and pick the month …',
        ),
        ("Open your account. Go to", "Open your account. Go to …"),
        ("Download the PDF.", "… Download the PDF."),
        (PASSAGE, PASSAGE),  # the whole passage: nothing cut
        ("  Open   your account.\nGo to the", "Open your account. Go to the …"),  # spacing
        ("something else", "something else"),  # not from this passage: left alone
        ("", ""),
    ],
)
def test_a_snippet_shows_where_it_cuts_its_passage(headline: str, expected: str) -> None:
    shown = framed(headline, PASSAGE).replace(_MARK_START, "").replace(_MARK_END, "")
    assert " ".join(shown.split()) == expected


def test_the_marks_survive_and_stay_the_only_markup() -> None:
    headline = f'<b>"{_MARK_START}Invoices{_MARK_END}" section'
    html = str(highlight_html(framed(headline, 'Go to the <b>"Invoices" section now.')))
    assert html == "… &lt;b&gt;&quot;<mark>Invoices</mark>&quot; section …"
