# mypy: ignore-errors
"""Out-of-scope routing benchmark: leave whole intents out of training.

For each data set and seed, a quarter of the intents (seeded) are left out: their texts
become the out-of-scope file; the router is trained on the other intents and evaluated on
their test rows (in-scope accuracy, review_rate) and on the out-of-scope file
(oos_review_rate), with the per-text latency.

    .venv/bin/python bench/router_oos.py [--data bitext banking77 stackfaq] [--seeds 1 2]
        [--features auto] [--commands]

Data sets (see bench/router_data_prepare.py for sources and licences):
- ``bitext``: the Bitext customer-service split in ../shared/data (27 intents; official
  train / test files);
- ``banking77``: ``.devdata/banking77/test_part.csv`` (16 Banking77 intents x 40 texts),
  split 70 / 30 per intent here;
- ``stackfaq``: StackFAQ paraphrases labelled with their thread (125 labels),
  ``.devdata/stackfaq/queries.jsonl``, split 70 / 30 per label here.

Beside them, the far out-of-scope file ``.devdata/router_oos/far_mwoz.csv`` (written by
``bench/router_data_prepare.py``: 700 MultiWOZ customer turns about hotels, trains, taxis and
restaurants, the kind of message no customer-service intent covers) is routed by every
model: ``far_oos_review_rate`` is the share of it sent to review.

The split files are written to ``.devdata/router_oos/<data>/seed<N>/`` (train.csv, test.csv,
oos.csv, columns ``text,label``). By default training and evaluation run in this process with
the functions ``train_router`` and ``eval_router`` call (``routing.classifier.train`` /
``evaluate``); ``--commands`` runs the management commands themselves instead (needs the
database: run it under ``scripts/services.py``'s environment), as:

    python manage.py train_router --data train.csv --text-column text --label-column label \
        --name oos-bench
    python manage.py eval_router --data test.csv --text-column text --label-column label \
        --out-of-scope oos.csv --json figures.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
os.environ.setdefault("ENVIRONMENT", "dev")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402

from routing import classifier  # noqa: E402

DEVDATA = ROOT / ".devdata"
BITEXT = ROOT.parent.parent / "shared" / "data" / "bitext-intent-detection"
if not BITEXT.exists():
    BITEXT = Path("/work/shared/data/bitext-intent-detection")
LEAVE_OUT = 0.25
FAR_OOS = DEVDATA / "router_oos" / "far_mwoz.csv"


def _split(texts, labels, seed, share=0.7):
    rng = np.random.default_rng(seed)
    by = defaultdict(list)
    for i, label in enumerate(labels):
        by[label].append(i)
    train, test = [], []
    for label in sorted(by):
        idx = np.array(by[label])
        rng.shuffle(idx)
        k = round(len(idx) * share)
        train += idx[:k].tolist()
        test += idx[k:].tolist()
    return (
        [texts[i] for i in train],
        [labels[i] for i in train],
        [texts[i] for i in test],
        [labels[i] for i in test],
    )


def load(name, seed):
    """(train texts, train labels, test texts, test labels) before leaving intents out."""
    if name == "bitext":
        tr = classifier.read_csv(
            BITEXT / "Bitext_Sample_Customer_Service_Training_Dataset.csv", "utterance", "intent"
        )
        te = classifier.read_csv(
            BITEXT / "Bitext_Sample_Customer_Service_Testing_Dataset.csv", "utterance", "intent"
        )
        return tr[0], tr[1], te[0], te[1]
    if name == "banking77":
        texts, labels = classifier.read_csv(
            DEVDATA / "banking77" / "test_part.csv", "text", "category"
        )
    elif name == "stackfaq":
        rows = [
            json.loads(line)
            for line in (DEVDATA / "stackfaq" / "queries.jsonl").read_text().splitlines()
        ]
        texts, labels = [r["query"] for r in rows], [r["relevant"][0] for r in rows]
    else:
        raise SystemExit(f"unknown data set {name}")
    return _split(texts, labels, seed)


def leave_out(name, seed):
    tr_t, tr_l, te_t, te_l = load(name, seed)
    intents = sorted(set(tr_l))
    rng = np.random.default_rng(1000 + seed)
    out = set(rng.choice(intents, size=max(2, round(len(intents) * LEAVE_OUT)), replace=False))
    train = [(t, lab) for t, lab in zip(tr_t, tr_l, strict=True) if lab not in out]
    test = [(t, lab) for t, lab in zip(te_t, te_l, strict=True) if lab not in out]
    # The left-out intents' texts: their test rows (and their training rows when the data
    # set has no official split of its own, so the file is not tiny).
    oos = [t for t, lab in zip(te_t, te_l, strict=True) if lab in out]
    if name != "bitext":
        oos += [t for t, lab in zip(tr_t, tr_l, strict=True) if lab in out]
    return train, test, oos, sorted(out)


def sent_to_review(router, text, threshold):
    """Does the router, as it routes, send ``text`` to review (``evaluate``'s rule)?"""
    probs, in_scope = router.analyse([text])
    score = float(in_scope[0]) if in_scope is not None else None
    return router.sends_to_review(float(probs[0].max()), score, threshold)


def far_texts():
    if not FAR_OOS.exists():
        print(f"{FAR_OOS} is missing (bench/router_data_prepare.py writes it): no far figure")
        return []
    return classifier.read_texts(FAR_OOS, "text")


def write(path, rows, header):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def run_commands(folder):
    py = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(
        [*py, "train_router", "--data", str(folder / "train.csv"), "--text-column", "text",
         "--label-column", "label", "--name", f"oos-bench-{folder.parent.name}"],
        check=True,
    )  # fmt: skip
    out = folder / "figures.json"
    subprocess.run(
        [*py, "eval_router", "--data", str(folder / "test.csv"), "--text-column", "text",
         "--label-column", "label", "--out-of-scope", str(folder / "oos.csv"),
         "--json", str(out)],
        check=True,
    )  # fmt: skip
    return json.loads(out.read_text())


def measure(router, test, oos, far, threshold):
    """``evaluate`` on the split's test rows and out-of-scope texts, and the share of the
    far out-of-scope texts sent to review (when ``far`` is given)."""
    figures = classifier.evaluate(
        router,
        [t for t, _ in test],
        [lab for _, lab in test],
        threshold=threshold,
        out_of_scope=oos,
    )
    if far:
        flagged = [sent_to_review(router, text, threshold) for text in far]
        figures["far_oos_review_rate"] = round(float(np.mean(flagged)), 4)
        figures["far_oos_n"] = len(far)
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["bitext", "banking77", "stackfaq"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--features", default="auto", choices=classifier.FEATURE_CHOICES)
    parser.add_argument("--commands", action="store_true", help="run the manage.py commands")
    parser.add_argument(
        "--oos-calibration",
        default=classifier.OOS_FOLDS,
        choices=(classifier.OOS_FOLDS, classifier.OOS_PSEUDO),
        help="how the detector is calibrated (pseudo: the first version)",
    )
    parser.add_argument(
        "--refit-epochs", type=int, default=None, help="classifier.REFIT_EPOCHS for this run"
    )
    parser.add_argument("--encoder", default=None, choices=classifier.ENCODER_CHOICES)
    parser.add_argument("--save", help="folder: keep each trained model as <data>-seed<N>.joblib")
    parser.add_argument(
        "--repeat", type=int, default=1, help="evaluate the trained model this many times"
    )
    parser.add_argument(
        "--compare-table",
        action="store_true",
        help="evaluate each model without its word-piece table stage first, then with it",
    )
    parser.add_argument(
        "--table-target",
        type=float,
        default=None,
        help="classifier.TABLE_TARGET_SHARE for this run (the table stage's target share)",
    )
    args = parser.parse_args()
    if args.table_target is not None:
        classifier.TABLE_TARGET_SHARE = args.table_target
    threshold = settings.ROUTING_REVIEW_THRESHOLD
    if args.refit_epochs is not None:
        classifier.REFIT_EPOCHS = args.refit_epochs
    encoder = args.encoder or classifier.ROUTER_ENCODER
    print(f"refit epochs {classifier.REFIT_EPOCHS}, encoder {encoder}")
    print(f"load average at start: {os.getloadavg()}")
    far = far_texts()
    for name in args.data:
        for seed in args.seeds:
            train, test, oos, out = leave_out(name, seed)
            folder = DEVDATA / "router_oos" / name / f"seed{seed}"
            write(folder / "train.csv", train, ["text", "label"])
            write(folder / "test.csv", test, ["text", "label"])
            write(folder / "oos.csv", [[t] for t in oos], ["text"])
            head = (
                f"{name} seed {seed}: {len(set(lab for _, lab in train))} intents trained "
                f"({len(train)} rows), {len(test)} in-scope test rows, {len(oos)} out-of-scope "
                f"texts from {len(out)} left-out intents"
            )
            print(head, flush=True)
            if args.commands:
                figures = run_commands(folder)
            else:
                started = time.perf_counter()
                router, report = classifier.train(
                    [t for t, _ in train],
                    [lab for _, lab in train],
                    features=args.features,
                    oos_calibration=args.oos_calibration,
                    encoder_name=args.encoder,
                    review_threshold=threshold,  # as train_router passes the setting
                )
                if args.save:
                    import joblib

                    Path(args.save).mkdir(parents=True, exist_ok=True)
                    joblib.dump(router, Path(args.save) / f"{name}-seed{seed}.joblib")
                print(
                    f"  trained in {time.perf_counter() - started:.1f} s: {report.features}, "
                    f"held out {report.holdout}, out-of-scope {report.out_of_scope}",
                    flush=True,
                )

                if args.compare_table:
                    classifier.TABLE_STAGE = False
                    for _ in range(args.repeat):
                        off = measure(router, test, oos, far, threshold)
                        load = os.getloadavg()[0]
                        print(f"  without the table stage: {json.dumps(off)}  load {load:.1f}")
                    classifier.TABLE_STAGE = True
                for _ in range(args.repeat - 1):
                    again = measure(router, test, oos, (), threshold)
                    print(f"  {json.dumps(again)}  load {os.getloadavg()[0]:.1f}", flush=True)
                figures = measure(router, test, oos, far, threshold)
            print(f"  {json.dumps(figures)}  load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
