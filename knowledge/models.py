"""Knowledge base: sources, documents, chunks (pgvector + full text), jobs, feedback."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.utils import timezone
from pgvector.django import HnswIndex, VectorField

from knowledge.embeddings import DIMENSIONS


class KnowledgeSource(models.Model):
    """Where documents come from: a local folder, uploads, or an S3 bucket and prefix."""

    class Kind(models.TextChoices):
        FOLDER = "folder", "Local folder"
        UPLOAD = "upload", "Uploads"
        S3 = "s3", "S3 bucket"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.UPLOAD)
    path = models.CharField(max_length=500, blank=True, default="")  # folder or JSONL file
    bucket = models.CharField(max_length=255, blank=True, default="")
    prefix = models.CharField(max_length=500, blank=True, default="")
    tags = models.JSONField(default=list, blank=True)
    # When the last sync that completed began reading it (``services.source_sync``): an S3
    # event received before this is settled by that sync's listing, never applied after
    # it (a lost delete re-driven after the sync re-created the object would remove it).
    listed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Document(models.Model):
    """One article/file; ``external_id`` is the source key (relative path, S3 key, JSONL id)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DELETED = "deleted", "Deleted"
        FAILED = "failed", "Failed"

    source = models.ForeignKey(KnowledgeSource, on_delete=models.CASCADE, related_name="documents")
    external_id = models.CharField(max_length=1000)
    title = models.CharField(max_length=500, blank=True, default="")
    url = models.URLField(max_length=1000, blank=True, default="")
    content_type = models.CharField(max_length=32, blank=True, default="")
    content_hash = models.CharField(max_length=64, blank=True, default="")
    version = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    tags = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, default="")
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"], name="kb_document_source_external_id"
            )
        ]
        indexes = [GinIndex(fields=["tags"], name="kb_document_tags_gin")]

    def __str__(self) -> str:
        return self.title or self.external_id


