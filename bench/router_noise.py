# mypy: ignore-errors
"""Out-of-scope detection on tickets as customers write them (names, order numbers, e-mail
addresses, greetings), not only on clean one-line rows.

Trains routers on the bundled Bitext training split and evaluates each on its test split
(810 texts) and on the far out-of-scope file (700 MultiWOZ customer turns, written by
``bench/router_data_prepare.py``), once as they are and once with a realistic wrapper around
every text (one of six, seeded). Routers:

- ``tfidf``: TF-IDF only, no detector (the shipped default);
- ``auto``: ``train_router``'s default features, with the out-of-scope detector, on the
  clean rows;
- ``auto-own-tickets``: the same on the rows of which a share (``--own-share``, 0.5 by
  default; several values: one router each) carry the wrappers (a deployment that trains on
  its own tickets, or adds them to the clean rows with ``train_router --with-feedback``;
  other random names and numbers than the test texts' ones).

    .venv/bin/python bench/router_noise.py [--routers tfidf auto auto-own-tickets]
        [--own-share 0.5 ...]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
os.environ.setdefault("ENVIRONMENT", "dev")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from bench.noise_names import FIRST, LAST  # noqa: E402
from bench.router_oos import BITEXT, FAR_OOS  # noqa: E402
from routing import classifier  # noqa: E402


def wrap(text: str, rng: random.Random) -> str:
    """The text as part of a ticket: one of six wrappers."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    n = rng.randint(100000, 999999)
    kind = rng.randrange(6)
    if kind == 0:
        return f"{text} My order number is #{n}."
    if kind == 1:
        return f"Hi, this is {first} {last}. {text}"
    if kind == 2:
        return f"{text} You can reach me at {first.lower()}.{last.lower()}@example.com"
    if kind == 3:
        return f"{text} Thanks, {first}"
    if kind == 4:
        return f"{text} (order #{n}, placed on 12/03/2026)"
    return (
        f"Hello, {first} {last} here, account {first.lower()}{n % 1000}. {text} "
        f"Call me on +1 555 {n % 10000:04d}."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--routers", nargs="+", default=["tfidf", "auto", "auto-own-tickets"],
        choices=["tfidf", "auto", "auto-own-tickets"],
    )  # fmt: skip
    parser.add_argument("--own-share", nargs="+", type=float, default=[0.5])
    args = parser.parse_args()
    texts, intents, categories = classifier.bitext_rows(classifier.BITEXT_TRAIN)
    test_texts, test_labels = classifier.read_csv(
        BITEXT / "Bitext_Sample_Customer_Service_Testing_Dataset.csv", "utterance", "intent"
    )
    far = classifier.read_texts(FAR_OOS, "text") if FAR_OOS.exists() else []
    if not far:
        print(f"{FAR_OOS} is missing (bench/router_data_prepare.py writes it)")
    rng = random.Random(7)
    test_wrapped = [wrap(t, rng) for t in test_texts]
    far_wrapped = [wrap(t, rng) for t in far]
    threshold = settings.ROUTING_REVIEW_THRESHOLD
    print(f"load average at start: {os.getloadavg()}")
    runs = [
        (name, share)
        for name in args.routers
        for share in (args.own_share if name == "auto-own-tickets" else [0.0])
    ]
    for name, share in runs:
        rows = texts
        if share:
            own = random.Random(12345)
            rows = [wrap(t, own) if own.random() < share else t for t in texts]
        started = time.perf_counter()
        router, report = classifier.train(
            rows,
            intents,
            categories=categories,
            features=classifier.FEATURES_TFIDF if name == "tfidf" else "auto",
        )
        label = f"{name} ({share:g} of the rows wrapped)" if share else name
        print(f"{label}: trained in {time.perf_counter() - started:.1f} s ({report.features})")
        for kind, inside, outside in (
            ("clean", test_texts, far),
            ("wrapped", test_wrapped, far_wrapped),
        ):
            figures = classifier.evaluate(
                router, inside, test_labels, threshold=threshold, out_of_scope=outside
            )
            print(
                f"  {kind:8s} accuracy {figures['accuracy']}  in-scope review_rate "
                f"{figures['review_rate']}  far out-of-scope to review "
                f"{figures.get('oos_review_rate', '-')}  p50 {figures['p50_ms']} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
