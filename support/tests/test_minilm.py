"""The shared MiniLM encoder: the router's dynamically quantised variant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
    # The build was cached under its recorded sha256, readable by other users (the image
    # builds the cache as root; the app runs as an unprivileged user).
    assert (tmp_path / minilm.QUANTIZED_NAME).exists()
    assert (tmp_path / minilm.QUANTIZED_NAME).stat().st_mode & 0o777 == 0o644
    assert small.model_sha256 == minilm.QUANTIZED_SHA256


def test_a_tampered_cached_model_is_rebuilt_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / minilm.QUANTIZED_NAME
    path.write_bytes(b"not a model")
    data = minilm.quantized_model(tmp_path)
    assert minilm._sha256(data) == minilm.QUANTIZED_SHA256
    assert path.read_bytes() == data


def test_a_shallower_variant_is_cut_from_the_shipped_model(tmp_path: Path) -> None:
    six = minilm.MiniLM(max_tokens=64, quantized=True, cache_dir=tmp_path)
    four = minilm.MiniLM(max_tokens=64, quantized=True, cache_dir=tmp_path, layers=4)
    assert (six.name, four.name) == ("minilm-int8", "minilm-l4-int8")
    # built from the shipped file, deterministic, cached beside the 6-layer build
    assert four.model_sha256 == minilm.TRUNCATED_SHA256[4]
    assert (tmp_path / minilm.quantized_name(4)).exists()
    assert minilm.quantized_name(4) != minilm.QUANTIZED_NAME
    a, b = six.encode(TEXTS), four.encode(TEXTS)
    assert b.shape == (3, minilm.DIMENSIONS)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(a, b, atol=1e-2)  # another embedding space
    # each layer count is its own encoder in the per-process registry
    assert minilm.minilm(quantized=True, cache_dir=tmp_path, layers=4).layers == 4
    assert minilm.minilm(quantized=True, cache_dir=tmp_path).layers == minilm.LAYERS


def test_layer_counts_outside_the_model_are_refused(tmp_path: Path) -> None:
    for layers in (0, 7):
        with pytest.raises(ValueError, match="layers"):
            minilm.truncate(Path("unused.onnx"), layers, tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="quantised"):
        minilm.MiniLM(layers=4)


def test_the_fused_variant_is_the_same_network_in_fewer_kernels(tmp_path: Path) -> None:
    import onnx

    int8 = minilm.MiniLM(max_tokens=64, quantized=True, cache_dir=tmp_path)
    fused = minilm.MiniLM(max_tokens=64, quantized=True, cache_dir=tmp_path, fused=True)
    assert fused.name == "minilm-int8-fused" != int8.name
    # built from the shipped file, deterministic, cached under its own name
    assert fused.model_sha256 == minilm.FUSED_SHA256
    assert (tmp_path / minilm.FUSED_NAME).exists()
    a, b = int8.encode(TEXTS), fused.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.995  # the same embedding, not bit for bit
    graph = onnx.load_from_string(minilm.quantized_model(tmp_path, fused=True)).graph
    plain = onnx.load_from_string(minilm.quantized_model(tmp_path)).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("QAttention") == minilm.LAYERS
    assert len(graph.node) < len(plain.node) / 2
    assert minilm.minilm(quantized=True, cache_dir=tmp_path, fused=True) is not (
        minilm.minilm(quantized=True, cache_dir=tmp_path)
    )


def test_the_plain_norm_variant_keeps_onnx_layernorms_out_of_the_slow_fused_kernel(
    tmp_path: Path,
) -> None:
    import onnx

    fused = minilm.MiniLM(max_tokens=64, quantized=True, cache_dir=tmp_path, fused=True)
    plain = minilm.MiniLM(
        max_tokens=64, quantized=True, cache_dir=tmp_path, fused=True, plain_norms=True
    )
    assert plain.name == "minilm-int8-fused-ln" != fused.name
    assert plain.model_sha256 == minilm.PLAIN_NORMS_SHA256
    assert (tmp_path / minilm.PLAIN_NORMS_NAME).exists()
    plain_bytes = minilm.quantized_model(tmp_path, fused=True, plain_norms=True)
    ops = [n.op_type for n in onnx.load_from_string(plain_bytes).graph.node]
    assert plain_bytes != minilm.quantized_model(tmp_path, fused=True)
    assert ops.count("QAttention") == minilm.LAYERS
    assert "SkipLayerNormalization" not in ops
    assert ops.count("LayerNormalization") == 2 * minilm.LAYERS + 1
    # the session must not fuse them back (onnxruntime would at its default level)
    session_ops = {
        node.op_type
        for node in onnx.load(str(_optimised(tmp_path, plain_bytes, disabled=True))).graph.node
    }
    assert "SkipLayerNormalization" not in session_ops
    refused = {
        node.op_type
        for node in onnx.load(str(_optimised(tmp_path, plain_bytes, disabled=False))).graph.node
    }
    assert "SkipLayerNormalization" in refused  # what the disabled transformer prevents
    a, b = fused.encode(TEXTS), plain.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.99  # the same embedding, not bit for bit
    with pytest.raises(ValueError, match="fused graph"):
        minilm.quantized_model(tmp_path, plain_norms=True)


def _optimised(tmp_path: Path, model: bytes, *, disabled: bool) -> Path:
    """The graph an onnxruntime session runs, as the product creates it."""
    import onnxruntime as ort

    target = tmp_path / f"session-{disabled}.onnx"
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(
        model,
        sess_options=options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=[minilm.SKIP_NORM_FUSION] if disabled else None,
    )
    return target


def test_the_fused_variant_needs_the_quantised_six_layers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quantised"):
        minilm.MiniLM(fused=True)
    with pytest.raises(ValueError, match="six layers"):
        minilm.quantized_model(tmp_path, layers=4, fused=True)


def test_an_unexpected_export_is_refused_by_the_attention_fusion(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    )
    onnx.save(model, str(tmp_path / "other.onnx"))
    with pytest.raises(minilm.PermanentError, match="not the expected export"):
        minilm.fuse_attention(tmp_path / "other.onnx", tmp_path / "out.onnx")
