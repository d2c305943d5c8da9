"""Salesforce through the delivery engine: records upserted by External ID, token refresh
once, request limits throttle, 5xx retry, 4xx dead letters, the never-enqueued sweep."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from unittest import mock

import kombu.exceptions
import pytest
import requests
import responses
from django.utils import timezone

from calls import services
from calls.models import Call, PipelineStatus
from calls.tasks import call_salesforce_case_task
from calls.tests.conftest import SF_LOGIN, SF_SOBJECTS, SF_TOKEN_BODY
from support.delivery import services as engine
from support.delivery import tasks as delivery_tasks
from support.delivery.models import Attempt, Circuit, Delivery
from support.models import DeliveryStatus

pytestmark = pytest.mark.django_db
CASE_URL = f"{SF_SOBJECTS}/Case/Support_Desk_Id__c/case%3Ac-1"
CREATED = {"id": "5003000000D8cuIAAR", "errors": [], "success": True, "created": True}


@pytest.fixture
def delivery(salesforce):
    """A Case delivery whose first task never ran (the enqueue is after commit)."""
    call = Call.objects.create(contact_id="c-1")
    return services.salesforce_delivery_create(
        key="case:c-1",
        sobject="Case",
        call=call,
        payload={"Subject": "Phone call", "Origin": "Phone"},
    )


def attempts(d):
    return list(
        Attempt.objects.filter(delivery=d).values_list("outcome", "http_status", "error_code")
    )


def send(d):
    return engine.delivery_attempt(delivery_id=d.pk, expected_attempts=d.attempts)


@responses.activate
def test_a_case_is_upserted_by_its_external_id(delivery):
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    upsert = responses.patch(CASE_URL, status=201, json=CREATED)
    assert send(delivery).outcome == "success"
    [call] = upsert.calls
    assert call.request.method == "PATCH"
    assert json.loads(call.request.body) == {"Subject": "Phone call", "Origin": "Phone"}
    assert call.request.headers["Authorization"] == f"Bearer {SF_TOKEN_BODY['access_token']}"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.external_id, delivery.attempts) == (
        DeliveryStatus.SUCCEEDED,
        CREATED["id"],
        1,
    )
    assert Call.objects.get().pipeline_status == PipelineStatus.SYNCED


@responses.activate
def test_a_retry_after_a_lost_answer_updates_the_same_case(delivery, settings):
    """The first upsert reached Salesforce but its answer was lost (a timeout): the retry
    is the same PATCH on the same External ID, which Salesforce answers as an update (200,
    ``created: false``); no second Case is created."""
    settings.SALESFORCE_EXTERNAL_ID_FIELD = "Desk_Key__c"
    url = f"{SF_SOBJECTS}/Case/Desk_Key__c/case%3Ac-1"
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.patch(url, body=requests.exceptions.ReadTimeout("read timed out"))
    responses.patch(url, status=200, json={**CREATED, "created": False})
    assert send(delivery).outcome == "retryable"
    delivery.refresh_from_db()
    assert send(delivery).outcome == "success"
    patches = [c for c in responses.calls if c.request.method == "PATCH"]
    assert [c.request.url for c in patches] == [url, url]
    assert patches[0].request.body == patches[1].request.body
    delivery.refresh_from_db()
    assert (delivery.status, delivery.external_id) == (DeliveryStatus.SUCCEEDED, CREATED["id"])
    assert not [
        c
        for c in responses.calls
        if c.request.method == "POST" and "sobjects" in (c.request.url or "")
    ]


@responses.activate
def test_an_escalation_task_is_upserted_by_its_key(salesforce):
    call = Call.objects.create(contact_id="c-9")
    d = services.salesforce_delivery_create(
        key="task:c-9:max_retries", sobject="Task", call=call, payload={"Subject": "IVR"}
    )
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    task = responses.patch(
        f"{SF_SOBJECTS}/Task/Support_Desk_Id__c/task%3Ac-9%3Amax_retries",
        status=201,
        json={"id": "00T5e00000AbCdEEAZ", "success": True, "errors": [], "created": True},
    )
    assert send(d).outcome == "success"
    assert len(task.calls) == 1
    assert Call.objects.get().pipeline_status != PipelineStatus.SYNCED  # only a Case syncs


@responses.activate
def test_invalid_session_refreshes_once(delivery):
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.patch(
        CASE_URL,
        status=401,
        json=[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
    )
    responses.patch(CASE_URL, status=201, json=CREATED)
    assert send(delivery).outcome == "success"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.external_id, delivery.attempts) == (
        DeliveryStatus.SUCCEEDED,
        CREATED["id"],
        1,
    )
    assert [c.request.url for c in responses.calls] == [SF_LOGIN, CASE_URL, SF_LOGIN, CASE_URL]
    assert attempts(delivery) == [("success", 201, "")]


@responses.activate
def test_invalid_session_twice_is_refused_credentials_and_pauses_salesforce(delivery):
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.patch(
        CASE_URL,
        status=401,
        json=[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
    )
    report = send(delivery)
    assert (report.outcome, report.status) == ("auth", "retrying")
    assert len(responses.calls) == 4  # one refresh only
    assert attempts(delivery) == [("auth", 401, "INVALID_SESSION_ID")]
    circuit = Circuit.objects.get(target_kind="salesforce")
    assert (circuit.target_key, circuit.state) == ("login.salesforce.com", "open")


@responses.activate
def test_request_limit_backs_off(delivery):
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.patch(
        CASE_URL,
        status=403,
        json=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
    )
    report = send(delivery)
    delivery.refresh_from_db()
    assert report.next_attempt_in is not None
    assert report.next_attempt_in >= 60
    assert delivery.status == DeliveryStatus.RETRYING
    assert delivery.next_attempt_at is not None
    assert attempts(delivery) == [("throttled", 403, "REQUEST_LIMIT_EXCEEDED")]


@responses.activate
def test_5xx_retries_then_dead_after_max_attempts(delivery, settings):
    settings.SALESFORCE_MAX_ATTEMPTS = 2
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.patch(
        CASE_URL,
        status=503,
        json=[{"message": "Server unavailable", "errorCode": "SERVER_UNAVAILABLE"}],
    )
    assert send(delivery).next_attempt_in is not None
    delivery.refresh_from_db()
    assert send(delivery).next_attempt_in is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DEAD, 2)
    assert attempts(delivery) == [("retryable", 503, "SERVER_UNAVAILABLE")] * 2


@responses.activate
def test_other_4xx_is_a_dead_letter_and_can_be_redriven(
    delivery, supervisor, django_capture_on_commit_callbacks
):
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.patch(
        CASE_URL,
        status=400,
        json=[
            {
                "message": "Required fields are missing: [Status]",
                "errorCode": "REQUIRED_FIELD_MISSING",
                "fields": ["Status"],
            }
        ],
    )
    assert send(delivery).status == DeliveryStatus.DEAD
    delivery.refresh_from_db()
    assert (
        delivery.last_error
        == "Salesforce 400 REQUIRED_FIELD_MISSING: Required fields are missing: [Status]"
    )
    responses.replace(responses.PATCH, CASE_URL, status=201, json=CREATED)
    with django_capture_on_commit_callbacks(execute=True):
        engine.delivery_redrive(delivery_ids=[delivery.pk], actor=supervisor)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert attempts(delivery) == [
        ("permanent", 400, "REQUIRED_FIELD_MISSING"),
        ("success", 201, ""),
    ]


@responses.activate
def test_an_external_id_matching_several_records_is_a_dead_letter(delivery):
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.patch(CASE_URL, status=300, json=["/services/data/v62.0/sobjects/Case/500A"])
    assert send(delivery).status == DeliveryStatus.DEAD


@responses.activate
@pytest.mark.parametrize("answer_of", ["token", "upsert"])
def test_an_over_large_answer_is_a_dead_letter_not_read_whole(delivery, answer_of):
    """Salesforce's answers are a few hundred bytes of JSON: one past 64 KiB (whatever
    answers at the configured address) is refused, a permanent failure, never read whole
    into the worker's memory."""
    padded = {"padding": "x" * (100 * 1024)}
    if answer_of == "token":
        responses.post(SF_LOGIN, json={**SF_TOKEN_BODY, **padded})
    else:
        responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
        responses.patch(CASE_URL, status=201, json={**CREATED, **padded})
    assert send(delivery).status == DeliveryStatus.DEAD
    assert attempts(delivery) == [
        ("permanent", 200 if answer_of == "token" else 201, "answer_too_large")
    ]


