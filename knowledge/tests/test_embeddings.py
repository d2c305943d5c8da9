"""The knowledge embedder's batching never changes a vector (issue 18: ingestion speed-ups
must keep retrieval quality identical)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from knowledge.embeddings import MAX_BATCH, MiniLMEmbedder, plan_batches
from support.minilm import MiniLM

TEXTS = [
    "How do I reset my password?",
    "Reset your password > Steps\nClick 'Forgot password' on the sign-in page, then follow "
    "the link we e-mail you. The link expires after one hour; ask for a new one if it has.",
    "",
    "Shipping",
    "Returns > Damaged items\n" + "Send us a photo of the damage and we ship a replacement. " * 12,
    "Orders ship in 2 days.",
    "Warranty > Coverage\n" + "The warranty lasts two years from delivery and covers parts. " * 40,
    "How do I reset my password?",  # a duplicate
    "Do they have free parking?",
    "Could I get their postcode please?",
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The vectors as the shared encoder computed them before (one padded batch of 32,
    sorted by characters, under one lock)."""
    return MiniLM(batch_size=32).encode(TEXTS)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("budget", [1, 64, 512, 100_000])
def test_vectors_do_not_depend_on_batching_or_workers(reference, workers, budget):
    embedder = MiniLMEmbedder(workers=workers, token_budget=budget, max_tokens=256)
    together = embedder.encode(TEXTS)
    np.testing.assert_allclose(together, reference, atol=1e-5)
    one_by_one = np.vstack([embedder.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(one_by_one, reference, atol=1e-5)
    order = list(range(len(TEXTS)))
    random.Random(3).shuffle(order)
    shuffled = embedder.encode([TEXTS[i] for i in order])
    np.testing.assert_allclose(shuffled, reference[order], atol=1e-5)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_empty_input_gives_an_empty_matrix():
    assert MiniLMEmbedder(workers=2).encode([]).shape == (0, 384)


def test_batches_are_sorted_by_length_and_kept_within_the_token_budget():
    lengths = [200, 12, 15, 14, 256, 40, 13, 90, 100, 11] + [10] * 40
    batches = plan_batches(lengths, budget=512)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)  # sorted: each run pads to little more than its texts
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * width <= 512
        assert len(batch) <= MAX_BATCH
    assert [len(b) for b in batches][:2] == [MAX_BATCH, MAX_BATCH]  # short texts: full runs
    assert plan_batches([256, 200, 90], budget=256) == [[2], [1], [0]]  # long ones alone
