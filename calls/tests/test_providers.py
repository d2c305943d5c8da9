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


def test_categories_default_and_multi():
    assert providers.classify_categories("hello there") == ["General enquiry"]
    assert providers.classify_categories("I want to cancel, my order delivery never came") == [
        "Orders and delivery",
        "Cancellation",
    ]


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
    assert (analysis.summary, analysis.categories) == ("", ["General enquiry"])
