"""Knowledge-base writes: ingestion (idempotent by content hash), deletion, jobs, events,
feedback. Reads live in ``selectors.py`` and ``retrieval.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import DataError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from knowledge import retrieval
from knowledge.embeddings import Embedder, get_embedder
from knowledge.models import (
    Chunk,
    Document,
    IngestionJob,
    KnowledgeSource,
    ObjectEvent,
    SuggestionFeedback,
)
from knowledge.parsing import (
    CHUNKER_VERSION,
    ChunkDraft,
    ParsedDocument,
    chunk_document,
    document_url,
)
from knowledge.readers import Item, ItemError
from knowledge.retrieval import name_stats_invalidate, stored_embedders_invalidate
from support.db import (
    advisory_session_locks_release,
    advisory_session_locks_try,
    advisory_xact_lock,
)
from support.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from support.parsing import bounded_key, contains_nul, parse_id, safe_file_name
from support.redis_client import enqueue_once, pending_clear
from support.services import audit_log_record
from support.sweeps import RedrivePolicy, redrive_queue

logger = logging.getLogger(__name__)

BATCH_DOCUMENTS = 64
EXTERNAL_ID_MAX_LENGTH = Document._meta.get_field("external_id").max_length or 1000
# An upload is embedded inside the request (~17 ms of CPU a passage): 1,000 passages (a
# ~500-page book) hold a web thread ~20 s; bigger loads go through kb_ingest or S3, in a
# worker. 10 MB of text would be ~13,000 passages: minutes of both cores.
UPLOAD_MAX_CHUNKS = 1000
# Bytes an uploaded file may hold (10 MB): a bigger file is a 413 naming the limit.
UPLOAD_MAX_BYTES = 10 * 1024 * 1024
CHUNK_INSERT_ROWS = 500  # rows per INSERT when a batch's chunks are written
ProgressFn = Callable[[int, int], None]


@dataclass
class IngestCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    chunks: int = 0
    embedded: int = 0  # chunks (distinct texts) sent to the embedder
    reused: int = 0  # chunks that kept the vector they had, or repeated a text of the batch
    errors: list[dict[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "failed": self.failed,
            "chunks": self.chunks,
        }

    def add_time(self, name: str, seconds: float) -> None:
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 4)


# --- Sources ----------------------------------------------------------------------


def source_get_or_create(
    *,
    name: str,
    kind: str = KnowledgeSource.Kind.UPLOAD,
    path: str = "",
    bucket: str = "",
    prefix: str = "",
) -> KnowledgeSource:
    """The source called ``name``; created with the given settings when missing."""
    if not name or len(name) > 100 or "\x00" in name:
        raise InvalidInput("source: a name of 1 to 100 characters is required")
    source, created = KnowledgeSource.objects.get_or_create(
        name=name, defaults={"kind": kind, "path": path, "bucket": bucket, "prefix": prefix}
    )
    if not created and path and source.path != path:
        source.path = path
        source.save(update_fields=["path", "updated_at"])
    return source


# --- Ingestion ----------------------------------------------------------------------


def content_hash(doc: ParsedDocument, embedder_name: str) -> str:
    payload = json.dumps(
        [
            CHUNKER_VERSION,
            embedder_name,
            doc.title,
            doc.url,
            sorted(doc.tags),
            [[s.heading_path, s.text] for s in doc.sections],
        ],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def embedding_key(embedder_name: str, text: str) -> str:
    """Identifies a chunk's vector: the same text through the same embedder."""
    return hashlib.sha256(f"{embedder_name}\x00{text}".encode()).hexdigest()


def embedding_text(title: str, draft: ChunkDraft) -> str:
    """What the embedder sees: body passages carry their title and headings for context."""
    if draft.kind == Chunk.Kind.TITLE:
        return draft.text
    context = " > ".join(p for p in (title, draft.heading_path) if p)
    return f"{context}\n{draft.text}" if context else draft.text


_SEARCH_VECTOR_SQL = """
UPDATE knowledge_chunk AS c SET search_vector =
  CASE WHEN c.kind = 'title' THEN setweight(to_tsvector('english', c.text), 'A')
  ELSE setweight(to_tsvector('english', coalesce(d.title, '')), 'A')
    || setweight(to_tsvector('english', c.heading_path), 'B')
    || setweight(to_tsvector('english', c.text), 'C')
  END
FROM knowledge_document AS d
WHERE d.id = c.document_id AND c.document_id = ANY(%s)
"""


def _document_for_write(
    source: KnowledgeSource, external_id: str, fields: dict[str, Any]
) -> tuple[Document, bool]:
    """The document ``external_id`` of ``source``, locked for the rest of the transaction,
    and whether it was created now (version 1, with ``fields``). A run that read the
    document earlier (``_prepare_batch``, outside any transaction) may have been overtaken
    by another run since: what it writes next (the version above all) is taken from this
    locked row, never from the copy it read."""
    locked = Document.objects.select_for_update()
    document = locked.filter(source=source, external_id=external_id).first()
    if document is not None:
        return document, False
    document, created = Document.objects.get_or_create(
        source=source, external_id=external_id, defaults={**fields, "version": 1}
    )
    if created:
        return document, True
    # Created by another run since this one looked (its INSERT waited for that run's
    # transaction and found the row): lock it as it is now.
    return locked.get(pk=document.pk), False


def _write_documents(
    source: KnowledgeSource,
    batch: list[tuple[ParsedDocument, Document | None, str, list[ChunkDraft]]],
    vectors: Any,
    keys: list[str],
    counts: IngestCounts,
    embedder_name: str,
    *,
    full: bool = False,
) -> None:
    """Write a batch's documents and chunks in one transaction. Each document row is
    locked before it is written, and in id order: two runs writing the same document (two
    uploads of one file at once, an upload during a sync of its source's S3 event)
    serialise on the row and each takes the next version from it; the same order in every
    run means they never deadlock over a batch of several. A run that finds, under the
    lock, the content it was about to write (another run wrote it meanwhile) counts the
    document unchanged unless ``full``."""
    offsets: list[int] = []
    offset = 0
    for *_, drafts in batch:
        offsets.append(offset)
        offset += len(drafts)
    touched: list[int] = []
    chunks: list[Chunk] = []
    with transaction.atomic():
        for index in sorted(range(len(batch)), key=lambda i: batch[i][0].external_id):
            parsed, _, digest, drafts = batch[index]
            fields = {
                "title": parsed.title[:500],
                "url": document_url(parsed.url)[:1000],
                "content_type": parsed.content_type,
                "content_hash": digest,
                "status": Document.Status.ACTIVE,
                "tags": parsed.tags,
                "error": "",
                "deleted_at": None,
            }
            document, created = _document_for_write(source, parsed.external_id, fields)
            if created:
                counts.created += 1
            elif (
                not full
                and document.status == Document.Status.ACTIVE
                and document.content_hash == digest
            ):
                counts.unchanged += 1  # another run wrote this very content meanwhile
                if document.error:
                    document.error = ""
                    document.save(update_fields=["error", "updated_at"])
                continue
            else:
                for name, value in fields.items():
                    setattr(document, name, value)
                document.version += 1  # from the locked row: the next version
                document.save()
                Chunk.objects.filter(document=document).delete()
                counts.updated += 1
            start = offsets[index]
            chunks.extend(
                Chunk(
                    document=document,
                    source=source,
                    kind=draft.kind,
                    position=draft.position,
                    heading_path=draft.heading_path[:1000],
                    text=draft.text,
                    token_count=len(draft.text.split()),
                    embedding=vectors[start + i],
                    embedding_key=keys[start + i],
                    embedder=embedder_name,
                )
                for i, draft in enumerate(drafts)
            )
            counts.chunks += len(drafts)
            touched.append(document.pk)
        # One INSERT for the whole batch's chunks (not one per document): fewer round trips.
        Chunk.objects.bulk_create(chunks, batch_size=CHUNK_INSERT_ROWS)
        if touched:
            with connection.cursor() as cursor:
                cursor.execute(_SEARCH_VECTOR_SQL, [touched])
        transaction.on_commit(name_stats_invalidate)
        transaction.on_commit(stored_embedders_invalidate)


@dataclass
class _PreparedBatch:
    """A batch of documents parsed and looked up, its new vectors being computed on the
    ingestion's embedding thread (``vectors``) while the batch before it is written."""

    documents: int
    todo: list[tuple[ParsedDocument, Document | None, str, list[ChunkDraft]]]
    texts: list[str]
    keys: list[str]
    known: dict[str, Any]
    missing: list[str]
    vectors: Future[tuple[np.ndarray, float]] | None
    full: bool = False


