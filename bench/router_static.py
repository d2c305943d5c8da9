# mypy: ignore-errors
"""A static token table distilled from the routing encoder, used as the router's encoder
(issue #18 item 3: the 5 ms budget on any CPU). An experiment: nothing in the product uses it.

Each of the tokenizer's 30,522 word pieces goes through the shipped int8 encoder once, alone
between [CLS] and [SEP]; its vector is the mean of the three output states (what ``encode``
gives a one-piece text). A text's vector is then the mean of its pieces' rows, normalised:
no transformer at routing time, a table lookup and a sum (the idea of model2vec, whose own
distillation needs PyTorch and the hub; this one reads only the shipped ONNX graph). The
table takes ~10 s to build and is kept in ``.devdata/router_static/table.npy``.

The router is then trained and evaluated exactly as ``bench/router_oos.py`` does (same
leave-intents-out splits, ``routing.classifier.train`` / ``evaluate``, the far out-of-scope
file), with ``routing.classifier.encoder`` replaced by the table for this process only.

    .venv/bin/python bench/router_static.py --data bitext stackfaq --seeds 1 3
        [--weights uniform|sif] [--pc] [--proxies | --cascade]

``--weights sif``: pieces weighted a / (a + p(piece)), p counted over the training texts;
``--pc``: the training texts' first principal direction removed (SIF's common component).
``--cascade``: the table as a cascade's first stage, the shipped encoder behind it. Four
leave-labels-out folds of the training rows each train a table router on three quarters of
the labels; the in-scope scores its detector gives the left-out labels' texts that it would
not send to review set the bar (their 100th / 99th / 95th percentile). A test text whose
table-router answer is in scope above the bar keeps that answer (no transformer); every other
text is routed by the shipped router, trained on all rows as usual. ``skip_in`` is the share
of in-scope test texts decided by the table alone (what sets p50). The table routers' own
SVM-score skip is turned off so that every text gets the table detector's score.
``--proxies``: no training; per split, the frozen-vector figures a training step could use
to choose an encoder cheaply (held-out logistic-regression accuracy; leave-labels-out
nearest-row cosine: out-of-scope share flagged at 5% of in-scope, and AUC) for the shipped
encoder and for the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
os.environ.setdefault("ENVIRONMENT", "dev")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402

from routing import classifier  # noqa: E402
from support import minilm as mm  # noqa: E402

TABLE = ROOT / ".devdata" / "router_static" / "table.npy"


def build_table() -> np.ndarray:
    enc = classifier.encoder(threads=1)
    vocab = enc._tokenizer.get_vocab_size()
    out = np.zeros((vocab, mm.DIMENSIONS), dtype=np.float32)
    started = time.perf_counter()
    for i in range(vocab):
        ids = np.array([[101, i, 102]], dtype=np.int64)  # [CLS] piece [SEP]
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in enc._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        out[i] = enc._session.run(None, feeds)[0][0].mean(axis=0)
    print(f"table: {vocab} pieces in {time.perf_counter() - started:.1f} s", flush=True)
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    np.save(TABLE, out)
    return out


class Static:
    """``encode`` as ``support.minilm.MiniLM`` has it, from the table."""

    dimensions = mm.DIMENSIONS

    def __init__(self, table, weights=None, pc=None):
        from tokenizers import Tokenizer

        self.table = table
        self.weights = np.ones(len(table), dtype=np.float32) if weights is None else weights
        self.pc = pc
        self.tok = Tokenizer.from_str(mm.TOKENIZER_PATH.read_text())
        self.tok.no_padding()

    def pieces(self, texts):
        encodings = self.tok.encode_batch([t or " " for t in texts], add_special_tokens=False)
        return [np.array(e.ids[:128], dtype=np.int64) for e in encodings]

    def encode(self, texts):
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for j, ids in enumerate(self.pieces(texts)):
            if len(ids):
                w = self.weights[ids]
                out[j] = (self.table[ids] * w[:, None]).sum(axis=0) / max(float(w.sum()), 1e-9)
        if self.pc is not None:
            out = out - np.outer(out @ self.pc, self.pc)
        return mm.normalise(out)


def proxies(vectors, y, seed=13):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, ho = train_test_split(idx, test_size=0.15, stratify=y, random_state=seed)
    model = LogisticRegression(max_iter=300, C=10).fit(vectors[tr], y[tr])
    accuracy = float((model.predict(vectors[ho]) == y[ho]).mean())
    order = np.random.default_rng(seed).permutation(np.unique(y))
    flagged, aucs = [], []
    for k in range(4):  # leave a quarter of the labels out, four times
        out = set(order[k::4])
        seen = np.array([i for i in tr if y[i] not in out])
        inside = np.array([i for i in ho if y[i] not in out])
        unseen = np.array([i for i in idx if y[i] in out])
        s_in = (vectors[inside] @ vectors[seen].T).max(axis=1)
        s_out = (vectors[unseen] @ vectors[seen].T).max(axis=1)
        flagged.append(float((s_out < np.quantile(s_in, 0.05)).mean()))
        truth = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
        aucs.append(roc_auc_score(truth, np.r_[s_in, s_out]))
    return {
        "accuracy": round(accuracy, 4),
        "knn_oos_at_5pct": round(float(np.mean(flagged)), 4),
        "knn_auc": round(float(np.mean(aucs)), 4),
    }


def routed(router, texts, enc, threshold):
    """(label, sent to review, in-scope score) per text, as the router routes one text."""
    classifier.encoder = enc
    out = []
    for text in texts:
        probs, in_scope = router.analyse([text])
        confidence = float(probs[0].max())
        score = float(in_scope[0]) if in_scope is not None else None
        review = router.sends_to_review(confidence, score, threshold)
        out.append((router.labels[int(probs[0].argmax())], review, score))
    return out


def cascade(name, seed, texts, y, test, oos, static, threshold):
    shipped = classifier.encoder

    def table(threads=1, name=None):
        return static

    def table_router(rows):
        classifier.encoder = table
        router, _ = classifier.train([texts[i] for i in rows], [y[i] for i in rows])
        router.out_of_scope.skip_score = np.inf  # every text gets the table detector's score
        return router

    order = np.random.default_rng(7).permutation(np.unique(y))
    passed = []
    for k in range(4):
        out = set(order[k::4])
        router = table_router([i for i in range(len(y)) if y[i] not in out])
        unseen = [texts[i] for i in range(len(y)) if y[i] in out]
        passed += [s for _, review, s in routed(router, unseen, table, threshold) if not review]
    first = table_router(list(range(len(y))))
    classifier.encoder = shipped
    full, _ = classifier.train(texts, list(y))
    te_texts, te_labels = [t for t, _ in test], [lab for _, lab in test]
    s_in, s_out = routed(first, te_texts, table, threshold), routed(first, oos, table, threshold)
    f_in, f_out = routed(full, te_texts, shipped, threshold), routed(full, oos, shipped, threshold)
    classifier.encoder = shipped

    def figures(r_in, r_out):
        right = [r[0] == lab for r, lab in zip(r_in, te_labels, strict=True)]
        return {
            "accuracy": round(float(np.mean(right)), 4),
            "review_rate": round(float(np.mean([r[1] for r in r_in])), 4),
            "oos_review_rate": round(float(np.mean([r[1] for r in r_out])), 4),
        }

    print(f"{name} seed {seed}: shipped {json.dumps(figures(f_in, f_out))}", flush=True)
    print(f"{name} seed {seed}: table alone {json.dumps(figures(s_in, s_out))}", flush=True)
    for q in (1.0, 0.99, 0.95):
        bar = float(np.quantile(passed, q)) if passed else -np.inf

        def pick(first_stage, second, bar=bar):
            return [
                s if (not s[1] and s[2] is not None and s[2] > bar) else f
                for s, f in zip(first_stage, second, strict=True)
            ]

        skip = np.mean([not s[1] and s[2] is not None and s[2] > bar for s in s_in])
        row = {"bar_percentile": q * 100, "bar": round(bar, 4), "skip_in": round(float(skip), 3)}
        row.update(figures(pick(s_in, f_in), pick(s_out, f_out)))
        print(f"{name} seed {seed}: cascade {json.dumps(row)}", flush=True)


def main():
    import router_oos as ro

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["bitext", "stackfaq"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--weights", default="uniform", choices=("uniform", "sif"))
    parser.add_argument("--pc", action="store_true")
    parser.add_argument("--proxies", action="store_true")
    parser.add_argument("--cascade", action="store_true")
    args = parser.parse_args()
    table = np.load(TABLE) if TABLE.exists() else build_table()
    threshold = settings.ROUTING_REVIEW_THRESHOLD
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for name in args.data:
        for seed in args.seeds:
            train, test, oos, _ = ro.leave_out(name, seed)
            texts, y = [t for t, _ in train], np.array([lab for _, lab in train])
            weights = None
            if args.weights == "sif":
                counts = np.zeros(len(table))
                for ids in Static(table).pieces(texts):
                    np.add.at(counts, ids, 1)
                weights = (1e-3 / (1e-3 + counts / counts.sum())).astype(np.float32)
            pc = None
            if args.pc:
                pc = np.linalg.svd(Static(table, weights).encode(texts), full_matrices=False)[2][0]
            static = Static(table, weights, pc)
            if args.cascade:
                cascade(name, seed, texts, y, test, oos, static, threshold)
                continue
            if args.proxies:
                shipped = proxies(classifier.embed_many(texts), y)
                print(f"{name} seed {seed}: shipped encoder {json.dumps(shipped)}", flush=True)
                print(f"{name} seed {seed}: table {json.dumps(proxies(static.encode(texts), y))}")
                continue
            classifier.encoder = lambda threads=1, name=None, _s=static: _s
            started = time.perf_counter()
            router, report = classifier.train(texts, list(y))
            print(
                f"{name} seed {seed}: trained in {time.perf_counter() - started:.1f} s: "
                f"{report.features}, held out {report.holdout}, out-of-scope "
                f"{report.out_of_scope}",
                flush=True,
            )
            figures = ro.measure(router, test, oos, ro.far_texts(), threshold)
            print(f"  {json.dumps(figures)}  load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
