"""Small talk: what knowledge-base queries and the offline call analysis leave out."""

from __future__ import annotations

import pytest

from support.small_talk import clean, has_content


@pytest.mark.parametrize(
    "sentence",
    [
        "Thank you for calling Example Bank, this is John.",  # an opener and a name
        "How can I help you today?",
        "What can I do for you today?",
        "Hi Sam.",
        "Good morning, Maria!",
        "Thanks, Maria",
        "Hi, this is Jo Smith.",
        "You're welcome. ",
    ],
)
def test_small_talk_says_nothing(sentence):
    assert not has_content(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "Hi, my order is late.",
        "How can I help you with the refund?",
        "Thank you for calling, my card was charged twice.",
        "Hello World Cup tickets?",  # a greeting word, then what the customer asks about
        "I am Locked out of my account",  # not an introduction: words after the "name"
    ],
)
def test_a_sentence_that_greets_and_asks_has_content(sentence):
    assert has_content(sentence)


def test_clean_keeps_only_sentences_with_content():
    text = (
        "Thank you for calling Example Bank, this is John. How can I help you today? "
        "Hi John. I was charged twice."
    )
    assert clean(text) == "I was charged twice."
