from __future__ import annotations

import numpy as np

from routing.label_words import LabelWords, content_words


def test_content_words_drop_stop_words_greetings_case_and_single_letters():
    assert content_words("Hi, please tell me: how do I TRACK my refund? x") == {
        "tell",
        "track",
        "refund",
    }
    assert content_words("Où est ma commande n° 42") == {"où", "est", "ma", "commande", "42"}
    assert content_words("hello, thanks!") == set()


def test_label_cover_and_unknown_share():
    words = LabelWords(
        [
            "get my invoice",
            "download the invoice",
            "where is my invoice",
            "refund my money",
            "I want a refund of my money",
        ],
        [0, 0, 0, 1, 1],
        2,
    )
    got = words.features(
        [
            "download my invoice",  # every word in label 0's rows
            "check my invoice",  # "check": no trained row uses it
            "refund my invoice",  # "refund" is label 1's, not label 0's
            "hello thanks",  # nothing to judge: covered and known
        ],
        [0, 0, 0, 1],
    )
    np.testing.assert_allclose(got[:, 0], [1.0, 0.5, 0.5, 1.0])
    # "download" is in one training row only: not yet a known word
    np.testing.assert_allclose(got[:, 1], [0.5, 0.5, 0.0, 0.0])
