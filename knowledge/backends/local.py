"""The local backend: chunks in PostgreSQL, hybrid pgvector + full-text retrieval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from knowledge import retrieval
from knowledge.models import IngestionJob, KnowledgeSource
from knowledge.retrieval import SearchResult


class LocalBackend:
    name = "local"

    @property
    def sends_text(self) -> bool:
        # The embedder retrieval will use: Titan embeds the query remotely.
        return bool(getattr(retrieval.get_query_embedder(), "sends_text", True))

    def search(
        self,
        query: str,
        *,
        k: int,
        sources: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        redact_names: Sequence[str] = (),
    ) -> list[SearchResult]:
        # Only the embedder may send the query anywhere (Titan): it redacts it itself.
        return retrieval.search(query, k=k, sources=sources, tags=tags, redact_names=redact_names)

    def sync(
        self,
        job: IngestionJob,
        *,
        sources: Sequence[KnowledgeSource] | None = None,
        progress: Any = None,
    ) -> None:
        from knowledge.services import _report, job_sources, source_sync

        targets = list(sources) if sources is not None else job_sources(job)
        totals: dict[str, int] = {}
        for source in targets:
            if source is None:
                continue
            counts = source_sync(source=source, full=job.full, job=job, progress=progress)
            for key, value in counts.as_dict().items():
                totals[key] = totals.get(key, 0) + value
        if len(targets) > 1:  # per-source progress overwrote the counters: store the sums
            job.refresh_from_db()
            from knowledge.services import IngestCounts

            summed = IngestCounts(
                created=totals.get("created", 0),
                updated=totals.get("updated", 0),
                unchanged=totals.get("unchanged", 0),
                deleted=totals.get("deleted", 0),
                failed=totals.get("failed", 0),
                chunks=totals.get("chunks", 0),
                errors=list(job.errors),
                timings=dict(job.timings),
            )
            _report(job, summed, job.processed, job.total, None)

    def apply_object(self, job: IngestionJob, *, key: str, action: str) -> None:
        from knowledge.services import s3_object_apply

        assert job.source is not None
        s3_object_apply(source=job.source, key=key, action=action, job=job)
