"""Sync and ingest jobs: one run at a time per source, and no job left "running" for ever
by a worker that was killed (docs/knowledge.md, "Jobs")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from knowledge import services, tasks
from knowledge.models import Document, IngestionJob, KnowledgeSource
from knowledge.services import SourceBusy, job_create, job_finish, job_run, jobs_sweep
from knowledge.tests.conftest import lock

pytestmark = pytest.mark.django_db

STOPPED = (
    "stopped: no sign of progress for over 900 s (the worker running it was killed, "
    "restarted or stuck); start the sync again"
)
NEVER_STARTED = (
    "never started: no worker took it up within 900 s (its task was lost, or the workers "
    "were down); start the sync again"
)


class Clock:
    """``timezone.now`` under the test's control: work that "takes" minutes, at once."""

    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, *, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Clock:
    settings.KB_JOB_STALE_SECONDS = 900
    monkeypatch.setattr(services, "HEARTBEAT_SECONDS", 0.0)  # every sign of life is written
    fake = Clock()
    monkeypatch.setattr(timezone, "now", fake)
    return fake


@pytest.fixture
def folder(tmp_path: Path) -> KnowledgeSource:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.md").write_text(f"# Article {name}\nAbout {name}.")
    return KnowledgeSource.objects.create(name="folder", kind="folder", path=str(tmp_path))


@pytest.fixture
def superuser_browser(superuser: Any) -> Client:
    browser = Client()
    browser.force_login(superuser)
    return browser


def free_elsewhere(session: Any, source: KnowledgeSource) -> bool:
    """Whether another session could take the source now (this one's locks let go)."""
    if not lock(session, source):
        return False
    lock(session, source, take=False)
    return True


def aged(job: IngestionJob, *, minutes: float, status: str) -> IngestionJob:
    IngestionJob.objects.filter(pk=job.pk).update(
        status=status, heartbeat_at=timezone.now() - timedelta(minutes=minutes)
    )
    job.refresh_from_db()
    return job


# --- The sweep -------------------------------------------------------------------------


def test_the_sweep_fails_jobs_a_killed_worker_or_a_lost_task_left_and_spares_the_rest(
    folder: KnowledgeSource, agent_client: Any, superuser_browser: Client, settings: Any
) -> None:
    settings.KB_JOB_STALE_SECONDS = 900
    killed = aged(job_create(source=folder), minutes=20, status="running")
    lost = aged(job_create(source=folder), minutes=16, status="queued")
    working = aged(job_create(source=folder), minutes=14, status="running")
    waiting = job_create(source=folder)
    done = aged(job_create(source=folder), minutes=600, status="succeeded")

    assert tasks.kb_jobs_sweep_task.apply().get() == 2
    statuses = dict(IngestionJob.objects.values_list("pk", "status"))
    assert statuses == {
        killed.pk: "failed",
        lost.pk: "failed",
        working.pk: "running",
        waiting.pk: "queued",
        done.pk: "succeeded",
    }
    shown = agent_client.get(f"/api/kb/jobs/{killed.pk}").json()
    assert (shown["status"], shown["errors"]) == ("failed", [{"id": "", "error": STOPPED}])
    assert shown["finished_at"] is not None
    assert shown["heartbeat_at"] == killed.heartbeat_at.isoformat()
    assert agent_client.get(f"/api/kb/jobs/{lost.pk}").json()["errors"] == [
        {"id": "", "error": NEVER_STARTED}
    ]
    page = superuser_browser.get("/admin/knowledge/ingestionjob/").content.decode()
    assert STOPPED in page
    assert NEVER_STARTED in page

    assert jobs_sweep() == 0  # idempotent: nothing left to finish
    assert IngestionJob.objects.get(pk=killed.pk).errors == [{"id": "", "error": STOPPED}]


def test_the_sweep_is_on_the_beat(settings: Any) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["kb-jobs-sweep"]
    assert entry == {
        "task": "knowledge.tasks.kb_jobs_sweep_task",
        "schedule": settings.KB_JOB_SWEEP_SECONDS,
    }