def _prepare_batch(
    source: KnowledgeSource,
    docs: list[ParsedDocument],
    *,
    full: bool,
    embedder: Embedder,
    counts: IngestCounts,
    pool: ThreadPoolExecutor,
) -> _PreparedBatch:
    """Chunk the documents whose content changed (unless ``full``), find the vectors their
    unchanged chunks already have and start embedding the rest on ``pool``."""
    started = time.perf_counter()
    existing = {
        d.external_id: d
        for d in Document.objects.filter(
            source=source, external_id__in=[d.external_id for d in docs]
        )
    }
    todo: list[tuple[ParsedDocument, Document | None, str, list[ChunkDraft]]] = []
    recovered: list[int] = []
    for parsed in docs:
        digest = content_hash(parsed, embedder.name)
        current = existing.get(parsed.external_id)
        if (
            not full
            and current is not None
            and current.status == Document.Status.ACTIVE
            and current.content_hash == digest
        ):
            counts.unchanged += 1
            if current.error:  # a failed new version, replaced by the good one again
                recovered.append(current.pk)
            continue
        todo.append((parsed, current, digest, chunk_document(parsed)))
    if recovered:
        Document.objects.filter(pk__in=recovered).update(error="", updated_at=timezone.now())
    texts = [embedding_text(p.title, d) for p, _, _, drafts in todo for d in drafts]
    keys = [embedding_key(embedder.name, t) for t in texts]
    known = _known_vectors(todo, keys, full=full)
    missing: dict[str, str] = {}
    for key, text in zip(keys, texts, strict=True):
        if key not in known:
            missing.setdefault(key, text)
    counts.add_time("parse_s", time.perf_counter() - started)
    future = pool.submit(_encode_timed, embedder, list(missing.values())) if missing else None
    return _PreparedBatch(len(docs), todo, texts, keys, known, list(missing), future, full)


