"""Seed 002 ("Project Buddie"): Amazon Connect calls summarised into Salesforce Cases, agent
states watched live, failed IVR journeys escalated.

Quoted from the seed's "Event Flow":

* Call Summarization: "1. Call ends in Amazon Connect 2. CTR event published to EventBridge
  3. Transcribe Lambda starts Amazon Transcribe job 4. Transcribe completion triggers
  Summarize Lambda 5. Bedrock generates AI summary 6. Summary saved to DynamoDB 7. DynamoDB
  Stream triggers Salesforce Sync Lambda 8. Summary synced to Salesforce Case"
* Agent Monitoring: "1. Agent state change in Amazon Connect 2. Event published to
  EventBridge 3. Agent State Monitor Lambda processes event 4. State duration calculated
  5. Alert sent if threshold exceeded 6. State saved to DynamoDB 7. WebSocket API pushes
  update to frontend"
* IVR Journey: "1. Customer completes IVR journey 2. CTR event contains journey steps
  3. IVR Journey Parser Lambda processes CTR 4. Journey saved to DynamoDB 5. If failure
  detected, Escalation Lambda triggered 6. Salesforce task created 7. Frontend displays
  journey timeline"

and, around them: "API Gateway API key authentication", "WebSocket API: Real-time updates",
"SNS: Alerting", "Encryption in transit (TLS 1.2+)".

Each flow is driven through the product's own entry points: the events endpoint that
Connect's forwarder (or an EventBridge API destination) posts to with an integration API
key, the Celery tasks (eager in tests), the outbox relay, the supervisors' websocket and
the call page. AWS is faked by moto, Salesforce by ``responses``; the summary is the local
provider (the offline default; Bedrock is a setting, calls/tests/test_aws.py). Where each
promise is kept, or why not: docs/calls.md, "Seed 002 contract".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from html import escape
from typing import Any

import boto3
import pytest
import responses
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone
from moto import mock_aws
from moto.moto_api import state_manager
from rest_framework.test import APIClient

from calls import services
from calls.models import (
    AgentStateEvent,
    AgentStateSpan,
    Alert,
    AlertKind,
    AlertRule,
    AnalyticsPath,
    Call,
    CallAnalytics,
    Escalation,
    PipelineStatus,
    Transcript,
)
from calls.tests.conftest import (
    SF_LOGIN,
    SF_SOBJECTS,
    SF_TOKEN_BODY,
    kinesis,
    load,
    on_event_bus,
)
from calls.tests.test_agent_states import event as agent_event
from support.delivery.models import Attempt, Delivery
from support.models import DeliveryStatus, OutboxEvent
from tickets.models import Customer, Ticket
from tickets.tests.ws import WebsocketCommunicator

pytestmark = pytest.mark.django_db

TRANSCRIBE_JOB = "transcribe::transcriptionjob"  # moto's state machine for jobs
CREATED = {"errors": [], "success": True, "created": True}


def _post(client: APIClient, body: Any) -> Any:
    return client.post("/api/calls/events", data=json.dumps(body), content_type="application/json")


# --- Call Summarization Flow ------------------------------------------------------------------


@pytest.fixture
def connect_aws(salesforce: Any) -> Iterator[Any]:
    """Amazon Transcribe and S3 (moto); the CTR's recordings bucket and the output bucket
    are the allowed S3 locations (``CALLS_ALLOWED_S3_BUCKETS`` empty: those two)."""
    salesforce.CALLS_TRANSCRIPTION_BACKEND = "transcribe"
    salesforce.CALLS_OUTPUT_BUCKET = "calls-output"
    salesforce.AWS_REGION = "us-east-1"
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="calls-output")
        # A job moves one status per look: QUEUED at the first.
        state_manager.set_transition(TRANSCRIBE_JOB, {"progression": "manual", "times": 1})
        try:
            yield s3
        finally:
            state_manager.unset_transition(TRANSCRIBE_JOB)


def _transcribe_state_change(job: str, status: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "7c1d8f2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
        "detail-type": "Transcribe Job State Change",
        "source": "aws.transcribe",
        "account": "123456789012",
        "time": "2026-11-20T10:12:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"TranscriptionJobName": job, "TranscriptionJobStatus": status},
    }


def test_call_summarization_flow(
    integration_client: APIClient, connect_aws: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ctr = load("ctr_billing.json")
    contact = ctr["ContactId"]
    customer = Customer.objects.create(name="Pat Payer", phone="+14155550100")

    # 1-2. The call ended; its contact trace record comes over the EventBridge bus.
    with django_capture_on_commit_callbacks() as recorded:
        response = _post(integration_client, on_event_bus("Contact Trace Record", ctr))
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 1, "duplicates": 0, "errors": []}
    # The worker applies the record; it starts the call's chain after commit.
    with django_capture_on_commit_callbacks() as chain:
        for callback in recorded:
            callback()
    call = Call.objects.get()
    assert (call.contact_id, call.customer, call.queue_name) == (contact, customer, "BillingQueue")
    assert call.recording_location.startswith("s3://connect-recordings-example/")
    assert len(chain) == 1

    # 3. The chain's first step starts the Transcribe job on the recording; the job is
    # queued, so the step waits (a worker polls again later; eager tasks would poll at once,
    # so the step's service is called here).
    assert services.call_transcribe(call_id=call.pk) == "pending"
    call.refresh_from_db()
    transcribe = boto3.client("transcribe", region_name="us-east-1")
    job = transcribe.get_transcription_job(TranscriptionJobName=call.transcription_job)
    assert job["TranscriptionJob"]["Media"]["MediaFileUri"] == call.recording_location
    assert call.pipeline_status == PipelineStatus.TRANSCRIBING
    assert not Transcript.objects.exists()
    assert not CallAnalytics.objects.exists()
    assert not Delivery.objects.exists()

    # 4. Transcribe completes: its result in the output bucket, its state change on
    # EventBridge, which resumes the chain: 5-6 summary saved, 7-8 the Salesforce Case.
    connect_aws.put_object(
        Bucket="calls-output",
        Key=f"transcripts/{contact}.json",
        Body=json.dumps(load("transcribe_billing.json")),
    )
    state_manager.set_transition(TRANSCRIBE_JOB, {"progression": "immediate"})
    with responses.RequestsMock() as salesforce:
        salesforce.post(SF_LOGIN, json=SF_TOKEN_BODY)
        case = salesforce.patch(
            f"{SF_SOBJECTS}/Case/Support_Desk_Id__c/case%3A{contact}",
            json={"id": "5003000000D8cuIAAR", **CREATED},
            status=201,
        )
        with django_capture_on_commit_callbacks(execute=True):
            completed = _transcribe_state_change(call.transcription_job, "COMPLETED")
            response = _post(integration_client, completed)
    assert response.json() == {"accepted": 1, "duplicates": 0, "errors": []}

    transcript = Transcript.objects.get(call=call)
    assert [s["speaker"] for s in transcript.segments] == ["Agent", "Customer"] * 2
    analytics = CallAnalytics.objects.get(call=call)
    assert (analytics.provider, analytics.produced_by) == ("local", AnalyticsPath.LOCAL)
    assert analytics.call_categories[0] == "Billing"
    assert "refund" in analytics.call_summary
    assert analytics.topics
    [event] = OutboxEvent.objects.all()  # nothing else happened
    assert event.event_type == "call.analysed"
    assert event.payload == {
        "call_id": contact,
        "hash": call.hash,
        "categories": analytics.call_categories,
    }
    delivery = Delivery.objects.get()
    assert (delivery.target_kind, delivery.idempotency_key) == ("salesforce", f"case:{contact}")
    assert (delivery.status, delivery.external_id) == (
        DeliveryStatus.SUCCEEDED,
        "5003000000D8cuIAAR",
    )
    assert list(Attempt.objects.values_list("delivery_id", "outcome")) == [(delivery.pk, "success")]
    sent = json.loads(case.calls[0].request.body)
    assert (sent["Subject"], sent["Origin"], sent["Type"]) == (
        f"Phone call {contact}",
        "Phone",
        "Billing",
    )
    assert "refund" in sent["Description"]
    assert f"Categories: {', '.join(analytics.call_categories)}" in sent["Description"]
    assert f"https://support.example.com/calls/{call.hash}/" in sent["Description"]
    call.refresh_from_db()
    assert call.pipeline_status == PipelineStatus.SYNCED


# --- Agent Monitoring Flow ----------------------------------------------------------------------


@pytest.fixture
def _keep_test_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Channels closes "old" connections around each database call, which would close the
    test's open transaction (tests/test_authorization_matrix.py does the same)."""
    monkeypatch.setattr("channels.db.close_old_connections", lambda: None)


