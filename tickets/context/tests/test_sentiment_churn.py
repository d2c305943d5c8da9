from __future__ import annotations

from typing import Any

import pytest
from moto import mock_aws

from tickets.context.churn import ChurnSignals, churn_risk
from tickets.context.sentiment import ComprehendAnalyser, VaderAnalyser, label_for_score


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Thank you so much, the replacement arrived and it works perfectly!", "positive"),
        ("This is the third time my order is late. Terrible service, I want a refund.", "negative"),
        ("I'm absolutely furious, nobody answers and my card was charged twice!", "negative"),
        ("I changed my delivery address yesterday.", "neutral"),
        ("Great, thanks for the quick help :)", "positive"),
        ("", "neutral"),
    ],
)
def test_vader_labels_real_messages(text, label):
    assert VaderAnalyser().analyse(text).label == label


def test_vader_scores_are_on_minus_one_to_one():
    analyser = VaderAnalyser()
    bad = analyser.analyse("Worst experience ever. I hate this company and I'm cancelling.")
    good = analyser.analyse("Excellent support, you are amazing, thank you!")
    assert -1 <= bad.score < -0.5
    assert 0.5 < good.score <= 1


def test_label_thresholds():
    assert [label_for_score(s) for s in (0.05, 0.049, -0.049, -0.05)] == [
        "positive",
        "neutral",
        "neutral",
        "negative",
    ]


@mock_aws
def test_comprehend_analyser_maps_response(settings):
    import boto3

    client = boto3.client("comprehend", region_name="us-east-1")
    result = ComprehendAnalyser(client=client).analyse("I love this product")
    # moto answers a canned NEUTRAL result with these scores.
    assert result.label == "neutral"
    assert result.score == pytest.approx(0.0078, abs=1e-4)


def test_comprehend_analyser_maps_errors():
    from botocore.exceptions import ClientError

    from support.errors import PermanentError, RetryableError

    class Client:
        def __init__(self, code, status):
            self.code, self.status = code, status

        def detect_sentiment(self, **kwargs):
            raise ClientError(
                {
                    "Error": {"Code": self.code, "Message": "x"},
                    "ResponseMetadata": {"HTTPStatusCode": self.status},  # type: ignore[typeddict-item]
                },  # type: ignore[typeddict-item]
                "DetectSentiment",
            )

    with pytest.raises(RetryableError):
        ComprehendAnalyser(client=Client("ThrottlingException", 400)).analyse("hi there")
    with pytest.raises(PermanentError):
        ComprehendAnalyser(client=Client("TextSizeLimitExceededException", 400)).analyse("hi")


def test_churn_low_for_a_happy_customer():
    risk = churn_risk(
        ChurnSignals(
            recent_sentiment=0.6, previous_sentiment=0.5, contacts_30d=1, days_since_last_order=10
        )
    )
    assert (risk.level, risk.score, risk.reasons) == ("low", 0, [])


def test_churn_high_for_angry_customer_with_refunds_and_reopen():
    risk = churn_risk(
        ChurnSignals(
            recent_sentiment=-0.62,
            previous_sentiment=0.3,
            last_sentiment=-0.8,
            contacts_30d=4,
            days_since_last_contact=1,
            open_tickets=1,
            reopened_90d=1,
            refunds_90d=1,
        )
    )
    assert risk.level == "high"
    assert risk.score == 95  # 30 + 15 + 15 + 10 + 10 + 10 + 5
    codes = [r.code for r in risk.reasons]
    assert codes == [
        "negative_sentiment",
        "sentiment_falling",
        "reopened_tickets",
        "frequent_contacts",
        "recent_unhappy_contact",
        "refunds",
        "open_tickets",
    ]


def test_churn_medium_from_orders_alone():
    risk = churn_risk(ChurnSignals(failed_orders_90d=2, refunds_90d=1))
    assert (risk.level, risk.score) == ("medium", 30)
    assert risk.as_dict()["reasons"][0] == {
        "code": "failed_orders",
        "points": 20,
        "text": "2 failed or cancelled orders in 90 days.",
    }


