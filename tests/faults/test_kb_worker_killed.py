"""A Celery worker is SIGKILLed in the middle of a knowledge-base sync (docs/knowledge.md,
"Jobs").

Before, the job stayed "running" for ever and the source looked busy. Now PostgreSQL frees
the source's sync lock with the dead worker's session at once, the stale-job sweep (beat)
finishes the job as failed with the reason once its heartbeat is older than
``KB_JOB_STALE_SECONDS``, and the next sync request starts a new job, which a new worker
runs to the end: every document once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count

from knowledge.models import Chunk, Document, IngestionJob, KnowledgeSource
from knowledge.services import sync_job_queue
from knowledge.tests.conftest import lock
from tests.faults.harness import Worker, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

DOCS = 150
STALE_SECONDS = 25  # above the 10 s between a running job's heartbeats


def status(job: IngestionJob) -> str:
    return str(IngestionJob.objects.get(pk=job.pk).status)


def test_a_sync_whose_worker_is_killed_is_swept_and_its_source_freed(
    workers: Callable[..., Worker], tmp_path: Path, settings: Any
) -> None:
    settings.KB_JOB_STALE_SECONDS = STALE_SECONDS
    for n in range(DOCS):
        words = " ".join(f"topic{n}word{i}" for i in range(150))
        (tmp_path / f"article-{n:03d}.md").write_text(f"# Article {n}\n{words}\n")
    source = KnowledgeSource.objects.create(name="handbook", kind="folder", path=str(tmp_path))
    env = {"KB_JOB_STALE_SECONDS": STALE_SECONDS, "KB_JOB_SWEEP_SECONDS": 2}

    first = workers("first", **env)
    job, created = sync_job_queue(source=source, full=False, backend="local")
    assert created
    wait_until(lambda: status(job) == "running", timeout=90, interval=0.05, what="the sync")
    first.kill()
    assert status(job) == "running"  # what the dead worker left
    # Its session ended with it, and the source's lock with the session.
    wait_until(lambda: lock(connection, source), timeout=30, what="the source's lock freed")
    lock(connection, source, take=False)

    workers("second", **env)  # its beat sweeps
    wait_until(lambda: status(job) == "failed", timeout=STALE_SECONDS + 60, what="the sweep")
    job.refresh_from_db()
    assert job.errors[-1] == {
        "id": "",
        "error": f"stopped: no sign of progress for over {STALE_SECONDS} s (the worker "
        "running it was killed, restarted or stuck); start the sync again",
    }

    again, created = sync_job_queue(source=source, full=False, backend="local")
    assert created
    assert again.pk != job.pk
    wait_until(lambda: status(again) == "succeeded", timeout=180, what="the new sync")
    assert Document.objects.filter(source=source, status="active").count() == DOCS
    titles = Chunk.objects.filter(kind="title").values("document").annotate(n=Count("id"))
    assert {row["n"] for row in titles} == {1}  # nothing written twice
    assert titles.count() == DOCS
