"""Issue 18 speed levers: int8 MiniLM as an embedder of its own, truncated passages under
another name, query embedders, and a query's few turns spread over the workers."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge import embeddings
from knowledge.embeddings import (
    MiniLMEmbedder,
    MiniLMInt8Embedder,
    MiniLMInt8FusedEmbedder,
    MiniLMInt8FusedLNEmbedder,
    get_query_embedder,
    query_embedder_name,
)
from knowledge.services import embedding_key
from support.minilm import MiniLM

TEXTS = [
    "Do they have free parking?",
    "How about the Acorn Guest House? It is in the north.",
    "I need a cheap hotel in the north with free wifi.",
    "",
    "Returns > Damaged items\n" + "Send us a photo of the damage and we ship a replacement. " * 30,
]


@pytest.fixture(scope="module")
def int8_reference() -> np.ndarray:
    """The router's int8 variant, one text per run (``support.minilm``)."""
    return MiniLM(quantized=True, threads=1).encode(TEXTS)


@pytest.mark.parametrize("workers", [1, 2])
def test_int8_embedder_gives_the_shared_int8_vectors_whatever_the_batch(int8_reference, workers):
    embedder = MiniLMInt8Embedder(workers=workers, max_tokens=256)
    assert embedder.name == "minilm-int8"
    np.testing.assert_allclose(embedder.encode(TEXTS), int8_reference, atol=1e-5)
    alone = np.vstack([embedder.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(alone, int8_reference, atol=1e-5)
    np.testing.assert_allclose(embedder.encode(TEXTS[::-1]), int8_reference[::-1], atol=1e-5)


def test_int8_vectors_are_close_to_float32_but_another_embedding_key():
    f32 = MiniLMEmbedder(workers=1, max_tokens=256).encode(TEXTS)
    int8 = MiniLMInt8Embedder(workers=1, max_tokens=256).encode(TEXTS)
    cosines = (f32 * int8).sum(axis=1)
    assert cosines.min() > 0.97
    assert not np.allclose(f32, int8, atol=1e-4)
    assert embedding_key("minilm", "x") != embedding_key("minilm-int8", "x")


def test_truncated_passages_are_another_embedder_name():
    full = MiniLMEmbedder(workers=1, max_tokens=256)
    short = MiniLMEmbedder(workers=1, max_tokens=64)
    assert (full.name, short.name) == ("minilm", "minilm-t64")
    assert MiniLMInt8Embedder(workers=1, max_tokens=64).name == "minilm-int8-t64"
    a, b = full.encode(TEXTS), short.encode(TEXTS)
    np.testing.assert_allclose(a[:4], b[:4], atol=1e-5)  # short texts: the same vectors
    assert float(a[4] @ b[4]) < 0.9999  # the long passage lost its tail


def test_a_few_short_texts_are_spread_over_the_workers(monkeypatch):
    embedder = MiniLMEmbedder(workers=2)
    runs: list[int] = []
    inner = embedder._run

    def counting(rows):
        runs.append(len(rows))
        return inner(rows)

    monkeypatch.setattr(embedder, "_run", counting)
    turns = [*TEXTS[:3], "Could I get their postcode please?", "Is it expensive?"]
    vectors = embedder.encode(turns)
    assert sorted(runs) == [2, 3]  # two runs side by side, not one run of five
    np.testing.assert_allclose(vectors, MiniLM(batch_size=32).encode(turns), atol=1e-5)


def test_queries_can_use_int8_over_minilm_passages(settings):
    settings.KB_EMBED_MAX_TOKENS = 256  # the names without a -t suffix
    settings.KB_EMBEDDER = "minilm"
    settings.KB_QUERY_EMBEDDER = "minilm-int8"
    assert query_embedder_name() == "minilm-int8"
    assert get_query_embedder().name == "minilm-int8"
    settings.KB_QUERY_EMBEDDER = "minilm"  # float32 queries, the passages' own vectors
    assert query_embedder_name() == "minilm"
    assert get_query_embedder().name == "minilm"


@pytest.mark.parametrize("passages", ["titan", "minilm-int8"])
def test_the_query_embedder_never_searches_another_space(settings, passages):
    settings.KB_EMBEDDER = passages
    settings.KB_QUERY_EMBEDDER = "minilm-int8"
    assert query_embedder_name() == passages
    settings.KB_QUERY_EMBEDDER = "minilm"
    assert query_embedder_name() == passages


def test_int8_is_a_registered_embedder():
    assert embeddings._REGISTRY["minilm-int8"] is MiniLMInt8Embedder


# (name, embedder, support.minilm variant, the earlier variant it replaced)
INT8_VARIANTS = [
    ("minilm-int8-fused", MiniLMInt8FusedEmbedder, {"fused": True}, MiniLMInt8Embedder),
    (
        "minilm-int8-fused-ln",  # the default: the fused graph with plain LayerNorms
        MiniLMInt8FusedLNEmbedder,
        {"fused": True, "plain_norms": True},
        MiniLMInt8FusedEmbedder,
    ),
]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(("name", "factory", "variant", "earlier"), INT8_VARIANTS)
def test_an_int8_variant_gives_the_routers_vectors_whatever_the_batch(
    workers, name, factory, variant, earlier
):
    reference = MiniLM(quantized=True, threads=1, **variant).encode(TEXTS)
    embedder = factory(workers=workers, max_tokens=256)
    assert embeddings._REGISTRY[name] is factory
    assert embedder.name == name
    np.testing.assert_allclose(embedder.encode(TEXTS), reference, atol=1e-5)
    np.testing.assert_allclose(embedder.encode(TEXTS[::-1]), reference[::-1], atol=1e-5)
    before = earlier(workers=1, max_tokens=256)
    theirs = before.encode(TEXTS)
    assert (reference * theirs).sum(axis=1).min() > 0.99  # the same network, another name
    assert not np.allclose(reference, theirs, atol=1e-5)
    assert embedding_key(name, "x") != embedding_key(before.name, "x")
