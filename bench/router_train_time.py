# mypy: ignore-errors
"""Training time of the router on ~15,000 rows (issue #18: < 5 minutes on 2 cores).

The rows are every public intent text this project has (no kept-aside set):

- Bitext customer-service intents, train + validation + test (8,100 rows, 27 intents);
- Bitext LLM chatbot ``instruction`` column (4,514 rows, the same 27 intents);
- StackFAQ paraphrased queries and question titles, labelled with their thread (125 labels);
- the Banking77 16-intent subset when ``.devdata/banking77/test_part.csv`` exists (640
  rows; ``bench/router_data_prepare.py``),

exact duplicates dropped (same normalised text and label), then topped up to ``--rows``
with copies of seeded random rows whose punctuation is removed (a different text for the
character n-grams and the encoder). About 168 labels: the shape of the issue's 150-intent
set. Training runs in this process with ``routing.classifier.train`` (what ``train_router``
calls), ``features=auto`` and the out-of-scope detector, as the command does by default.
Prints wall time, this process's CPU time (all threads) and the load average.

    .venv/bin/python bench/router_train_time.py [--rows 15000] [--repeat 1] [--save CSV]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
os.environ.setdefault("ENVIRONMENT", "dev")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402

from routing import classifier  # noqa: E402

SHARED = Path("/work/shared/data")
for candidate in (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"):
    if candidate.exists():
        SHARED = candidate
        break
DEVDATA = ROOT / ".devdata"


def rows() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    bitext = SHARED / "bitext-intent-detection"
    for name in ("Training", "Validation", "Testing"):
        texts, labels = classifier.read_csv(
            bitext / f"Bitext_Sample_Customer_Service_{name}_Dataset.csv", "utterance", "intent"
        )
        out += list(zip(texts, labels, strict=True))
    texts, labels = classifier.read_csv(
        SHARED / "bitext-llm-chatbot" / "Bitext_Sample_Customer_Support_Training_Dataset.csv",
        "instruction",
        "intent",
    )
    out += list(zip(texts, labels, strict=True))
    queries = DEVDATA / "stackfaq" / "queries.jsonl"
    docs = DEVDATA / "stackfaq" / "docs.jsonl"
    if not queries.exists():
        import subprocess

        subprocess.run([sys.executable, str(ROOT / "bench" / "stackfaq_prepare.py")], check=True)
    for line in queries.read_text().splitlines():
        r = json.loads(line)
        out.append((r["query"], r["relevant"][0]))
    for line in docs.read_text().splitlines():
        r = json.loads(line)
        out.append((r["title"], r["id"]))
    banking = DEVDATA / "banking77" / "test_part.csv"
    if banking.exists():
        texts, labels = classifier.read_csv(banking, "text", "category")
        out += list(zip(texts, labels, strict=True))
    seen, unique = set(), []
    for text, label in out:
        key = (classifier.normalise(text), label)
        if key not in seen:
            seen.add(key)
            unique.append((text, label))
    return unique


def build(n: int) -> list[tuple[str, str]]:
    data = rows()
    rng = np.random.default_rng(18)
    extra = []
    while len(data) + len(extra) < n:
        text, label = data[int(rng.integers(len(data)))]
        stripped = re.sub(r"[^\w\s]", "", text)
        if stripped != text:
            extra.append((stripped, label))
    return (data + extra)[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=15000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--save", help="write the rows to this CSV (text,label)")
    args = parser.parse_args()
    data = build(args.rows)
    if args.save:
        with open(args.save, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows(data)
    texts, labels = [t for t, _ in data], [lab for _, lab in data]
    print(f"{len(texts)} rows, {len(set(labels))} labels", flush=True)
    for run in range(args.repeat):
        load = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        _, report = classifier.train(
            texts, labels, progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True)
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"run {run + 1}: wall {wall:.1f} s, cpu {cpu:.1f} s, load {load:.1f} -> "
            f"{os.getloadavg()[0]:.1f}; {report.features}, held out {report.holdout}, "
            f"out-of-scope {report.out_of_scope}",
            flush=True,
        )


if __name__ == "__main__":
    main()