def test_a_job_that_keeps_working_is_never_swept_however_long_it_runs(
    folder: KnowledgeSource, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = services.source_items
    sweeps = []

    def slow(source: KnowledgeSource) -> Iterator[Any]:
        for item in read(source):
            clock.advance(minutes=10)  # reading this file took ten minutes
            sweeps.append(jobs_sweep())
            yield item

    monkeypatch.setattr(services, "source_items", slow)
    job = job_run(job_create(source=folder).pk)
    assert job.status == "succeeded"
    assert sweeps == [0, 0, 0]  # 30 minutes in all, never 15 without a sign of life
    assert Document.objects.filter(status="active").count() == 3


def test_a_job_beats_while_a_long_batch_is_embedded(
    folder: KnowledgeSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from knowledge.embeddings import get_embedder

    real = get_embedder()
    embedding = threading.Event()
    beats_while_embedding = []

    class Slow:
        name, dimensions = real.name, real.dimensions

        def encode(self, texts: list[str]) -> Any:
            embedding.set()
            vectors = real.encode(texts)
            threading.Event().wait(0.5)  # a big batch of long files
            embedding.clear()
            return vectors

    beat = services.job_heartbeat

    def counted(job: IngestionJob) -> None:
        if embedding.is_set():
            beats_while_embedding.append(job.pk)
        beat(job)

    monkeypatch.setattr(services, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(services, "job_heartbeat", counted)
    job = job_create(source=folder)
    services.job_start(job)
    services.documents_ingest(
        source=folder,
        items=services.source_items(folder),
        job=job,
        embedder=Slow(),  # type: ignore[arg-type]
    )
    assert beats_while_embedding
    assert set(beats_while_embedding) == {job.pk}


def test_a_job_swept_while_its_worker_still_runs_stops_and_lets_go_of_its_source(
    folder: KnowledgeSource,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    other_session: Any,
) -> None:
    read = services.source_items

    def stalled(source: KnowledgeSource) -> Iterator[Any]:
        items = list(read(source))
        yield items[0]
        clock.advance(minutes=20)  # stuck on the next file: the sweep gives up on it
        assert jobs_sweep() == 1
        assert not free_elsewhere(other_session, source)  # the worker still holds it
        yield from items[1:]

    monkeypatch.setattr(services, "source_items", stalled)
    job = job_run(job_create(source=folder).pk)
    # It stopped at its next sign of life: nothing written, the sweep's reason kept.
    assert (job.status, job.errors) == ("failed", [{"id": "", "error": STOPPED}])
    assert not Document.objects.exists()
    assert free_elsewhere(other_session, folder)
    monkeypatch.setattr(services, "source_items", read)
    assert job_run(job_create(source=folder).pk, wait_seconds=0).status == "succeeded"


# --- One sync of a source at a time ----------------------------------------------------


def test_a_second_sync_request_joins_the_one_queued_or_running(
    folder: KnowledgeSource, supervisor_client: Any, tmp_path: Path
) -> None:
    def sync(**body: Any) -> dict[str, Any]:
        response = supervisor_client.post("/api/kb/sync", body, format="json")
        assert response.status_code == 202
        return dict(response.json())

    first = sync(source="folder")  # its task waits until the request commits
    assert first == {"job_id": first["job_id"], "status": "queued"}  # the seed's answer
    again = sync(source="folder")
    assert again == {
        "job_id": first["job_id"],
        "status": "queued",
        "existing": True,
        "message": f"A sync of source 'folder' is already queued (job {first['job_id']}); "
        "this request joins it instead of starting a second one.",
    }
    IngestionJob.objects.filter(pk=first["job_id"]).update(status="running")
    assert sync(source="folder")["job_id"] == first["job_id"]
    # A full sync is more than the one running: a job of its own (it waits for the source).
    full = sync(source="folder", full=True)
    assert "existing" not in full
    assert sync(source="folder", full=True)["job_id"] == full["job_id"]
    # A sync of every source covers this one; this one does not cover every source.
    everything = sync()
    assert "existing" not in everything
    other = KnowledgeSource.objects.create(name="other", kind="folder", path=str(tmp_path))
    assert sync(source=other.name)["job_id"] == everything["job_id"]
    assert IngestionJob.objects.count() == 3

    IngestionJob.objects.update(status="succeeded")
    assert "existing" not in sync(source="folder")


def test_a_sync_request_never_joins_a_job_whose_worker_died(
    folder: KnowledgeSource, supervisor_client: Any, settings: Any
) -> None:
    settings.KB_JOB_STALE_SECONDS = 900
    dead = aged(job_create(source=folder), minutes=30, status="running")
    response = supervisor_client.post("/api/kb/sync", {"source": "folder"}, format="json")
    assert response.json() == {"job_id": response.json()["job_id"], "status": "queued"}
    assert response.json()["job_id"] != dead.pk
    dead.refresh_from_db()
    assert (dead.status, dead.errors) == ("failed", [{"id": "", "error": STOPPED}])


def test_a_run_waits_for_a_source_another_process_holds_then_gives_up_with_the_reason(
    folder: KnowledgeSource, other_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lock(other_session, folder)  # a sync of it in another worker
    holder = aged(job_create(source=folder), minutes=0, status="running")
    job = job_create(source=folder)
    with pytest.raises(SourceBusy, match=f"source 'folder' is being synced by job {holder.pk}"):
        job_run(job.pk, wait_seconds=0)
    job.refresh_from_db()
    assert job.status == "queued"  # still to run, looked after: not a lost job
    assert not Document.objects.exists()

    runs = []
    monkeypatch.setattr(services, "SOURCE_LOCK_WAIT_SECONDS", 0.0)
    monkeypatch.setattr(tasks, "BUSY_MAX_RETRIES", 2)

    def counted(job_id: int) -> IngestionJob:
        runs.append(job_id)
        return job_run(job_id)

    monkeypatch.setattr(services, "job_run", counted)
    # Eager retries re-apply with the app's propagate setting: off, to see them all.
    monkeypatch.setitem(tasks.kb_sync_task.app.conf, "task_eager_propagates", False)
    tasks.kb_sync_task.apply(args=(job.pk,), throw=False)
    job.refresh_from_db()
    assert runs == [job.pk] * 3  # the first try and two later ones
    assert (job.status, job.errors) == (
        "failed",
        [
            {
                "id": "",
                "error": f"not run: source 'folder' is being synced by job {holder.pk} "
                "(sync) after 3 tries; start the sync again when it has finished",
            }
        ],
    )
    assert not Document.objects.exists()

    lock(other_session, folder, take=False)
    assert job_run(job_create(source=folder).pk, wait_seconds=0).status == "succeeded"


def test_a_copy_of_the_task_does_not_run_a_job_another_worker_is_running(
    folder: KnowledgeSource,
) -> None:
    """A task redelivered (acks_late) while its first copy still runs used to run the
    whole sync a second time, alongside the first."""
    job = aged(job_create(source=folder), minutes=1, status="running")
    tasks.kb_sync_task.apply(args=(job.pk,))
    job.refresh_from_db()
    assert job.status == "running"
    assert not Document.objects.exists()


def test_kb_resync_stops_with_the_holder_when_the_source_is_busy(
    folder: KnowledgeSource, other_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "SOURCE_LOCK_WAIT_SECONDS", 0.0)
    assert lock(other_session, folder)
    with pytest.raises(CommandError, match="source 'folder' is being synced by another process"):
        call_command("kb_resync", "--source", "folder", "--no-progress", stdout=StringIO())
    job = IngestionJob.objects.get()
    assert job.status == "failed"
    assert job.errors[-1]["error"].startswith("not run: source 'folder' is being synced")
    lock(other_session, folder, take=False)
    out = StringIO()
    call_command("kb_resync", "--source", "folder", "--no-progress", stdout=out)
    assert "status=succeeded" in out.getvalue()


# --- Sources whose last run failed: a gauge, and "Sync again" --------------------------------


def failing(client: Client, settings: Any) -> dict[str, float]:
    """``support_kb_sources_failing`` by kind, as ``GET /metrics`` exports it."""
    from tests.test_metrics import TOKEN, scrape

    settings.METRICS_TOKEN = TOKEN
    families = scrape(client, TOKEN)
    assert (
        families["support_metrics_source_up"][
            (("__name__", "support_metrics_source_up"), ("source", "knowledge_sources"))
        ]
        == 1
    )
    return {
        dict(labels)["kind"]: value
        for labels, value in families["support_kb_sources_failing"].items()
    }


def finished(source: KnowledgeSource | None, *, kind: str = "sync", error: str = "") -> None:
    job = job_create(source=source, kind=kind)
    job_finish(job, error=error)


def test_sources_whose_last_sync_or_ingest_failed_are_a_level_until_a_run_succeeds(
    folder: KnowledgeSource,
    client: Client,
    settings: Any,
    django_assert_num_queries: Any,
) -> None:
    """Before, a failed sync was a row in the admin's job list and nothing else: no metric,
    so no alert rule could watch it."""
    from alerts.selectors import metric_names_known
    from knowledge.selectors import knowledge_sources_failing

    s3 = KnowledgeSource.objects.create(name="docs", kind="s3", bucket="kb-docs")
    uploads = KnowledgeSource.objects.create(name="uploads", kind="upload")
    assert failing(client, settings) == {"folder": 0, "s3": 0, "upload": 0}
    assert "support_kb_sources_failing" in metric_names_known()  # an alert rule may name it

    finished(folder, error="OSError: the share is gone")
    finished(s3, kind="ingest", error="ClientError: AccessDenied")
    finished(uploads, kind="upload", error="not ingested: returns.md")  # its own re-run
    assert failing(client, settings) == {"folder": 1, "s3": 1, "upload": 0}
    job_create(source=folder)  # queued: not a success yet
    finished(s3, kind="event")  # an S3 event applied is no sync of the source
    assert failing(client, settings) == {"folder": 1, "s3": 1, "upload": 0}

    finished(folder)
    finished(s3)
    assert failing(client, settings) == {"folder": 0, "s3": 0, "upload": 0}
    finished(None, error="ClientError: SlowDown")  # a sync of all sources: folder and S3
    assert failing(client, settings) == {"folder": 1, "s3": 1, "upload": 0}
    finished(folder)  # a later sync of one source clears it
    assert failing(client, settings) == {"folder": 0, "s3": 1, "upload": 0}
    KnowledgeSource.objects.create(name="new", kind="folder", path="/tmp/new")
    assert failing(client, settings) == {"folder": 0, "s3": 1, "upload": 0}  # not its run

    with django_assert_num_queries(1):
        knowledge_sources_failing()


def test_a_supervisor_syncs_a_failed_source_again_from_the_admin(
    folder: KnowledgeSource,
    supervisor: Any,
    client: Client,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Before, the admin's only re-run was for uploads ("only a failed upload ... can run
    again"): a failed sync took ``POST /api/kb/sync``. The action starts the same sync,
    audit-logged, and the gauge clears once it succeeds."""
    from support.models import AuditLog

    uploads = KnowledgeSource.objects.create(name="uploads", kind="upload")
    finished(folder, error="OSError: the share is gone")
    assert failing(client, settings)["folder"] == 1
    browser = Client()
    browser.force_login(supervisor)
    changelist = "/admin/knowledge/knowledgesource/"
    action = {"action": "sync_again", "_selected_action": [folder.pk, uploads.pk]}

    busy = job_create(source=folder)  # a sync of it already queued: left to it
    response = browser.post(changelist, action, follow=True)
    page = response.content.decode()
    assert f"A sync of &#x27;folder&#x27; is already queued (job {busy.pk}): not started" in (page)
    assert "Source &#x27;uploads&#x27; holds uploads: there is nothing to re-read" in page
    assert IngestionJob.objects.count() == 2
    assert not AuditLog.objects.filter(action="kb_source.sync").exists()
    job_finish(busy, error="OSError: the share is gone")

    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(changelist, action, follow=True)
    again = IngestionJob.objects.order_by("-pk").first()
    assert again is not None
    assert f"Sync of &#x27;folder&#x27; queued as job {again.pk}." in response.content.decode()
    assert (again.source, again.kind, again.status, again.requested_by) == (
        folder,
        "sync",
        "succeeded",
        supervisor,
    )
    assert Document.objects.filter(source=folder).count() == 3
    log = AuditLog.objects.get(action="kb_source.sync")
    assert (log.actor, log.object_type, log.object_id, log.details) == (
        supervisor,
        "knowledge.KnowledgeSource",
        str(folder.pk),
        {"source": "folder", "job": again.pk},
    )
    assert failing(client, settings)["folder"] == 0


def test_staff_who_are_not_supervisors_cannot_sync_a_source_from_the_admin(
    folder: KnowledgeSource, django_user_model: Any
) -> None:
    from django.contrib.auth.models import Permission

    clerk = django_user_model.objects.create_user("clerk", "clerk@example.com", "pw-tests-1")
    clerk.is_staff = True
    clerk.save()
    clerk.user_permissions.add(Permission.objects.get(codename="view_knowledgesource"))
    browser = Client()
    browser.force_login(clerk)
    response = browser.post(
        "/admin/knowledge/knowledgesource/",
        {"action": "sync_again", "_selected_action": [folder.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Only supervisors start syncs." in response.content.decode()
    assert not IngestionJob.objects.exists()
