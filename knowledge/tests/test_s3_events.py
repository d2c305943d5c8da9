from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from django.utils.timezone import now as timezone_now
from moto import mock_aws

from knowledge.management.commands.kb_sqs_poll import poll_once
from knowledge.models import Document, IngestionJob, KnowledgeSource, ObjectEvent
from knowledge.s3events import parse_events
from knowledge.services import source_get_or_create, source_sync
from knowledge.tests.conftest import fixture_json, lock
from support.errors import InvalidInput

TOKEN = "kb-events-secret"


@pytest.fixture
def s3(aws_env: None, settings: Any):
    settings.KB_EVENTS_TOKEN = TOKEN
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="kb-docs")
        yield client


@pytest.fixture
def s3_source(db):
    return source_get_or_create(
        name="bucket-docs", kind=KnowledgeSource.Kind.S3, bucket="kb-docs", prefix="help/"
    )


def post_event(client, body: Any, token: str = TOKEN):
    return client.post(
        "/api/kb/events",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def test_parse_every_shape():
    created = parse_events(fixture_json("eventbridge_object_created.json"))
    deleted = parse_events(fixture_json("eventbridge_object_deleted.json"))
    put = parse_events(json.dumps(fixture_json("s3_notification_put.json")))
    sns = parse_events(
        {"Type": "Notification", "Message": json.dumps(fixture_json("s3_notification_delete.json"))}
    )
    assert [(e.event_key, e.bucket, e.key, e.action) for e in created + deleted + put + sns] == [
        ("eb:17793124-05d4-b198-2fde-7ededc63b103", "kb-docs", "help/refunds.md", "upsert"),
        ("eb:2ee9cc15-d022-99ea-1fb8-1b1bac4850f9", "kb-docs", "help/refunds.md", "delete"),
        (
            "s3:kb-docs/help/Shipping times.md/0055AED6DCD90281E5/upsert",
            "kb-docs",
            "help/Shipping times.md",
            "upsert",
        ),
        (
            "s3:kb-docs/help/Shipping times.md/0055AED6DCD90281F0/delete",
            "kb-docs",
            "help/Shipping times.md",
            "delete",
        ),
    ]
    # S3's sequencer, padded so that the strings compare as the hexadecimal values
    assert [e.sequencer for e in created + deleted + put + sns] == [
        "0000000000000000617F08299329D189",
        "0000000000000000617F0837B476E463",
        "000000000000000055AED6DCD90281E5",
        "000000000000000055AED6DCD90281F0",
    ]
    assert parse_events(fixture_json("s3_test_event.json")) == []
    with pytest.raises(InvalidInput, match="neither an EventBridge"):
        parse_events({"hello": "world"})


def test_eventbridge_created_then_deleted_ingests_and_removes_exactly_that_object(
    s3, s3_source, api_client, django_capture_on_commit_callbacks
):
    s3.put_object(Bucket="kb-docs", Key="help/refunds.md", Body=b"# Refunds\nWithin 30 days.")
    s3.put_object(Bucket="kb-docs", Key="help/other.md", Body=b"# Other\nNot announced.")
    with django_capture_on_commit_callbacks(execute=True):
        response = post_event(api_client, fixture_json("eventbridge_object_created.json"))
    assert (response.status_code, response.json()) == (202, {"received": 1, "new": 1})
    doc = Document.objects.get()
    assert (doc.external_id, doc.title, doc.url, doc.status) == (
        "help/refunds.md",
        "Refunds",
        "s3://kb-docs/help/refunds.md",
        "active",
    )
    event = ObjectEvent.objects.get()
    assert (event.via, event.action, event.processed_at is not None) == ("http", "upsert", True)
    assert event.job is not None
    assert (event.job.kind, event.job.status, event.job.created_count) == ("event", "succeeded", 1)

    # the same delivery again is acknowledged and does nothing
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_event(api_client, fixture_json("eventbridge_object_created.json"))
    assert (response.status_code, response.json(), callbacks) == (
        202,
        {"received": 1, "new": 0},
        [],
    )

    s3.delete_object(Bucket="kb-docs", Key="help/refunds.md")
    with django_capture_on_commit_callbacks(execute=True):
        response = post_event(api_client, fixture_json("eventbridge_object_deleted.json"))
    assert response.status_code == 202
    doc.refresh_from_db()
    assert (doc.status, doc.chunks.count()) == ("deleted", 0)
    assert Document.objects.count() == 1  # help/other.md was never touched
    assert IngestionJob.objects.count() == 2


def test_events_outside_the_source_prefix_or_bucket_change_nothing(
    s3, s3_source, api_client, django_capture_on_commit_callbacks
):
    body = fixture_json("eventbridge_object_created.json")
    body["detail"]["object"]["key"] = "private/notes.md"
    with django_capture_on_commit_callbacks(execute=True):
        assert post_event(api_client, body).status_code == 202
    assert Document.objects.count() == 0
    assert IngestionJob.objects.count() == 0
    assert ObjectEvent.objects.get().processed_at is not None


def test_an_event_no_s3_source_covers_is_logged_with_bedrock(
    db, s3, api_client, settings, django_capture_on_commit_callbacks, caplog
):
    """KB_BACKEND=bedrock: an S3 event starts an ingestion job only through a source of
    kind s3 covering the object. Without one it was marked processed with no job and no
    word; it is logged (bucket and key, nothing of the object)."""
    settings.KB_BACKEND = "bedrock"
    body = fixture_json("eventbridge_object_created.json")
    key = body["detail"]["object"]["key"]
    with (
        caplog.at_level("WARNING", logger="knowledge"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert post_event(api_client, body).status_code == 202
    event = ObjectEvent.objects.get()
    assert (event.processed_at is not None, event.job) == (True, None)
    [record] = [r for r in caplog.records if "no S3 knowledge source" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert f"s3://kb-docs/{key}" in record.getMessage()
    assert "backend bedrock" in record.getMessage()


@pytest.mark.django_db
def test_events_need_the_token(api_client, settings):
    settings.KB_EVENTS_TOKEN = TOKEN
    body = fixture_json("eventbridge_object_created.json")
    assert post_event(api_client, body, token="wrong").status_code == 401
    response = api_client.post("/api/kb/events", data=body, format="json")
    assert response.status_code == 401
    settings.KB_EVENTS_TOKEN = ""
    assert post_event(api_client, body).status_code == 403
    assert ObjectEvent.objects.count() == 0


@pytest.mark.django_db
def test_malformed_event_is_a_400(api_client, settings):
    settings.KB_EVENTS_TOKEN = TOKEN
    response = api_client.post(
        "/api/kb/events",
        data="{nope",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert ObjectEvent.objects.count() == 0


def test_sqs_poller_handles_s3_notifications_and_leaves_bad_messages(
    s3, s3_source, django_capture_on_commit_callbacks
):
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="kb-events")["QueueUrl"]
    s3.put_object(Bucket="kb-docs", Key="help/Shipping times.md", Body=b"Ships in 2 days.")
    sqs.send_message(
        QueueUrl=queue_url, MessageBody=json.dumps(fixture_json("s3_notification_put.json"))
    )
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(fixture_json("s3_test_event.json")))
    sqs.send_message(QueueUrl=queue_url, MessageBody="not json")
    with django_capture_on_commit_callbacks(execute=True):
        handled, new = poll_once(sqs, queue_url, wait_seconds=0)
    assert (handled, new) == (2, 1)
    doc = Document.objects.get()
    assert (doc.external_id, doc.title, doc.status) == (
        "help/Shipping times.md",
        "Shipping times",
        "active",
    )
    assert ObjectEvent.objects.get().via == "sqs"
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"  # the bad one stays

    s3.delete_object(Bucket="kb-docs", Key="help/Shipping times.md")
    sqs.send_message(
        QueueUrl=queue_url, MessageBody=json.dumps(fixture_json("s3_notification_delete.json"))
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert poll_once(sqs, queue_url, wait_seconds=0) == (1, 1)
    doc.refresh_from_db()
    assert doc.status == "deleted"


def test_full_s3_sync_reads_the_prefix(s3, s3_source):
    s3.put_object(Bucket="kb-docs", Key="help/a.md", Body=b"# A\nalpha")
    s3.put_object(
        Bucket="kb-docs", Key="help/faq.jsonl", Body=b'{"id": "1", "title": "Q", "text": "A"}\n'
    )
    s3.put_object(Bucket="kb-docs", Key="help/image.png", Body=b"\x89PNG")
    s3.put_object(Bucket="kb-docs", Key="outside.md", Body=b"# Out\nside")
    counts = source_sync(source=s3_source)
    assert (counts.created, counts.failed) == (2, 0)
    assert sorted(Document.objects.values_list("external_id", flat=True)) == [
        "help/a.md",
        "help/faq.jsonl#1",
    ]
    s3.delete_object(Bucket="kb-docs", Key="help/a.md")
    counts = source_sync(source=s3_source)
    assert (counts.deleted, counts.unchanged) == (1, 1)


@pytest.mark.django_db
def test_a_stale_sns_envelope_over_http_is_refused(api_client, settings):
    settings.KB_EVENTS_TOKEN = TOKEN
    message = json.dumps(fixture_json("s3_notification_delete.json"))
    stale = {"Type": "Notification", "Message": message, "Timestamp": "2026-01-01T00:00:00.000Z"}
    response = post_event(api_client, stale)
    assert response.status_code == 400
    assert "SNS_MAX_AGE_SECONDS" in response.json()["error"]["message"]
    assert ObjectEvent.objects.count() == 0
    # Read from SQS (an authenticated queue that may hold a backlog) the same envelope parses.
    assert [e.action for e in parse_events(stale)] == ["delete"]


def test_an_object_gone_between_listing_and_reading_does_not_fail_the_sync(
    s3, s3_source, monkeypatch
):
    from knowledge import readers

    s3.put_object(Bucket="kb-docs", Key="help/a.md", Body=b"# A\nalpha")
    s3.put_object(Bucket="kb-docs", Key="help/gone.md", Body=b"# Gone\nsoon")
    assert source_sync(source=s3_source).created == 2
    listed = list(readers.s3_keys(s3_source))
    s3.delete_object(Bucket="kb-docs", Key="help/gone.md")  # after the listing
    monkeypatch.setattr(readers, "s3_keys", lambda source, client=None: iter(listed))
    counts = source_sync(source=s3_source)
    assert (counts.unchanged, counts.deleted, counts.failed) == (1, 1, 0)
    assert dict(Document.objects.values_list("external_id", "status")) == {
        "help/a.md": "active",
        "help/gone.md": "deleted",
    }


def test_an_object_over_the_size_limit_is_a_failed_item_never_downloaded(
    s3, s3_source, monkeypatch
):
    from knowledge import readers

    monkeypatch.setattr(readers, "SOURCE_FILE_MAX_BYTES", 100, raising=False)
    s3.put_object(Bucket="kb-docs", Key="help/a.md", Body=b"# A\nalpha")
    s3.put_object(Bucket="kb-docs", Key="help/huge.md", Body=b"# Huge\n" + b"x " * 100)
    counts = source_sync(source=s3_source)
    assert (counts.created, counts.failed) == (1, 1)
    assert counts.errors == [
        {"id": "help/huge.md", "error": "help/huge.md: larger than 100 bytes (207 bytes)"}
    ]
    assert Document.objects.get(external_id="help/huge.md").status == "failed"


def test_a_redelivered_event_whose_processing_was_lost_is_processed(
    s3, s3_source, api_client, django_capture_on_commit_callbacks
):
    """The first delivery was recorded but its task never ran (the broker was down when
    it was queued, or the worker lost it): the sender's redelivery processes it."""
    s3.put_object(Bucket="kb-docs", Key="help/refunds.md", Body=b"# Refunds\nWithin 30 days.")
    with django_capture_on_commit_callbacks(execute=False):  # the task is never queued
        response = post_event(api_client, fixture_json("eventbridge_object_created.json"))
    assert (response.status_code, response.json()) == (202, {"received": 1, "new": 1})
    assert ObjectEvent.objects.get().processed_at is None
    with django_capture_on_commit_callbacks(execute=True):
        response = post_event(api_client, fixture_json("eventbridge_object_created.json"))
    assert (response.status_code, response.json()) == (202, {"received": 1, "new": 0})
    assert ObjectEvent.objects.get().processed_at is not None
    assert Document.objects.get().external_id == "help/refunds.md"
    with django_capture_on_commit_callbacks(execute=True) as callbacks:  # processed: nothing
        post_event(api_client, fixture_json("eventbridge_object_created.json"))
    assert callbacks == []


def test_an_event_for_a_source_being_synced_goes_in_after_the_sync(
    s3, s3_source, api_client, django_capture_on_commit_callbacks, monkeypatch, other_session
):
    """An event applied in the middle of a sync of its source was undone by it (the sync
    deletes what its listing did not hold, or writes back what the event deleted): it
    waits for the source, its task trying again later, and goes in after the sync."""
    from knowledge import services, tasks

    s3.put_object(Bucket="kb-docs", Key="help/refunds.md", Body=b"# Refunds\nWithin 30 days.")
    monkeypatch.setattr(services, "SOURCE_LOCK_WAIT_SECONDS", 0.0)
    monkeypatch.setattr(tasks, "BUSY_MAX_RETRIES", 2)
    tries = []
    process = services.object_event_process

    def counted(event_id: int) -> Any:
        tries.append(event_id)
        return process(event_id)

    monkeypatch.setattr(services, "object_event_process", counted)
    assert lock(other_session, s3_source)  # a sync of the bucket in another worker
    with django_capture_on_commit_callbacks(execute=True):
        response = post_event(api_client, fixture_json("eventbridge_object_created.json"))
    assert (response.status_code, response.json()) == (202, {"received": 1, "new": 1})
    event = ObjectEvent.objects.get()
    assert tries == [event.pk] * 3  # the first try and two later ones, then the sweep's
    event.refresh_from_db()
    assert event.processed_at is None
    assert event.last_error == (
        "not applied: source 'bucket-docs' is being synced by another process for an hour (3 tries)"
    )
    assert not Document.objects.exists()
    assert not IngestionJob.objects.exists()  # nothing was started

    lock(other_session, s3_source, take=False)  # the sync finished
    with django_capture_on_commit_callbacks(execute=True):  # S3 delivers it again
        post_event(api_client, fixture_json("eventbridge_object_created.json"))
    event.refresh_from_db()
    assert event.processed_at is not None
    assert Document.objects.get().external_id == "help/refunds.md"


def test_events_for_a_long_object_key_stay_apart(db):
    """S3 keys run to 1,024 characters; the event key was cut to its column (300), which
    cut off the sequencer and the action: every later event of that object was "already
    received" (a document's update or deletion never reached the knowledge base)."""
    from knowledge.services import object_event_record

    key = "help/" + "a-very-long-folder-name/" * 14 + "refunds.md"
    made = [
        object_event_record(
            event_key=f"s3:kb-docs/{key}/{sequencer}/{action}",
            via="s3",
            bucket="kb-docs",
            key=key,
            action=action,
            payload={},
        )
        for sequencer, action in (
            ("0055AED6DCD90281E5", "upsert"),
            ("0055AED6DCD90281F0", "delete"),
        )
    ]
    assert all(event is not None for event in made)
    assert ObjectEvent.objects.filter(key=key).count() == 2
    assert all(len(event.event_key) <= 300 for event in made if event is not None)
    again = object_event_record(  # a redelivery of the first is still one
        event_key=f"s3:kb-docs/{key}/0055AED6DCD90281E5/upsert",
        via="s3",
        bucket="kb-docs",
        key=key,
        action="upsert",
        payload={},
    )
    assert again is None


# --- the event sweep: events recorded but never processed ---------------------------------


def _lost(api_client: Any, captured: Any, body: dict[str, Any]) -> ObjectEvent:
    """Post an event whose task is never queued (the broker was down at the commit)."""
    with captured(execute=False):
        assert post_event(api_client, body).status_code == 202
    return ObjectEvent.objects.latest("pk")


def _deleted_body() -> dict[str, Any]:
    return fixture_json("eventbridge_object_deleted.json")


def _created_body(event_id: str, sequencer: str, name: str = "created") -> dict[str, Any]:
    """The EventBridge "Object Created" (or ``name="deleted"``) fixture as another event
    of the same object."""
    body = fixture_json(f"eventbridge_object_{name}.json")
    body["id"] = event_id
    body["detail"]["object"]["sequencer"] = sequencer
    return body


def _quiet(seconds: float = 600) -> None:
    """Every unprocessed event received and last tried ``seconds`` ago."""
    from datetime import timedelta

    from django.utils import timezone

    then = timezone.now() - timedelta(seconds=seconds)
    ObjectEvent.objects.filter(processed_at__isnull=True).update(
        received_at=then, attempted_at=then
    )


def test_worker_reconnections_do_not_give_up_a_live_event(db):
    """The sweep a worker sends each time it connects asks for no grace: it counted a
    re-drive of an event whose task had just tried (or waited for a busy source), and six
    reconnections (a deploy restarting the workers) made a live event a dead letter."""
    from unittest import mock

    from django.utils import timezone

    from knowledge import services

    event = ObjectEvent.objects.create(
        event_key="k1", via="http", bucket="kb-docs", key="help/a.md", action="upsert"
    )
    queued: list[int] = []
    with mock.patch("knowledge.tasks.kb_object_event_task.delay", side_effect=queued.append):
        for _ in range(services.OBJECT_EVENT_MAX_ATTEMPTS + 1):
            ObjectEvent.objects.filter(pk=event.pk).update(attempted_at=timezone.now())
            services.object_events_sweep(grace_seconds=0)  # a worker connecting
    event.refresh_from_db()
    assert queued == []
    assert (event.attempts, event.failed_at) == (0, None)


def test_a_re_drive_is_counted_before_its_task_is_queued(db, caplog):
    """Before, the sweep queued the task and counted it after: a task that ran (or a
    sweep stopped) in between was never counted, and a broker refusing the task left the
    re-drive uncounted. Now each is counted first (``support.sweeps``); the broker
    refusing one stops the run, logged, its re-drive spent."""
    from unittest import mock

    from kombu.exceptions import OperationalError as BrokerDown

    from knowledge import services

    events = [
        ObjectEvent.objects.create(
            event_key=f"k{n}", via="http", bucket="kb-docs", key=f"help/{n}.md", action="upsert"
        )
        for n in (1, 2)
    ]
    _quiet()
    seen: list[int] = []

    def queue(pk: int) -> None:
        seen.append(ObjectEvent.objects.get(pk=pk).attempts)

    with mock.patch("knowledge.tasks.kb_object_event_task.delay", side_effect=queue):
        assert services.object_events_sweep() == 2
    assert seen == [1, 1]  # counted when queued

    _quiet()
    down = BrokerDown("Error 111 connecting to redis:6379. Connection refused.")
    with mock.patch("knowledge.tasks.kb_object_event_task.delay", side_effect=down) as delay:
        assert services.object_events_sweep() == 0
    delay.assert_called_once_with(events[0].pk)
    attempts = [e.attempts for e in ObjectEvent.objects.order_by("pk")]
    assert attempts == [2, 1]  # the refused one spent; the next left for the next run
    assert "kb event sweep: the broker is unreachable (OperationalError)" in caplog.text


def test_the_event_sweep_reads_the_partial_index_of_unprocessed_events(db):
    """Object events are kept for good: the sweep (every 5 minutes, and on every worker
    connection) reads the few unprocessed ones through ``kb_objectevent_pending``, not
    the table. Sequential scans are priced out on the small test table to see that the
    planner can use it for the sweep's query shape, on the beat and on connect."""
    from django.db import connection
    from django.utils import timezone

    from knowledge import services

    ObjectEvent.objects.bulk_create(
        ObjectEvent(
            event_key=f"done-{i}",
            via="http",
            bucket="kb-docs",
            key=f"help/{i}.md",
            processed_at=timezone.now(),
        )
        for i in range(3000)
    )
    ObjectEvent.objects.bulk_create(
        ObjectEvent(event_key=f"open-{i}", via="http", bucket="kb-docs", key=f"help/o{i}.md")
        for i in range(3)
    )
    _quiet(3600)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_objectevent")
        cursor.execute("SET LOCAL enable_seqscan = off")
    for grace in (services.OBJECT_EVENT_SWEEP_GRACE_SECONDS, 0):
        due = services._object_events_due(grace, timezone.now())
        assert "kb_objectevent_pending" in due[: services.OBJECT_EVENT_SWEEP_BATCH].explain()


def test_an_event_whose_task_was_lost_is_queued_again_by_the_sweep(
    s3, s3_source, api_client, django_capture_on_commit_callbacks
):
    """S3 and EventBridge never deliver an answered event again: before, a lost task left
    the document's update out of the knowledge base for good."""
    from knowledge import tasks

    s3.put_object(Bucket="kb-docs", Key="help/refunds.md", Body=b"# Refunds\nWithin 30 days.")
    event = _lost(
        api_client,
        django_capture_on_commit_callbacks,
        fixture_json("eventbridge_object_created.json"),
    )
    assert event.processed_at is None
    # within the grace (its task may still be on its way): left alone
    assert tasks.kb_object_events_sweep_task.apply().get() == 0
    assert not Document.objects.exists()

    _quiet()  # a worker connecting (no grace) finds it quiet past the floor
    assert tasks.kb_object_events_sweep_task.apply(kwargs={"grace_seconds": 0}).get() == 1
    event.refresh_from_db()
    assert (event.processed_at is not None, event.attempts, event.note) == (True, 1, "")
    assert Document.objects.get().external_id == "help/refunds.md"
    # processed: never queued again
    assert tasks.kb_object_events_sweep_task.apply(kwargs={"grace_seconds": 0}).get() == 0


def test_the_sweep_applies_a_lost_update_then_delete_of_one_object_as_the_delete(
    s3, s3_source, api_client, django_capture_on_commit_callbacks
):
    """An upsert and a later delete of the same object, both lost: the upsert, applied
    now, would read an object that is gone; the delete decides. The upsert is closed
    unapplied with a note, the delete applied."""
    from knowledge.services import object_events_sweep

    s3.put_object(Bucket="kb-docs", Key="help/refunds.md", Body=b"# Refunds\nWithin 30 days.")
    with django_capture_on_commit_callbacks(execute=True):  # in the knowledge base
        post_event(api_client, {**fixture_json("eventbridge_object_created.json"), "id": "v1"})
    doc = Document.objects.get()
    upsert = _lost(
        api_client,
        django_capture_on_commit_callbacks,
        fixture_json("eventbridge_object_created.json"),
    )
    s3.delete_object(Bucket="kb-docs", Key="help/refunds.md")
    delete = _lost(api_client, django_capture_on_commit_callbacks, _deleted_body())
    assert (upsert.action, delete.action) == ("upsert", "delete")

    _quiet()
    assert object_events_sweep(grace_seconds=0) == 1
    upsert.refresh_from_db()
    delete.refresh_from_db()
    assert upsert.processed_at is not None
    assert upsert.note == (
        f"superseded by event {delete.pk} (delete, later by S3's sequencer); not applied"
    )
    assert upsert.job is None
    assert (delete.processed_at is not None, delete.note) == (True, "")
    doc.refresh_from_db()
    assert doc.status == "deleted"


def test_a_lost_delete_is_never_applied_after_a_later_upload_of_the_object(
    s3, s3_source, api_client, django_capture_on_commit_callbacks
):
    """The object was deleted (its event lost), then uploaded again (processed): the
    re-driven delete would remove the live document."""
    from knowledge.services import object_events_sweep

    delete = _lost(api_client, django_capture_on_commit_callbacks, _deleted_body())
    s3.put_object(Bucket="kb-docs", Key="help/refunds.md", Body=b"# Refunds\nWithin 60 days.")
    with django_capture_on_commit_callbacks(execute=True):
        post_event(api_client, _created_body("reupload", "617f0845a1b2c3d4"))  # after it
    delete.refresh_from_db()
    assert delete.processed_at is not None
    assert delete.note.startswith("superseded by event ")
    assert object_events_sweep(grace_seconds=0) == 0
    assert Document.objects.get().status == "active"


def test_an_event_that_keeps_failing_is_re_driven_a_bounded_number_of_times_then_failed(
    s3, s3_source, api_client, django_capture_on_commit_callbacks, monkeypatch
):
    from knowledge import services
    from knowledge.backends.local import LocalBackend
    from support.celery import app

    monkeypatch.setitem(app.conf, "task_eager_propagates", False)  # as a worker: logged

    def broken(self: Any, job: Any, *, key: str, action: str) -> None:
        raise ValueError("the bucket refused the read")

    monkeypatch.setattr(LocalBackend, "apply_object", broken)
    s3.put_object(Bucket="kb-docs", Key="help/refunds.md", Body=b"# Refunds\nWithin 30 days.")
    with django_capture_on_commit_callbacks(execute=True):  # the first try fails
        post_event(api_client, fixture_json("eventbridge_object_created.json"))
    event = ObjectEvent.objects.get()
    assert (event.processed_at, event.attempts) == (None, 0)
    assert event.last_error == "ValueError: the bucket refused the read"

    for run in range(1, services.OBJECT_EVENT_MAX_ATTEMPTS + 1):
        _quiet()
        assert services.object_events_sweep(grace_seconds=0) == 1
        event.refresh_from_db()
        assert (event.attempts, event.failed_at) == (run, None)
    _quiet()
    assert services.object_events_sweep(grace_seconds=0) == 0  # gives up
    event.refresh_from_db()
    assert event.processed_at is None
    assert event.failed_at is not None
    assert event.last_error == (
        "gave up after 5 re-drives: ValueError: the bucket refused the read"
    )
    assert services.object_events_sweep(grace_seconds=0) == 0  # and stays given up
    assert IngestionJob.objects.filter(status="failed").count() == 6
    assert not Document.objects.exists()


def test_a_supervisor_re_drives_a_failed_event_from_the_admin(
    s3, s3_source, supervisor, superuser, django_capture_on_commit_callbacks
):
    from django.test import Client
    from django.utils import timezone

    from support.models import AuditLog

    s3.put_object(Bucket="kb-docs", Key="help/refunds.md", Body=b"# Refunds\nWithin 30 days.")
    failed = ObjectEvent.objects.create(
        event_key="eb:failed",
        via="http",
        bucket="kb-docs",
        key="help/refunds.md",
        action="upsert",
        payload={"detail": {"requester": "123456789012", "source-ip-address": "10.1.2.3"}},
        attempts=5,
        failed_at=timezone.now(),
        last_error="gave up after 5 re-drives: ValueError: the bucket refused the read",
    )
    pending = ObjectEvent.objects.create(
        event_key="eb:pending", via="http", bucket="kb-docs", key="help/other.md"
    )
    browser = Client()
    browser.force_login(supervisor)
    listing = browser.get("/admin/knowledge/objectevent/?state=failed")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "the bucket refused the read" in page
    assert "help/other.md" not in page
    detail = browser.get(f"/admin/knowledge/objectevent/{failed.pk}/change/").content.decode()
    assert "help/refunds.md" in detail
    assert "10.1.2.3" not in detail  # the raw notification stays the superusers'

    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(
            "/admin/knowledge/objectevent/",
            {"action": "redrive", "_selected_action": [failed.pk, pending.pk]},
        )
    assert response.status_code == 302
    failed.refresh_from_db()
    pending.refresh_from_db()
    assert failed.processed_at is not None
    assert (failed.failed_at, failed.attempts) == (None, 0)
    assert pending.processed_at is None  # not failed: the sweep's, left as it was
    assert Document.objects.get().external_id == "help/refunds.md"
    log = AuditLog.objects.get(action="kb_object_event.redrive")
    assert (log.actor, log.object_id, log.object_type) == (
        supervisor,
        str(failed.pk),
        "knowledge.ObjectEvent",
    )

    browser.force_login(superuser)
    detail = browser.get(f"/admin/knowledge/objectevent/{failed.pk}/change/").content.decode()
    assert "10.1.2.3" in detail


def test_workers_sweep_events_on_connect_and_beat_every_five_minutes(settings: Any) -> None:
    from support.celery import ON_CONNECT_TASKS

    assert ("knowledge.tasks.kb_object_events_sweep_task", {"grace_seconds": 0}) in (
        ON_CONNECT_TASKS
    )
    assert settings.CELERY_BEAT_SCHEDULE["kb-object-events-sweep"] == {
        "task": "knowledge.tasks.kb_object_events_sweep_task",
        "schedule": 300.0,
    }


# --- order by S3's sequencer, not by receipt ------------------------------------------------


def test_sequencers_of_different_lengths_compare_as_hexadecimal_values():
    """AWS: left-pad the shorter with zeros, then compare: "FF" (255) is before "100"
    (256), though "FF" > "100" as strings. Not hexadecimal, or longer than the column:
    no sequencer (ordered by receipt)."""
    from knowledge.s3events import SEQUENCER_WIDTH, sequencer_normalize

    assert sequencer_normalize("ff") < sequencer_normalize("100")
    assert sequencer_normalize("0055AED6DCD90281E5") < sequencer_normalize("617f08299329d189")
    assert sequencer_normalize("617f08299329d189") == sequencer_normalize("0617F08299329D189")
    assert len(sequencer_normalize("1")) == SEQUENCER_WIDTH
    for bad in (None, "", "xyz", "12 34", "F" * (SEQUENCER_WIDTH + 1), 42):
        assert sequencer_normalize(bad) == ""


@pytest.mark.parametrize(
    ("created", "deleted", "key"),
    [
        ("eventbridge_object_created.json", "eventbridge_object_deleted.json", "help/refunds.md"),
        ("s3_notification_put.json", "s3_notification_delete.json", "help/Shipping times.md"),
    ],
)
def test_an_old_upload_delivered_after_a_later_delete_does_not_bring_the_document_back(
    s3, s3_source, api_client, django_capture_on_commit_callbacks, created, deleted, key
):
    """SNS, SQS and EventBridge deliver in any order: the delete (greater sequencer)
    arrived and was applied first; the upload it followed, delivered after it, was applied
    as the later one received (read again where the object is readable, e.g. a read that
    still sees it, it brought the deleted document back). It is closed unapplied: S3's
    sequencer decides."""
    s3.put_object(Bucket="kb-docs", Key=key, Body=b"# Refunds\nWithin 30 days.")
    source_sync(source=s3_source)
    s3_source.refresh_from_db()
    KnowledgeSource.objects.update(listed_at=None)  # the sync long before the events
    assert Document.objects.get().status == "active"
    s3.delete_object(Bucket="kb-docs", Key=key)
    with django_capture_on_commit_callbacks(execute=True):
        assert post_event(api_client, fixture_json(deleted)).status_code == 202
    assert Document.objects.get().status == "deleted"
    s3.put_object(Bucket="kb-docs", Key=key, Body=b"# Refunds\nWithin 30 days.")  # readable
    with django_capture_on_commit_callbacks(execute=True):  # the earlier upload, late
        assert post_event(api_client, fixture_json(created)).status_code == 202
    assert Document.objects.get().status == "deleted"
    delete, upsert = ObjectEvent.objects.order_by("pk")
    assert (upsert.action, upsert.job, upsert.processed_at is not None) == ("upsert", None, True)
    assert upsert.note == (
        f"superseded by event {delete.pk} (delete, later by S3's sequencer); not applied"
    )
    assert (delete.note, delete.job is not None) == ("", True)
    assert IngestionJob.objects.filter(kind="event").count() == 1  # the delete's


def _made(sequencer: str, action: str = "upsert") -> ObjectEvent:
    from knowledge.s3events import sequencer_normalize

    return ObjectEvent.objects.create(
        event_key=f"k{ObjectEvent.objects.count()}",
        via="http",
        bucket="kb-docs",
        key="help/a.md",
        action=action,
        sequencer=sequencer_normalize(sequencer),
    )


def test_events_without_a_sequencer_come_first_then_by_receipt(db):
    """One total order by (sequencer, receipt): an event without a sequencer (one recorded
    before they were stored, or that carried none) comes before every event with one;
    those without one, like equal ones, by the order received. Before 2026-12-06 one
    without was compared with each other event by receipt, and the order cycled (below)."""
    from knowledge.services import _object_events_earlier, _object_events_later

    newest, older, none, oldest, none2 = (
        _made("0300"),
        _made("0200"),
        _made(""),
        _made("01"),
        _made(""),
    )
    other = ObjectEvent.objects.create(event_key="o", via="http", bucket="kb-docs", key="b.md")

    def later(event: ObjectEvent) -> set[int]:
        return set(_object_events_later(event).values_list("pk", flat=True))

    def earlier(event: ObjectEvent) -> set[int]:
        return set(_object_events_earlier(event).values_list("pk", flat=True))

    assert later(oldest) == {older.pk, newest.pk}  # by sequencer, though received last
    assert later(older) == {newest.pk}
    assert later(newest) == set()
    assert later(none) == {none2.pk, oldest.pk, older.pk, newest.pk}
    assert later(none2) == {oldest.pk, older.pk, newest.pk}
    assert earlier(newest) == {older.pk, oldest.pk, none.pk, none2.pk}
    assert earlier(none) == set()
    assert earlier(none2) == {none.pk}
    assert earlier(oldest) == {none.pk, none2.pk}
    assert other.pk not in later(none) | earlier(newest)


def test_events_with_and_without_a_sequencer_do_not_supersede_each_other_in_a_cycle(db, s3_source):
    """A (sequencer 0300) received, then B without one (recorded by the code before
    2026-12-06 during the deploy), then C (0200: happened before A). Compared by receipt
    when one lacked a sequencer, A was before B, B before C and C before A: each was closed
    as superseded by another, none applied. Now A, the latest change, is the one applied."""
    from knowledge.services import _object_event_settled

    a, b, c = _made("0300"), _made(""), _made("0200", "delete")
    assert [_object_event_settled(e) for e in (a, b, c)] == [False, True, True]
    b.refresh_from_db()
    c.refresh_from_db()
    assert c.note == f"superseded by event {a.pk} (upsert, later by S3's sequencer); not applied"
    assert b.note == (
        f"superseded by event {c.pk} (delete, carries S3's sequencer, this one none); not applied"
    )
    assert ObjectEvent.objects.get(pk=a.pk).processed_at is None  # to be applied


def test_the_migration_backfills_the_sequencer_from_the_stored_notification(
    db, s3_source, monkeypatch
):
    """Events recorded before sequencers were stored have "" though their payload holds
    S3's: migration 0014 fills it in as the intake reads it (the same value as
    ``parse_events``), so they are ordered by it, not as the earliest of their object.
    The reviewer's cycle (A 0300, B recorded without, C 0200) then orders B by its own
    sequencer."""
    import importlib

    from django.apps import apps

    from knowledge.services import _object_event_settled

    migration = importlib.import_module("knowledge.migrations.0014_objectevent_sequencer_backfill")
    parsed = [
        *parse_events(fixture_json("eventbridge_object_created.json")),
        *parse_events(fixture_json("eventbridge_object_deleted.json")),
        *parse_events(fixture_json("s3_notification_put.json")),
        *parse_events(fixture_json("s3_notification_delete.json")),
    ]
    assert all(e.sequencer for e in parsed)
    for e in parsed:  # as recorded before 0012
        ObjectEvent.objects.create(
            event_key=e.event_key, via="http", bucket=e.bucket, key=e.key, payload=e.payload
        )
    odd = ObjectEvent.objects.create(
        event_key="odd", via="http", bucket="b", key="k", payload={"s3": {"object": {}}}
    )
    kept = ObjectEvent.objects.create(
        event_key="kept", via="http", bucket="b", key="k", sequencer="0" * 31 + "1"
    )
    a, b, c = _made("0300"), _made(""), _made("0250", "delete")
    ObjectEvent.objects.filter(pk=b.pk).update(
        payload={"detail": {"object": {"key": "help/a.md", "sequencer": "0200"}}}
    )
    monkeypatch.setattr(migration, "BATCH", 2)  # several batches
    migration.backfill(apps, None)
    stored = dict(ObjectEvent.objects.values_list("event_key", "sequencer"))
    assert {e.event_key: stored[e.event_key] for e in parsed} == {
        e.event_key: e.sequencer for e in parsed
    }
    assert (stored[odd.event_key], stored[kept.event_key]) == ("", "0" * 31 + "1")
    assert stored[b.event_key] == "0" * 28 + "0200"
    # B (0200) happened first, then C (0250), then A (0300): A alone is applied
    for event in (a, b, c):
        event.refresh_from_db()
    assert [_object_event_settled(e) for e in (a, b, c)] == [False, True, True]


def test_the_later_event_lookup_reads_the_object_index(db):
    """The supersede check runs for every event applied: it reads the object's events
    through ``kb_objectevent_object_seq`` (bucket, key, sequencer), not the table."""
    from django.db import connection

    from knowledge.s3events import sequencer_normalize
    from knowledge.services import _object_events_earlier, _object_events_later

    ObjectEvent.objects.bulk_create(
        ObjectEvent(
            event_key=f"e{i}",
            via="http",
            bucket="kb-docs",
            key=f"help/{i % 500}.md",
            sequencer=sequencer_normalize(f"{i:x}"),
        )
        for i in range(3000)
    )
    event = ObjectEvent.objects.get(event_key="e1200")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_objectevent")
        cursor.execute("SET LOCAL enable_seqscan = off")
    assert "kb_objectevent_object_seq" in _object_events_later(event).explain()
    assert "kb_objectevent_object_seq" in _object_events_earlier(event).explain()


# --- a full sync settles the events received before its listing ---------------------------


def test_a_lost_delete_re_driven_after_a_sync_re_created_the_object_is_not_applied(
    s3, s3_source, api_client, django_capture_on_commit_callbacks
):
    """The object was deleted (its event recorded, its task lost), uploaded again with no
    event (or a lost one), and a full sync read it back: the re-driven delete removed the
    live document. The sync read the bucket after the delete was received, so it is
    closed unapplied; an event received after the sync is applied as usual."""
    from knowledge.services import object_events_sweep

    s3.put_object(Bucket="kb-docs", Key="help/refunds.md", Body=b"# Refunds\nWithin 30 days.")
    delete = _lost(api_client, django_capture_on_commit_callbacks, _deleted_body())
    assert source_sync(source=s3_source).created == 1  # the object as it is now
    s3_source.refresh_from_db()
    assert s3_source.listed_at is not None
    assert s3_source.listed_at > delete.received_at

    _quiet()
    assert object_events_sweep(grace_seconds=0) == 0
    delete.refresh_from_db()
    assert (delete.processed_at is not None, delete.job) == (True, None)
    assert delete.note == (
        "superseded by a sync of 'bucket-docs' (read the bucket after it was received); not applied"
    )
    assert Document.objects.get().status == "active"

    # received after the sync: applied
    s3.delete_object(Bucket="kb-docs", Key="help/refunds.md")
    with django_capture_on_commit_callbacks(execute=True):
        post_event(api_client, _created_body("gone", "617f0900aaaaaaaa", name="deleted"))
    assert Document.objects.get().status == "deleted"
    assert ObjectEvent.objects.get(event_key="eb:gone").note == ""


def test_an_event_waiting_for_a_sync_of_its_source_is_settled_by_it(
    s3, s3_source, api_client, django_capture_on_commit_callbacks, monkeypatch
):
    """An event whose task waited for its source's lock while a sync ran: the sync read
    the bucket after the event was received, so the event is not applied after it."""
    from knowledge import services

    s3.put_object(Bucket="kb-docs", Key="help/refunds.md", Body=b"# Refunds\nWithin 30 days.")
    delete = _lost(api_client, django_capture_on_commit_callbacks, _deleted_body())
    locks = services.source_locks

    def sync_meanwhile(*args: Any, **kwargs: Any) -> Any:
        source_sync(source=s3_source)  # ran while the task waited for the lock
        return locks(*args, **kwargs)

    monkeypatch.setattr(services, "source_locks", sync_meanwhile)
    assert services.object_event_process(delete.pk) is None
    delete.refresh_from_db()
    assert delete.note.startswith("superseded by a sync of 'bucket-docs'")
    assert Document.objects.get().status == "active"
    assert not IngestionJob.objects.filter(kind="event").exists()


# --- a failed event received again ------------------------------------------------------------


def test_a_failed_event_received_again_is_re_armed_and_applied(
    s3, s3_source, api_client, django_capture_on_commit_callbacks, caplog
):
    """The sweep gave up on it (its bucket refused the read); the cause fixed, S3 (or
    someone re-sending it) delivers it again. It kept ``failed_at`` and its spent attempts,
    a dead letter applied behind the sweep's back; now it is re-armed (attempts start
    again, logged) and applied."""
    from knowledge import services

    s3.put_object(Bucket="kb-docs", Key="help/refunds.md", Body=b"# Refunds\nWithin 30 days.")
    event = _lost(
        api_client,
        django_capture_on_commit_callbacks,
        fixture_json("eventbridge_object_created.json"),
    )
    ObjectEvent.objects.filter(pk=event.pk).update(
        attempts=services.OBJECT_EVENT_MAX_ATTEMPTS,
        failed_at=timezone_now(),
        last_error="gave up after 5 re-drives: ValueError: the bucket refused the read",
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = post_event(api_client, fixture_json("eventbridge_object_created.json"))
    assert (response.status_code, response.json()) == (202, {"received": 1, "new": 0})
    event.refresh_from_db()
    assert (event.processed_at is not None, event.failed_at, event.attempts) == (True, None, 0)
    assert Document.objects.get().status == "active"
    assert f"kb event {event.pk} failed after 5 re-drives and was received again: re-armed" in (
        caplog.text
    )


def test_a_re_armed_event_that_fails_again_is_the_sweeps_again(
    s3, s3_source, api_client, django_capture_on_commit_callbacks, monkeypatch
):
    from knowledge import services
    from knowledge.backends.local import LocalBackend
    from support.celery import app

    monkeypatch.setitem(app.conf, "task_eager_propagates", False)

    def broken(self: Any, job: Any, *, key: str, action: str) -> None:
        raise ValueError("still refused")

    monkeypatch.setattr(LocalBackend, "apply_object", broken)
    event = _lost(api_client, django_capture_on_commit_callbacks, _deleted_body())
    ObjectEvent.objects.filter(pk=event.pk).update(attempts=5, failed_at=timezone_now())
    with django_capture_on_commit_callbacks(execute=True):
        post_event(api_client, _deleted_body())
    event.refresh_from_db()
    assert (event.processed_at, event.failed_at, event.attempts) == (None, None, 0)
    assert event.last_error == "ValueError: still refused"
    _quiet()
    assert services.object_events_sweep(grace_seconds=0) == 1  # re-driven again
    event.refresh_from_db()
    assert event.attempts == 1


# --- retention ---------------------------------------------------------------------------------


def test_old_processed_and_superseded_events_are_purged_failed_and_pending_kept(db, caplog):
    """Object events hold the notification as received (the requester's account and
    address) and were kept for good: the hourly raw-event purge deletes those processed
    or closed unapplied more than ``RAW_EVENT_RETENTION_DAYS`` ago, in batches; events not
    processed yet and failed ones (dead letters awaiting a re-drive) are kept."""
    from datetime import timedelta

    from support import retention
    from support.tasks import raw_events_purge_task

    now = timezone_now()

    def made(name: str, days: float, **fields: Any) -> int:
        at = now - timedelta(days=days)
        event = ObjectEvent.objects.create(
            event_key=name, via="http", bucket="kb-docs", key=f"help/{name}.md"
        )
        ObjectEvent.objects.filter(pk=event.pk).update(received_at=at, **fields)
        return event.pk

    old = now - timedelta(days=31)
    ids = {
        "processed_old": made("processed_old", 31, processed_at=old),
        "superseded_old": made("superseded_old", 40, processed_at=old, note="superseded"),
        "processed_recent": made("processed_recent", 29, processed_at=now - timedelta(days=29)),
        "received_long_ago_processed_lately": made(
            "late", 60, processed_at=now - timedelta(days=1)
        ),
        "pending_old": made("pending_old", 90),
        "failed_old": made("failed_old", 90, failed_at=old, attempts=5),
    }
    assert retention.raw_events_purge(batch=1, max_batches=1)["knowledge_object_events"] == 1
    assert raw_events_purge_task.delay().get()["knowledge_object_events"] == 1
    left = set(ObjectEvent.objects.values_list("pk", flat=True))
    assert {name for name, pk in ids.items() if pk in left} == {
        "processed_recent",
        "received_long_ago_processed_lately",
        "pending_old",
        "failed_old",
    }
    assert "knowledge_object_events: 1 dead letter(s) older than 30 days are kept" in caplog.text
    assert raw_events_purge_task.delay().get()["knowledge_object_events"] == 0


def test_a_processed_event_is_kept_while_an_earlier_one_of_its_object_is_a_dead_letter(
    s3_source,
):
    """A delete (sequencer 01) failed 5 times (a dead letter); the upload after it (02) was
    applied. The purge deleted the upload 30 days later, though it was what told the
    delete it was overtaken: re-driven, the delete was applied and removed the live
    document. The upload is kept while the dead letter is; once it is settled, it goes."""
    from datetime import timedelta

    from knowledge.retention import object_events_purge
    from knowledge.services import object_event_process

    now = timezone_now()
    old = now - timedelta(days=40)
    delete, upload = _made("01", "delete"), _made("02")
    ObjectEvent.objects.filter(pk=delete.pk).update(received_at=old, failed_at=old, attempts=5)
    ObjectEvent.objects.filter(pk=upload.pk).update(received_at=old, processed_at=old)
    unrelated = _made("01")  # another object's: nothing earlier of it is kept
    ObjectEvent.objects.filter(pk=unrelated.pk).update(key="help/b.md", processed_at=old)
    cutoff = now - timedelta(days=30)

    assert object_events_purge(cutoff, 1000, 10).deleted == 1  # the unrelated one
    assert ObjectEvent.objects.filter(pk=upload.pk).exists()
    ObjectEvent.objects.filter(pk=delete.pk).update(failed_at=None, attempts=0)  # re-driven
    assert object_event_process(delete.pk) is None
    delete.refresh_from_db()
    assert (delete.processed_at is not None, delete.job) == (True, None)
    assert delete.note == (
        f"superseded by event {upload.pk} (upsert, later by S3's sequencer); not applied"
    )
    assert object_events_purge(cutoff, 1000, 10).deleted == 1  # the upload, now
    assert set(ObjectEvent.objects.values_list("pk", flat=True)) == {delete.pk}


def post_raw_event(client, raw: bytes):
    return client.post(
        "/api/kb/events",
        data=raw,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
    )


def _notification(*objects: tuple[str, str]) -> dict[str, Any]:
    """An S3 notification of ``(bucket, key)`` uploads (keys URL-encoded, as S3 sends)."""
    record = fixture_json("s3_notification_put.json")["Records"][0]
    return {
        "Records": [
            {
                **record,
                "s3": {
                    **record["s3"],
                    "bucket": {"name": bucket},
                    "object": {**record["s3"]["object"], "key": key, "sequencer": f"{n:018X}"},
                },
            }
            for n, (bucket, key) in enumerate(objects, start=1)
        ]
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff", "The body is not UTF-8"),
        (b"[" * 2000, "The body is nested more than 100 levels deep."),
        (
            json.dumps(fixture_json("eventbridge_object_created.json"))
            .replace('"size": 5', '"size": NaN')
            .encode(),
            "The body is not valid JSON: NaN is not a JSON number.",
        ),
    ],
    ids=["not-utf8", "too-deep", "nan"],
)
@pytest.mark.django_db
def test_an_unreadable_body_is_a_400_with_the_reason(api_client, settings, raw, message):
    """Before, plain ``json.loads``: a UnicodeDecodeError or a RecursionError was a 500,
    and NaN reached the jsonb column (a DataError, a 500)."""
    settings.KB_EVENTS_TOKEN = TOKEN
    response = post_raw_event(api_client, raw)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"].startswith(message)
    assert ObjectEvent.objects.count() == 0


@pytest.mark.django_db
def test_a_record_s3_could_not_have_sent_is_refused_and_the_others_recorded(
    api_client, settings, caplog, django_capture_on_commit_callbacks
):
    """A key with NUL (``%00`` once decoded), a key over 1,024 bytes, a bucket name over
    255 characters: each was a DataError that dropped every record of the delivery."""
    from unittest import mock

    settings.KB_EVENTS_TOKEN = TOKEN
    body = _notification(
        ("kb-docs", "help/a%00b.md"),
        ("kb-docs", "help/" + "x" * 1100),
        ("kb-docs", "help/" + "é" * 510),  # 1,025 bytes in 515 characters
        ("b" * 300, "help/a.md"),
        ("kb-docs", "help/good.md"),
    )
    with (
        mock.patch("knowledge.tasks.kb_object_event_task.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = post_event(api_client, body)
    assert (response.status_code, response.json()) == (202, {"received": 1, "new": 1})
    event = ObjectEvent.objects.get()
    assert (event.bucket, event.key) == ("kb-docs", "help/good.md")
    delay.assert_called_once_with(event.pk)
    refused = [r.getMessage() for r in caplog.records if "kb event refused" in r.getMessage()]
    assert len(refused) == 4
    assert "NUL" in refused[0]
    assert "1024 bytes" in refused[1]
    assert "1025 bytes" in refused[2]
    assert "bucket" in refused[3]


@pytest.mark.django_db
def test_a_delivery_whose_records_are_all_refused_is_a_400(api_client, settings):
    settings.KB_EVENTS_TOKEN = TOKEN
    response = post_event(api_client, _notification(("kb-docs", "help/a%00b.md")))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Records[0].s3.object.key: NUL characters are not accepted"
    )
    eventbridge = fixture_json("eventbridge_object_created.json")
    eventbridge["detail"]["bucket"]["name"] = "b" * 300
    response = post_event(api_client, eventbridge)
    assert response.status_code == 400
    assert "detail.bucket.name" in response.json()["error"]["message"]
    assert ObjectEvent.objects.count() == 0


@pytest.mark.django_db
def test_nul_elsewhere_in_an_event_is_kept_as_a_replacement_character(
    api_client, settings, django_capture_on_commit_callbacks
):
    """The event's id and the fields we only keep (PostgreSQL text and jsonb cannot hold
    NUL): the event is recorded, NUL replaced by U+FFFD, rather than a 500."""
    settings.KB_EVENTS_TOKEN = TOKEN
    body = fixture_json("eventbridge_object_created.json")
    body["id"] = "evt\x001"
    body["detail"]["requester"] = "12345\x00"
    with django_capture_on_commit_callbacks(execute=False):
        response = post_event(api_client, body)
    assert (response.status_code, response.json()) == (202, {"received": 1, "new": 1})
    event = ObjectEvent.objects.get()
    assert event.event_key == "eb:evt\ufffd1"
    assert event.payload["detail"]["requester"] == "12345\ufffd"


@pytest.mark.django_db
def test_a_broker_outage_after_the_commit_still_acknowledges_the_recorded_event(
    api_client, settings, caplog, django_capture_on_commit_callbacks
):
    """The task is queued after the commit: a broker refusing it was raised from the
    commit hook, and the sender got a 500 for an event that was saved (and sent it
    again). The event is recorded and acknowledged; the sweep queues it later."""
    from unittest import mock

    from kombu.exceptions import OperationalError as BrokerDown

    settings.KB_EVENTS_TOKEN = TOKEN
    down = BrokerDown("Error 111 connecting to redis:6379. Connection refused.")
    with (
        mock.patch("knowledge.tasks.kb_object_event_task.delay", side_effect=down) as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = post_event(api_client, fixture_json("eventbridge_object_created.json"))
    assert (response.status_code, response.json()) == (202, {"received": 1, "new": 1})
    event = ObjectEvent.objects.get()
    delay.assert_called_once_with(event.pk)
    assert (event.processed_at, event.failed_at) == (None, None)  # the sweep's
    assert "Connection refused" in caplog.text


def test_a_supervisors_re_drive_survives_a_broker_outage(
    db, supervisor, caplog, django_capture_on_commit_callbacks
):
    from unittest import mock

    from django.utils import timezone
    from kombu.exceptions import OperationalError as BrokerDown

    from knowledge.services import object_event_redrive

    failed = ObjectEvent.objects.create(
        event_key="eb:failed",
        via="http",
        bucket="kb-docs",
        key="help/refunds.md",
        action="upsert",
        attempts=5,
        failed_at=timezone.now(),
    )
    down = BrokerDown("Connection refused.")
    with (
        mock.patch("knowledge.tasks.kb_object_event_task.delay", side_effect=down) as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert object_event_redrive(event=failed, actor=supervisor)
    delay.assert_called_once_with(failed.pk)
    failed.refresh_from_db()
    assert (failed.failed_at, failed.attempts, failed.processed_at) == (None, 0, None)
    assert "Connection refused." in caplog.text


def test_one_event_the_database_refuses_leaves_the_others_of_the_delivery(db, caplog):
    """The events of a delivery were written in one transaction: one the database
    refused (here a key longer than its column, which the parser would have refused)
    rolled back every other one."""
    from unittest import mock

    from knowledge.s3events import S3ObjectEvent
    from knowledge.services import object_events_intake

    events = [
        S3ObjectEvent("s3:kb-docs/help/a.md/1/upsert", "kb-docs", "help/a.md", "upsert", {}),
        S3ObjectEvent("s3:kb-docs/long/1/upsert", "kb-docs", "x" * 2000, "upsert", {}),
        S3ObjectEvent("s3:kb-docs/help/b.md/1/upsert", "kb-docs", "help/b.md", "upsert", {}),
    ]
    with mock.patch("knowledge.tasks.kb_object_event_task.delay"):
        recorded = object_events_intake(events, via="sqs")
    assert [e.key for e in recorded] == ["help/a.md", "help/b.md"]
    assert sorted(ObjectEvent.objects.values_list("key", flat=True)) == ["help/a.md", "help/b.md"]
    assert "kb event refused by the database: s3://kb-docs/xxx" in caplog.text


def test_the_sqs_poller_logs_a_message_that_fails_and_handles_the_rest(
    s3, s3_source, caplog, django_capture_on_commit_callbacks
):
    """Only ``InvalidInput`` was caught per message: any other error (the database gone,
    a poison message) ended the command, and the rest of the batch waited for its
    visibility timeout. Now each is logged with its message id and left on the queue
    (redelivered, then the dead-letter queue), as ``calls_poll_sqs`` does."""
    from unittest import mock

    from django.db import OperationalError

    from knowledge import services

    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="kb-events")["QueueUrl"]
    for sequencer in ("0055AED6DCD90281E5", "0055AED6DCD90281E6"):
        body = fixture_json("s3_notification_put.json")
        body["Records"][0]["s3"]["object"]["sequencer"] = sequencer
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    real = services.object_events_intake
    calls: list[int] = []

    def intake(events: Any, *, via: str) -> Any:
        calls.append(len(events))
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(events, via=via)

    with (
        mock.patch(
            "knowledge.management.commands.kb_sqs_poll.object_events_intake", side_effect=intake
        ),
        mock.patch("knowledge.tasks.kb_object_event_task.delay"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert poll_once(sqs, queue_url, wait_seconds=0) == (1, 1)
    assert calls == [1, 1]
    assert ObjectEvent.objects.count() == 1
    failed = [r for r in caplog.records if r.getMessage().startswith("kb sqs: message")]
    assert len(failed) == 1
    assert "failed" in failed[0].getMessage()
    assert failed[0].exc_info is not None
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"  # left for redelivery


def test_an_old_version_expired_by_the_lifecycle_leaves_the_current_document(
    s3, s3_source, api_client, django_capture_on_commit_callbacks
):
    """The shipped bucket is versioned and expires noncurrent versions after 90 days: S3
    then sends "Object Deleted" ("Permanently Deleted", "Lifecycle Expiration") for a key
    whose current object is still there. Review 2026-12-07: it took the live article out of
    search. An event is applied by reading the object as it is now."""
    s3.put_bucket_versioning(Bucket="kb-docs", VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket="kb-docs", Key="help/refunds.md", Body=b"# Refunds\n30 days.")
    s3.put_object(Bucket="kb-docs", Key="help/refunds.md", Body=b"# Refunds\nWithin 60 days.")
    with django_capture_on_commit_callbacks(execute=True):
        post_event(api_client, _created_body("created-v2", "617f08299329d189"))
    s3.delete_object(Bucket="kb-docs", Key="help/refunds.md", VersionId=old["VersionId"])
    expired = _created_body("expired-v1", "617f0837b476e463", name="deleted")
    expired["detail"]["object"]["version-id"] = old["VersionId"]
    expired["detail"]["reason"] = "Lifecycle Expiration"
    expired["detail"]["deletion-type"] = "Permanently Deleted"
    with django_capture_on_commit_callbacks(execute=True):
        assert post_event(api_client, expired).status_code == 202
    doc = Document.objects.get()
    assert (doc.external_id, doc.status) == ("help/refunds.md", "active")
    assert "Within 60 days." in " ".join(doc.chunks.values_list("text", flat=True))
    assert ObjectEvent.objects.get(event_key="eb:expired-v1").processed_at is not None

    # deleting the current version (a delete marker) empties the key: the document goes
    s3.delete_object(Bucket="kb-docs", Key="help/refunds.md")
    with django_capture_on_commit_callbacks(execute=True):
        post_event(api_client, _created_body("marker", "617f0837b476e470", name="deleted"))
    doc.refresh_from_db()
    assert (doc.status, doc.chunks.count()) == ("deleted", 0)


def test_an_object_event_touches_only_its_own_key_not_keys_it_begins(
    s3, s3_source, api_client, django_capture_on_commit_callbacks
):
    """An upload of help/faq.md re-reads that object: help/faq.md-2025.md (a key that begins
    with it) is another object and stays. Before 2026-12-07 its document was deleted as
    "missing" from the event's object."""
    s3.put_object(Bucket="kb-docs", Key="help/faq.md-2025.md", Body=b"# Old FAQ\nKept for now.")
    s3.put_object(Bucket="kb-docs", Key="help/faq.md", Body=b"# FAQ\nAsk us anything.")
    source_sync(source=s3_source)
    assert sorted(Document.objects.values_list("external_id", "status")) == [
        ("help/faq.md", "active"),
        ("help/faq.md-2025.md", "active"),
    ]
    s3.put_object(Bucket="kb-docs", Key="help/faq.md", Body=b"# FAQ\nAsk us anything, twice.")
    body = _created_body("faq-edit", "617f08299329d190")
    body["detail"]["object"]["key"] = "help/faq.md"
    with django_capture_on_commit_callbacks(execute=True):
        assert post_event(api_client, body).status_code == 202
    assert sorted(Document.objects.values_list("external_id", "status")) == [
        ("help/faq.md", "active"),
        ("help/faq.md-2025.md", "active"),
    ]
