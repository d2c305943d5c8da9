# mypy: ignore-errors
"""Redaction benchmark: microseconds per text for ``support.redaction.redact``.

    .venv/bin/python bench/redaction.py [--n 5000] [--repeat 3]

It ends with a few hostile texts (60-150 KB runs that start every pattern and complete none)
and the time each takes.

No database or network. The texts are the bundled Bitext customer-service utterances
(``routing/data/bitext``), every other one given personal data the way tickets carry it
(a name, an e-mail, a phone number, a street address, a card or an IBAN), and each is
redacted with the customer's names as routing does per ticket (a different customer every
256 texts, so the names pattern is compiled as often as it would be in a busy worker).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")

import django  # noqa: E402

django.setup()

from support.redaction import PLACEHOLDERS, redact  # noqa: E402

DATA = ROOT / "routing/data/bitext/Bitext_Sample_Customer_Service_Training_Dataset.csv"
FIRST = ["Zelda", "Ana", "Jean-Luc", "Mei", "Olusegun", "Grace", "Søren", "Lucía"]
LAST = ["Quimby", "Silva", "Picard", "Wong", "Obasanjo", "Hopper", "Kierkegaard", "García"]
EXTRAS = [
    "I'm {name}, write to {mail} please.",
    "Call me on +44 20 7946 {n:04d}, {first} here.",
    "Ship it to {n} Baker Street, London NW1 6XE. Thanks, {first}",
    "Mon adresse : {n} rue de la Paix, 75002 Paris ({name})",
    "Card 4111 1111 1111 1111 was charged twice, {first}",
    "Refund to IBAN DE89 3704 0044 0532 0130 00, {name}",
]


def texts(n: int) -> list[tuple[str, tuple[str, ...]]]:
    with DATA.open(encoding="utf-8") as handle:
        rows = [row["utterance"] for row in csv.DictReader(handle)]
    out = []
    for i in range(n):
        first, last = FIRST[(i // 256) % len(FIRST)], LAST[(i // 256 + 3) % len(LAST)]
        name = f"{first} {last}"
        text = rows[i % len(rows)]
        if i % 2:
            extra = EXTRAS[(i // 2) % len(EXTRAS)]
            text += " " + extra.format(
                name=name, first=first, mail=f"{first.lower()}.{i}@example.org", n=i % 9000 + 1
            )
        out.append((text, (name, first)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sample = texts(args.n)
    chars = statistics.fmean(len(t) for t, _ in sample)
    runs, cpu_runs = [], []
    for _ in range(args.repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        results = [redact(text, names=names) for text, names in sample]
        runs.append((time.perf_counter() - started) / len(sample) * 1e6)
        cpu_runs.append((time.process_time() - cpu_started) / len(sample) * 1e6)
    per_text = sorted(runs)[len(runs) // 2]
    cpu_per_text = sorted(cpu_runs)[len(cpu_runs) // 2]
    counts = {p: sum(r.count(p) for r in results) for p in PLACEHOLDERS}
    singles = []
    for text, names in sample[:2000]:
        started = time.perf_counter()
        redact(text, names=names)
        singles.append((time.perf_counter() - started) * 1e6)
    singles.sort()
    print(f"texts: {len(sample)} (mean {chars:.0f} characters), {args.repeat} runs")
    print(
        f"redact(): {per_text:.1f} µs per text wall clock, {cpu_per_text:.1f} µs CPU "
        "(median of runs; CPU time is what a busy machine does not distort)"
    )
    print(
        f"single calls: p50 {singles[len(singles) // 2]:.1f} µs, "
        f"p99 {singles[int(len(singles) * 0.99)]:.1f} µs"
    )
    print("placeholders: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    # Hostile shapes: long runs that every pattern's first characters match but none
    # completes. Each should take time in proportion to its length (a pattern that retries
    # from every position inside the run takes seconds here).
    n = 30_000
    hostile = {
        'e-mail local part, no "@" after it': "a-" * n + " @x",
        "e-mail domain part": "jo@" + "a-" * n,
        "digits and spaces": "1 " * n + "x",
        "capitalised words after a house number": "12 " + "Abc " * n + "x",
        "IBAN-like groups": "GB12 " + "ABCD " * n,
        "a customer name repeated": "Zelda " * n,
        "capitals and hyphens (a compound street name's letters)": "A-" * n + "1",
        "capitals and dots": "A." * n + " 1",
        "digits and dots": "1." * n + "x",
        "digits and no-break spaces": "1\u00a0" * n + "x",
        "4-digit groups, double spaces": "4112  " * (n // 3) + "x",
        'spelled-out e-mail, " at " chain': "ab at " * (n // 3),
        'spelled-out e-mail, " dot " chain with no "at"': "ab dot " * (n // 3),
        "spelled-out e-mail, domain labels and no top-level domain": "x at "
        + "ab dot " * (n // 3)
        + "9",
        "lower-case postcode-like words": "ab1 " * (n // 2),
        "digit words in runs of six (a read-out number one short)": "one two three four five six x "
        * (n // 15),
        "digit words, one run of 60 KB": "one " * (n // 2),
        "digit words beside a digit": "oh 1 " * (n // 2),
    }
    for label, text in hostile.items():
        started = time.perf_counter()
        redact(text, names=("Zelda Quimby",))
        print(f"hostile, {label} ({len(text):,} chars): {time.perf_counter() - started:.3f} s")


if __name__ == "__main__":
    main()
