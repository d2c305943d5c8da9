"""The shared MiniLM encoder: the router's dynamically quantised variant."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from support import minilm

TEXTS = ["I want to cancel my order", "my card was charged twice, refund please", "hello"]


def test_quantized_variant_is_close_to_the_shipped_model(tmp_path: Path) -> None:
    full = minilm.MiniLM(max_tokens=64)
    small = minilm.MiniLM(max_tokens=64, quantized=True, cache_dir=tmp_path)
    assert (full.name, small.name) == ("minilm", "minilm-int8")
    a, b = full.encode(TEXTS), small.encode(TEXTS)
    assert b.shape == (3, minilm.DIMENSIONS)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cosines = (a * b).sum(axis=1)
    assert cosines.min() > 0.97
    # One text alone (the routing path, no padding) gives the batch's vector.
    np.testing.assert_allclose(small.encode([TEXTS[1]])[0], b[1], atol=1e-4)
    # The build was cached under its recorded sha256.
    assert (tmp_path / minilm.QUANTIZED_NAME).exists()
    assert small.model_sha256 == minilm.QUANTIZED_SHA256


def test_a_tampered_cached_model_is_rebuilt_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / minilm.QUANTIZED_NAME
    path.write_bytes(b"not a model")
    data = minilm.quantized_model(tmp_path)
    assert minilm._sha256(data) == minilm.QUANTIZED_SHA256
    assert path.read_bytes() == data
