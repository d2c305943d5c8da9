"""Sentences for the pieces that quote them back (reply drafts, call summaries)."""

from __future__ import annotations

import pytest

from support.text import readable_duration, sentences_of, words


def test_a_title_or_an_initial_does_not_end_a_sentence() -> None:
    text = (
        "To locate your invoices from Ms. Hawkings, please sign in. Dr. J. Smith (e.g. the "
        "surgeon) called at No. 5 St. Mary's Road! Was it Mr. Jones? Yes."
    )
    assert sentences_of(text) == [
        "To locate your invoices from Ms. Hawkings, please sign in.",
        "Dr. J. Smith (e.g. the surgeon) called at No. 5 St. Mary's Road!",
        "Was it Mr. Jones?",
        "Yes.",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It ships today. then it arrives.", ["It ships today. then it arrives."]),
        ("It ships today. Then it arrives.", ["It ships today.", "Then it arrives."]),
        ('Done. "Thanks" she said.', ["Done.", '"Thanks" she said.']),
        ("Call 555 0100.  2 agents answer.", ["Call 555 0100.", "2 agents answer."]),
    ],
)
def test_capitalised_cuts_only_before_a_sentence_start(text: str, expected: list[str]) -> None:
    assert sentences_of(text, capitalised=True) == expected


def test_without_capitalised_any_full_stop_and_space_cuts() -> None:
    assert sentences_of("it ships today. then it arrives. ") == [
        "it ships today.",
        "then it arrives.",
    ]


def test_empty_and_blank_text_have_no_sentence() -> None:
    assert sentences_of("") == []
    assert sentences_of("  \n ") == []


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("INBOUND", "Inbound"),
        ("QUEUE_TRANSFER", "Queue transfer"),
        ("data_automation", "Data automation"),
        ("AfterContactWork", "After contact work"),
        ("Available", "Available"),
        ("NEUTRAL", "Neutral"),
        ("", ""),
        (None, ""),
    ],
)
def test_words_turns_a_code_into_words(code: object, expected: str) -> None:
    assert words(code) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0 s"),
        (45, "45 s"),
        (59.9, "59 s"),
        (60, "1 min 00 s"),
        (252, "4 min 12 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h 00 min"),
        (3780, "1 h 03 min"),
        (3839, "1 h 03 min"),
        (93780, "26 h 03 min"),
        (None, ""),
        (-5, ""),
        ("", ""),
        ("252", "4 min 12 s"),
        ("soon", ""),
        (float("inf"), ""),
        (float("nan"), ""),
    ],
)
def test_readable_duration(seconds: object, expected: str) -> None:
    assert readable_duration(seconds) == expected