def test_churn_score_is_capped_at_100():
    risk = churn_risk(
        ChurnSignals(recent_sentiment=-0.9, reopened_90d=3, low_csat_90d=2, failed_orders_90d=5)
    )
    assert (risk.level, risk.score) == ("high", 100)


def _comprehend_stubbed(
    settings: Any, monkeypatch: Any, label: str, *, positive: float, negative: float
) -> tuple[Any, list[str]]:
    """Comprehend as the sentiment backend, answering ``label`` once (a botocore Stubber),
    and the list the text actually sent is captured in."""
    import boto3
    from botocore.stub import Stubber

    from tickets.context import sentiment

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("comprehend", region_name="us-east-1")
    sent: list[str] = []
    client.meta.events.register(
        "before-parameter-build.comprehend.DetectSentiment",
        lambda params, **_kw: sent.append(params["Text"]),
    )
    stub = Stubber(client)
    scores = {"Positive": positive, "Negative": negative, "Neutral": 0.1, "Mixed": 0.0}
    stub.add_response("detect_sentiment", {"Sentiment": label, "SentimentScore": scores})
    settings.SENTIMENT_BACKEND = "comprehend"
    monkeypatch.setitem(sentiment._registry, "comprehend", lambda: ComprehendAnalyser(client))
    return stub, sent


@pytest.mark.django_db
def test_comprehend_gets_the_message_redacted(settings, monkeypatch):
    """A customer's message scored by Comprehend leaves without their name, e-mail, phone
    or address (the text actually sent is captured)."""

    from tickets.context.services import interaction_record_for_message
    from tickets.models import Customer, Message
    from tickets.services import ticket_create

    stub, sent = _comprehend_stubbed(settings, monkeypatch, "NEGATIVE", positive=0.1, negative=0.8)
    customer = Customer.objects.create(name="Zelda Quimby", email="zq@example.org")
    ticket = ticket_create(
        customer=customer,
        subject="Broken",
        body="Zelda Quimby here, 12 Baker Street, NW1 6XE, zq@example.org, 415 555 0177: awful!",
    )
    message = Message.objects.get(ticket=ticket)
    with stub:
        interaction_record_for_message(message_id=message.pk)
    [text] = sent
    assert text == "[NAME] here, [ADDRESS], [POSTCODE], [EMAIL], [PHONE]: awful!"


@pytest.mark.django_db
@pytest.mark.parametrize("declares", ["sends_text", "nothing"])
def test_any_registered_analyser_gets_the_text_redacted_unless_it_runs_locally(
    settings, monkeypatch, declares
):
    """Before: only the Comprehend adapter redacted. Another registered analyser (an LLM
    provider, say) got the customer's message as written, whether it said it sends text
    (it got the names, and the raw text) or said nothing (taken for a local one). The one
    path, ``sentiment_analyse``, now redacts for every analyser that does not declare
    ``sends_text = False``."""
    from tickets.context import sentiment
    from tickets.context.services import interaction_record_for_message
    from tickets.models import Customer, Message
    from tickets.services import ticket_create

    received: list[str] = []

    class Provider:
        name = "provider"

        def analyse(self, text: str, **kwargs: Any) -> sentiment.Sentiment:
            received.append(text)
            return sentiment.Sentiment(-0.5, "negative")

    if declares == "sends_text":
        Provider.sends_text = True  # type: ignore[attr-defined]
    monkeypatch.setitem(sentiment._registry, "provider", Provider)
    settings.SENTIMENT_BACKEND = "provider"
    sentiment.reset_analysers()
    customer = Customer.objects.create(name="Zelda Quimby", email="zq@example.org")
    ticket = ticket_create(
        customer=customer, subject="Broken", body="Zelda here, zq@example.org, 415 555 0177!"
    )
    interaction_record_for_message(message_id=Message.objects.get(ticket=ticket).pk)
    assert received == ["[NAME] here, [EMAIL], [PHONE]!"]


