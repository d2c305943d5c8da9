#!/usr/bin/env python
"""How good is the offline call analysis (``calls.analytics.providers.LocalProvider``)?

There is no public set of support-call transcripts with summaries on this machine, so the
calls are built from the Bitext customer-support set (``../shared/data/bitext-llm-chatbot``
beside the project, or ``--data``: a customer's request and the agent's answer, 27 intents
in 11 categories), wrapped the way a phone call goes: the agent's opener ("Thank you for
calling …, this is Sam. How can I help you today?"), a greeting, the request, the answer,
the customer's thanks, the agent's closing. Each call is read twice: with speaker labels
(``Customer`` / ``Agent``, as Contact Lens and a labelled Transcribe job give them) and as
unlabelled turns (a Transcribe job without speaker identification). Prints, per form:

- ``summary_has_request``: share of summaries that hold a sentence of the customer's
  request (what the call was about);
- ``summary_small_talk``: share of summaries that hold an opener, greeting, thanks or
  closing sentence;
- ``topics_small_talk``: share of topics that are only small-talk words ("thank",
  "help today", "sorry");
- ``category_recall``: the call's category (Bitext's, mapped to ours: ``CATEGORY``) among
  the up to three categories given, over the calls that have one;
- ``category_first``: the call's category given first, over the calls that have one;
- ``first_precision``: the first category given is the call's, over the calls given a
  category (every Bitext category counts: a call that has none of ours and is given one
  is a miss);
- ``none_right``: calls with none of ours given none.

Seeded; asserts nothing.

    .venv/bin/python bench/call_analytics_quality.py [--calls 600] [--seed 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
os.environ.setdefault("ENVIRONMENT", "dev")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from calls.analytics.providers import LocalProvider  # noqa: E402
from calls.parsers import Segment  # noqa: E402
from support.text import sentences_of  # noqa: E402

DATA = (
    ROOT.parent
    / "shared"
    / "data"
    / "bitext-llm-chatbot"
    / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
)
# Every Bitext category, mapped to the call category a person would give it; those with
# none of ours (FEEDBACK's reviews) expect no category, so a category given them counts
# against precision. CONTACT ("talk to a human", "reach customer service") expected none
# until 2026-12-07, when seed 003's "Customer service" category was added for them.
# (Until 2026-12-06 CONTACT, FEEDBACK, NEWSLETTER, CANCELLATION_FEE and SHIPPING_ADDRESS
# were left out and only recall was measured: a classifier that matched "fee" inside
# "feel" was never caught.)
CATEGORY: dict[str, str | None] = {
    "ORDER": "Orders and delivery",
    "SHIPPING_ADDRESS": "Orders and delivery",
    "DELIVERY": "Orders and delivery",
    "REFUND": "Billing",
    "INVOICE": "Billing",
    "PAYMENT": "Billing",
    "CANCELLATION_FEE": "Billing",
    "ACCOUNT": "Account",
    "NEWSLETTER": "Account",
    "CONTACT": "Customer service",
    "FEEDBACK": None,
}
INTENT_CATEGORY = {"cancel_order": "Cancellation", "complaint": "Complaint"}
# What the rules gave a call none of their words matched: nothing now, "General enquiry"
# before 2026-12-06 (a default, not a category found).
NO_CATEGORY = {"General enquiry", "Uncategorised"}
COMPANIES = ["Example Bank", "Northwind", "Acme Mobile", "Contoso Energy"]
AGENTS = ["Sam", "Priya", "John", "Maria"]
OPENERS = [
    "Thank you for calling {company}, this is {agent}. How can I help you today?",
    "Good morning, {company} customer care, my name is {agent}. How may I help you?",
    "Hello, you're through to {agent} at {company}. What can I do for you today?",
]
GREETINGS = ["Hi {agent}.", "Hello.", "Hi there, thanks.", "Good morning."]
THANKS = ["Okay, thank you so much.", "Great, thanks for your help.", "Perfect, thank you."]
CLOSINGS = [
    "You're welcome. Is there anything else I can help you with today? Have a great day.",
    "My pleasure. Thank you for calling {company}, goodbye.",
    "Glad I could help. Take care.",
]
SMALL_TALK_WORDS = {
    "thank", "thanks", "sorry", "help", "today", "welcome", "great", "day", "calling",
    "hello", "hi", "morning", "pleasure", "glad", "okay", "perfect", "goodbye", "care",
}  # fmt: skip
PLACEHOLDER = re.compile(r"\{\{[^}]*\}\}")


def fill(text: str, rng: random.Random) -> str:
    return PLACEHOLDER.sub(lambda _: str(rng.randint(10000, 99999)), text).strip()


def calls(path: Path, n: int, seed: int) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rng = random.Random(seed)
    rng.shuffle(rows)
    out = []
    for row in rows[:n]:
        company, agent = rng.choice(COMPANIES), rng.choice(AGENTS)
        request = fill(row["instruction"], rng)
        if request and request[-1] not in ".?!":
            request += "?"
        answer = " ".join(fill(row["response"], rng).split())
        turns = [
            ("Agent", rng.choice(OPENERS).format(company=company, agent=agent)),
            ("Customer", f"{rng.choice(GREETINGS).format(agent=agent)} {request}"),
            ("Agent", answer),
            ("Customer", rng.choice(THANKS)),
            ("Agent", rng.choice(CLOSINGS).format(company=company)),
        ]
        expected = INTENT_CATEGORY.get(row["intent"]) or CATEGORY[row["category"]]
        out.append({"turns": turns, "request": request, "category": expected})
    return out


def segments(turns: list[tuple[str, str]], labelled: bool) -> list[Segment]:
    return [
        Segment(speaker=who if labelled else "", start=float(i), end=float(i + 1), text=text)
        for i, (who, text) in enumerate(turns)
    ]


def norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def small_talk_sentence(sentence: str, call: dict) -> bool:
    """A sentence of the opener, greeting, thanks or closing turns."""
    s = norm(sentence)
    wrappers = [call["turns"][0][1], call["turns"][3][1], call["turns"][4][1]]
    greeting = call["turns"][1][1][: -len(call["request"])]
    return bool(s) and any(s in norm(w) for w in [*wrappers, greeting])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    provider = LocalProvider()
    data = calls(args.data, args.calls, args.seed)
    for labelled in (True, False):
        has_request = small = topics_small = topics_total = 0
        hit = first = with_category = given = given_right = without = none_right = 0
        for call in data:
            segs = segments(call["turns"], labelled)
            text = " ".join(t for _, t in call["turns"])
            analysis = provider.analyse(text=text, segments=segs)
            summary = norm(analysis.summary)
            request_words = norm(call["request"])
            has_request += bool(request_words) and request_words in summary
            small += any(small_talk_sentence(s, call) for s in sentences_of(analysis.summary))
            topics_total += len(analysis.topics)
            topics_small += sum(
                all(w in SMALL_TALK_WORDS for w in norm(t).split()) for t in analysis.topics
            )
            found = [c for c in analysis.categories if c not in NO_CATEGORY]
            if found:
                given += 1
                given_right += found[0] == call["category"]
            if call["category"]:
                with_category += 1
                hit += call["category"] in found
                first += found[:1] == [call["category"]]
            else:
                without += 1
                none_right += not found
        n = len(data)
        form = "labelled" if labelled else "unlabelled"
        figures = [
            f"summary_has_request {has_request / n:.3f}",
            f"summary_small_talk {small / n:.3f}",
            f"topics_small_talk {topics_small / max(topics_total, 1):.3f}",
            f"category_recall {hit / max(with_category, 1):.3f}",
            f"category_first {first / max(with_category, 1):.3f} ({with_category} calls)",
            f"first_precision {given_right / max(given, 1):.3f} ({given} given)",
            f"none_right {none_right / max(without, 1):.3f} ({without} calls)",
        ]
        print(f"{form:10s} ({n} calls): " + ", ".join(figures))


if __name__ == "__main__":
    main()
