"""KB backends behind one small interface, chosen by ``KB_BACKEND`` (local | bedrock)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from django.conf import settings

from knowledge.models import IngestionJob, KnowledgeSource
from knowledge.retrieval import SearchResult
from support.errors import PermanentError

ProgressFn = Any


class KnowledgeBackend(Protocol):
    name: str

    @property
    def sends_text(self) -> bool:
        """Whether a search query leaves the machine (and is redacted first)."""
        ...

    def search(
        self,
        query: str,
        *,
        k: int,
        sources: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        redact_names: Sequence[str] = (),
    ) -> list[SearchResult]:
        """``redact_names``: the names of the customer the query is about; a backend that
        sends the query off-machine redacts it (``support.redaction``) first."""
        ...

    def sync(
        self,
        job: IngestionJob,
        *,
        sources: Sequence[KnowledgeSource] | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        """``sources``: the ones the caller holds the sync locks of (``None``: the job's
        own, or all)."""
        ...

    def apply_object(self, job: IngestionJob, *, key: str, action: str) -> None: ...


def get_backend(name: str | None = None) -> KnowledgeBackend:
    from knowledge.backends.bedrock import BedrockBackend
    from knowledge.backends.local import LocalBackend

    key = name or settings.KB_BACKEND
    registry: dict[str, type[LocalBackend] | type[BedrockBackend]] = {
        "local": LocalBackend,
        "bedrock": BedrockBackend,
    }
    if key not in registry:
        raise PermanentError(f"KB_BACKEND: unknown backend {key!r} (local or bedrock)")
    backend: KnowledgeBackend = registry[key]()
    return backend