def test_vader_runs_locally_and_reads_the_text_as_written(monkeypatch):
    from tickets.context import sentiment

    assert VaderAnalyser.sends_text is False
    monkeypatch.setattr(sentiment, "redacted_for_provider", lambda *a, **k: pytest.fail("redacted"))
    assert sentiment.sentiment_analyse("I love it", customer_id=None).label == "positive"


def test_comprehend_gets_a_redacted_start_of_a_long_message(monkeypatch):
    """A message of megabytes is not redacted whole (the redaction reads no more than four
    times what Comprehend accepts, cut at a word's end); what is sent is redacted and
    within Comprehend's 5,000 bytes."""
    from support import redaction
    from tickets.context import sentiment

    seen: list[int] = []
    real = redaction.redact

    def measuring(text, **kwargs):
        seen.append(len(text))
        return real(text, **kwargs)

    monkeypatch.setattr(redaction, "redact", measuring)

    class Client:
        def detect_sentiment(self, **kwargs):
            self.sent = kwargs["Text"]
            return {
                "Sentiment": "NEGATIVE",
                "SentimentScore": {"Positive": 0.1, "Negative": 0.8},
            }

    client = Client()
    text = "Write to jo.smith@example.com about my order. " * 50_000  # 2.3 MB
    monkeypatch.setitem(sentiment._registry, "comprehend", lambda: ComprehendAnalyser(client))
    sentiment.reset_analysers()
    result = sentiment.get_analyser("comprehend").analyse(
        redaction.redacted_for_provider(text, limit=sentiment.REDACTED_MAX_CHARS)
    )
    assert result.label == "negative"
    assert seen
    assert max(seen) <= sentiment.REDACTED_MAX_CHARS
    assert len(client.sent.encode()) <= sentiment.COMPREHEND_MAX_BYTES
    assert "@" not in client.sent
    assert "[EMAIL]" in client.sent
    assert client.sent.startswith("Write to [EMAIL] about my order.")


def test_a_detail_at_the_cut_is_left_out_whole_not_sent_in_part(monkeypatch, settings):
    """The message is redacted after it is cut to what the analyser reads: an IBAN (in
    groups) that the cut would split is left out whole, not sent as "GB82 WEST 1234"."""
    from tickets.context import sentiment

    sent: list[str] = []

    class Provider:
        name = "provider"
        sends_text = True

        def analyse(self, text: str) -> sentiment.Sentiment:
            sent.append(text)
            return sentiment.Sentiment(0.0, "neutral")

    monkeypatch.setitem(sentiment._registry, "provider", Provider)
    settings.SENTIMENT_BACKEND = "provider"
    sentiment.reset_analysers()
    iban = "GB82 WEST 1234 5698 7654 32"
    filler = "my refund never came. " * 2000
    head = filler[: sentiment.REDACTED_MAX_CHARS - 15].rstrip()
    sentiment.sentiment_analyse(f"{head} {iban} is mine", customer_id=None)
    assert sent == [head]  # before: "… GB82 WEST 1234" went out


@pytest.mark.django_db
def test_a_feedback_comment_goes_to_comprehend_without_the_customers_name(
    settings, monkeypatch, django_capture_on_commit_callbacks
):
    """The CSAT comment is scored like a message: redacted with the customer's names,
    and with no transaction open (the network guard fails the test otherwise)."""

    from tickets.context.models import Interaction
    from tickets.context.services import feedback_submit
    from tickets.models import Customer
    from tickets.services import ticket_create, ticket_update

    stub, sent = _comprehend_stubbed(settings, monkeypatch, "POSITIVE", positive=0.9, negative=0.0)
    customer = Customer.objects.create(name="Zelda Quimby", email="zq@example.org")
    ticket = ticket_create(customer=customer, subject="Broken", body="Help")
    ticket = ticket_update(ticket=ticket, status="resolved")
    with stub, django_capture_on_commit_callbacks(execute=True):  # from the event, in a task
        feedback_submit(ticket=ticket, rating=5, comment="Thanks from Zelda Quimby!")
    assert sent == ["Thanks from [NAME]!"]
    assert Interaction.objects.get(kind="feedback").sentiment_label == "positive"


