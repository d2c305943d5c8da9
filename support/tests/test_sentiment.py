"""The offline sentiment score reads politeness as no mood (support.sentiment)."""

from __future__ import annotations

import pytest

from support.sentiment import sentiment_score


@pytest.mark.parametrize(
    "text",
    [
        "Can you help me get a refund please",  # VADER alone: 0.61
        "I would like a refund.",  # 0.36
        "I'd like to know where my parcel is",
    ],
)
def test_a_polite_request_is_not_a_happy_customer(text):
    assert -0.05 < sentiment_score(text) < 0.05


def test_a_complaint_said_politely_stays_negative():
    # VADER alone: 0.29 (help) and -0.03 (please, help)
    assert sentiment_score("I need help with a refund, I was charged twice!") <= -0.05
    assert sentiment_score("please help me cancel, this is terrible service") <= -0.05


@pytest.mark.parametrize(
    "text", ["I love the new app", "Sorted, thanks", "That was really helpful, great job"]
)
def test_praise_and_thanks_keep_their_weight(text):
    assert sentiment_score(text) >= 0.05


def test_an_empty_text_scores_zero():
    assert sentiment_score("   ") == 0.0