@responses.activate
def test_oauth_failure_is_permanent(delivery):
    responses.post(
        SF_LOGIN,
        status=400,
        json={"error": "invalid_client", "error_description": "invalid client credentials"},
    )
    assert send(delivery).status == DeliveryStatus.DEAD
    assert attempts(delivery) == [("permanent", 400, "invalid_client")]


@responses.activate
def test_a_case_whose_first_enqueue_was_lost_is_swept_and_sent(
    delivery, django_capture_on_commit_callbacks
):
    """The first task of a Case was never enqueued (``next_attempt_at`` empty: the row
    committed, the broker was down). The sweep finds it and sends it, once."""
    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=None, created_at=timezone.now() - timedelta(minutes=5)
    )
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    upsert = responses.patch(CASE_URL, status=201, json=CREATED)
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            engine.deliveries_sweep()
    assert len(upsert.calls) == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert Call.objects.get().pipeline_status == PipelineStatus.SYNCED


@responses.activate
def test_jwt_bearer_flow(delivery, settings, tmp_path):
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "sf.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings.SALESFORCE_AUTH_FLOW = "jwt"
    settings.SALESFORCE_PRIVATE_KEY_FILE = str(path)
    settings.SALESFORCE_USERNAME = "integration@example.com"
    token = responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.patch(CASE_URL, status=201, json=CREATED)
    send(delivery)
    from urllib.parse import parse_qs

    form = parse_qs(token.calls[0].request.body)
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    claims = jwt.decode(
        form["assertion"][0],
        key.public_key(),
        algorithms=["RS256"],
        audience="https://login.salesforce.com",
    )
    assert (claims["iss"], claims["sub"]) == ("3MVG9example", "integration@example.com")


