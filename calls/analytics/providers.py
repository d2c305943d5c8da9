"""Model providers for call analytics: summary, categories, topics, sentiment.

A small interface with a registry keyed like routing's (``CALLS_AI_PROVIDER``, else
``AI_PROVIDER``):

* ``local`` (default, offline): an extractive summary (TextRank over TF-IDF sentence
  similarity), categories from a keyword rule classifier, keyword topics (top TF-IDF
  terms), VADER sentiment per segment.
* ``bedrock`` / ``openai``: the model from routing's shared provider factory
  (``routing.providers.models.strands_model("summary", name)``: Bedrock with
  ``ROUTING_BEDROCK_SUMMARY_MODEL_ID``, or an OpenAI-compatible server) in a Strands agent
  with a structured answer, wrapped in ``RedactingModel`` with the caller's names (which
  ``calls.services.call_analyse`` passes in), so the transcript leaves redacted exactly as
  routing's tickets do. Failures are handled like routing's: throttling, 5xx, timeouts and
  invalid answers are retried (``ROUTING_BEDROCK_MAX_ATTEMPTS``, backoff), then (or at
  once for an auth or permanent error) the local provider analyses and the analysis
  records the fallback; a programming error is logged with its traceback and counted
  (``support.fallback``). Segment sentiment stays local.

Data Automation produces its own analytics (see ``calls.transcription``); it is not a
provider here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from django.conf import settings
from pydantic import BaseModel, Field

from calls.models import CategoriesBy
from calls.parsers import Segment
from support.errors import PermanentError
from support.fallback import provider_error_summary, provider_failure
from support.prompt_data import DATA_RULE, data_fence
from support.sentiment import sentiment_score
from support.small_talk import STOPWORDS, has_content
from support.text import sentences_of

# Whole words only, with their usual inflections: plain substring counts put "I feel like
# nobody listens" (fee), "feedback", "coffee", "my phone charger" (charge) and "in order
# to" (order) under Billing or Orders.
CATEGORY_PATTERNS: dict[str, tuple[str, ...]] = {
    "Billing": (
        r"bill(?:s|ed|ing)?",
        r"invoice[sd]?",
        r"charg(?:e|es|ed)",
        r"pay(?:s|ing|ment|ments)?",
        r"paid",
        r"refund(?:s|ed|ing)?",
        r"fees?",
        r"(?:credit|debit|bank) cards?",
    ),
    "Tech support": (
        r"errors?",
        r"not working",
        r"(?:stopped|isn't|is not|doesn't|does not|won't) work(?:ing)?",
        r"broken",
        r"crash(?:es|ed|ing)?",
        r"reset(?:s|ting)?",
        r"routers?",
        r"install(?:s|ed|ing|ation)?",
        r"(?:dis)?connect(?:s|ed|ing|ion|ions)?",
        r"passwords?",
        r"log(?:ging)? ?in",
        r"logins?",
        r"apps?",
        r"internet",
        r"wi-?fi",
    ),
    "Orders and delivery": (
        r"(?<!\bin )order(?:s|ed|ing)?(?! to\b)",
        r"deliver(?:s|ed|ing|y)?",
        r"deliveries",
        r"ship(?:s|ped|ping|ment|ments)?",
        r"packages?",
        r"parcels?",
        r"tracking",
    ),
    "Cancellation": (
        r"cancel(?:s|led|ling|ed|ing|lation|lations)?",
        r"close my account",
        r"terminat(?:e|ed|ion)",
        r"unsubscrib(?:e|ed|ing)",
    ),
    "Account": (r"accounts?", r"address(?:es)?", r"profiles?", r"update my"),
    "Complaint": (
        r"complain(?:s|ed|ing|t|ts)?",
        r"unacceptable",
        r"frustrat\w*",
        r"angry",
        r"disappoint\w*",
    ),
    # Seed 003's example is ["Billing", "Customer service"]: calls about reaching or being
    # served by people (asking for a human or a manager, the customer-service line, hold
    # times, a rude or unhelpful agent). The caller's words, not the agent's: agents say
    # "our customer support team is available …" in calls of every kind (3 in 10 of
    # Bitext's answers), so "customer service" counts only after a verb of reaching it,
    # or as "your customer service", never after "for calling" (an opener).
    "Customer service": (
        r"(?<!for )(?:contact(?:ing)?|call(?:ing)?|reach(?:ing)?|phon(?:e|ing)|ring(?:ing)?"
        r"|get(?:ting)? (?:in touch with|through to|hold of)|(?:speak|talk|chat)(?:ing)? "
        r"(?:to|with)) (?:the |a )?customer (?:service|care|support)",
        r"your customer (?:service|care|support)",
        r"(?:speak|talk|chat)(?:ing)? (?:to|with) (?:a |an |the |your |some )?(?:human|person"
        r"|agent|representative|rep|manager|supervisor|operator|someone|somebody|real person)",
        r"(?:human|live|real) (?:agent|person|representative|being)",
        r"on hold",
        r"hold times?",
        r"(?:kept|keep|keeps|keeping) me waiting",
        r"call(?:ed)? me back",
        r"rude",
        r"unhelpful",
    ),
}
CATEGORY_RULES: dict[str, re.Pattern[str]] = {
    name: re.compile(r"\b(?:" + "|".join(words) + r")\b", re.IGNORECASE)
    for name, words in CATEGORY_PATTERNS.items()
}
#: A category the model may choose; the keyword rules never give it: a call none of their
#: words matches has no category (``[]``, shown as "Uncategorised", sent to Salesforce with
#: no Case Type) rather than one presented as detected.
DEFAULT_CATEGORY = "General enquiry"
#: How a call with no category reads on the pages.
UNCATEGORISED = "Uncategorised"


@dataclass
class Analysis:
    summary: str
    categories: list[str]
    topics: list[str]
    sentiment: str
    sentiment_score: float | None
    segment_sentiments: list[str] = field(default_factory=list)
    #: who chose ``categories``: ``rules`` (the keyword rules) or ``model``; "" for none
    categories_by: str = ""
    bedrock_status: str = ""
    provider: str = "local"  # who produced it (``local`` after a fallback)
    fallback_from: str = ""
    fallback_reason: str = ""


class AnalyticsProvider(Protocol):
    name: str

    def analyse(
        self, *, text: str, segments: Sequence[Segment], names: Sequence[str] = ()
    ) -> Analysis:
        """``names``: the caller's names, for providers that send the text off-machine."""
        ...


