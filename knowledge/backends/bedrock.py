"""Amazon Bedrock Knowledge Bases: ``retrieve`` for search, ``start_ingestion_job`` for sync.

Bedrock reads the documents from the S3 data source itself, so an object event or a resync
only starts an ingestion job (seed 000's KB Sync Lambda). Failures are classified by
``support.aws`` (throttled or retryable: throttling, 5xx, timeouts; auth or permanent: the
rest).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from knowledge.models import IngestionJob, KnowledgeSource
from knowledge.retrieval import SearchResult, shown_text
from support.aws import aws_client, aws_error
from support.errors import PermanentError
from support.redaction import redact
from support.safe_urls import http_url


def _client(service: str) -> Any:
    return aws_client(service, region=settings.KB_AWS_REGION or None)


def _call(fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, context="Bedrock Knowledge Bases") from exc


def _location(result: dict[str, Any]) -> str:
    location = result.get("location") or {}
    for value in location.values():
        if isinstance(value, dict):
            for key in ("uri", "url"):
                if value.get(key):
                    return str(value[key])
    return ""


SOURCE_KEY = "source"  # a string metadata attribute: the KnowledgeSource name
TAGS_KEY = "tags"  # a string-list metadata attribute: the document's tags


def _any_of(filters: list[dict[str, Any]]) -> dict[str, Any]:
    # orAll / andAll take 2 to 5 members: one condition stands alone.
    return filters[0] if len(filters) == 1 else {"orAll": filters}


def metadata_filter(
    sources: Sequence[str] | None, tags: Sequence[str] | None
) -> dict[str, Any] | None:
    """The ``retrieve`` metadata filter with the local backend's semantics: the document's
    ``source`` is one of ``sources``, **and** its ``tags`` contain at least one of ``tags``
    (``equals`` / ``in`` on ``source``, ``listContains`` under ``orAll`` on ``tags``,
    ``andAll`` over the two). None when neither is given.

    The documents' ``.metadata.json`` sidecar files in the data source must carry the two
    attributes (``{"metadataAttributes": {"source": "...", "tags": [...]}}``)."""
    conditions: list[dict[str, Any]] = []
    names = list(dict.fromkeys(s for s in sources or () if s))
    if len(names) == 1:
        conditions.append({"equals": {"key": SOURCE_KEY, "value": names[0]}})
    elif names:
        conditions.append({"in": {"key": SOURCE_KEY, "value": names}})
    wanted = list(dict.fromkeys(t for t in tags or () if t))
    if wanted:
        # Long tag lists nest in groups of at most five conditions.
        groups = [
            _any_of([{"listContains": {"key": TAGS_KEY, "value": t}} for t in wanted[i : i + 5]])
            for i in range(0, len(wanted), 5)
        ]
        while len(groups) > 1:
            groups = [_any_of(groups[i : i + 5]) for i in range(0, len(groups), 5)]
        conditions.append(groups[0])
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else {"andAll": conditions}


class BedrockBackend:
    name = "bedrock"
    sends_text = True

    def __init__(self, *, agent_client: Any = None, runtime_client: Any = None) -> None:
        self._agent = agent_client
        self._runtime = runtime_client

    @property
    def knowledge_base_id(self) -> str:
        if not settings.KB_BEDROCK_KNOWLEDGE_BASE_ID:
            raise PermanentError("KB_BEDROCK_KNOWLEDGE_BASE_ID is not set")
        return str(settings.KB_BEDROCK_KNOWLEDGE_BASE_ID)

    def search(
        self,
        query: str,
        *,
        k: int,
        sources: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        redact_names: Sequence[str] = (),
    ) -> list[SearchResult]:
        runtime = self._runtime or _client("bedrock-agent-runtime")
        config: dict[str, Any] = {"numberOfResults": max(1, min(k, 100))}
        retrieval_filter = metadata_filter(sources, tags)
        if retrieval_filter is not None:
            config["filter"] = retrieval_filter
        response = _call(
            runtime.retrieve,
            knowledgeBaseId=self.knowledge_base_id,
            # The one place a KB query leaves the machine: redacted here.
            retrievalQuery={"text": redact(query, names=redact_names)},
            retrievalConfiguration={"vectorSearchConfiguration": config},
        )
        results = []
        for item in response.get("retrievalResults", []):
            text = (item.get("content") or {}).get("text", "")
            uri = _location(item)
            metadata = item.get("metadata") or {}
            title = str(metadata.get("title") or uri.rsplit("/", 1)[-1] or "Bedrock passage")
            ref = hashlib.sha256(f"{uri}\n{text}".encode()).hexdigest()[:16]
            results.append(
                SearchResult(
                    document_id=None,
                    document_external_id=uri,
                    title=title,
                    url=http_url(uri),
                    source="bedrock",
                    chunk_id=f"bedrock-{ref}",
                    heading_path="",
                    text=text,
                    headline=shown_text(text)[:240],  # raw text: escaped when rendered
                    score=float(item.get("score") or 0.0),
                    vector_score=float(item.get("score") or 0.0),
                )
            )
        return results[:k]

    def sync(
        self,
        job: IngestionJob,
        *,
        sources: Sequence[KnowledgeSource] | None = None,
        progress: Any = None,
    ) -> None:
        # Bedrock reads its data source itself: one ingestion job, whatever the sources.
        if not settings.KB_BEDROCK_DATA_SOURCE_ID:
            raise PermanentError("KB_BEDROCK_DATA_SOURCE_ID is not set")
        agent = self._agent or _client("bedrock-agent")
        response = _call(
            agent.start_ingestion_job,
            knowledgeBaseId=self.knowledge_base_id,
            dataSourceId=settings.KB_BEDROCK_DATA_SOURCE_ID,
            clientToken=f"support-kb-job-{job.pk:06d}-{job.created_at:%Y%m%d%H%M%S}",
            description=f"support KB job {job.pk} ({job.kind})",
        )
        ingestion = response["ingestionJob"]
        job.external_job_id = ingestion["ingestionJobId"]
        job.timings = {**job.timings, "bedrock_status": ingestion.get("status", "")}
        job.save(update_fields=["external_job_id", "timings", "updated_at"])

    def apply_object(self, job: IngestionJob, *, key: str, action: str) -> None:
        self.sync(job)

    def job_status(self, job: IngestionJob) -> dict[str, Any]:
        """The Bedrock ingestion job's status and statistics (``COMPLETE`` when done)."""
        agent = self._agent or _client("bedrock-agent")
        response = _call(
            agent.get_ingestion_job,
            knowledgeBaseId=self.knowledge_base_id,
            dataSourceId=settings.KB_BEDROCK_DATA_SOURCE_ID,
            ingestionJobId=job.external_job_id,
        )
        ingestion = response["ingestionJob"]
        return {"status": ingestion.get("status"), "statistics": ingestion.get("statistics", {})}