class Chunk(models.Model):
    """A passage of a document with its embedding and full-text vector.

    ``kind=title`` chunks hold only the document title (a second vector per document: short
    questions match a title far better than a long passage); ``body`` chunks hold the text.
    """

    class Kind(models.TextChoices):
        TITLE = "title", "Title"
        BODY = "body", "Body"

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    source = models.ForeignKey(KnowledgeSource, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.BODY)
    position = models.PositiveIntegerField(default=0)
    heading_path = models.CharField(max_length=1000, blank=True, default="")
    text = models.TextField()
    token_count = models.PositiveIntegerField(default=0)
    embedding = VectorField(dimensions=DIMENSIONS, null=True)
    # sha256 of the embedder's name and the text it embedded: a changed document's chunks
    # whose key is unchanged keep their vector instead of being embedded again.
    embedding_key = models.CharField(max_length=64, blank=True, default="")
    # The ``name`` of the embedder that made ``embedding`` (``minilm-int8-t128``, ``minilm``,
    # ...; empty: unknown, a chunk from before the column). Search embeds its queries like
    # the stored passages until ``kb_reembed`` has moved them to a new ``KB_EMBEDDER``.
    embedder = models.CharField(max_length=64, blank=True, default="")
    search_vector = SearchVectorField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["document_id", "position"]
        indexes = [
            HnswIndex(
                name="kb_chunk_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            GinIndex(fields=["search_vector"], name="kb_chunk_search_gin"),
            # Search counts the chunks per embedder (an index-only scan) to embed its
            # queries like the stored vectors while a re-embedding is pending.
            models.Index(fields=["embedder"], name="kb_chunk_embedder"),
            # Conversational retrieval looks names up among titles only: a name rare among
            # titles can be common in passages, which the full index would scan.
            GinIndex(
                fields=["search_vector"],
                name="kb_chunk_title_search_gin",
                condition=models.Q(kind="title"),
            ),
            # Every process reloads the title statistics after a knowledge-base change:
            # counting and reading the title chunks through this index, not a scan of every
            # chunk (86 ms each at 100,000 chunks).
            models.Index(
                fields=["document"], name="kb_chunk_title_doc", condition=models.Q(kind="title")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.position}"


class CommonLexeme(models.Model):
    """A word (a full-text lexeme) that more than ``BODY_NAME_MAX_CHUNKS`` passages hold, and
    how many, as last counted (``knowledge.services.common_lexemes_count``, after each
    ingestion and deletion). Conversational search never reads the passages of these to find
    names: the table saves a process's first conversations reading up to 201 rows for each
    ordinary word ("room", "want"). Lexemes counted before a change may be a little off;
    a word missing from the table is read (bounded), so a stale table costs time, not names
    that are there."""

    lexeme = models.TextField(primary_key=True)
    passages = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.lexeme} ({self.passages})"


class IngestionJob(models.Model):
    """One sync/ingest run, with progress, counts, errors and timings.

    ``heartbeat_at`` is the last sign of life of whoever holds the job: set when it is
    queued, while its task waits for its source, and as the run reads, embeds, writes and
    deletes (at most every ``services.HEARTBEAT_SECONDS``). A queued or running job whose
    heartbeat is older than ``KB_JOB_STALE_SECONDS`` was left by a killed worker or a lost
    task: ``services.jobs_sweep`` finishes it as failed with the reason."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Kind(models.TextChoices):
        SYNC = "sync", "Sync"
        INGEST = "ingest", "Ingest"
        EVENT = "event", "Object event"
        UPLOAD = "upload", "Upload"

    source = models.ForeignKey(
        KnowledgeSource, on_delete=models.CASCADE, null=True, blank=True, related_name="jobs"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SYNC)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    full = models.BooleanField(default=False)
    backend = models.CharField(max_length=16, default="local")
    external_job_id = models.CharField(max_length=200, blank=True, default="")
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    deleted_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    chunk_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # An asynchronous upload (``kind=upload``): the file's name (its document id) and where
    # its bytes wait in the default storage until the job has read them (emptied once the
    # file is removed; kept when the run stopped on something other than the file itself).
    file_name = models.CharField(max_length=255, blank=True, default="")
    file_key = models.CharField(max_length=500, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The unfinished jobs: the sweep and a sync request's look for one already
            # queued read these few rows, not every job ever run (each S3 event is one).
            models.Index(
                fields=["source", "heartbeat_at"],
                name="kb_job_active",
                condition=models.Q(status__in=["queued", "running"]),
            ),
            # A source's last finished sync or ingest (``selectors.knowledge_sources_failing``,
            # the ``support_kb_sources_failing`` gauge): a top-1 read per source, not a
            # scan of every S3 event's job.
            models.Index(
                fields=["source", "finished_at", "id"],
                name="kb_job_last_run",
                condition=models.Q(kind__in=["sync", "ingest"], status__in=["succeeded", "failed"]),
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} {self.kind} {self.status}"

    @property
    def progress(self) -> float:
        return round(self.processed / self.total, 4) if self.total else 0.0


class SuggestionFeedback(models.Model):
    """An agent's verdict on a suggested passage for a ticket (one per agent, ticket, chunk)."""

    ticket = models.ForeignKey("tickets.Ticket", on_delete=models.CASCADE, related_name="+")
    chunk = models.ForeignKey(Chunk, on_delete=models.SET_NULL, null=True, related_name="+")
    document = models.ForeignKey(Document, on_delete=models.SET_NULL, null=True, related_name="+")
    chunk_ref = models.CharField(max_length=200)  # the id as shown; kept if the chunk goes
    passage = models.TextField(blank=True, default="")
    helpful = models.BooleanField()
    comment = models.TextField(blank=True, default="")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticket", "chunk_ref", "user"], name="kb_feedback_one_per_agent"
            )
        ]

    def __str__(self) -> str:
        return f"{'helpful' if self.helpful else 'not helpful'}: {self.chunk_ref}"