# --- shared local pieces -----------------------------------------------------------------


def sentiment_label(score: float) -> str:
    if score >= 0.05:
        return "POSITIVE"
    if score <= -0.05:
        return "NEGATIVE"
    return "NEUTRAL"


def segment_sentiments(segments: Sequence[Segment]) -> tuple[list[str], str, float | None]:
    """Per-segment labels and the overall (customer turns when labelled, else all)."""
    scores = [sentiment_score(s.text) for s in segments]
    labels = [sentiment_label(x) for x in scores]
    customer = [x for s, x in zip(segments, scores, strict=True) if s.speaker == "Customer"]
    pool = customer or scores
    if not pool:
        return labels, "", None
    overall = round(float(np.mean(pool)), 4)
    return labels, sentiment_label(overall), overall


def split_sentences(text: str) -> list[str]:
    return [s for s in sentences_of(text) if len(s.split()) >= 3]


def classify_categories(text: str) -> list[str]:
    """The keyword rules' categories of ``text``, most matched words first, at most three;
    ``[]`` when no rule matches (no category, not a guessed one)."""
    hits = [(len(rule.findall(text)), name) for name, rule in CATEGORY_RULES.items()]
    found = [name for count, name in sorted(hits, key=lambda h: -h[0]) if count > 0]
    return found[:3]


# Words a call's topics never are: what agents and callers say in every call. The
# sentences that are only small talk are dropped before topics are read
# (``support.small_talk``); these go from the sentences that are left ("I'm sorry to hear
# that, let me help you with the refund").
TOPIC_STOP_WORDS = frozenset(
    {
        "sorry",
        "thank",
        "thanks",
        "please",
        "welcome",
        "hello",
        "hi",
        "help",
        "today",
        "assist",
        "assistance",
        "glad",
        "happy",
        "pleasure",
        "understand",
        "apologize",
        "apologise",
        "appreciate",
        "inconvenience",
        "okay",
        "ok",
        "sure",
        "great",
        "calling",
        "hear",
    }
)


