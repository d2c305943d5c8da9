#!/usr/bin/env python
"""Does the offline sentiment score read customers' requests as moods? (``support.sentiment``)

No sentiment-labelled support text is on this machine. The proxy: Bitext's customer
requests (``../shared/data/bitext-llm-chatbot`` beside the project, or ``--data``; 4,514
requests in 27 intents) are requests, mostly without mood, and those of the ``complaint``
intent ("I want to file a complaint about …") are never happy. Prints, for plain VADER and
for the project's score (politeness out of the lexicon), the share of requests read as
positive / neutral / negative (VADER's ±0.05), overall and for complaints. Asserts nothing.

    .venv/bin/python bench/sentiment_support.py
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # noqa: E402

from support.sentiment import sentiment_score  # noqa: E402

DATA = (
    ROOT.parent
    / "shared"
    / "data"
    / "bitext-llm-chatbot"
    / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
)


def label(score: float) -> str:
    return "positive" if score >= 0.05 else "negative" if score <= -0.05 else "neutral"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    with args.data.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    plain = SentimentIntensityAnalyzer()
    scorers = {
        "plain VADER": lambda text: float(plain.polarity_scores(text)["compound"]),
        "support.sentiment": sentiment_score,
    }
    for name, score in scorers.items():
        every: Counter[str] = Counter()
        complaints: Counter[str] = Counter()
        for row in rows:
            found = label(score(row["instruction"]))
            every[found] += 1
            if row["intent"] == "complaint":
                complaints[found] += 1

        def shares(counts: Counter[str]) -> str:
            total = sum(counts.values())
            return " / ".join(
                f"{counts[k] / total:.3f}" for k in ("positive", "neutral", "negative")
            )

        print(
            f"{name:18s} requests ({len(rows)}) positive / neutral / negative {shares(every)}; "
            f"complaints ({sum(complaints.values())}) {shares(complaints)}"
        )


if __name__ == "__main__":
    main()
