"""The local analytics provider and the parsers it is fed by."""

from __future__ import annotations

import pytest

from calls.analytics import providers
from calls.parsers import RecordError, Segment, parse_result, parse_transcribe
from calls.tests.conftest import load
from support.errors import PermanentError


def test_local_provider_on_transcribe_result():
    result = parse_transcribe(load("transcribe_billing.json"))
    analysis = providers.LocalProvider().analyse(text=result.text, segments=result.segments)
    assert analysis.categories[0] == "Billing"
    sentences = providers.split_sentences(" ".join(s.text for s in result.segments))
    chosen = [s for s in sentences if s in analysis.summary]
    assert len(chosen) == 2  # extractive: two whole sentences of the call
    assert analysis.topics
    assert len(analysis.segment_sentiments) == 4
    assert analysis.sentiment == "POSITIVE"


def test_categories_none_and_multi():
    assert providers.classify_categories("hello there") == []
    assert providers.classify_categories("I want to cancel, my order delivery never came") == [
        "Orders and delivery",
        "Cancellation",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # "fee" was counted inside feel, feedback and coffee; "charge" inside charger
        ("I feel like nobody listens, my internet keeps dropping", ["Tech support"]),
        ("My phone charger stopped working", ["Tech support"]),
        ("I spilled coffee on it, here is my feedback", []),
        # "order" inside "in order to" / "in order"
        ("I called in order to ask about the router", ["Tech support"]),
        ("They charged me twice and I want a refund of the fees", ["Billing"]),
        ("Where are my orders? The parcel was shipped last week", ["Orders and delivery"]),
    ],
)
def test_categories_match_whole_words_only(text, expected):
    assert providers.classify_categories(text) == expected


def test_local_analysis_says_its_categories_are_the_rules(monkeypatch):
    billing = [Segment("Customer", 0, 1, "I was charged twice for my bill.")]
    analysis = providers.LocalProvider().analyse(text="", segments=billing)
    assert (analysis.categories, analysis.categories_by) == (["Billing"], "rules")


def test_items_only_transcribe_output_groups_turns():
    doc = load("transcribe_billing.json")
    del doc["results"]["audio_segments"]
    result = parse_transcribe(doc)
    assert [(s.speaker, s.text) for s in result.segments] == [("Agent", "Thank you.")]


def test_parse_result_rejects_unknown_documents():
    with pytest.raises(RecordError, match=r"results\.transcripts is missing"):
        parse_result({"results": {}})


def test_registry():
    assert isinstance(providers.get_provider("local"), providers.LocalProvider)
    with pytest.raises(PermanentError):
        providers.get_provider("nope")


def test_provider_falls_back_to_local_for_unknown_shared_setting(settings):
    settings.CALLS_AI_PROVIDER = ""
    settings.AI_PROVIDER = "some-routing-only-provider"
    assert providers.provider_name() == "local"
    settings.AI_PROVIDER = "bedrock"
    assert providers.provider_name() == "bedrock"


def test_empty_segments():
    analysis = providers.LocalProvider().analyse(text="", segments=[Segment("Agent", 0, 1, "ok")])
    assert (analysis.summary, analysis.categories, analysis.categories_by) == ("", [], "")


@pytest.mark.parametrize("labelled", [True, False])
def test_local_summary_opens_with_why_the_customer_called(labelled):
    """The opener ("Thank you for calling Example Bank, this is John.") and the thanks are
    no summary and no topic; the summary opens with the customer's reason, with or without
    speaker names (a Transcribe job without speaker identification)."""
    result = parse_transcribe(load("transcribe_billing.json"))
    segments = [
        s if labelled else Segment(speaker="Speaker", start=s.start, end=s.end, text=s.text)
        for s in result.segments
    ]
    analysis = providers.LocalProvider().analyse(text=result.text, segments=segments)
    assert analysis.summary.startswith(
        "I was charged twice for my monthly card fee on my last bill and I would like a refund."
    )
    assert "calling" not in analysis.summary
    assert "refund" in analysis.topics
    small_talk = {"thank", "help", "today", "sorry", "calling", "help today", "great"}
    assert not small_talk & set(analysis.topics)


def test_call_reason_without_an_opening_question():
    sentences = ["My router keeps dropping the connection.", "Let me check that for you."]
    assert providers.call_reason([], sentences) == "My router keeps dropping the connection."
    assert providers.call_reason([], ["Thank you for calling.", "Goodbye now."]) == ""
