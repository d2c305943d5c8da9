"""Model providers for call analytics: summary, categories, topics, sentiment.

A small interface with a registry, self-contained so the routing app's provider
registry (``AI_PROVIDER``) can later take it over:

* ``local`` (default, offline): an extractive summary (TextRank over TF-IDF sentence
  similarity), categories from a keyword rule classifier, keyword topics (top TF-IDF
  terms), VADER sentiment per segment.
* ``bedrock``: Amazon Bedrock ``converse`` (bedrock-runtime) asked for a JSON answer;
  segment sentiment stays local. The transcript is redacted first (``support.redaction``:
  e-mails, phones, cards, IBANs, addresses, account ids and the caller's names, which
  ``calls.services.call_analyse`` passes in).

Data Automation produces its own analytics (see ``calls.transcription``); it is not a
provider here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from calls.parsers import Segment
from support.aws import aws_client, aws_error
from support.errors import PermanentError
from support.redaction import redact

CATEGORY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "Billing": ("bill", "invoice", "charge", "payment", "refund", "paid", "pay ", "fee", "card"),
    "Tech support": (
        "error",
        "not working",
        "broken",
        "crash",
        "reset",
        "router",
        "install",
        "connect",
        "password",
        "login",
        "log in",
        "app ",
    ),
    "Orders and delivery": (
        "order",
        "delivery",
        "deliver",
        "shipping",
        "package",
        "parcel",
        "tracking",
    ),
    "Cancellation": ("cancel", "close my account", "terminate", "unsubscribe"),
    "Account": ("account", "address", "profile", "email address", "update my"),
    "Complaint": ("complain", "complaint", "unacceptable", "frustrat", "angry", "disappoint"),
}
DEFAULT_CATEGORY = "General enquiry"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Analysis:
    summary: str
    categories: list[str]
    topics: list[str]
    sentiment: str
    sentiment_score: float | None
    segment_sentiments: list[str] = field(default_factory=list)
    bedrock_status: str = ""


class AnalyticsProvider(Protocol):
    name: str

    def analyse(
        self, *, text: str, segments: Sequence[Segment], names: Sequence[str] = ()
    ) -> Analysis:
        """``names``: the caller's names, for providers that send the text off-machine."""
        ...


# --- shared local pieces -----------------------------------------------------------------


@lru_cache(maxsize=1)
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment_label(score: float) -> str:
    if score >= 0.05:
        return "POSITIVE"
    if score <= -0.05:
        return "NEGATIVE"
    return "NEUTRAL"


def segment_sentiments(segments: Sequence[Segment]) -> tuple[list[str], str, float | None]:
    """Per-segment labels and the overall (customer turns when labelled, else all)."""
    analyzer = _vader()
    scores = [float(analyzer.polarity_scores(s.text)["compound"]) for s in segments]
    labels = [sentiment_label(x) for x in scores]
    customer = [x for s, x in zip(segments, scores, strict=True) if s.speaker == "Customer"]
    pool = customer or scores
    if not pool:
        return labels, "", None
    overall = round(float(np.mean(pool)), 4)
    return labels, sentiment_label(overall), overall


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if len(s.strip().split()) >= 3]


def classify_categories(text: str) -> list[str]:
    lowered = f" {text.lower()} "
    hits = [(sum(lowered.count(k) for k in keys), name) for name, keys in CATEGORY_KEYWORDS.items()]
    found = [name for count, name in sorted(hits, key=lambda h: -h[0]) if count > 0]
    return found[:3] or [DEFAULT_CATEGORY]


