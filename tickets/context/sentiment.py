"""Sentiment of customer messages behind a small interface with a registry.

``vader`` (default) runs offline with VADER's lexicon (shipped inside the
``vaderSentiment`` wheel); ``comprehend`` calls Amazon Comprehend ``DetectSentiment``.
``sentiment_analyse`` is the one way text reaches an analyser, and it redacts the text
first (``support.redaction``, with the customer's names) for every analyser that does not
declare ``sends_text = False`` (a local one, like VADER): an analyser that says nothing is
taken to send text off the machine.
Scores are on one scale, -1 (negative) … 1 (positive), so the churn score does not care
which analyser produced them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from support.aws import aws_client, aws_error
from support.errors import PermanentError
from support.redaction import redacted_for_provider
from support.sentiment import sentiment_score

# VADER's own recommended thresholds on the compound score.
POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05
# Comprehend's DetectSentiment accepts at most 5,000 bytes of UTF-8.
COMPREHEND_MAX_BYTES = 5000
# What is redacted before that cut (``support.redaction.redacted_for_provider``): every
# character is at least one byte, and four times the bytes leaves room for placeholders
# shorter than what they replace.
REDACTED_MAX_CHARS = 4 * COMPREHEND_MAX_BYTES


@dataclass(frozen=True)
class Sentiment:
    score: float
    label: str  # positive | neutral | negative | mixed


class SentimentAnalyser(Protocol):
    name: str
    # False only for an analyser that runs in this process: everything else gets the
    # text redacted by ``sentiment_analyse``.
    sends_text: bool

    def analyse(self, text: str) -> Sentiment: ...


def label_for_score(score: float) -> str:
    if score >= POSITIVE_THRESHOLD:
        return "positive"
    if score <= NEGATIVE_THRESHOLD:
        return "negative"
    return "neutral"


class VaderAnalyser:
    name = "vader"
    sends_text = False

    def analyse(self, text: str) -> Sentiment:
        score = sentiment_score(text)  # one VADER per process, politeness aside
        return Sentiment(round(score, 4), label_for_score(score))


class ComprehendAnalyser:
    """Amazon Comprehend; ``score`` = Positive − Negative, label from ``Sentiment``."""

    name = "comprehend"
    sends_text = True

    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            timeout = settings.CONTEXT_AWS_TIMEOUT
            self._client = aws_client("comprehend", connect_timeout=timeout, read_timeout=timeout)
        return self._client

    def analyse(self, text: str) -> Sentiment:
        """``text`` as ``sentiment_analyse`` gives it: already redacted."""
        text = text.strip()
        if not text:
            return Sentiment(0.0, "neutral")
        clipped = text.encode()[:COMPREHEND_MAX_BYTES].decode(errors="ignore")
        try:
            response = self.client.detect_sentiment(
                Text=clipped, LanguageCode=settings.SENTIMENT_LANGUAGE
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, context="Comprehend") from exc
        scores = response["SentimentScore"]
        score = round(float(scores["Positive"]) - float(scores["Negative"]), 4)
        return Sentiment(score, str(response["Sentiment"]).lower())


_registry: dict[str, Callable[[], SentimentAnalyser]] = {
    "vader": VaderAnalyser,
    "comprehend": ComprehendAnalyser,
}


def register_analyser(name: str, factory: Callable[[], SentimentAnalyser]) -> None:
    _registry[name] = factory
    _analyser.cache_clear()


def get_analyser(name: str | None = None) -> SentimentAnalyser:
    """The configured analyser (``SENTIMENT_BACKEND``), built once per process."""
    return _analyser(name or settings.SENTIMENT_BACKEND)


def reset_analysers() -> None:
    _analyser.cache_clear()


@lru_cache(maxsize=4)
def _analyser(key: str) -> SentimentAnalyser:
    try:
        factory = _registry[key]
    except KeyError:
        raise PermanentError(
            f"SENTIMENT_BACKEND={key!r} is unknown; use one of {sorted(_registry)}"
        ) from None
    return factory()


def sentiment_analyse(text: str, *, customer_id: int | None) -> Sentiment:
    """Score ``text``: the one way text reaches an analyser. For any analyser but a local
    one (``sends_text = False``; an analyser that does not say is taken to send text off
    the machine) the text is redacted here first, with the names of the customer it is
    about. ``customer_id`` is required (``None`` only for text about no customer) so that
    no caller forgets it."""
    analyser = get_analyser()
    if not getattr(analyser, "sends_text", True):
        return analyser.analyse(text)
    names: Sequence[str] = ()
    if customer_id is not None:
        from tickets.context.privacy import customer_redaction_names

        names = customer_redaction_names(customer_id)
    return analyser.analyse(redacted_for_provider(text, limit=REDACTED_MAX_CHARS, names=names))
