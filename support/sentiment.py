"""The offline sentiment score: VADER (``vaderSentiment``, lexicon and rules inside the
wheel, nothing downloaded), read the way customer-support text needs.

One analyser per process serves routing's priority (``routing.tools.sentiment``), the
customer context (``tickets.context.sentiment.VaderAnalyser``) and call analytics
(``calls.analytics.providers.segment_sentiments``).

VADER scores the politeness every support message carries as positive: "Can you help me
get a refund please" scored 0.61, "I would like a refund" 0.36, and a third of Bitext's
complaints ("I want to file a complaint, please help") read as positive. The words of
``POLITENESS`` carry no sentiment here (out of the lexicon): asking for help, saying
please, "would like" say nothing about the customer's mood; praise ("great", "helpful",
"love"), thanks ("Sorted, thanks" closing a conversation, a CSAT comment) and complaint
words keep their weight. Figures:
``bench/sentiment_support.py`` ([benchmarks](../docs/benchmarks.md)).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

#: Words whose VADER valence is politeness in support text, not mood.
POLITENESS = frozenset(
    {
        "help",
        "helps",
        "helping",
        "please",
        "kindly",
        "appreciate",
        "welcome",
        "hope",
        "hoping",
        "sure",
        "ok",
        "okay",
        "like",
    }
)
MAX_CHARS = 10_000  # a longer text is scored on its start (VADER's cost grows with length)


@lru_cache(maxsize=1)
def _analyser() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyser = SentimentIntensityAnalyzer()
    for word in POLITENESS:
        analyser.lexicon.pop(word, None)  # this instance's own copy of the lexicon
    return analyser


def sentiment_score(text: str) -> float:
    """VADER's compound score in [-1, 1] (0.0 for an empty text), politeness aside."""
    text = text.strip()[:MAX_CHARS]
    if not text:
        return 0.0
    return float(_analyser().polarity_scores(text)["compound"])