# Each row of the rules table in docs/customer-context.md, at its threshold and just short
# of it: (signals, the rule's code, the points docs give; 0 = the rule does not fire).
CHURN_RULES = [
    ({"recent_sentiment": -0.5}, "negative_sentiment", 30),
    ({"recent_sentiment": -0.4999}, "negative_sentiment", 15),
    ({"recent_sentiment": -0.05}, "negative_sentiment", 15),
    ({"recent_sentiment": -0.0499}, "negative_sentiment", 0),
    # falling: recent mean >= 0.3 below the previous one (0.4 vs 0.7 is exactly 0.3)
    ({"recent_sentiment": 0.4, "previous_sentiment": 0.7}, "sentiment_falling", 15),
    ({"recent_sentiment": 0.2, "previous_sentiment": 0.5}, "sentiment_falling", 15),
    ({"recent_sentiment": 0.4001, "previous_sentiment": 0.7}, "sentiment_falling", 0),
    ({"contacts_30d": 6}, "frequent_contacts", 20),
    ({"contacts_30d": 5}, "frequent_contacts", 10),
    ({"contacts_30d": 3}, "frequent_contacts", 10),
    ({"contacts_30d": 2}, "frequent_contacts", 0),
    (
        {"days_since_last_contact": 7, "last_sentiment": -0.05},
        "recent_unhappy_contact",
        10,
    ),
    ({"days_since_last_contact": 8, "last_sentiment": -0.9}, "recent_unhappy_contact", 0),
    ({"days_since_last_contact": 0, "last_sentiment": -0.0499}, "recent_unhappy_contact", 0),
    ({"days_since_last_contact": 0, "last_sentiment": None}, "recent_unhappy_contact", 0),
    ({"open_tickets": 1}, "open_tickets", 5),
    ({"open_tickets": 3}, "open_tickets", 15),
    ({"open_tickets": 4}, "open_tickets", 15),
    ({"reopened_90d": 1}, "reopened_tickets", 15),
    ({"reopened_90d": 3}, "reopened_tickets", 30),
    ({"failed_orders_90d": 1}, "failed_orders", 10),
    ({"failed_orders_90d": 3}, "failed_orders", 20),
    ({"refunds_90d": 1}, "refunds", 10),
    ({"refunds_90d": 3}, "refunds", 20),
    ({"low_csat_90d": 1}, "low_csat", 15),
    ({"low_csat_90d": 3}, "low_csat", 30),
    ({"days_since_last_order": 181}, "lapsed_buyer", 10),
    ({"days_since_last_order": 180}, "lapsed_buyer", 0),
    ({"days_since_last_order": None}, "lapsed_buyer", 0),
]


@pytest.mark.parametrize(("signals", "code", "points"), CHURN_RULES)
def test_each_churn_rule_fires_at_the_documented_threshold_with_its_points(signals, code, points):
    """Before: a drop of exactly 0.3 (0.7 → 0.4) gave no ``sentiment_falling`` points,
    0.4 - 0.7 being -0.29999999999999993 in floating point."""
    reasons = {r.code: r.points for r in churn_risk(ChurnSignals(**signals)).reasons}
    assert reasons.get(code, 0) == points
    assert set(reasons) <= {code}  # nothing else fired


def test_churn_levels_at_their_thresholds():
    assert churn_risk(ChurnSignals(open_tickets=3, refunds_90d=1)).level == "medium"  # 25
    assert churn_risk(ChurnSignals(open_tickets=3, failed_orders_90d=1)).level == "medium"
    assert churn_risk(ChurnSignals(open_tickets=2, refunds_90d=1, low_csat_90d=0)).level == "low"
    assert (
        churn_risk(ChurnSignals(recent_sentiment=-0.9, reopened_90d=1, refunds_90d=1)).score == 55
    )
    assert churn_risk(ChurnSignals(low_csat_90d=2, refunds_90d=2)).level == "high"  # 30 + 20
    assert churn_risk(ChurnSignals(low_csat_90d=2, refunds_90d=1, open_tickets=1)).level == "medium"
