"""Text cut to a length before it goes to a model provider (``support.redaction.truncate``,
``redacted_for_provider``): never in the middle of a word or of a personal detail, as the
remains of a detail cut in two are no longer recognised by the redaction."""

from __future__ import annotations

import pytest

from support.redaction import redact, redacted_for_provider, truncate

FILLER = "My parcel never arrived please help. " * 200


def _with_detail_at(limit: int, detail: str, before: int) -> str:
    """Filler, then ``detail`` starting ``before`` characters before ``limit``."""
    head = FILLER[: limit - before - 1].rstrip()
    return f"{head} {detail} thanks"


@pytest.mark.parametrize(
    ("detail", "before"),
    [
        ("zq1815.home@example.com", 12),  # an e-mail address cut inside
        ("GB82 WEST 1234 5698 7654 32", 17),  # an IBAN in groups, cut between groups
        ("4111 1111 1111 1111", 12),  # a card in groups
        ("+44 20 7946 0958", 8),  # a phone number
        ("12 Baker Street, London NW1 6XE", 10),  # an address
    ],
)
def test_a_detail_the_cut_would_split_is_left_out_whole(detail, before):
    text = _with_detail_at(4000, detail, before)
    cut = truncate(text, 4000)
    assert len(cut) <= 4000
    assert text.startswith(cut)
    head = FILLER[: 4000 - before - 1].rstrip()
    assert cut == head  # nothing of the detail (before: its first part was kept)
    # and what a provider then gets holds no part of it
    assert redact(cut) == head


def test_normal_text_is_cut_at_a_words_end():
    text = "refund " * 1000
    cut = truncate(text, 4000)
    assert cut == ("refund " * 571).rstrip()  # 571 whole words, not "ref" of the 572nd
    assert truncate("short text", 4000) == "short text"
    assert truncate("Hello, I need help with my refund", 20) == "Hello, I need help"
    # a word ending exactly at the limit is kept
    assert truncate("abcd efgh ijkl", 9) == "abcd efgh"


def test_a_detail_before_the_cut_is_kept_for_the_redaction():
    text = "mail me at zq1815.home@example.com please " + "x " * 100
    assert truncate(text, 60) == "mail me at zq1815.home@example.com please x x x x x x x x x"
    assert redact(truncate(text, 60)).startswith("mail me at [EMAIL] please")


def test_text_without_spaces_is_cut_at_the_limit_unless_a_detail_is_there():
    chinese = "我的包裹没有到达请帮忙" * 50
    assert truncate(chinese, 100) == chinese[:100]
    cut = truncate(chinese[:90] + "zq1815.home@example.com" + chinese, 100)
    assert "@" not in cut
    assert "zq1815" not in cut


def test_redacted_for_provider_reads_only_the_start_and_redacts_it():
    text = _with_detail_at(20_000, "GB82 WEST 1234 5698 7654 32", 17) + " x" * 500_000
    out = redacted_for_provider(text, limit=20_000, names=("Sean O'Brien",))
    assert "GB82" not in out
    assert "WEST" not in out
    assert len(out) <= 20_000
    assert redacted_for_provider("  Sean here  ", limit=100, names=("Sean",)) == "[NAME] here"
