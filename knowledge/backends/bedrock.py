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


SOURCE_URI_KEY = "x-amz-bedrock-kb-source-uri"  # metadata Bedrock adds to every chunk
CHUNKS_PER_DOCUMENT = 3  # chunks asked of ``retrieve`` per document wanted
MAX_RESULTS = 100  # ``numberOfResults`` at most


def _document_key(item: dict[str, Any], uri: str, ref: str) -> str:
    """Which document a chunk belongs to: its location (the S3 URI), else the source URI
    Bedrock puts in its metadata, else its ``documentId``; a chunk naming none stands
    alone."""
    metadata = item.get("metadata") or {}
    for value in (uri, metadata.get(SOURCE_URI_KEY), item.get("documentId")):
        if isinstance(value, str) and value:
            return value
    return f"chunk:{ref}"


def best_chunk_per_document(items: Sequence[dict[str, Any]]) -> list[SearchResult]:
    """``retrieve``'s chunks as the local backend's results: one per document, with its
    best chunk's text and score, best first. Bedrock returns chunks, often several of one
    article; the draft gate's margin must compare an article with the next *article*
    (two chunks of one at 0.71 and 0.70 are no rivals), and a ticket's suggestions and a
    draft's citations must name each article once."""
    best: dict[str, SearchResult] = {}
    for item in items:
        text = (item.get("content") or {}).get("text", "")
        uri = _location(item)
        metadata = item.get("metadata") or {}
        score = float(item.get("score") or 0.0)
        ref = hashlib.sha256(f"{uri}\n{text}".encode()).hexdigest()[:16]
        key = _document_key(item, uri, ref)
        if key in best and best[key].score >= score:
            continue
        external_id = "" if key.startswith("chunk:") else key
        title = str(metadata.get("title") or external_id.rsplit("/", 1)[-1] or "Bedrock passage")
        best[key] = SearchResult(
            document_id=None,
            document_external_id=external_id,
            title=title,
            url=http_url(external_id),
            source="bedrock",
            chunk_id=f"bedrock-{ref}",
            heading_path="",
            text=text,
            headline=shown_text(text)[:240],  # raw text: escaped when rendered
            score=score,
            vector_score=score,
        )
    # Stable: documents of equal score keep Bedrock's order.
    return sorted(best.values(), key=lambda r: -r.score)


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
        # Bedrock ranks chunks; ``k`` counts documents: ask for more chunks than documents
        # so that one long article's chunks do not crowd the others out.
        chunks = max(1, min(k * CHUNKS_PER_DOCUMENT, MAX_RESULTS))
        config: dict[str, Any] = {"numberOfResults": chunks}
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
        return best_chunk_per_document(response.get("retrievalResults", []))[:k]

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