def textrank_summary_and_topics(
    sentences: list[str], *, k: int = 2, first: str = ""
) -> tuple[str, list[str]]:
    """TextRank: PageRank over the cosine-similarity graph of TF-IDF sentence vectors.
    ``first``: a sentence the summary opens with (why the customer called); the others are
    TextRank's best of the rest."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

    if not sentences:
        return first, []
    try:
        vectorizer = TfidfVectorizer(
            stop_words=sorted(ENGLISH_STOP_WORDS | STOPWORDS | TOPIC_STOP_WORDS),
            ngram_range=(1, 2),
            sublinear_tf=True,
        )
        matrix = vectorizer.fit_transform(sentences)
    except ValueError:  # only stop words
        return first or " ".join(sentences[:k]), []
    sim = (matrix @ matrix.T).toarray()
    np.fill_diagonal(sim, 0.0)
    rows = sim.sum(axis=1, keepdims=True)
    rows[rows == 0] = 1.0
    transition = sim / rows
    n = len(sentences)
    rank = np.full(n, 1.0 / n)
    for _ in range(30):
        rank = 0.15 / n + 0.85 * transition.T @ rank
    others = [i for i in np.argsort(-rank).tolist() if sentences[i] != first]
    chosen = sorted(others[: k - 1 if first else k])
    summary = " ".join([first] * bool(first) + [sentences[i] for i in chosen])
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


OPENING_SENTENCES = 3  # where an unlabelled call's opening question is looked for


def call_reason(segments: Sequence[Segment], sentences: Sequence[str]) -> str:
    """Why the customer called: their first sentence that is not small talk. With speaker
    names, the first such sentence of the customer's turns; without, the first after the
    agent's opening question ("… How can I help you today?") when one of the call's first
    ``OPENING_SENTENCES`` sentences asks one, else the call's first sentence that says
    anything (openers and greetings are small talk)."""
    customer = [s.text for s in segments if s.speaker == "Customer"]
    pool = [x for text in customer for x in split_sentences(text) if has_content(x)]
    if pool:
        return pool[0]
    asked = next(
        (i for i, x in enumerate(sentences[:OPENING_SENTENCES]) if x.rstrip().endswith("?")), -1
    )
    after = [x for x in sentences[asked + 1 :] if has_content(x)]
    content = after or [x for x in sentences if has_content(x)]
    return content[0] if content else ""


class LocalProvider:
    """Offline and deterministic; downloads nothing."""

    name = "local"

    def analyse(
        self, *, text: str, segments: Sequence[Segment], names: Sequence[str] = ()
    ) -> Analysis:
        body = " ".join(s.text for s in segments) if segments else text
        sentences = split_sentences(body)
        # small talk (openers, greetings, thanks, closings) is no summary, topic or category
        content = [x for x in sentences if has_content(x)] or sentences
        summary, topics = textrank_summary_and_topics(
            content, k=3 if len(content) > 12 else 2, first=call_reason(segments, sentences)
        )
        labels, overall, score = segment_sentiments(segments)
        categories = classify_categories(" ".join(content) or body)
        return Analysis(
            summary=summary,
            categories=categories,
            categories_by=CategoriesBy.RULES if categories else "",
            topics=topics,
            sentiment=overall,
            sentiment_score=score,
            segment_sentiments=labels,
        )


# --- an LLM from the shared provider registry ------------------------------------------------

SYSTEM_PROMPT = (
    "You analyse customer-support phone calls. Personal data is redacted as [EMAIL], "
    "[PHONE], [CARD], [IBAN], [ACCOUNT], [ADDRESS], [POSTCODE], [NAME]; never ask for it. "
    + DATA_RULE
)
# The transcript is what callers said: between the request's data tags (support.prompt_data).
PROMPT = (
    "Summarise this call in 2-3 sentences, choose 1-3 categories from: {categories}, and "
    "list up to 5 topics (short noun phrases). The transcript is the data between {open} "
    "and {close}:\n{transcript}"
)
CATEGORIES = (*CATEGORY_PATTERNS, DEFAULT_CATEGORY)


def known_categories(chosen: Sequence[object]) -> list[str]:
    """The model's categories that are on our list (case and spaces aside, written our
    way), at most three, each once: a transcript may ask the model for any other (they
    reach the call page and a Salesforce case's Type)."""
    ours = {" ".join(c.lower().split()): c for c in CATEGORIES}
    out: list[str] = []
    for value in chosen:
        name = ours.get(" ".join(str(value).lower().split()))
        if name and name not in out:
            out.append(name)
    return out[:3]


class CallAnalysisOutput(BaseModel):
    """The analysis of one customer-support call."""

    summary: str = Field(description="2-3 sentence summary of the call.")
    categories: list[str] = Field(description="1-3 categories from the list given.")
    topics: list[str] = Field(default_factory=list, description="Up to 5 short noun phrases.")


class ModelProvider:
    """A model from the shared factory, every request redacted, falling back to local."""

    def __init__(
        self,
        name: str,
        model_factory: Callable[[], Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.model_factory = model_factory
        self.sleep = sleep

    def _model(self) -> Any:
        if self.model_factory is not None:
            return self.model_factory()
        from routing.providers.models import strands_model

        return strands_model("summary", self.name)

    def _once(self, transcript: str, names: Sequence[str]) -> tuple[CallAnalysisOutput, str]:
        from strands import Agent
        from strands.types.exceptions import StructuredOutputException

        from routing.providers.redacting import RedactingModel

        inner = self._model()
        agent = Agent(
            # The one place call text leaves the machine: redacted on every request.
            model=RedactingModel(inner, names=names),
            system_prompt=SYSTEM_PROMPT,
            callback_handler=None,
            retry_strategy=None,
        )
        fence = data_fence(transcript)
        prompt = PROMPT.format(
            categories=", ".join(CATEGORIES),
            open=fence.open,
            close=fence.close,
            transcript=fence.wrap(transcript),
        )
        result = agent(prompt, structured_output_model=CallAnalysisOutput)
        output = result.structured_output
        if not isinstance(output, CallAnalysisOutput):
            raise StructuredOutputException("The model gave no call analysis.")
        return output, str(getattr(result, "stop_reason", "") or "end_turn")

    def analyse(
        self, *, text: str, segments: Sequence[Segment], names: Sequence[str] = ()
    ) -> Analysis:
        from routing.providers.agent import call_with_retries

        transcript = "\n".join(f"{s.speaker}: {s.text}" for s in segments) or text
        try:
            output, stop = call_with_retries(
                f"call summary ({self.name})",
                lambda: self._once(transcript, names),
                sleep=self.sleep,
            )
        except Exception as exc:  # noqa: BLE001 - any model failure: the local analysis
            provider_failure(exc, component="call_summary", provider=self.name)
            local = LocalProvider().analyse(text=text, segments=segments, names=names)
            local.fallback_from = self.name
            local.fallback_reason = provider_error_summary(exc)[:500]
            return local
        labels, overall, score = segment_sentiments(segments)
        body = " ".join(s.text for s in segments) if segments else text
        categories = known_categories(output.categories)
        by: str = CategoriesBy.MODEL
        if not categories:
            # none of ours (all invented): the keyword rules choose, as offline, and the
            # call page says so (they are not the model's)
            categories = classify_categories(body)
            by = CategoriesBy.RULES if categories else ""
        return Analysis(
            summary=output.summary.strip(),
            categories=categories,
            categories_by=by,
            topics=[str(t) for t in output.topics][:5],
            sentiment=overall,
            sentiment_score=score,
            segment_sentiments=labels,
            bedrock_status=stop if self.name == "bedrock" else "",
            provider=self.name,
        )


PROVIDERS: dict[str, Callable[[], AnalyticsProvider]] = {
    "local": LocalProvider,
    "bedrock": lambda: ModelProvider("bedrock"),
    "openai": lambda: ModelProvider("openai"),
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
