#!/usr/bin/env python
"""Call analytics benchmark: contact-trace-record intake rate and local end-to-end
pipeline throughput. Prints figures; asserts nothing.

    export SUPPORT_REDIS_PORT=<port>
    eval "$(.venv/bin/python scripts/services.py start --profile run --print-env)"
    .venv/bin/python bench/calls.py [--ctrs 500] [--calls 200]

Uses the run database (migrated first); every row it writes has a ``bench-`` contact id
and is deleted at the end. Celery is not involved: intake is measured up to the recorded
event (processing deferred), and the pipeline runs inline, step by step, as a worker would.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
os.environ.setdefault("ENVIRONMENT", "dev")  # local defaults (unset would mean prod)
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

FIXTURES = ROOT / "calls" / "tests" / "fixtures"
INTAKE_KEY: list[str] = []  # the raw integration key the intake clients send


def ctr(contact_id: str) -> dict:
    record = copy.deepcopy(json.loads((FIXTURES / "ctr_billing.json").read_text()))
    record["ContactId"] = contact_id
    return record


def cleanup() -> None:
    from calls.models import AgentStateEvent, Call, CallEvent
    from support.models import OutboxEvent

    Call.objects.filter(contact_id__startswith="bench-").delete()
    CallEvent.objects.filter(contact_id__startswith="bench-").delete()
    AgentStateEvent.objects.filter(event_id__startswith="bench-").delete()
    OutboxEvent.objects.filter(payload__call_id__startswith="bench-").delete()


def _post_chunk(bodies: list[str], client: Client | None = None) -> None:
    from django.db import connections

    client = client or Client(HTTP_AUTHORIZATION=f"Api-Key {INTAKE_KEY[0]}")
    for body in bodies:
        response = client.post("/api/calls/events", data=body, content_type="application/json")
        assert response.status_code == 202, response.content
    connections.close_all()


def bench_intake(n: int, procs: int) -> None:
    from django.contrib.auth.models import User

    from calls import services
    from calls.models import CallEvent
    from support.models import ApiKeyRole
    from support.services import api_key_create

    # Only an integration key may post call events (the Connect forwarder's credential).
    user, _ = User.objects.get_or_create(username="bench-intake")
    _, raw = api_key_create(name="bench", user=user, role=ApiKeyRole.INTEGRATION)
    INTAKE_KEY[:] = [raw]
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    bodies = [json.dumps(ctr(f"bench-{uuid.uuid4()}")) for _ in range(n)]
    with (
        mock.patch("calls.services.intake._schedule_events_on_commit"),  # no Celery here
        override_settings(API_RATE_LIMIT_PER_MINUTE=10**9),
    ):
        half = bodies[: n // 2]
        start = time.perf_counter()
        _post_chunk(half, client)
        elapsed = time.perf_counter() - start
        print(
            f"CTR intake, one record per POST, one process (HTTP in-process, recorded, "
            f"processing deferred): {len(half)} in {elapsed:.2f} s = {len(half) / elapsed:.0f}/s"
        )
        rest = bodies[n // 2 :]
        chunks = [rest[i::procs] for i in range(procs)]
        start = time.perf_counter()
        with ThreadPoolExecutor(procs) as pool:
            list(pool.map(_post_chunk, chunks))
        elapsed = time.perf_counter() - start
        print(
            f"CTR intake, one record per POST, {procs} concurrent clients (threads): "
            f"{len(rest)} in {elapsed:.2f} s = {len(rest) / elapsed:.0f}/s"
        )

    batches = []
    for _ in range(max(1, n // 100)):
        records = [
            {
                "kinesis": {
                    "data": base64.b64encode(
                        json.dumps(ctr(f"bench-{uuid.uuid4()}")).encode()
                    ).decode()
                }
            }
            for _ in range(100)
        ]
        batches.append(json.dumps({"Records": records}))
    with (
        mock.patch("calls.services.intake._schedule_events_on_commit"),  # no Celery here
        override_settings(API_RATE_LIMIT_PER_MINUTE=10**9),
    ):
        start = time.perf_counter()
        for body in batches:
            response = client.post("/api/calls/events", data=body, content_type="application/json")
            assert response.status_code == 202, response.content
        elapsed = time.perf_counter() - start
    total = 100 * len(batches)
    print(
        f"CTR intake, Kinesis batches of 100 base64 records per POST: "
        f"{total} in {elapsed:.2f} s = {total / elapsed:.0f}/s"
    )

    ids = list(
        CallEvent.objects.filter(contact_id__startswith="bench-").values_list("pk", flat=True)
    )
    with mock.patch("calls.tasks.call_pipeline_start"):
        start = time.perf_counter()
        for event_id in ids:
            services.call_event_process(event_id=event_id)
        elapsed = time.perf_counter() - start
    print(
        f"CTR processing (parse, call upsert, IVR journey; pipeline not run): "
        f"{len(ids)} in {elapsed:.2f} s = {len(ids) / elapsed:.0f}/s"
    )
    user.delete()


def bench_pipeline(n: int, procs: int) -> None:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from calls import services
    from calls.models import CallAnalytics

    transcript = (FIXTURES / "transcribe_billing.json").read_bytes()
    contact_ids = [f"bench-{uuid.uuid4()}" for _ in range(n)]
    for cid in contact_ids:
        default_storage.save(f"calls/results/{cid}/transcribe.json", ContentFile(transcript))
    # Warm the lazily built pieces (VADER lexicon, scikit-learn import) outside the timing.
    services.call_events_intake(body=json.dumps(ctr("bench-warmup")).encode(), schedule=False)
    # The outbox relay (live push of call.analysed) runs in its own worker in production:
    # it is not part of a call's pipeline, so it is left out here.
    with mock.patch("calls.tasks.call_pipeline_start"), mock.patch("support.events.schedule_relay"):
        serial, parallel = contact_ids[: n // 2], contact_ids[n // 2 :]
        start = time.perf_counter()
        _pipeline_chunk(serial)
        elapsed = time.perf_counter() - start
        print(
            f"Local end-to-end pipeline, one process (CTR → IVR → Transcribe-format result from "
            f"storage → local analytics → persisted): {len(serial)} calls in {elapsed:.2f} s "
            f"= {len(serial) / elapsed:.1f} calls/s"
        )
        # Concurrent workers (threads, each with its own database connection): the work
        # waits on PostgreSQL most of the time, as in a worker pool.
        chunks = [parallel[i::procs] for i in range(procs)]
        start = time.perf_counter()
        with ThreadPoolExecutor(procs) as pool:
            list(pool.map(_pipeline_chunk, chunks))
        elapsed = time.perf_counter() - start
    done = CallAnalytics.objects.filter(call__contact_id__in=parallel).count()
    print(
        f"Local end-to-end pipeline, {procs} concurrent workers (threads): {done} calls in "
        f"{elapsed:.2f} s = {done / elapsed:.1f} calls/s"
    )


def _pipeline_chunk(contact_ids: list[str]) -> None:
    from django.db import connections

    from calls import services
    from calls.models import Call

    for cid in contact_ids:
        result = services.call_events_intake(body=json.dumps(ctr(cid)).encode(), schedule=False)
        services.call_event_process(event_id=result.accepted[0])
        call_id = Call.objects.only("pk").get(contact_id=cid).pk
        assert services.call_transcribe(call_id=call_id) == "done"
        services.call_analyse(call_id=call_id)
        services.call_salesforce_case(call_id=call_id)
    connections.close_all()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ctrs", type=int, default=500)
    parser.add_argument("--calls", type=int, default=400, help="half serial, half parallel")
    parser.add_argument("--procs", type=int, default=4, help="concurrent workers (threads)")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    with (
        tempfile.TemporaryDirectory() as media,
        override_settings(
            MEDIA_ROOT=media,
            CALLS_TRANSCRIPTION_BACKEND="local",
            CALLS_AI_PROVIDER="local",
            CALLS_RECORDINGS_BUCKET="connect-recordings-example",  # the fixture's bucket
            CALLS_ALLOWED_S3_BUCKETS=[],
            SALESFORCE_ENABLED=False,
        ),
    ):
        cleanup()
        try:
            print(f"cores: {os.cpu_count()}, database: {settings.DATABASES['default']['NAME']}")
            bench_intake(args.ctrs, args.procs)
            cleanup()
            bench_pipeline(args.calls, args.procs)
        finally:
            cleanup()


if __name__ == "__main__":
    main()
