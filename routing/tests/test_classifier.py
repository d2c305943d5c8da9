"""The local router's fusion of the TF-IDF SVM with the MiniLM network, and its cascade."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from routing import classifier
from routing.classifier import NEVER, TextRouter


@pytest.fixture(scope="module")
def bitext_slice() -> dict[str, list[str]]:
    """Ten Bitext intents: 40 training and 10 test utterances each (real customer text)."""
    texts, intents, _ = classifier.bitext_rows(classifier.BITEXT_TRAIN)
    test_texts, test_intents, _ = classifier.bitext_rows(classifier.BITEXT_TEST)
    keep = sorted(set(intents))[:10]
    train_rows = [(t, i) for t, i in zip(texts, intents, strict=True) if i in keep]
    test_rows = [(t, i) for t, i in zip(test_texts, test_intents, strict=True) if i in keep]
    per_label: dict[str, int] = {}
    chosen = []
    for text, intent in train_rows:
        if per_label.get(intent, 0) < 40:
            per_label[intent] = per_label.get(intent, 0) + 1
            chosen.append((text, intent))
    return {
        "texts": [t for t, _ in chosen],
        "labels": [i for _, i in chosen],
        "test_texts": [t for t, _ in test_rows][:100],
        "test_labels": [i for _, i in test_rows][:100],
    }


@pytest.fixture(scope="module")
def fusion_router(bitext_slice: dict[str, list[str]]) -> tuple[TextRouter, Any]:
    return classifier.train(bitext_slice["texts"], bitext_slice["labels"], features="fusion")


class CountingEncoder:
    """Wraps the real encoder and records which texts it was asked to embed."""

    def __init__(self) -> None:
        self.real = classifier.encoder()
        self.seen: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        return self.real.encode(texts)


def test_fusion_trains_scores_and_round_trips(fusion_router, bitext_slice):
    router, report = fusion_router
    assert router.features == classifier.FEATURES_FUSION
    assert router.fusion is not None
    assert set(report.holdout) == {"tfidf", "fusion"}
    assert report.embedded_share is not None
    assert 0.0 <= report.embedded_share <= 1.0
    assert router.fusion.weight in classifier.FUSION_WEIGHTS
    assert router.fusion.cascade_threshold in (*classifier.CASCADE_THRESHOLDS, NEVER)

    probs = router.proba(bitext_slice["test_texts"])
    assert probs.shape == (100, 10)
    assert np.allclose(probs.sum(axis=1), 1.0)
    predicted = [router.labels[i] for i in probs.argmax(axis=1)]
    accuracy = np.mean(
        [p == g for p, g in zip(predicted, bitext_slice["test_labels"], strict=True)]
    )
    assert accuracy >= 0.9

    again = TextRouter.from_bytes(router.to_bytes())
    assert np.allclose(again.proba(bitext_slice["test_texts"]), probs)


def test_cascade_embeds_only_the_texts_the_svm_is_unsure_of(
    fusion_router, bitext_slice, monkeypatch
):
    router, _ = fusion_router
    assert router.fusion is not None
    texts = bitext_slice["test_texts"]
    counting = CountingEncoder()
    monkeypatch.setattr(classifier, "encoder", lambda threads=1: counting)
    svm_only = classifier.softmax(
        router.clf.decision_function(router._matrix(texts)), router.temperature
    )
    threshold = float(np.median(svm_only.max(axis=1)))
    monkeypatch.setattr(router.fusion, "cascade_threshold", threshold)

    probs = router.proba(texts)

    sure = svm_only.max(axis=1) >= threshold
    assert 0 < sure.sum() < len(texts)
    assert sorted(counting.seen) == sorted(t for t, s in zip(texts, sure, strict=True) if not s)
    assert np.allclose(probs[sure], svm_only[sure])  # the SVM's answer where it is sure
    assert not np.allclose(probs[~sure], svm_only[~sure])  # fused where it is not

    counting.seen.clear()
    monkeypatch.setattr(router.fusion, "cascade_threshold", NEVER)
    router.proba(texts)
    assert len(counting.seen) == len(texts)


class FixedNet:
    """An MLP double whose probabilities are given."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def predict_proba(self, emb: np.ndarray) -> np.ndarray:
        return self.probs


def test_cascade_threshold_sits_above_every_held_out_disagreement():
    # Row 0: the SVM is 0.96 sure of label 0 but the network is certain of label 1, so the
    # fusion says 1; a threshold of 0.9 or 0.95 would change that row's answer.
    svm = np.array([[0.96, 0.04], [0.999, 0.001], [0.2, 0.8], [0.5, 0.5]])
    net = np.array([[1e-6, 1 - 1e-6], [0.9, 0.1], [0.1, 0.9], [0.4, 0.6]])
    y = np.array([1, 0, 1, 1])
    fusion, accuracy, share = classifier._tune_fusion(svm, FixedNet(net), np.zeros((4, 2)), y)  # type: ignore[arg-type]
    assert fusion.mix(svm, net)[0].argmax() == 1
    assert fusion.cascade_threshold == 0.98
    assert accuracy == 1.0
    assert share == 0.75  # only row 1 (0.999) skips the embedding


def test_fusion_weight_is_the_lowest_held_out_log_loss():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    good = np.full((300, 3), 0.05)
    good[np.arange(300), y] = 0.9  # the network is right and sure
    noisy = rng.dirichlet(np.ones(3), 300)  # the SVM knows nothing
    fusion, _, _ = classifier._tune_fusion(noisy, FixedNet(good), np.zeros((300, 2)), y)  # type: ignore[arg-type]
    assert fusion.weight == min(classifier.FUSION_WEIGHTS)


def test_unknown_feature_set_is_refused():
    with pytest.raises(ValueError, match="features must be one of"):
        classifier.train(["a b", "c d"], ["x", "y"], features="bert")


def test_neighbours_score_a_label_by_its_closest_rows():
    vectors = np.array(
        [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6], [-1.0, 0.0]], dtype=np.float32
    )
    y = np.array([0, 1, 1, 0, 2])  # label 3 has no rows
    neighbours = classifier.Neighbours(vectors, y, n_labels=4, k=2)
    query = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)

    scores = neighbours.scores(query, block=1)

    # label 0: cosines 1.0 and 0.8 -> 0.9; label 1: 0.0 and 0.6 -> 0.3; label 2: one row, -1.0
    assert np.allclose(scores[0], [0.9, 0.3, -1.0, -1.0], atol=1e-3)
    assert np.allclose(scores[1], [0.3, 0.9, 0.0, -1.0], atol=1e-3)
    again = pickle.loads(pickle.dumps(neighbours))  # noqa: S301 - our own bytes
    assert again._matrix is None  # the float32 copy is rebuilt, not stored
    assert np.allclose(again.scores(query), scores, atol=1e-3)


def test_fusion_mixes_three_log_probabilities():
    fusion = classifier.Fusion(FixedNet(np.array([[0.5, 0.5]])), 0.2, 1.0, NEVER, None, 0.3)  # type: ignore[arg-type]
    svm, net, knn = np.array([[0.9, 0.1]]), np.array([[0.2, 0.8]]), np.array([[0.6, 0.4]])
    expected = 0.2 * np.log(svm) + 0.5 * np.log(net) + 0.3 * np.log(knn)
    assert np.allclose(fusion.mix(svm, net, knn), expected)
    # Without neighbours the network takes the SVM's complement.
    assert np.allclose(fusion.mix(svm, net), 0.2 * np.log(svm) + 0.8 * np.log(net))
