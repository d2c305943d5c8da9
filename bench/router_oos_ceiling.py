# mypy: ignore-errors
"""How far can out-of-scope detection go on a leave-intents-out split? (issue #18 item 2)

Trains the router on a split written by ``bench/router_oos.py`` (``.devdata/router_oos/
<data>/seed<N>/``), then reads every in-scope test text and every out-of-scope text through
the detector's signals (no cascade skip) and prints, for the out-of-scope texts:

- each signal's AUC (in-scope vs out-of-scope) and the share flagged at 5% / 10% of in-scope
  texts flagged by that signal alone;
- the trained detector's share at its own threshold;
- an *oracle*: a logistic regression fitted on these very test texts (in-scope against
  out-of-scope, in-sample: a bound no detector built from these signals can honestly beat)
  at 5% / 10% of in-scope flagged;
- per left-out intent, the share its texts sent to review by the router as it routes (the
  cascade, the review threshold and the detector);
- the neighbour ceiling: the share of out-of-scope texts whose closest training row is at
  least as close as for the median / the 10th-percentile in-scope test text (such a text
  looks, to the embedding, like an ordinary in-scope text).

    .venv/bin/python bench/router_oos_ceiling.py --data banking77 --seeds 1
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
os.environ.setdefault("ENVIRONMENT", "dev")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from bench.router_oos import load, sent_to_review  # noqa: E402
from routing import classifier  # noqa: E402

NAMES = [
    "log p svm",
    "log 1-p svm",
    "svm top score",
    "svm score margin",
    "knn mean",
    "knn max",
    "-mahalanobis",
    "label cover",
    "unknown share",
]


def rows(path, label=True):
    with open(path, newline="", encoding="utf-8") as fh:
        return [(r["text"], r.get("label")) for r in csv.DictReader(fh)]


def at_fpr(score_in, score_out, fpr):
    """Share of out-of-scope texts below the ``fpr`` quantile of the in-scope scores (high
    score = in scope)."""
    cut = np.quantile(score_in, fpr)
    return float(np.mean(score_out < cut))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["banking77"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    args = parser.parse_args()
    for name in args.data:
        for seed in args.seeds:
            folder = ROOT / ".devdata" / "router_oos" / name / f"seed{seed}"
            train = rows(folder / "train.csv")
            test = rows(folder / "test.csv")
            oos = [t for t, _ in rows(folder / "oos.csv")]
            router, report = classifier.train([t for t, _ in train], [lab for _, lab in train])
            det = router.out_of_scope
            print(f"{name} seed {seed}: {report.features}, out-of-scope {report.out_of_scope}")

            def signals(texts, router=router, det=det):
                scores = router.decision(texts)
                probs = classifier.softmax(scores, router.temperature)
                emb = router.embed(texts)
                return det.read(texts, probs, emb, scores)

            s_in, s_out = signals([t for t, _ in test]), signals(oos)
            f_in, f_out = s_in.features(extended=True), s_out.features(extended=True)
            f_in[:, 6] *= -1  # the Mahalanobis distance: high = in scope, like the rest
            f_out[:, 6] *= -1
            y = np.r_[np.ones(len(f_in)), np.zeros(len(f_out))]
            for j, label in enumerate(NAMES):
                col = np.r_[f_in[:, j], f_out[:, j]]
                auc = roc_auc_score(y, col)
                sign = 1 if auc >= 0.5 else -1
                print(
                    f"  {label:18s} AUC {max(auc, 1 - auc):.3f}  at 5%: "
                    f"{at_fpr(sign * f_in[:, j], sign * f_out[:, j], 0.05):.3f}  at 10%: "
                    f"{at_fpr(sign * f_in[:, j], sign * f_out[:, j], 0.10):.3f}"
                )
            d_in, d_out = det.scores(s_in), det.scores(s_out)
            print(
                f"  detector           AUC {roc_auc_score(y, np.r_[d_in, d_out]):.3f}  at its "
                f"threshold: in-scope {np.mean(d_in < det.threshold):.3f}, out-of-scope "
                f"{np.mean(d_out < det.threshold):.3f}; at 5%: {at_fpr(d_in, d_out, 0.05):.3f}"
                f"  at 10%: {at_fpr(d_in, d_out, 0.10):.3f}"
            )
            x = np.r_[f_in, f_out]
            x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-9)
            lr = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(x, y)
            o = lr.decision_function(x)
            o_in, o_out = o[: len(f_in)], o[len(f_in) :]
            print(
                f"  oracle (in-sample) AUC {roc_auc_score(y, o):.3f}  at 5%: "
                f"{at_fpr(o_in, o_out, 0.05):.3f}  at 10%: {at_fpr(o_in, o_out, 0.10):.3f}"
            )
            tr_t, tr_l, te_t, te_l = load(name, seed)
            intent_of = dict(zip(tr_t + te_t, tr_l + te_l, strict=True))
            reviewed: dict[str, list[bool]] = {}
            for text in oos:
                flag = sent_to_review(router, text, settings.ROUTING_REVIEW_THRESHOLD)
                reviewed.setdefault(intent_of.get(text, "?"), []).append(flag)
            print(
                "  sent to review, per left-out intent: "
                + ", ".join(f"{k} {np.mean(v):.2f} ({len(v)})" for k, v in sorted(reviewed.items()))
            )
            near_in, near_out = f_in[:, 5], f_out[:, 5]
            print(
                "  neighbour ceiling: out-of-scope texts at least as close to a training row "
                f"as the median in-scope text {np.mean(near_out >= np.median(near_in)):.3f}, "
                f"as the 10th percentile {np.mean(near_out >= np.quantile(near_in, 0.1)):.3f}"
            )


if __name__ == "__main__":
    main()