def test_the_case_carries_no_card_number_name_or_phone_from_the_call(salesforce):
    """The local summary is made of the transcript's own sentences; the Case gets it
    redacted with the caller's names, and the Subject names the contact, not the phone."""
    from calls.analytics.providers import LocalProvider
    from calls.models import AnalyticsPath, CallAnalytics
    from calls.parsers import Segment
    from tickets.models import Customer

    customer = Customer.objects.create(name="Zelda Quimby", phone="+447700900123")
    segments = [
        Segment(
            "Customer", 0, 4, "Zelda here, charged twice, my card number is 4111 1111 1111 1111."
        ),
        Segment("Agent", 4, 8, "I see the duplicate charge on 4111.1111.1111.1111, refund today."),
    ]
    analysis = LocalProvider().analyse(text="", segments=segments)
    call = Call.objects.create(
        contact_id="c-case-1", customer_phone="+447700900123", customer=customer
    )
    CallAnalytics.objects.create(
        call=call,
        call_summary=analysis.summary,
        call_categories=analysis.categories,
        topics=[*analysis.topics, "quimby refund"],
        produced_by=AnalyticsPath.LOCAL,
    )
    assert "4111 1111 1111 1111" in analysis.summary  # what the Case used to carry

    delivery = services.call_salesforce_case(call_id=call.pk)
    assert delivery is not None

    fields = delivery.payload["fields"]
    assert fields["Subject"] == "Phone call c-case-1"
    assert "[CARD]" in fields["Description"]
    assert "[NAME] refund" in fields["Description"]  # the topics too
    sent = str(delivery.payload)
    leaked = [
        p for p in ("4111", "1111", "+447700900123", "7700900123", "Zelda", "Quimby") if p in sent
    ]
    assert leaked == [], delivery.payload
    assert "charged twice" in fields["Description"]  # the rest of the summary stays