class ObjectEvent(models.Model):
    """An S3 object event as received (EventBridge, S3 notification, via HTTP or SQS).

    Recorded before it is processed; the unique ``event_key`` makes redelivery a no-op.
    One whose task was lost (broker down, worker killed, retries spent, its source busy
    for an hour) is queued again by the sweep (``services.object_events_sweep``) at most
    ``OBJECT_EVENT_MAX_ATTEMPTS`` times, then left ``failed_at`` for a supervisor to
    re-drive from the admin. One that a later event of the same object makes moot is
    closed unapplied (``processed_at`` set, ``note`` says by which event). "Later" is by
    S3's ``sequencer`` (deliveries arrive in any order), then by receipt (``id``); one
    without a sequencer comes before those with one (``services.object_events_order_q``).
    """

    class Action(models.TextChoices):
        UPSERT = "upsert", "Created or updated"
        DELETE = "delete", "Deleted"

    event_key = models.CharField(max_length=300, unique=True)
    via = models.CharField(max_length=16)  # http | sqs
    bucket = models.CharField(max_length=255)
    key = models.CharField(max_length=1024)
    action = models.CharField(max_length=8, choices=Action.choices)
    # S3's ``sequencer`` of the event (orders the events of one key), upper-case and
    # left-padded with zeros to ``s3events.SEQUENCER_WIDTH`` so that comparing the strings
    # compares the hexadecimal values (byte order: "C" collation); "" when it had none.
    sequencer = models.CharField(
        max_length=32, blank=True, default="", db_default="", db_collation="C"
    )
    payload = models.JSONField(default=dict)
    job = models.ForeignKey(
        IngestionJob, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # Times the sweep (or a supervisor) queued it again after its task was lost.
    attempts = models.PositiveSmallIntegerField(default=0)
    # Why its last try failed (an exception, its source busy for an hour), or the sweep's
    # reason for giving up.
    last_error = models.TextField(blank=True, default="")
    # Last queued again or tried: the sweep leaves it alone for a grace after this.
    attempted_at = models.DateTimeField(null=True, blank=True)
    # The sweep gave up on it (attempts spent): a dead letter until a supervisor re-drives.
    failed_at = models.DateTimeField(null=True, blank=True)
    # Why it was closed without being applied (a later event of the same object).
    note = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            # the sweep's scan: unprocessed events, oldest first
            models.Index(
                fields=["id"],
                condition=models.Q(processed_at__isnull=True),
                name="kb_objectevent_pending",
            ),
            # a later event of the same object (supersedes this one), by sequencer
            models.Index(fields=["bucket", "key", "sequencer"], name="kb_objectevent_object_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.action} s3://{self.bucket}/{self.key}"


class ReplyDraft(models.Model):
    """A reply draft offered to an agent on a ticket, built from knowledge-base articles,
    and what became of it: sent as drafted, sent after editing, or discarded."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Sent as drafted"
        EDITED = "edited", "Sent after editing"
        DISCARDED = "discarded", "Discarded"

    ticket = models.ForeignKey("tickets.Ticket", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    channel = models.CharField(max_length=16)
    provider = models.CharField(max_length=16)  # local | bedrock | openai
    model_id = models.CharField(max_length=200, blank=True, default="")
    fallback_reason = models.TextField(blank=True, default="")
    text = models.TextField()  # as offered
    citations = models.JSONField(default=list)  # [{document_id, external_id, title, url, ...}]
    documents = models.ManyToManyField(Document, related_name="+", blank=True)
    score = models.FloatField()  # the best article's fused score
    margin = models.FloatField()  # its lead over the runner-up
    outcome = models.CharField(
        max_length=16, choices=Outcome.choices, default=Outcome.PENDING, db_index=True
    )
    outcome_at = models.DateTimeField(null=True, blank=True)
    sent_message = models.ForeignKey(
        "tickets.Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    similarity = models.FloatField(null=True, blank=True)  # sent text vs draft, 0..1
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["ticket", "user", "outcome"], name="kb_draft_pending")]

    def __str__(self) -> str:
        return f"draft {self.pk} on ticket {self.ticket_id}: {self.outcome}"