def _board_socket(client: Client | None) -> WebsocketCommunicator:
    """``/ws/events/`` (the board's socket) through the deployed ASGI application: origin
    check, session cookie, routing, then the consumer."""
    from support.asgi import application

    socket = WebsocketCommunicator(application, "/ws/events/")
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if client is not None:
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    socket.scope.update(headers=headers, client=("127.0.0.1", 50000), server=("testserver", 80))
    return socket


def _signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.usefixtures("_keep_test_connection")
def test_agent_monitoring_flow(
    integration_client: APIClient,
    calls_settings: Any,
    supervisor: Any,
    agent: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    rule = AlertRule.objects.create(
        name="Long ACW",
        kind=AlertKind.STATE_LONGER_THAN,
        state="AfterContactWork",
        threshold_minutes=5,
        notify_sns=True,
    )
    now = timezone.now().replace(microsecond=0)
    on_contact, wrap_up = now - timedelta(minutes=10), now - timedelta(minutes=6)
    heartbeat = agent_event("e3", "ENDED", wrap_up, at=now)  # still in after-contact work
    heartbeat["EventType"] = "HEART_BEAT"
    stream = kinesis(
        agent_event("e1", "CONNECTED", on_contact),
        agent_event("e2", "ENDED", wrap_up),
        heartbeat,
    )

    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        topic = sns.create_topic(Name="agent-alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="agent-alerts")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=queue_arn["Attributes"]["QueueArn"],
            Attributes={"RawMessageDelivery": "true"},
        )
        calls_settings.CALLS_ALERT_SNS_TOPIC_ARN = topic
        calls_settings.AWS_REGION = "us-east-1"

        def agent_state_changes() -> Any:
            # 1-2. Connect's agent event stream (Kinesis), forwarded to the events endpoint.
            with django_capture_on_commit_callbacks(execute=True):
                return _post(integration_client, stream)

        board, desk = _board_socket(_signed_in(supervisor)), _board_socket(_signed_in(agent))

        async def scenario() -> tuple[Any, list[Any], bool, bool]:
            for socket in (board, desk):
                assert await socket.connect() == (True, None)
                assert await socket.receive_json_from() == {"type": "ready"}
            answer = await database_sync_to_async(agent_state_changes)()
            pushed = [(await board.receive_json_from(timeout=3))["event"] for _ in range(3)]
            board_quiet = await board.receive_nothing(timeout=0.1)
            desk_quiet = await desk.receive_nothing(timeout=0.1)
            for socket in (board, desk):
                await socket.disconnect()
            return answer, pushed, board_quiet, desk_quiet

        response, pushed, board_quiet, desk_quiet = async_to_sync(scenario)()
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]

    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 3, "duplicates": 0, "errors": []}
    # 3-4, 6. Each state saved, the one that ended with its duration.
    assert AgentStateEvent.objects.count() == 3
    spans = AgentStateSpan.objects.order_by("started_at")
    assert [(s.state, s.started_at, s.ended_at) for s in spans] == [
        ("OnContact", on_contact, wrap_up),
        ("AfterContactWork", wrap_up, None),
    ]
    assert spans[0].duration_seconds() == 240
    # 5. After-contact work for 6 minutes exceeds the 5-minute limit: one alert, sent to SNS.
    alert = Alert.objects.get()
    assert (alert.rule, alert.span, alert.username) == (rule, spans[1], "jdoe")
    assert alert.message == "jdoe has been in after contact work for 6 min (limit 5)."
    assert [json.loads(m["Body"]) for m in messages] == [
        {"alert_id": alert.pk, "username": "jdoe", "message": alert.message}
    ]
    assert Delivery.objects.get(target_kind="sns_alert").status == DeliveryStatus.SUCCEEDED
    # 7. The websocket pushed each change and the alert to the supervisors' board, in
    # order, and nothing else; an agent's socket got none of it (the board is theirs).
    arn = heartbeat["AgentARN"]
    events = list(OutboxEvent.objects.order_by("id"))
    assert [e["id"] for e in pushed] == [e.pk for e in events]
    assert [{k: v for k, v in e.items() if k not in ("id", "timestamp")} for e in pushed] == [
        {
            "event_type": "call.agent_state",
            "username": "jdoe",
            "agent_arn": arn,
            "state": "OnContact",
            "since": on_contact.isoformat(),
            "previous_state": "",
            "previous_seconds": None,
        },
        {
            "event_type": "call.agent_state",
            "username": "jdoe",
            "agent_arn": arn,
            "state": "AfterContactWork",
            "since": wrap_up.isoformat(),
            "previous_state": "OnContact",
            "previous_seconds": 240,
        },
        {
            "event_type": "call.alert",
            "alert_id": alert.pk,
            "rule": "Long ACW",
            "username": "jdoe",
            "agent_arn": arn,
            "state": "AfterContactWork",
            "minutes": 6,
            "message": alert.message,
            "since": wrap_up.isoformat(),
        },
    ]
    assert board_quiet
    assert desk_quiet