@responses.activate
def test_deliveries_in_one_worker_share_one_connection_pool(salesforce, monkeypatch):
    """Seed 002: "Connection pooling for Salesforce". Every send built a new
    ``requests.Session``, so each record opened a new TLS connection to Salesforce; the
    sends of one worker thread now go through one session (its connection pool), and
    another thread has its own (a session is not shared across threads)."""
    import threading

    from calls.salesforce import SalesforceClient

    used: list[requests.Session] = []
    request = requests.Session.request

    def spy(self: requests.Session, *args, **kwargs):  # type: ignore[no-untyped-def]
        used.append(self)
        return request(self, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.patch(f"{SF_SOBJECTS}/Case/Support_Desk_Id__c/case%3Ac-1", status=201, json=CREATED)
    responses.patch(f"{SF_SOBJECTS}/Case/Support_Desk_Id__c/case%3Ac-2", status=201, json=CREATED)
    for contact in ("c-1", "c-2"):
        delivery = services.salesforce_delivery_create(
            key=f"case:{contact}",
            sobject="Case",
            call=Call.objects.create(contact_id=contact),
            payload={"Subject": "Phone call"},
        )
        assert send(delivery).outcome == "success"
    assert len(used) == 3  # the token, then two upserts
    assert len({id(session) for session in used}) == 1
    elsewhere: list[requests.Session] = []
    thread = threading.Thread(target=lambda: elsewhere.append(SalesforceClient().session))
    thread.start()
    thread.join()
    assert SalesforceClient().session is used[0]
    assert elsewhere[0] is not used[0]


def _da_result(summary: str) -> Any:
    from calls.parsers import ParsedResult, Segment

    return ParsedResult(
        source="data_automation",
        text="My router keeps dropping. Let us reset it.",
        segments=[
            Segment("Customer", 0, 2, "My router keeps dropping."),
            Segment("Agent", 2, 4, "Let us reset it."),
        ],
        summary=summary,
        categories=["Tech support"],
        topics=["router"],
    )


@responses.activate
def test_seed_002_a_reanalysed_call_updates_its_case(salesforce):
    """Seed 002 syncs the Case on every change of the call's record (a DynamoDB Stream).
    The Case's delivery was keyed ``case:<contact>``: a call analysed again (a new Data
    Automation result) got its first delivery back, nothing was sent, and the Case kept
    the first summary. Now each new version of the analytics is a new delivery that
    upserts the same Case (the same External ID); the same analytics again send nothing.
    """
    url = f"{SF_SOBJECTS}/Case/Support_Desk_Id__c/case%3Ac-7"
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    upsert = responses.patch(url, status=201, json=CREATED)
    call = Call.objects.create(contact_id="c-7")
    services.transcript_save(call=call, result=_da_result("First summary."), source_ref="r#1")
    first = services.call_salesforce_case(call_id=call.pk)
    assert first is not None
    assert first.idempotency_key == "case:c-7"
    assert send(first).outcome == "success"
    assert services.call_salesforce_case(call_id=call.pk) == first  # an unchanged re-run

    services.transcript_save(call=call, result=_da_result("Second summary."), source_ref="r#2")
    second = services.call_salesforce_case(call_id=call.pk)
    assert second is not None
    assert second.pk != first.pk
    assert second.idempotency_key.startswith("case:c-7:v2:")
    assert (second.payload["external_id"], second.payload["version"]) == ("case:c-7", 2)
    assert "Second summary." in second.payload["fields"]["Description"]
    assert services.call_salesforce_case(call_id=call.pk) == second
    assert send(second).outcome == "success"
    assert [c.request.url for c in upsert.calls] == [url, url]  # the same Case, updated
    assert "Second summary." in json.loads(upsert.calls[1].request.body)["Description"]
    assert Attempt.objects.get(delivery=second).request_summary["external_id"] == "case:c-7"
    assert Call.objects.get().pipeline_status == PipelineStatus.SYNCED

    # The same result read again (another version of the object, the same words): no new
    # analytics version, no new delivery.
    services.transcript_save(call=call, result=_da_result("Second summary."), source_ref="r#3")
    assert services.call_salesforce_case(call_id=call.pk) == second
    assert Delivery.objects.count() == 2


@responses.activate
def test_an_older_case_delivery_still_retrying_sends_the_newest_fields(salesforce):
    """Salesforce was down: the first version's delivery is still retrying when a second
    version is enqueued. Whichever is sent last, the Case ends with the newest fields."""
    url = f"{SF_SOBJECTS}/Case/Support_Desk_Id__c/case%3Ac-8"
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    upsert = responses.patch(url, status=201, json=CREATED)
    call = Call.objects.create(contact_id="c-8")
    services.transcript_save(call=call, result=_da_result("Old summary."), source_ref="r#1")
    old = services.call_salesforce_case(call_id=call.pk)
    services.transcript_save(call=call, result=_da_result("New summary."), source_ref="r#2")
    new = services.call_salesforce_case(call_id=call.pk)
    assert old is not None
    assert new is not None
    assert old.pk != new.pk
    assert send(new).outcome == "success"
    assert send(old).outcome == "success"
    bodies = [json.loads(c.request.body)["Description"] for c in upsert.calls]
    assert all(body.startswith("New summary.") for body in bodies), bodies
    assert Attempt.objects.get(delivery=old).request_summary["fields_of_delivery"] == new.pk


@pytest.mark.django_db(transaction=True)
@responses.activate
def test_a_broker_refusing_the_case_attempt_does_not_fail_the_call(salesforce, caplog):
    """The Case delivery exists (committed) when its attempt task is published. A broker
    error there escaped into the task's boundary, which failed the call ("Salesforce Case:
    unexpected error OperationalError") though the delivery was there to be sent: the
    delivery sweep sends it, and the call ends synced."""
    call = Call.objects.create(contact_id="c-9")
    with mock.patch("support.events.schedule_relay"):  # only this test's task runs
        services.transcript_save(call=call, result=_da_result("Summary."), source_ref="r#1")
    status = Call.objects.get().pipeline_status
    assert status != PipelineStatus.FAILED
    refused = kombu.exceptions.OperationalError("Error 111 connecting to redis:6379")
    with mock.patch.object(
        delivery_tasks.delivery_attempt_task, "apply_async", side_effect=refused
    ) as publish:
        result = call_salesforce_case_task.apply(args=(call.pk,), throw=False)
    assert result.successful(), result.traceback
    delivery = Delivery.objects.get()
    assert result.result == delivery.pk
    assert publish.call_count == 1
    assert "the delivery sweep sends it" in caplog.text
    call.refresh_from_db()
    assert (call.pipeline_status, call.pipeline_error) == (status, "")
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 0)
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    upsert = responses.patch(
        f"{SF_SOBJECTS}/Case/Support_Desk_Id__c/case%3Ac-9", status=201, json=CREATED
    )
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
    assert engine.deliveries_sweep(grace_seconds=0) == 1
    assert len(upsert.calls) == 1
    assert Call.objects.get().pipeline_status == PipelineStatus.SYNCED