def textrank_summary_and_topics(sentences: list[str], *, k: int = 2) -> tuple[str, list[str]]:
    """TextRank: PageRank over the cosine-similarity graph of TF-IDF sentence vectors."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not sentences:
        return "", []
    try:
        vectorizer = TfidfVectorizer(stop_words="english", ngram_range=(1, 2), sublinear_tf=True)
        matrix = vectorizer.fit_transform(sentences)
    except ValueError:  # only stop words
        return " ".join(sentences[:k]), []
    sim = (matrix @ matrix.T).toarray()
    np.fill_diagonal(sim, 0.0)
    rows = sim.sum(axis=1, keepdims=True)
    rows[rows == 0] = 1.0
    transition = sim / rows
    n = len(sentences)
    rank = np.full(n, 1.0 / n)
    for _ in range(30):
        rank = 0.15 / n + 0.85 * transition.T @ rank
    chosen = sorted(np.argsort(-rank)[:k].tolist())
    summary = " ".join(sentences[i] for i in chosen)
    weights = np.asarray(matrix.sum(axis=0)).ravel()
    terms = vectorizer.get_feature_names_out()
    topics: list[str] = []
    for idx in np.argsort(-weights):
        term = str(terms[idx])
        if any(term in t or t in term for t in topics):
            continue
        topics.append(term)
        if len(topics) == 5:
            break
    return summary, topics


class LocalProvider:
    """Offline and deterministic; downloads nothing."""

    name = "local"

    def analyse(
        self, *, text: str, segments: Sequence[Segment], names: Sequence[str] = ()
    ) -> Analysis:
        body = " ".join(s.text for s in segments) if segments else text
        sentences = split_sentences(body)
        summary, topics = textrank_summary_and_topics(sentences, k=3 if len(sentences) > 12 else 2)
        labels, overall, score = segment_sentiments(segments)
        return Analysis(
            summary=summary,
            categories=classify_categories(body),
            topics=topics,
            sentiment=overall,
            sentiment_score=score,
            segment_sentiments=labels,
        )


# --- Bedrock --------------------------------------------------------------------------------

PROMPT = (
    "You analyse customer-support phone calls. Answer ONLY with a JSON object with keys "
    '"summary" (2-3 sentences), "categories" (1-3 of: {categories}), '
    '"topics" (up to 5 short noun phrases).\n\nTranscript:\n{transcript}'
)


def bedrock_runtime_client() -> Any:
    # A generation call can take a minute (AWS_BEDROCK_READ_TIMEOUT); one attempt, because
    # call_analyse_task retries with backoff and two 60 s attempts would outlast its limit.
    return aws_client(
        "bedrock-runtime", read_timeout=settings.AWS_BEDROCK_READ_TIMEOUT, max_attempts=1
    )


def _first_json_object(text: str) -> dict[str, Any]:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise PermanentError("The model answered without a JSON object.")
    try:
        data = json.loads(text[start : end + 1])
    except ValueError as exc:
        raise PermanentError(f"The model's JSON is invalid: {exc}") from exc
    if not isinstance(data, dict):
        raise PermanentError("The model's JSON is not an object.")
    return data


class BedrockProvider:
    name = "bedrock"

    def __init__(self, client: Any = None, model_id: str | None = None) -> None:
        self._client = client
        self.model_id = model_id or settings.CALLS_BEDROCK_MODEL_ID

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = bedrock_runtime_client()
        return self._client

    def analyse(
        self, *, text: str, segments: Sequence[Segment], names: Sequence[str] = ()
    ) -> Analysis:
        transcript = "\n".join(f"{s.speaker}: {s.text}" for s in segments) or text
        # The one place call text leaves the machine: redacted here, whoever calls.
        prompt = PROMPT.format(
            categories=", ".join([*CATEGORY_KEYWORDS, DEFAULT_CATEGORY]),
            transcript=redact(transcript, names=names),
        )
        try:
            response = self.client.converse(
                modelId=self.model_id,
                messages=[{"role": "user", "content": [{"text": prompt}]}],
                inferenceConfig={"maxTokens": 800, "temperature": 0.0},
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, context="Bedrock call analysis") from exc
        blocks = response.get("output", {}).get("message", {}).get("content", [])
        answer = "".join(str(b.get("text", "")) for b in blocks)
        data = _first_json_object(answer)
        labels, overall, score = segment_sentiments(segments)
        return Analysis(
            summary=str(data.get("summary") or ""),
            categories=[str(c) for c in data.get("categories") or []][:3],
            topics=[str(t) for t in data.get("topics") or []][:5],
            sentiment=overall,
            sentiment_score=score,
            segment_sentiments=labels,
            bedrock_status=str(response.get("stopReason") or "end_turn"),
        )


PROVIDERS: dict[str, Callable[[], AnalyticsProvider]] = {
    "local": LocalProvider,
    "bedrock": BedrockProvider,
}


def provider_name() -> str:
    """``CALLS_AI_PROVIDER`` if set, else the shared ``AI_PROVIDER`` when we know it."""
    name = settings.CALLS_AI_PROVIDER or settings.AI_PROVIDER
    return name if name in PROVIDERS else "local"


def get_provider(name: str | None = None) -> AnalyticsProvider:
    key = name or provider_name()
    try:
        return PROVIDERS[key]()
    except KeyError:
        raise PermanentError(f"Unknown analytics provider {key!r}.") from None