def _encode_timed(embedder: Embedder, texts: list[str]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    vectors = embedder.encode(texts)
    return vectors, time.perf_counter() - started


def _known_vectors(
    todo: list[tuple[ParsedDocument, Document | None, str, list[ChunkDraft]]],
    keys: list[str],
    *,
    full: bool,
) -> dict[str, Any]:
    """The vectors the changed documents' unchanged chunks already have (none if ``full``)."""
    if full:
        return {}
    updated = [current.pk for _, current, _, _ in todo if current is not None]
    if not updated:
        return {}
    return dict(
        Chunk.objects.filter(
            document_id__in=updated, embedding_key__in=set(keys), embedding__isnull=False
        ).values_list("embedding_key", "embedding")
    )


def _finish_batch(
    source: KnowledgeSource,
    batch: _PreparedBatch,
    *,
    embedder: Embedder,
    counts: IngestCounts,
    beat: Callable[[], None] = lambda: None,
) -> None:
    """Wait for the batch's new vectors, then write its documents and chunks. Each distinct
    text was embedded once; unchanged chunks of changed documents keep their vector.
    ``beat`` is called while the vectors are computed (a batch of long files embeds for
    minutes)."""
    if not batch.todo:
        return
    known = dict(batch.known)
    if batch.vectors is not None:
        while True:
            try:
                fresh, seconds = batch.vectors.result(timeout=HEARTBEAT_SECONDS)
                break
            except TimeoutError:
                beat()
        counts.add_time("embed_s", seconds)
        known.update(zip(batch.missing, fresh, strict=True))
    counts.embedded += len(batch.missing)
    counts.reused += len(batch.texts) - len(batch.missing)
    vectors = np.zeros((len(batch.texts), embedder.dimensions), dtype=np.float32)
    for i, key in enumerate(batch.keys):
        vectors[i] = known[key]
    started = time.perf_counter()
    _write_documents(
        source, batch.todo, vectors, batch.keys, counts, embedder.name, full=batch.full
    )
    counts.add_time("write_s", time.perf_counter() - started)


REEMBED_SIGNAL_SECONDS = 30  # how often kb_reembed tells the search processes to recount


@dataclass
class ReembedCounts:
    total: int = 0  # chunks whose vector was not the configured embedder's when the run began
    embedded: int = 0
    seconds: float = 0.0


def chunks_reembed(
    *,
    source: KnowledgeSource | None = None,
    embedder: Embedder | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
) -> ReembedCounts:
    """Give every chunk whose vector came from another embedder (``Chunk.embedder`` is not
    the configured one's name: ``KB_EMBEDDER`` or ``KB_EMBED_MAX_TOKENS`` changed) a vector
    from the configured embedder, from the text stored with it: no source is read again.

    Idempotent: a chunk already embedded by this embedder is never touched, so an
    interrupted run resumes where it stopped. Batches are written one transaction each; every
    ``REEMBED_SIGNAL_SECONDS`` and at the end the search processes are told to recount
    (``stored_embedders_invalidate``): search embeds its queries like the majority of the
    stored vectors, so it follows the switch once most chunks have moved. Content hashes
    keep the old embedder's name, so the next resync rewrites each document once, reusing
    these vectors (matching ``embedding_key``)."""
    embedder = embedder or get_embedder()
    started = time.perf_counter()
    pending = Chunk.objects.exclude(embedder=embedder.name)
    if source is not None:
        pending = pending.filter(source=source)
    counts = ReembedCounts(total=pending.count())
    last = 0
    signalled = started
    if progress:
        progress(0, counts.total)
    while True:
        rows = list(
            pending.filter(pk__gt=last)
            .order_by("pk")
            .values_list("pk", "kind", "heading_path", "text", "document__title")[:batch_size]
        )
        if not rows:
            break
        last = rows[-1][0]
        texts = [
            embedding_text(
                title or "", ChunkDraft(kind=kind, position=0, heading_path=path, text=text)
            )
            for _, kind, path, text, title in rows
        ]
        vectors = embedder.encode(texts)
        chunks = [
            Chunk(
                pk=pk,
                embedding=vectors[i],
                embedding_key=embedding_key(embedder.name, texts[i]),
                embedder=embedder.name,
            )
            for i, (pk, *_) in enumerate(rows)
        ]
        with transaction.atomic():
            Chunk.objects.bulk_update(chunks, ["embedding", "embedding_key", "embedder"])
        counts.embedded += len(rows)
        if time.perf_counter() - signalled > REEMBED_SIGNAL_SECONDS:
            stored_embedders_invalidate()  # every search process recounts: not every batch
            signalled = time.perf_counter()
        if progress:
            progress(min(counts.embedded, counts.total), counts.total)
    if counts.embedded:
        stored_embedders_invalidate()
    counts.seconds = round(time.perf_counter() - started, 3)
    return counts


def documents_ingest(
    *,
    source: KnowledgeSource,
    items: Iterable[Item],
    full: bool = False,
    delete_missing: bool = False,
    scope_file: str | None = None,
    job: IngestionJob | None = None,
    progress: ProgressFn | None = None,
    embedder: Embedder | None = None,
) -> IngestCounts:
    """Ingest parsed items into ``source``, idempotently.

    Unchanged documents (same content hash) are skipped unless ``full``; changed ones are
    re-chunked and re-embedded (version + 1). With ``delete_missing`` every active document
    of the source (or, with ``scope_file``, of that one file or S3 object: the id is the
    name, or ``name#…`` for a JSONL file's articles) that was not among the items is
    deleted. Progress goes to ``job`` and ``progress(processed, total)``.
    """
    embedder = embedder or get_embedder()
    counts = IngestCounts()
    started = time.perf_counter()
    beat = JobHeartbeat(job)
    all_items = []
    for item in items:  # reading a folder or a bucket, parsing each file: progress too
        all_items.append(item)
        beat()
    total = len(all_items)
    if job is not None:
        job.total = total
        job.save(update_fields=["total", "updated_at"])
    seen: set[str] = set()
    failed_files: set[str] = set()
    processed = 0
    batch: list[ParsedDocument] = []
    pending: _PreparedBatch | None = None

    def finish_pending() -> None:
        nonlocal pending, processed
        if pending is not None:
            done, pending = pending, None
            _finish_batch(source, done, embedder=embedder, counts=counts, beat=beat)
            processed += done.documents
        _report(job, counts, processed, total, progress)

    # Pipelined: batch N+1 is embedded on its own thread while batch N is written, so the
    # cores are not idle during the database round trips.
    with ThreadPoolExecutor(1, thread_name_prefix="kb-ingest") as pool:
        try:
            for item in all_items:
                if len(item.external_id) > EXTERNAL_ID_MAX_LENGTH:  # a JSONL id, an S3 key
                    counts.failed += 1
                    counts.errors.append(
                        {
                            "id": f"{item.external_id[:200]}...",
                            "error": f"id longer than {EXTERNAL_ID_MAX_LENGTH} characters",
                        }
                    )
                    processed += 1
                    continue
                if item.external_id in seen:
                    counts.failed += 1
                    counts.errors.append({"id": item.external_id, "error": "duplicate id in input"})
                    processed += 1
                    continue
                seen.add(item.external_id)
                if isinstance(item, ItemError):
                    counts.failed += 1
                    kept = _document_mark_failed(source, item)
                    message = item.message
                    if kept is not None:
                        message = f"{message} (version {kept} stays in search)"
                    counts.errors.append({"id": item.external_id, "error": message})
                    failed_files.add(item.external_id)
                    processed += 1
                    continue
                batch.append(item)
                if len(batch) >= BATCH_DOCUMENTS:
                    prepared = _prepare_batch(
                        source, batch, full=full, embedder=embedder, counts=counts, pool=pool
                    )
                    batch = []
                    finish_pending()
                    pending = prepared
            if batch:
                prepared = _prepare_batch(
                    source, batch, full=full, embedder=embedder, counts=counts, pool=pool
                )
                finish_pending()
                pending = prepared
            finish_pending()
        except JobAbandoned:
            raise  # the sweep finished the job: stop, write nothing more
        except Exception:
            # A later batch failed to parse or look up: still write the one already embedded.
            if pending is not None:
                finish_pending()
            raise
    if delete_missing:
        stale = Document.objects.filter(source=source, status=Document.Status.ACTIVE)
        if scope_file is not None:  # not a prefix: "faq.md" is not "faq.md.old"'s file
            stale = stale.filter(
                Q(external_id=scope_file) | Q(external_id__startswith=f"{scope_file}#")
            )
        for external_id in stale.exclude(external_id__in=seen).values_list(
            "external_id", flat=True
        ):
            # The documents of a JSONL file that failed this time stay (``name#id``): a
            # bad line must not take its good articles out of search.
            if any(external_id.startswith(f"{name}#") for name in failed_files):
                continue
            beat()
            if document_delete(source=source, external_id=external_id):
                counts.deleted += 1
    if counts.created or counts.updated or counts.deleted or counts.failed:
        transaction.on_commit(common_lexemes_count_wake)
    counts.add_time("total_s", time.perf_counter() - started)
    _report(job, counts, processed, total, progress)
    return counts


def _document_mark_failed(source: KnowledgeSource, item: ItemError) -> int | None:
    """Record that a file could not be read. A document with a good version in search
    keeps it (status active, its passages, its version) and shows the failure in
    ``error`` until a good version replaces it: returns that version. Otherwise the
    document is ``failed`` (no passages): returns None."""
    external_id = item.external_id[:EXTERNAL_ID_MAX_LENGTH]
    error = item.message[:2000]
    with transaction.atomic():
        current = (
            Document.objects.select_for_update()
            .filter(source=source, external_id=external_id)
            .first()
        )
        if current is not None and current.status == Document.Status.ACTIVE:
            current.error = error
            current.save(update_fields=["error", "updated_at"])
            return current.version
        Document.objects.update_or_create(
            source=source,
            external_id=external_id,
            defaults={"status": Document.Status.FAILED, "error": error},
        )
        Chunk.objects.filter(document__source=source, document__external_id=external_id).delete()
    return None


def _report(
    job: IngestionJob | None,
    counts: IngestCounts,
    processed: int,
    total: int,
    progress: ProgressFn | None,
) -> None:
    if progress is not None:
        progress(processed, total)
    if job is None:
        return
    job.processed = processed
    job.created_count = counts.created
    job.updated_count = counts.updated
    job.unchanged_count = counts.unchanged
    job.deleted_count = counts.deleted
    job.failed_count = counts.failed
    job.chunk_count = counts.chunks
    job.errors = counts.errors[:200]
    job.timings = dict(counts.timings)
    job.heartbeat_at = timezone.now()
    fields = {
        "processed": job.processed,
        "created_count": job.created_count,
        "updated_count": job.updated_count,
        "unchanged_count": job.unchanged_count,
        "deleted_count": job.deleted_count,
        "failed_count": job.failed_count,
        "chunk_count": job.chunk_count,
        "errors": job.errors,
        "timings": job.timings,
        "heartbeat_at": job.heartbeat_at,
        "updated_at": job.heartbeat_at,
    }
    # Only while the job is unfinished: the sweep's reason is never overwritten.
    if not IngestionJob.objects.filter(pk=job.pk, status__in=ACTIVE_STATUSES).update(**fields):
        raise JobAbandoned(job.pk)


def document_delete(*, source: KnowledgeSource, external_id: str) -> bool:
    """Remove a document's chunks and mark it deleted; False when there was nothing to do."""
    with transaction.atomic():
        document = (
            Document.objects.select_for_update()
            .filter(source=source, external_id=external_id)
            .exclude(status=Document.Status.DELETED)
            .first()
        )
        if document is None:
            return False
        Chunk.objects.filter(document=document).delete()
        document.status = Document.Status.DELETED
        document.deleted_at = timezone.now()
        document.version += 1
        document.save(update_fields=["status", "deleted_at", "version", "updated_at"])
        transaction.on_commit(name_stats_invalidate)
        transaction.on_commit(stored_embedders_invalidate)
        transaction.on_commit(common_lexemes_count_wake)
    return True


# --- Common words ---------------------------------------------------------------------

LEXEME_COUNT_FLAG = "knowledge:common-lexemes-count"


def common_lexemes_count() -> int:
    """Count again the lexemes more than ``BODY_NAME_MAX_CHUNKS`` passages hold (one
    ``ts_stat`` over every passage: ~0.6 s at 100,000 chunks) and replace ``CommonLexeme``'s
    rows with them in one transaction; returns how many. One count at a time (an advisory
    lock); searches read the previous rows until it commits."""
    with transaction.atomic(), connection.cursor() as cursor:
        advisory_xact_lock(LEXEME_COUNT_FLAG)
        cursor.execute("DELETE FROM knowledge_commonlexeme")
        cursor.execute(
            "INSERT INTO knowledge_commonlexeme (lexeme, passages) SELECT word, ndoc FROM "
            "ts_stat('SELECT search_vector FROM knowledge_chunk WHERE kind = ''body''') "
            "WHERE ndoc > %s",
            [retrieval.BODY_NAME_MAX_CHUNKS],
        )
        return int(cursor.rowcount)


def common_lexemes_count_wake() -> None:
    """Enqueue one count unless one is already pending: a Redis ``SET NX`` flag (cleared when
    the count starts) collapses a burst of ingestions and deletions into one task; the
    hourly beat count is the safety net (Redis down, a lost task)."""
    from knowledge.tasks import kb_common_lexemes_count_task

    enqueue_once(
        LEXEME_COUNT_FLAG,
        kb_common_lexemes_count_task.delay,
        seconds=60,
        failed="Could not enqueue the common-lexeme count; the hourly one will run",
    )


def common_lexemes_count_run() -> int:
    """The task's work: clear the pending flag first (a change committed while counting
    enqueues the next count), then count."""
    pending_clear(LEXEME_COUNT_FLAG)
    return common_lexemes_count()


# --- Jobs -------------------------------------------------------------------------------
#
# One job at a time writes a source: a run holds its sources' session advisory locks
# (``support.db.advisory_session_locks_try``), which PostgreSQL frees when a killed
# worker's session ends. The job
# row says what happened: its ``heartbeat_at`` moves while it works, and ``jobs_sweep``
# finishes the jobs nobody is running any more.

ACTIVE_STATUSES = (IngestionJob.Status.QUEUED, IngestionJob.Status.RUNNING)
# A job's heartbeat is written at most this often, however often its work calls it (every
# item read, batch embedded or written, document deleted, moment waited for a source):
# well under ``KB_JOB_STALE_SECONDS``.
HEARTBEAT_SECONDS = 10.0
# How long a run waits in place for a source another job holds before it gives the worker
# back (``SourceBusy``: the task tries again later, ``knowledge.tasks``).
SOURCE_LOCK_WAIT_SECONDS = 10.0
SOURCE_LOCK_POLL_SECONDS = 0.5
SWEEP_BATCH = 200  # jobs finished per sweep at most
SYNC_REQUEST_LOCK = "knowledge:sync-request"


class SourceBusy(Conflict):
    """Another job (or process) holds a source this run needs."""


class JobAbandoned(Exception):
    """The job was finished by someone else (the stale-job sweep) while this process held
    it: the process stops, writes nothing more, and lets go of its sources."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} was finished while it ran (the stale-job sweep)")
        self.job_id = job_id


def job_create(
    *,
    source: KnowledgeSource | None = None,
    kind: str = IngestionJob.Kind.SYNC,
    full: bool = False,
    backend: str = "local",
    user: Any = None,
) -> IngestionJob:
    return IngestionJob.objects.create(
        source=source,
        kind=kind,
        full=full,
        backend=backend,
        requested_by=user if getattr(user, "is_authenticated", False) else None,
    )


def sync_job_queue(
    *, source: KnowledgeSource | None, full: bool, backend: str, user: Any = None
) -> tuple[IngestionJob, bool]:
    """A sync job and whether it is a new one.

    A sync already queued or running that covers the request (the same source, or all
    sources; a full one if ``full`` is asked) is returned instead of a second job: two
    syncs of one source would interleave their deletes and inserts, and pressing Sync twice
    means the same thing as once. Requests are serialised by a transaction-level advisory
    lock, and stale jobs are swept first, so a job whose worker died never stands in for a
    new one. A new job's task is queued once the job is committed; when the broker cannot
    take it (Redis down) the job is finished as failed with the reason: it would stay
    ``queued`` for ever otherwise, and the request that asked for it answered 500.
    ``InvalidInput`` (a 400 in the API) for an upload source (``source_sync_check``)."""
    if source is not None:
        source_sync_check(source)
    with transaction.atomic():
        advisory_xact_lock(SYNC_REQUEST_LOCK)
        jobs_sweep()
        scope = Q(source__isnull=True)
        if source is not None:
            scope |= Q(source=source)
        covering = IngestionJob.objects.filter(
            scope, kind=IngestionJob.Kind.SYNC, status__in=ACTIVE_STATUSES
        )
        if full:
            covering = covering.filter(full=True)
        existing = covering.select_related("source").order_by("pk").first()
        if existing is not None:
            return existing, False
        job = job_create(source=source, full=full, backend=backend, user=user)
        transaction.on_commit(partial(_job_publish, job))
    return job, True


def source_sync_check(source: KnowledgeSource) -> None:
    """Whether ``source`` may be synced (the one rule of ``POST /api/kb/sync`` and the
    admin's "Sync the selected sources again", both through ``sync_job_queue``):
    ``InvalidInput`` for an upload source, which has nothing to re-read: its job would
    succeed having done nothing (``source_sync``) and clear the source's
    ``support_kb_sources_failing`` gauge."""
    if source.kind == KnowledgeSource.Kind.UPLOAD:
        raise InvalidInput(
            f"Source {source.name!r} holds uploads: there is nothing to re-read (upload "
            "the file again, or run a failed upload again from the admin's Ingestion jobs)."
        )


def source_sync_again(*, source: KnowledgeSource, actor: Any) -> tuple[IngestionJob, bool]:
    """A supervisor starts a sync of one source again (admin "Knowledge sources", after
    its last run failed), as ``POST /api/kb/sync`` with the source does: the new job and
    True, audit-logged with it; or the sync of the source already queued or running
    (``sync_job_queue``) and False, nothing logged. ``InvalidInput`` for an upload source
    (``source_sync_check``, in ``sync_job_queue``)."""
    with transaction.atomic():
        job, created = sync_job_queue(
            source=source, full=False, backend=settings.KB_BACKEND, user=actor
        )
        if created:
            audit_log_record(
                actor=actor,
                action="kb_source.sync",
                object_type="knowledge.KnowledgeSource",
                object_id=source.pk,
                details={"source": source.name, "job": job.pk},
            )
    return job, created


def _job_publish(job: IngestionJob) -> None:
    """Queue a committed job's task (a sync's or an upload's); when the broker cannot take
    it, finish the job as failed with the reason instead of leaving it queued."""
    from kombu.exceptions import KombuError

    from knowledge.tasks import kb_sync_task, kb_upload_task

    task = kb_upload_task if job.kind == IngestionJob.Kind.UPLOAD else kb_sync_task
    try:
        task.delay(job.pk)
    except (KombuError, OSError) as exc:
        logger.warning("kb job %s could not be queued", job.pk, exc_info=True)
        job_finish(
            job,
            error=f"not queued: the task broker refused it ({type(exc).__name__}); "
            f"{_job_again(job)}",
        )


def job_heartbeat(job: IngestionJob) -> None:
    """Tell the sweep the job is looked after (``heartbeat_at`` = now), or raise
    ``JobAbandoned`` when it was finished meanwhile."""
    now = timezone.now()
    if not IngestionJob.objects.filter(pk=job.pk, status__in=ACTIVE_STATUSES).update(
        heartbeat_at=now
    ):
        raise JobAbandoned(job.pk)
    job.heartbeat_at = now


class JobHeartbeat:
    """``job_heartbeat`` at most every ``HEARTBEAT_SECONDS``: call it whenever work
    advances. Does nothing without a job."""

    def __init__(self, job: IngestionJob | None) -> None:
        self.job = job
        self._last = -float("inf")

    def __call__(self, *, force: bool = False) -> None:
        if self.job is None:
            return
        now = time.monotonic()
        if force or now - self._last >= HEARTBEAT_SECONDS:
            self._last = now
            job_heartbeat(self.job)


def _source_lock_name(source: KnowledgeSource) -> str:
    return f"knowledge:source-sync:{source.pk}"


def _source_holder(source: KnowledgeSource, job: IngestionJob | None) -> str:
    """Who holds the source, as far as the jobs tell (a command's or a swept job's process
    may hold it with no running job to show)."""
    holders = IngestionJob.objects.filter(
        Q(source=source) | Q(source__isnull=True), status=IngestionJob.Status.RUNNING
    )
    if job is not None:
        holders = holders.exclude(pk=job.pk)
    holder = holders.order_by("-started_at").first()
    if holder is None:
        return "another process"
    return f"job {holder.pk} ({holder.kind})"


@contextmanager
def source_locks(
    sources: Sequence[KnowledgeSource],
    *,
    job: IngestionJob | None = None,
    wait_seconds: float | None = None,
) -> Iterator[None]:
    """Hold the sync lock of every source given for the block: one run at a time writes a
    source. Waits up to ``wait_seconds`` (``SOURCE_LOCK_WAIT_SECONDS``) while another
    session holds one, beating ``job``'s heartbeat, then raises ``SourceBusy`` naming the
    holder. All or nothing, in id order: a waiter holds none of them."""
    ordered = sorted({s.pk: s for s in sources}.values(), key=lambda s: s.pk)
    names = [_source_lock_name(s) for s in ordered]
    beat = JobHeartbeat(job)
    wait = SOURCE_LOCK_WAIT_SECONDS if wait_seconds is None else wait_seconds
    deadline = time.monotonic() + wait
    while (busy := advisory_session_locks_try(names)) is not None:
        if time.monotonic() >= deadline:
            beat(force=True)  # looked after: its task comes back for it
            held = ordered[names.index(busy)]
            raise SourceBusy(
                f"source {held.name!r} is being synced by {_source_holder(held, job)}",
                details={"source": held.name},
            )
        beat()
        time.sleep(SOURCE_LOCK_POLL_SECONDS)
    try:
        yield
    finally:
        advisory_session_locks_release(names)


def job_sources(job: IngestionJob) -> list[KnowledgeSource]:
    """The sources a sync job writes: its own, or every folder and S3 source (an upload
    source has nothing to re-read)."""
    if job.source is not None:
        return [job.source]
    return list(KnowledgeSource.objects.exclude(kind=KnowledgeSource.Kind.UPLOAD).order_by("pk"))


def job_start(job: IngestionJob) -> bool:
    """Claim a queued job: running, started and beating now. False when it is not queued
    any more (another copy of its task took it, or it was finished)."""
    now = timezone.now()
    claimed = IngestionJob.objects.filter(pk=job.pk, status=IngestionJob.Status.QUEUED).update(
        status=IngestionJob.Status.RUNNING, started_at=now, heartbeat_at=now, updated_at=now
    )
    if claimed:
        job.status = IngestionJob.Status.RUNNING
        job.started_at = job.heartbeat_at = now
    return bool(claimed)


def job_finish(job: IngestionJob, *, error: str = "") -> bool:
    """Finish an unfinished job: failed with ``error`` added to its errors, else
    succeeded. A job finished already (the sweep came first) keeps its status and reason:
    False."""
    now = timezone.now()
    status = IngestionJob.Status.FAILED if error else IngestionJob.Status.SUCCEEDED
    errors = [*job.errors, {"id": "", "error": error}] if error else job.errors
    timings = job.timings
    if job.started_at:
        timings = {**timings, "wall_s": round((now - job.started_at).total_seconds(), 3)}
    finished = IngestionJob.objects.filter(pk=job.pk, status__in=ACTIVE_STATUSES).update(
        status=status, errors=errors, timings=timings, finished_at=now, updated_at=now
    )
    if not finished:
        logger.warning("kb job %s was finished already; %s not recorded", job.pk, status)
        job.refresh_from_db()
        return False
    job.status, job.errors, job.timings, job.finished_at = status, errors, timings, now
    return True


def job_fail(job_id: int, *, error: str) -> bool:
    """Finish a job that will not run (its task gave up) as failed with the reason."""
    return job_finish(IngestionJob.objects.get(pk=job_id), error=error)


def jobs_sweep(*, stale_seconds: float | None = None) -> int:
    """Finish as failed every queued or running job with no sign of life (``heartbeat_at``)
    for ``KB_JOB_STALE_SECONDS``: a worker killed mid-run (out of memory, a deploy, its
    hard time limit) or a task lost before it started leaves its job unfinished for ever,
    the source looking busy and its sync requests answered with a dead job. Its sources'
    locks went with the worker's session. Idempotent; a job that beat since it was read is
    left alone; at most ``SWEEP_BATCH`` a run. Returns how many."""
    stale = float(settings.KB_JOB_STALE_SECONDS if stale_seconds is None else stale_seconds)
    now = timezone.now()
    cutoff = now - timedelta(seconds=stale)
    count = 0
    jobs = IngestionJob.objects.filter(status__in=ACTIVE_STATUSES, heartbeat_at__lt=cutoff)
    for job in jobs.order_by("pk")[:SWEEP_BATCH]:
        reason = _stale_reason(job, stale)
        swept = IngestionJob.objects.filter(
            pk=job.pk, status=job.status, heartbeat_at=job.heartbeat_at
        ).update(
            status=IngestionJob.Status.FAILED,
            errors=[*job.errors, {"id": "", "error": reason}],
            finished_at=now,
            updated_at=now,
        )
        if swept:
            count += 1
            logger.warning("kb job %s swept: %s", job.pk, reason)
    return count


def _job_again(job: IngestionJob) -> str:
    """What to do about a job that did not run to its end."""
    return {
        IngestionJob.Kind.SYNC: "start the sync again",
        IngestionJob.Kind.INGEST: "run kb_ingest again",
        IngestionJob.Kind.EVENT: "the event sweep queues the S3 event again",
        IngestionJob.Kind.UPLOAD: "upload the file again",
    }.get(IngestionJob.Kind(job.kind), "start it again")


def _stale_reason(job: IngestionJob, stale: float) -> str:
    again = _job_again(job)
    if job.status == IngestionJob.Status.QUEUED:
        return (
            f"never started: no worker took it up within {stale:.0f} s (its task was lost, "
            f"or the workers were down); {again}"
        )
    return (
        f"stopped: no sign of progress for over {stale:.0f} s (the worker running it was "
        f"killed, restarted or stuck); {again}"
    )


def source_items(source: KnowledgeSource) -> Iterator[Item]:
    """Everything a full read of the source yields (uploads have nothing to re-read)."""
    from knowledge import readers

    if source.kind == KnowledgeSource.Kind.FOLDER:
        yield from readers.read_path(Path(source.path))
    elif source.kind == KnowledgeSource.Kind.S3:
        yield from readers.read_s3(source)


def source_sync(
    *,
    source: KnowledgeSource,
    full: bool = False,
    job: IngestionJob | None = None,
    progress: ProgressFn | None = None,
) -> IngestCounts:
    """Re-read a folder or S3 source: new and changed documents in, vanished ones out."""
    if source.kind == KnowledgeSource.Kind.UPLOAD:
        return IngestCounts()
    listed_at = timezone.now()  # before the listing: what it reads is at least this recent
    counts = documents_ingest(
        source=source,
        items=source_items(source),
        full=full,
        delete_missing=True,
        job=job,
        progress=progress,
    )
    # S3 events received before this are settled by the listing (``_object_event_settled``)
    KnowledgeSource.objects.filter(pk=source.pk).update(listed_at=listed_at)
    source.listed_at = listed_at
    return counts


def job_run(
    job_id: int, *, progress: ProgressFn | None = None, wait_seconds: float | None = None
) -> IngestionJob:
    """Run a queued sync job on the configured backend, holding its sources' locks.

    Idempotent: a job that is not queued (finished, or taken by another copy of its task)
    is returned as it is. ``SourceBusy`` when another run holds one of its sources for
    longer than ``wait_seconds``: the job stays queued, its heartbeat fresh. A job the
    sweep finished while it ran stops at its next heartbeat and is returned."""
    from knowledge.backends import get_backend

    job = IngestionJob.objects.select_related("source").get(pk=job_id)
    if job.status != IngestionJob.Status.QUEUED:
        return job
    sources = job_sources(job)
    try:
        with source_locks(sources, job=job, wait_seconds=wait_seconds):
            if not job_start(job):
                return job
            try:
                get_backend(job.backend).sync(job, sources=sources, progress=progress)
            except JobAbandoned:
                raise
            except Exception as exc:  # task boundary: the job records every failure
                logger.exception("kb job %s failed", job.pk)
                job_finish(job, error=f"{type(exc).__name__}: {exc}")
                raise
            job_finish(job)
    except JobAbandoned:
        logger.warning("kb job %s was finished by the sweep while it ran: stopped", job.pk)
        job.refresh_from_db()
    return job


# --- S3 object events ------------------------------------------------------------------

OBJECT_EVENT_KEY_MAX = 300  # ObjectEvent.event_key's column


def object_event_record(
    *,
    event_key: str,
    via: str,
    bucket: str,
    key: str,
    action: str,
    payload: dict[str, Any],
    sequencer: str = "",
) -> ObjectEvent | None:
    """Store an S3 object event once; None when this event was already received.
    ``sequencer``: S3's, normalized (``s3events.sequencer_normalize``), or ""."""
    event, created = ObjectEvent.objects.get_or_create(
        event_key=bounded_key(event_key, OBJECT_EVENT_KEY_MAX),
        defaults={
            "via": via,
            "bucket": bucket,
            "key": key,
            "action": action,
            "payload": payload,
            "sequencer": sequencer,
        },
    )
    return event if created else None


def object_events_order_q(sequencer: Any, pk: Any, *, before: bool) -> Q:
    """The events of an object that happened before (``before``) or after the one with
    this ``sequencer`` and ``pk`` (values, or ``OuterRef``s of a subquery: the purge's).

    One total order, by the pair (sequencer, id): the greater sequencer happened later;
    equal ones (the same change delivered twice, or two events without one) by receipt
    (``id``); an event without a sequencer ("": one recorded before they were stored and
    not backfilled by migration 0014, or one that carried none) comes before every event
    that has one. A pair compared as a whole is transitive: before 2026-12-06 an event
    without a sequencer was compared with the others by receipt and the others by
    sequencer, and with both kinds of one object the order could cycle (A 0300 received,
    then B without, then C 0200: A before B before C before A), each event closed as
    superseded by another and none applied."""
    op = "lt" if before else "gt"
    return Q(**{f"sequencer__{op}": sequencer}) | Q(sequencer=sequencer, **{f"pk__{op}": pk})


def _object_events_later(event: ObjectEvent) -> QuerySet[ObjectEvent]:
    """The events of ``event``'s object that happened after it (``object_events_order_q``).
    Index ``kb_objectevent_object_seq``."""
    same = ObjectEvent.objects.filter(bucket=event.bucket, key=event.key)
    return same.filter(object_events_order_q(event.sequencer, event.pk, before=False))


def _object_events_earlier(event: ObjectEvent) -> QuerySet[ObjectEvent]:
    """The events of ``event``'s object that happened before it (the converse of
    ``_object_events_later``)."""
    same = ObjectEvent.objects.filter(bucket=event.bucket, key=event.key)
    return same.filter(object_events_order_q(event.sequencer, event.pk, before=True))


def object_event_process(
    event_id: int, *, wait_seconds: float | None = None
) -> IngestionJob | None:
    """Ingest or delete exactly the object named by a recorded event, in every S3 source
    whose bucket and prefix cover it, each under the source's sync lock (an event applied
    in the middle of a sync would be undone by it: the sync deletes what its listing did
    not hold, or writes back what the event deleted). ``SourceBusy`` when a source stays
    held for ``wait_seconds``: the event stays unprocessed and its task tries again later.
    Idempotent: a processed event returns at once, and a source applied again is
    unchanged.

    Events of one object apply in the order they happened (S3's sequencer, then the order
    received; one without a sequencer before those with one: ``object_events_order_q``):
    an event is applied by reading the object as it is now (or deleting it), so the latest
    event of an object decides what the knowledge base holds. An event still unprocessed
    when a later one of the same object exists (applied, or to be applied) is closed unapplied
    (``object_event_supersede``), never applied after it: a lost ``delete`` re-driven
    after a later upload would remove the new document, an old upload delivered after a
    later delete would bring the document back. So is one received before a sync of its
    source read the bucket (``KnowledgeSource.listed_at``): the sync applied the object
    as it was then, or later. A failure is recorded on the event (``last_error``) before
    it is raised."""
    from knowledge.backends import get_backend

    event = ObjectEvent.objects.get(pk=event_id)
    if event.processed_at is not None:
        return event.job
    ObjectEvent.objects.filter(pk=event.pk).update(attempted_at=timezone.now())
    if _object_event_settled(event):
        return None
    sources = _object_event_sources(event)
    if not sources:
        # No S3 source covers the object: nothing is ingested (with KB_BACKEND=bedrock no
        # ingestion job starts either). Said, not dropped silently: a bucket whose events
        # arrive without a ``KnowledgeSource(kind=s3)`` row was read as "Bedrock ingests it".
        logger.warning(
            "kb event %s: no S3 knowledge source covers s3://%s/%s (backend %s); marked "
            "processed, nothing ingested. Add a source of kind s3 for the bucket and prefix.",
            event.pk,
            event.bucket,
            event.key[:300],
            _backend_name(),
        )
    job: IngestionJob | None = None
    synced: list[KnowledgeSource] = []
    for source in sources:
        with source_locks([source], wait_seconds=wait_seconds):
            if _object_event_settled(event):  # a later event went in while we waited
                return job
            source.refresh_from_db(fields=["listed_at"])
            if _listed_after(source, event):  # a sync read the bucket while we waited
                synced.append(source)
                continue
            job = job_create(source=source, kind=IngestionJob.Kind.EVENT, backend=_backend_name())
            job_start(job)
            try:
                get_backend(job.backend).apply_object(job, key=event.key, action=event.action)
            except Exception as exc:  # task boundary
                logger.exception("kb event %s failed", event.pk)
                job_finish(job, error=f"{type(exc).__name__}: {exc}")
                object_event_error(event.pk, error=f"{type(exc).__name__}: {exc}")
                raise
            job_finish(job)
    if job is None and synced:  # every source it applies to was synced after it
        object_event_close(event, note=_synced_note(synced))
        return None
    now = timezone.now()
    event.job = job
    event.processed_at = now
    event.save(update_fields=["job", "processed_at"])
    for earlier in _object_events_earlier(event).filter(processed_at__isnull=True):
        object_event_supersede(earlier, by=event)
    return job


def _object_event_sources(event: ObjectEvent) -> list[KnowledgeSource]:
    """The S3 sources whose bucket and prefix cover the event's object."""
    return [
        s
        for s in KnowledgeSource.objects.filter(kind=KnowledgeSource.Kind.S3, bucket=event.bucket)
        if event.key.startswith(s.prefix)
    ]


def _listed_after(source: KnowledgeSource, event: ObjectEvent) -> bool:
    """Whether a sync of ``source`` that completed began reading the bucket after
    ``event`` was received: the change the event tells of happened before that, so the
    sync's listing holds the object as it was then or later (re-created after a delete,
    gone after an upload) and already applied it."""
    return source.listed_at is not None and source.listed_at > event.received_at


def _object_event_settled(event: ObjectEvent) -> bool:
    """Whether ``event`` needs no applying (any more): processed meanwhile (another copy
    of its task), superseded by a later event of its object (``_object_events_later``:
    applied, or to be applied), or by syncs of every source it applies to that read the
    bucket after it was received (both closed here)."""
    if ObjectEvent.objects.filter(pk=event.pk, processed_at__isnull=False).exists():
        return True
    later = _object_events_later(event).order_by("-pk").first()
    if later is not None:
        object_event_supersede(event, by=later)
        return True
    sources = _object_event_sources(event)
    if sources and all(_listed_after(source, event) for source in sources):
        object_event_close(event, note=_synced_note(sources))
        return True
    return False


def _synced_note(sources: list[KnowledgeSource]) -> str:
    names = ", ".join(f"'{s.name}'" for s in sources)
    return f"superseded by a sync of {names} (read the bucket after it was received); not applied"


def object_event_supersede(event: ObjectEvent, *, by: ObjectEvent) -> bool:
    """Close ``event`` unapplied because ``by``, a later event of the same object, decides
    what the knowledge base holds of it (applied, or to be applied: it is swept and
    re-driven on its own). False when it was processed meanwhile."""
    if event.sequencer and by.sequencer:
        order = "later by S3's sequencer"
    elif by.sequencer:
        order = "carries S3's sequencer, this one none"
    else:
        order = "received later"
    note = f"superseded by event {by.pk} ({by.action}, {order}); not applied"
    return object_event_close(event, note=note)


def object_event_close(event: ObjectEvent, *, note: str) -> bool:
    """Close ``event`` unapplied (``processed_at`` set, no job) saying why; False when it
    was processed meanwhile."""
    done = ObjectEvent.objects.filter(pk=event.pk, processed_at__isnull=True).update(
        processed_at=timezone.now(), note=note[:255]
    )
    if done:
        logger.info("kb event %s closed unapplied: %s", event.pk, note[:255])
    return bool(done)


def object_event_error(event_id: int, *, error: str) -> None:
    """Record why a try of an event failed (it stays unprocessed: the sweep re-drives it
    while it has attempts left)."""
    ObjectEvent.objects.filter(pk=event_id, processed_at__isnull=True).update(
        last_error=error[:5000]
    )


# An unprocessed event is re-driven by the sweep once nothing happened to it for this long
# (its task runs in seconds, or keeps it fresh every ~60 s while its source is busy), this
# many times at most (then it is a dead letter in the admin), this many per sweep.
OBJECT_EVENT_SWEEP_GRACE_SECONDS = 300.0
OBJECT_EVENT_MAX_ATTEMPTS = 5
OBJECT_EVENT_SWEEP_BATCH = 200
# The least quiet time before an event is queued again, whatever the grace asked: the
# sweep a worker sends each time it connects asks for none, and an event whose task was
# just queued or tried (or waits for a busy source, which refreshes it every ~60 s) is
# alive, not lost. Without it every reconnection counted a re-drive, and six of them (a
# deploy restarting the workers) gave up on a live event.
OBJECT_EVENT_QUIET_FLOOR_SECONDS = 120.0
# The re-drives of S3 events (``support.sweeps``): a fixed wait (the grace; on connect the
# floor) between them, given up after ``OBJECT_EVENT_MAX_ATTEMPTS``.
OBJECT_EVENT_REDRIVE = RedrivePolicy(
    wait_seconds=OBJECT_EVENT_SWEEP_GRACE_SECONDS,
    floor_seconds=OBJECT_EVENT_QUIET_FLOOR_SECONDS,
    max_redrives=OBJECT_EVENT_MAX_ATTEMPTS,
    backoff=1.0,
)
OBJECT_EVENT_GIVE_UP_DEFAULT = "its task never finished (lost, or its worker killed)"


def object_events_sweep(*, grace_seconds: float | None = None) -> int:
    """Queue again the S3 events recorded but never processed: their task was lost (the
    broker down when it was queued, the worker killed), its retries ran out, or its source
    stayed busy for an hour. S3 and EventBridge do not deliver an event again once it was
    answered (or deleted from SQS), so without this a document's update or deletion never
    reached the knowledge base. Oldest first, at most ``OBJECT_EVENT_SWEEP_BATCH`` a run;
    an event with a later one of its object is closed unapplied instead (superseded: the
    later one decides); one queued ``OBJECT_EVENT_MAX_ATTEMPTS`` times already is given up
    (``failed_at``, shown as failed in the admin for a supervisor to re-drive).

    The re-drives follow ``OBJECT_EVENT_REDRIVE`` (``support.sweeps``): an event received,
    and last queued or tried, more than the grace ago (at least
    ``OBJECT_EVENT_QUIET_FLOOR_SECONDS``) is due; each re-drive is counted before its task
    is queued; when the broker refuses a task the run stops (logged; the next one goes
    on). Idempotent (processing is). Returns how many were queued."""
    from knowledge.tasks import kb_object_event_task

    grace = OBJECT_EVENT_SWEEP_GRACE_SECONDS if grace_seconds is None else grace_seconds
    now = timezone.now()
    redrive: list[int] = []
    for event in _object_events_due(grace, now)[:OBJECT_EVENT_SWEEP_BATCH]:
        if _object_event_settled(event):
            continue
        if OBJECT_EVENT_REDRIVE.spent(event.attempts):
            reason = OBJECT_EVENT_REDRIVE.give_up_reason(
                event.attempts, event.last_error, OBJECT_EVENT_GIVE_UP_DEFAULT
            )
            ObjectEvent.objects.filter(pk=event.pk, processed_at__isnull=True).update(
                failed_at=now, last_error=reason[:5000]
            )
            logger.error("kb event %s not applied: %s", event.pk, reason[:300])
            continue
        redrive.append(event.pk)
    queued = redrive_queue(
        ObjectEvent.objects.filter(processed_at__isnull=True, failed_at__isnull=True),
        redrive,
        queue=kb_object_event_task.delay,
        now=now,
        what="kb event",
        due=OBJECT_EVENT_REDRIVE.due_q(now, grace),
    )
    if queued:
        logger.warning("kb event sweep: %s unprocessed S3 event(s) queued again", len(queued))
    return len(queued)


def _object_events_due(grace: float, now: datetime) -> QuerySet[ObjectEvent]:
    """Unprocessed events not given up, received more than ``grace`` ago (at least the
    quiet floor: on connect too) and due for a re-drive; oldest first (partial index
    ``kb_objectevent_pending``)."""
    received = now - timedelta(seconds=max(grace, OBJECT_EVENT_QUIET_FLOOR_SECONDS))
    return ObjectEvent.objects.filter(
        OBJECT_EVENT_REDRIVE.due_q(now, grace),
        processed_at__isnull=True,
        failed_at__isnull=True,
        received_at__lt=received,
    ).order_by("pk")


def object_event_redrive(*, event: ObjectEvent, actor: Any) -> bool:
    """A supervisor applies a failed event again (the sweep gave up on it), once what made
    it fail is fixed (the bucket's permissions, the file): its attempts start again and it
    is queued after the commit. The audit log says who. False when it had not failed
    (processed, or re-driven meanwhile)."""
    with transaction.atomic():
        updated = ObjectEvent.objects.filter(
            pk=event.pk, processed_at__isnull=True, failed_at__isnull=False
        ).update(failed_at=None, attempts=0, attempted_at=timezone.now())
        if updated:
            audit_log_record(
                actor=actor,
                action="kb_object_event.redrive",
                object_type="knowledge.ObjectEvent",
                object_id=event.pk,
                details={"key": event.key[:300], "error": event.last_error[:500]},
            )
            _object_event_queue_on_commit(event.pk)
    return bool(updated)


def _object_event_queue_on_commit(event_id: int) -> None:
    """Queue the event's task once the transaction commits. Robust: the event is
    committed by then, so a broker refusing the task (down, unreachable) is logged, not
    raised to whoever sent or re-drove it (a 5xx for a saved event, which the sender
    sends again); the sweep (``object_events_sweep``) queues it after its grace."""
    from knowledge.tasks import kb_object_event_task

    def queue_object_event() -> None:  # named: on_commit logs a failure by __qualname__
        kb_object_event_task.delay(event_id)

    transaction.on_commit(queue_object_event, robust=True)


def s3_object_apply(
    *, source: KnowledgeSource, key: str, action: str, job: IngestionJob | None = None
) -> IngestCounts:
    """Local backend: make the key's documents what the bucket holds under it now (JSONL
    objects hold many docs). Whatever the event says, the object is read: gone, its
    documents are deleted; there, they are (re)ingested. An ``Object Deleted`` event does
    not always mean the key is empty: a versioned bucket's lifecycle expiring an old
    version sends one (S3's "Permanently Deleted", ``reason`` "Lifecycle Expiration"), as
    does deleting a version that is not the current one; before 2026-12-07 each took the
    key's live document out of search. ``action`` is kept for the job's record."""
    from knowledge import readers

    items = readers.s3_read_object(source, key)
    return documents_ingest(
        source=source, items=items, delete_missing=True, scope_file=key, job=job
    )


def _backend_name() -> str:
    from django.conf import settings

    return str(settings.KB_BACKEND)


# --- Feedback -------------------------------------------------------------------------


CHUNK_REF_MAX_LENGTH = SuggestionFeedback._meta.get_field("chunk_ref").max_length or 200


def suggestion_feedback_record(
    *, ticket: Any, chunk_ref: str, user: Any, helpful: bool, comment: str = ""
) -> SuggestionFeedback:
    """Store (or change) one agent's verdict on a suggested passage for a ticket."""
    if len(chunk_ref) > CHUNK_REF_MAX_LENGTH:
        raise InvalidInput(f"chunk_id: at most {CHUNK_REF_MAX_LENGTH} characters")
    if contains_nul(chunk_ref):  # from the URL path, which no middleware checks
        raise InvalidInput("chunk_id: NUL characters are not accepted")
    chunk = None
    chunk_pk = parse_id(chunk_ref)
    if chunk_pk is not None:
        chunk = Chunk.objects.select_related("document").filter(pk=chunk_pk).first()
        if chunk is None:
            raise NotFound(f"chunk_id: no passage {chunk_ref}")
    feedback, _ = SuggestionFeedback.objects.update_or_create(
        ticket=ticket,
        chunk_ref=chunk_ref,
        user=user,
        defaults={
            "chunk": chunk,
            "document": chunk.document if chunk else None,
            "passage": chunk.text[:2000] if chunk else "",
            "helpful": helpful,
            "comment": comment[:2000],
        },
    )
    return feedback


def object_events_intake(events: Iterable[Any], *, via: str) -> list[ObjectEvent]:
    """Record parsed S3 events once each and queue their processing after commit; returns
    the newly recorded ones. An event received again that was recorded but never
    processed (its task was lost: the broker was down when it was queued, or its retries
    ran out) is queued again at once (the event sweep would, a few minutes later:
    ``object_events_sweep``; S3 rarely delivers an event twice). One the sweep gave up on
    (``failed_at``) is re-armed first (``_object_event_rearm``): sent again, it is a
    request to apply it, as a supervisor's re-drive is. Processing is idempotent, and a
    processed event is never queued twice.

    Each event is written in its own transaction: one the database refuses (a value the
    parser's checks did not foresee) is logged and the others of the delivery are kept."""
    recorded = []
    for event in events:
        try:
            with transaction.atomic():
                stored = _object_event_intake(event, via=via)
        except DataError as exc:
            logger.warning(
                "kb event refused by the database: s3://%s/%s (%s): %s",
                event.bucket[:100],
                event.key[:300],
                event.event_key[:300],
                exc,
            )
            continue
        if stored is not None:
            recorded.append(stored)
    return recorded


def _object_event_intake(event: Any, *, via: str) -> ObjectEvent | None:
    """``object_events_intake``'s work for one event, in the caller's transaction: the
    new event, or None when it was received before (queued again if still pending)."""
    stored = object_event_record(
        event_key=event.event_key,
        via=via,
        bucket=event.bucket,
        key=event.key,
        action=event.action,
        payload=event.payload,
        sequencer=event.sequencer,
    )
    if stored is not None:
        _object_event_queue_on_commit(stored.pk)
        return stored
    pending = ObjectEvent.objects.filter(
        event_key=bounded_key(event.event_key, OBJECT_EVENT_KEY_MAX),
        processed_at__isnull=True,
    ).first()
    if pending is not None:
        if pending.failed_at is not None:
            _object_event_rearm(pending)
        _object_event_queue_on_commit(pending.pk)
    return None


def _object_event_rearm(event: ObjectEvent) -> bool:
    """A failed event delivered again (the same event: its ``event_key``; S3 retrying, or
    someone re-sending it once the cause is fixed) is no dead letter any more: its
    attempts start again (``failed_at`` cleared, ``attempts`` 0) and it is applied like a
    new one, re-driven by the sweep if its task is lost. Its ``last_error`` stays until a
    try replaces it; the log says it was re-armed. False when it was not failed (any
    more)."""
    done = ObjectEvent.objects.filter(
        pk=event.pk, processed_at__isnull=True, failed_at__isnull=False
    ).update(failed_at=None, attempts=0, attempted_at=timezone.now())
    if done:
        logger.warning(
            "kb event %s failed after %s re-drives and was received again: re-armed (%s)",
            event.pk,
            event.attempts,
            event.last_error[:300],
        )
    return bool(done)


def upload_too_large(what: str) -> PayloadTooLarge:
    """The 413 of an upload over ``UPLOAD_MAX_BYTES``: ``what`` says what was too big."""
    return PayloadTooLarge(
        f"{what}; an upload takes at most {UPLOAD_MAX_BYTES // (1024 * 1024)} MB "
        f"({UPLOAD_MAX_BYTES:,} bytes): load bigger files with kb_ingest or from S3",
        details={"limit_bytes": UPLOAD_MAX_BYTES},
    )


def upload_name_check(*, filename: str, size: int) -> str:
    """The name an uploaded file is stored and known by (its document id), after the checks
    every upload passes before anything is written: a name of a kind we read (its last
    path component, without control characters: ``support.parsing.safe_file_name``), some
    bytes, at most ``UPLOAD_MAX_BYTES``. ``InvalidInput`` (400) or ``PayloadTooLarge``
    (413) otherwise, naming the file."""
    from knowledge.parsing import content_type_for

    name = safe_file_name(filename, fallback="")
    if not name:
        raise InvalidInput("file: a file name is required")
    if content_type_for(name) is None:
        raise InvalidInput(f"file: {name} is not Markdown, HTML, text, PDF or JSONL")
    if ".jsonl#" in name.lower():
        # The articles of an uploaded ``faq.jsonl`` are ``faq.jsonl#<id>``: a file of this
        # name would replace one of them, or be deleted by the JSONL file's next upload.
        raise InvalidInput(
            f"file: {name} would stand for an article of an uploaded JSONL file "
            "('.jsonl#' is how their ids are written); rename it"
        )
    if size <= 0:
        raise InvalidInput(f"file: {name} is empty (0 bytes)")
    if size > UPLOAD_MAX_BYTES:
        raise upload_too_large(f"file: {name} is {size:,} bytes")
    return name


def upload_source_get(name: str) -> KnowledgeSource:
    """The source an upload names, created (kind upload) by the first upload that names
    it; a new source's name must be a slug, as the model (and the admin) has it: any
    string ("../etc", "FAQ uploads", markup) used to become a source."""
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_slug

    if not name or len(name) > 100 or contains_nul(name):
        raise InvalidInput("source: a name of 1 to 100 characters is required")
    existing = KnowledgeSource.objects.filter(name=name).first()
    if existing is not None:
        return existing
    try:
        validate_slug(name)
    except ValidationError:
        raise InvalidInput(
            "source: a new source's name is a slug of 1 to 100 letters, digits, '-' or '_'"
        ) from None
    return source_get_or_create(name=name, kind=KnowledgeSource.Kind.UPLOAD)


def upload_source_check(source: KnowledgeSource) -> None:
    """Uploads go to upload sources only: a folder or S3 source is re-read from where it
    lives, and its next full sync would delete the uploaded document."""
    if source.kind != KnowledgeSource.Kind.UPLOAD:
        raise InvalidInput(
            f"source: {source.name!r} is a {source.kind} source, "
            "re-read from where it lives; upload to an upload source"
        )


def upload_ingest(
    *, source: KnowledgeSource, filename: str, data: bytes, job: IngestionJob | None = None
) -> IngestCounts:
    """Ingest one uploaded file (a JSONL upload holds many documents, ids ``name#id``)
    into an upload source; progress and counts go to ``job`` when given (an asynchronous
    upload). Idempotent: the same file again counts as unchanged."""
    from knowledge.parsing import content_type_for, parse_file, parse_jsonl

    upload_source_check(source)
    name = upload_name_check(filename=filename, size=len(data))
    kind = content_type_for(name)
    items: list[Item]
    scope: str | None = None
    if kind == "jsonl":
        docs = list(parse_jsonl(data, name=name))
        if not docs:
            raise InvalidInput(f"file: {name} holds no documents")
        for doc in docs:
            doc.external_id = f"{name}#{doc.external_id}"
        items = list(docs)
        scope = name  # the file replaces its articles: those it no longer holds go
    else:
        try:
            items = [parse_file(name, data)]
        except InvalidInput as exc:
            items = [ItemError(name, str(exc))]
    passages = sum(len(chunk_document(d)) for d in items if isinstance(d, ParsedDocument))
    if passages > UPLOAD_MAX_CHUNKS:
        raise InvalidInput(
            f"file: {name} makes {passages} passages; an upload takes at most "
            f"{UPLOAD_MAX_CHUNKS} (they are embedded "
            f"{'during the request' if job is None else 'in one run'}): load it with "
            "kb_ingest or from S3"
        )
    return documents_ingest(
        source=source, items=items, delete_missing=scope is not None, scope_file=scope, job=job
    )


# --- Asynchronous uploads -----------------------------------------------------------------
#
# ``Prefer: respond-async`` on the upload: the file is stored first (nothing received is
# lost), an ``upload`` job is queued and answered 202, and ``kb_upload_task`` parses and
# ingests it. The job is claimed before it runs (a redelivered task finds it taken and
# returns) and ingestion is idempotent by content hash, so a file is never ingested twice.

UPLOAD_STORAGE_PREFIX = "kb-uploads"


def upload_job_queue(
    *, source: KnowledgeSource, filename: str, data: bytes, user: Any = None
) -> IngestionJob:
    """Store an uploaded file and queue the job that ingests it; its task is queued once
    the job is committed (when the broker refuses it the job fails with the reason). The
    checks every upload passes come first, so what is refused is refused at once (400 or
    413), as in the synchronous mode. The file is stored under a name of ours, never the
    sender's."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    upload_source_check(source)
    name = upload_name_check(filename=filename, size=len(data))
    key = default_storage.save(
        f"{UPLOAD_STORAGE_PREFIX}/{uuid.uuid4().hex}/upload", ContentFile(data)
    )
    with transaction.atomic():
        job = job_create(source=source, kind=IngestionJob.Kind.UPLOAD, user=user)
        job.file_name, job.file_key, job.total = name, key, 1
        job.save(update_fields=["file_name", "file_key", "total", "updated_at"])
        transaction.on_commit(partial(_job_publish, job))
    return job


def upload_job_retry(*, job: IngestionJob, user: Any = None) -> IngestionJob:
    """Queue again a failed upload whose stored file was kept (the broker refused its task,
    the worker died or the run failed): a new ``upload`` job takes the file over and the
    failed one keeps its record without it, so a second retry of the same job is refused.
    ``InvalidInput`` for any other job (nothing to run again)."""
    with transaction.atomic():
        jobs = IngestionJob.objects.select_for_update(of=("self",)).select_related("source")
        failed = jobs.get(pk=job.pk)
        if (
            failed.kind != IngestionJob.Kind.UPLOAD
            or failed.status != IngestionJob.Status.FAILED
            or not failed.file_key
            or failed.source is None
        ):
            raise InvalidInput(
                f"job {failed.pk}: only a failed upload whose file was kept can run again "
                f"(this one is a {failed.kind} job, {failed.status}"
                f"{', its file already removed or taken over' if not failed.file_key else ''})."
            )
        upload_source_check(failed.source)
        again = job_create(source=failed.source, kind=IngestionJob.Kind.UPLOAD, user=user)
        again.file_name, again.file_key, again.total = failed.file_name, failed.file_key, 1
        again.save(update_fields=["file_name", "file_key", "total", "updated_at"])
        IngestionJob.objects.filter(pk=failed.pk).update(file_key="", updated_at=timezone.now())
        transaction.on_commit(partial(_job_publish, again))
    return again


def upload_job_run(job_id: int) -> IngestionJob:
    """Run a queued upload job: read its stored file, ingest it into its source, finish
    the job and remove the file. Idempotent: a job that is not queued (taken by another
    copy of its task, or finished) is returned as it is. A file that cannot be ingested
    (a 400 in the synchronous mode) fails the job with the reason and is removed; any
    other failure fails the job, keeps the file (``file_key``) and is raised."""
    from django.core.files.storage import default_storage

    job = IngestionJob.objects.select_related("source").get(pk=job_id)
    if job.status != IngestionJob.Status.QUEUED or job.source is None or not job_start(job):
        return job
    try:
        try:
            with default_storage.open(job.file_key, "rb") as handle:
                data = handle.read()
        except OSError as exc:  # removed, or a storage the worker does not share
            job_finish(
                job,
                error=f"the stored file {job.file_key} cannot be read "
                f"({type(exc).__name__}); {_job_again(job)}",
            )
            return job
        try:
            counts = upload_ingest(source=job.source, filename=job.file_name, data=data, job=job)
        except (InvalidInput, PayloadTooLarge) as exc:  # the file itself: the sync mode's 4xx
            job_finish(job, error=exc.message)
        else:
            if counts.failed:
                reasons = "; ".join(e["error"] for e in counts.errors[:3])
                job_finish(job, error=f"not ingested: {reasons}")
            else:
                job_finish(job)
    except JobAbandoned:
        logger.warning("kb upload job %s was finished by the sweep while it ran", job.pk)
        job.refresh_from_db()
        return job
    except Exception as exc:  # task boundary: the job records every failure
        logger.exception("kb upload job %s failed", job.pk)
        job_finish(job, error=f"{type(exc).__name__}: {exc}; {_job_again(job)}")
        raise
    _upload_file_remove(job)
    return job


def _upload_file_remove(job: IngestionJob) -> None:
    """The stored file of a finished upload job is not needed any more."""
    from django.core.files.storage import default_storage

    if not job.file_key:
        return
    try:
        default_storage.delete(job.file_key)
    except OSError:
        logger.warning("kb upload job %s: could not remove %s", job.pk, job.file_key)
        return
    IngestionJob.objects.filter(pk=job.pk).update(file_key="")
    job.file_key = ""