# --- IVR Journey Flow -----------------------------------------------------------------------------


def test_ivr_journey_flow(
    integration_client: APIClient,
    salesforce: Any,
    client: Client,
    supervisor: Any,
    agent: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    ctr = load("ctr_ivr_failure.json")
    contact = ctr["ContactId"]
    caller = Customer.objects.create(name="Ivy Caller", phone="+14155550111")

    # 1-2. The caller gave up in the IVR; the contact trace record carries the steps
    # (the flow logs) and comes over the EventBridge bus.
    with responses.RequestsMock() as crm:
        crm.post(SF_LOGIN, json=SF_TOKEN_BODY)
        task = crm.patch(
            f"{SF_SOBJECTS}/Task/Support_Desk_Id__c/task%3A{contact}%3Amax_retries",
            json={"id": "00T5e00000AbCdEEAZ", **CREATED},
            status=201,
        )
        with django_capture_on_commit_callbacks(execute=True):
            response = _post(integration_client, on_event_bus("Contact Trace Record", ctr))
    assert response.json() == {"accepted": 1, "duplicates": 0, "errors": []}

    # 3-4. The journey, parsed and saved with its steps.
    call = Call.objects.get(contact_id=contact)
    journey = call.ivr_journey
    assert (journey.outcome, journey.failure_kind) == ("failed", "max_retries")
    logs = ctr["ContactFlowLogs"]
    assert [(s["module"], s["result"]) for s in journey.steps] == [
        (log["ContactFlowModuleType"], log.get("Results", "")) for log in logs
    ]
    # 5. The failure escalated: a phone ticket for the caller, and an event.
    escalation = Escalation.objects.get()
    ticket = escalation.ticket
    assert isinstance(ticket, Ticket)
    assert (escalation.call, escalation.kind) == (call, "max_retries")
    assert (ticket.channel, ticket.customer) == ("phone", caller)
    assert sorted(ticket.tags.values_list("name", flat=True)) == ["ivr-failure", "max_retries"]
    types = sorted(OutboxEvent.objects.values_list("event_type", flat=True))
    assert types == ["call.escalated", "message.created", "ticket.created"]  # the ticket's
    [escalated] = OutboxEvent.objects.filter(event_type="call.escalated")
    assert escalated.payload == {
        "call_id": contact,
        "hash": call.hash,
        "kind": "max_retries",
        "reason": journey.failure_reason,
        "ticket_id": ticket.pk,
    }
    # 6. The Salesforce Task, delivered.
    delivery = Delivery.objects.get()
    assert (delivery.payload["sobject"], delivery.status) == ("Task", DeliveryStatus.SUCCEEDED)
    assert delivery.external_id == "00T5e00000AbCdEEAZ"
    sent = json.loads(task.calls[0].request.body)
    assert (sent["Subject"], sent["CallObject"]) == ("IVR failure: max retries", contact)
    assert journey.failure_reason in sent["Description"]
    # 7. The journey timeline on the call page, for a supervisor and for the agent who
    # picks the escalation ticket up (the ticket links to that page).
    assert f"/calls/{call.hash}/" in ticket.messages.get().body_text
    for user in (supervisor, agent):
        client.force_login(user)
        page = client.get(f"/calls/{call.hash}/")
        assert page.status_code == 200, user
        html = page.content.decode()
        at = 0
        for step in journey.steps:  # in order, each with its prompt and result
            for text in (step["prompt"], step["result"]):
                at = html.index(escape(text), at)
        assert escape(journey.failure_reason) in html
        assert ticket.number in html


# --- around the flows ---------------------------------------------------------------------------


def test_the_rest_api_refuses_calls_without_a_key(
    key_client: APIClient,
    integration_client: APIClient,
    analysed: Call,
    calls_settings: Any,
) -> None:
    """ "API Gateway API key authentication": the calls API answers 401 to a request with
    no key or an unknown one; the analytics read with an agent's key, the events endpoint
    with an integration key."""
    reads = ["/api/analytics", f"/api/analytics/{analysed.hash}"]
    event = load("contact_event_connected.json")
    for key in ("", "sd_not-a-key"):
        caller = APIClient()
        if key:
            caller.credentials(HTTP_X_API_KEY=key)
        for path in reads:
            assert caller.get(path).status_code == 401, (path, key)
        assert _post(caller, event).status_code == 401, key
    assert not Call.objects.exclude(pk=analysed.pk).exists()
    for path in reads:
        assert key_client.get(path).status_code == 200, path
    assert _post(integration_client, event).status_code == 202


@pytest.mark.usefixtures("_keep_test_connection")
def test_the_websocket_refuses_anonymous_users(db: Any) -> None:
    async def connect() -> tuple[bool, Any]:
        socket = _board_socket(None)
        answer = await socket.connect()
        # The consumer's channel-layer receive stops with the disconnect (left pending,
        # it can hang the event loop's shutdown).
        await socket.disconnect(code=4401)
        return answer

    assert async_to_sync(connect)() == (False, 4401)


def test_traffic_is_encrypted_in_transit_with_tls_1_2_or_later() -> None:
    """ "Encryption in transit (TLS 1.2+)": the load balancer listens with a TLS 1.2+
    policy and redirects plain HTTP; Redis (broker, cache, websocket layer) takes TLS only
    and every process reaches it over ``rediss://``. (At rest: tests/test_deploy.py.)"""
    from tests.test_deploy import prop, template

    assert prop("HttpsListener")["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    [redirect] = prop("HttpListener")["DefaultActions"]
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    redis = prop("Redis")
    assert (redis["TransitEncryptionEnabled"], redis["AtRestEncryptionEnabled"]) == (True, True)
    urls = [
        variable["Value"]
        for resource in template()["Resources"].values()
        if resource["Type"] == "AWS::ECS::TaskDefinition"
        for container in resource["Properties"]["ContainerDefinitions"]
        for variable in container.get("Environment", [])
        if variable.get("Name") == "REDIS_URL"  # (others are conditional: Fn::If)
    ]
    assert urls
    for url in urls:  # !Sub "rediss://${Redis.PrimaryEndPoint.Address}:…"
        assert (url["Fn::Sub"] if isinstance(url, dict) else url).startswith("rediss://"), url


def test_the_processes_run_in_private_subnets_behind_security_groups() -> None:
    """ "VPC with private subnets for Lambda; security groups restricting access": every
    process runs in the private subnets with no public address; PostgreSQL and Redis take
    connections from the tasks' groups only; the web tasks from the load balancer only
    (tests/test_deploy.py), the workers from nobody."""
    from tests.test_deploy import prop, resources

    services = resources("AWS::ECS::Service")
    assert services
    for name, service in services.items():
        network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["Subnets"] == {"Ref": "PrivateSubnetIds"}, name
        assert network["AssignPublicIp"] == "DISABLED", name
    for group in ("DbSubnetGroup", "CacheSubnetGroup"):
        assert prop(group)["SubnetIds"] == {"Ref": "PrivateSubnetIds"}, group
    sources = {
        rule["SourceSecurityGroupId"]["Ref"]
        for rule in prop("DataSecurityGroup")["SecurityGroupIngress"]
    }
    assert sources == {"AppSecurityGroup", "WorkerSecurityGroup"}
    assert all("CidrIp" not in rule for rule in prop("DataSecurityGroup")["SecurityGroupIngress"])
    assert "SecurityGroupIngress" not in prop("WorkerSecurityGroup")
    assert prop("Database")["PubliclyAccessible"] is False


def test_the_call_buckets_expire_old_versions_and_abandoned_uploads() -> None:
    """ "S3 lifecycle policies" (cost) beside "S3 versioning enabled" (recovery): the
    recordings and results buckets keep every object, and a replaced or deleted one's old
    version for 90 days (as the knowledge bucket), then let it go; an upload left half
    done is cleaned up after 7 days. How long recordings themselves are kept is the
    operator's decision (docs/calls.md, "Personal data")."""
    from tests.test_deploy import prop

    for bucket in ("RecordingsBucket", "CallsOutputBucket"):
        (rule,) = prop(bucket)["LifecycleConfiguration"]["Rules"]
        assert rule["Status"] == "Enabled", bucket
        assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 90}, bucket
        assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}, bucket
        assert "ExpirationInDays" not in rule, bucket  # current objects are kept
        assert "Transitions" not in rule, bucket
