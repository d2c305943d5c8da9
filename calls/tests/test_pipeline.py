"""Acceptance: a contact trace record plus a Transcribe result, and a failed IVR journey."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from calls.models import (
    AnalyticsPath,
    Call,
    CallAnalytics,
    CallEvent,
    Escalation,
    EventStatus,
    IVRJourney,
    PipelineStatus,
    Transcript,
)
from calls.tests.conftest import SF_LOGIN, SF_SOBJECTS, SF_TOKEN_BODY, load, place_result
from support.delivery.models import Attempt, Delivery
from support.models import DeliveryStatus, OutboxEvent
from tickets.models import Customer, Ticket

pytestmark = pytest.mark.django_db(transaction=False)
BILLING_ID = "5ca32fbd-8f92-46af-92a5-6b0f970f0efe"
IVR_FAIL_ID = "b7f1a3c2-1111-4e2a-9a51-2c6f2b0d9e01"


def post(client: Any, body: Any, capture: Any) -> Any:
    with capture(execute=True):
        return client.post(
            "/api/calls/events", data=json.dumps(body), content_type="application/json"
        )


@responses.activate
def test_ctr_plus_transcribe_result_gives_full_call(
    integration_client, salesforce, django_capture_on_commit_callbacks
):
    customer = Customer.objects.create(name="Pat Payer", phone="+14155550100")
    place_result(BILLING_ID, "transcribe.json", load("transcribe_billing.json"))
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    case = responses.patch(
        f"{SF_SOBJECTS}/Case/Support_Desk_Id__c/case%3A{BILLING_ID}",
        json={"id": "5003000000D8cuIAAR", "errors": [], "success": True, "created": True},
        status=201,
    )

    response = post(
        integration_client, load("ctr_billing.json"), django_capture_on_commit_callbacks
    )

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0, "errors": []}
    call = Call.objects.get()
    assert call.contact_id == BILLING_ID
    assert call.customer == customer
    assert (call.queue_name, call.agent_username, call.channel) == ("BillingQueue", "jdoe", "VOICE")
    assert call.recording_location.startswith("s3://connect-recordings-example/")
    assert call.pipeline_status == PipelineStatus.SYNCED
    transcript = Transcript.objects.get(call=call)
    assert [s["speaker"] for s in transcript.segments] == ["Agent", "Customer", "Agent", "Customer"]
    assert transcript.segments[3]["sentiment"] == "POSITIVE"
    analytics = CallAnalytics.objects.get(call=call)
    assert analytics.produced_by == AnalyticsPath.LOCAL
    assert analytics.call_categories[0] == "Billing"
    assert "refund" in analytics.call_summary
    assert analytics.topics
    journey = IVRJourney.objects.get(call=call)
    assert journey.outcome == "agent"
    assert [s["module"] for s in journey.steps] == [
        "PlayPrompt",
        "GetUserInput",
        "SetWorkingQueue",
        "TransferContactToQueue",
    ]
    assert not Escalation.objects.exists()
    assert not Ticket.objects.exists()
    delivery = Delivery.objects.get()
    assert (delivery.payload["sobject"], delivery.status, delivery.external_id) == (
        "Case",
        DeliveryStatus.SUCCEEDED,
        "5003000000D8cuIAAR",
    )
    assert (delivery.target_kind, delivery.idempotency_key) == ("salesforce", f"case:{BILLING_ID}")
    sent = json.loads(case.calls[0].request.body)
    assert sent["Origin"] == "Phone"
    assert f"https://support.example.com/calls/{call.hash}/" in sent["Description"]
    assert (
        case.calls[0].request.headers["Authorization"] == f"Bearer {SF_TOKEN_BODY['access_token']}"
    )
    assert len(responses.calls) == 2
    assert Attempt.objects.get().outcome == "success"
    assert CallEvent.objects.get().status == EventStatus.PROCESSED
    assert set(OutboxEvent.objects.values_list("event_type", flat=True)) == {"call.analysed"}


@responses.activate
def test_failed_ivr_journey_escalates_with_task_and_ticket(
    integration_client, salesforce, django_capture_on_commit_callbacks
):
    customer = Customer.objects.create(name="Ivy Caller", phone="+14155550111")
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    task = responses.patch(
        f"{SF_SOBJECTS}/Task/Support_Desk_Id__c/task%3A{IVR_FAIL_ID}%3Amax_retries",
        json={"id": "00T5e00000AbCdEEAZ", "errors": [], "success": True, "created": True},
        status=201,
    )

    response = post(
        integration_client, load("ctr_ivr_failure.json"), django_capture_on_commit_callbacks
    )

    assert response.status_code == 202
    call = Call.objects.get(contact_id=IVR_FAIL_ID)
    journey = call.ivr_journey
    assert journey.outcome == "failed"
    assert journey.failure_kind == "max_retries"
    assert "3 failed attempts" in journey.failure_reason
    assert len(journey.steps) == 4
    escalation = Escalation.objects.get()
    ticket = escalation.ticket
    assert ticket is not None
    assert (ticket.channel, ticket.customer) == ("phone", customer)
    assert sorted(ticket.tags.values_list("name", flat=True)) == ["ivr-failure", "max_retries"]
    delivery = Delivery.objects.get()
    assert (delivery.payload["sobject"], delivery.status, delivery.payload["escalation_id"]) == (
        "Task",
        DeliveryStatus.SUCCEEDED,
        escalation.pk,
    )
    assert json.loads(task.calls[0].request.body)["Subject"] == "IVR failure: max retries"
    assert len(responses.calls) == 2
    # It never reached an agent: no recording will come, and the call says so (it does not
    # wait for one forever); nothing else is sent.
    call.refresh_from_db()
    assert call.pipeline_status == PipelineStatus.NO_RECORDING
    assert not Transcript.objects.exists()
    types = sorted(OutboxEvent.objects.values_list("event_type", flat=True))
    assert types == ["call.escalated", "message.created", "ticket.created"]


def test_resending_the_same_record_is_idempotent(
    integration_client, calls_settings, django_capture_on_commit_callbacks
):
    place_result(BILLING_ID, "transcribe.json", load("transcribe_billing.json"))
    post(integration_client, load("ctr_billing.json"), django_capture_on_commit_callbacks)
    again = post(integration_client, load("ctr_billing.json"), django_capture_on_commit_callbacks)
    assert again.json() == {"accepted": 0, "duplicates": 1, "errors": []}
    assert Call.objects.count() == 1
    assert CallAnalytics.objects.count() == 1
    assert not Delivery.objects.exists()  # Salesforce is off by default


def test_contact_event_then_ctr_fills_one_call(
    integration_client, calls_settings, django_capture_on_commit_callbacks
):
    post(
        integration_client, load("contact_event_connected.json"), django_capture_on_commit_callbacks
    )
    call = Call.objects.get()
    assert call.queue_name == "12345678-aaaa-bbbb-cccc-123456789012"
    assert call.agent_username == ""
    post(integration_client, load("ctr_billing.json"), django_capture_on_commit_callbacks)
    call.refresh_from_db()
    assert Call.objects.count() == 1
    assert (call.queue_name, call.agent_username) == ("BillingQueue", "jdoe")


def test_transcribe_job_state_change_event_resumes_the_pipeline(
    integration_client, calls_settings, django_capture_on_commit_callbacks
):
    call = Call.objects.create(contact_id=BILLING_ID, transcription_job="call-job-1")
    place_result(BILLING_ID, "transcribe.json", load("transcribe_billing.json"))
    event: dict[str, Any] = {
        "version": "0",
        "id": "1a2b3c4d-aaaa-bbbb-cccc-1234567890ab",
        "detail-type": "Transcribe Job State Change",
        "source": "aws.transcribe",
        "account": "123456789012",
        "time": "2026-11-20T10:12:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"TranscriptionJobName": "call-job-1", "TranscriptionJobStatus": "COMPLETED"},
    }
    response = post(integration_client, event, django_capture_on_commit_callbacks)
    assert response.status_code == 202
    assert CallAnalytics.objects.get().call == call
    unknown = {**event, "id": "other", "detail": {**event["detail"], "TranscriptionJobName": "x"}}
    post(integration_client, unknown, django_capture_on_commit_callbacks)
    assert CallEvent.objects.get(external_id="other").status == EventStatus.IGNORED


@responses.activate
def test_erasing_the_caller_removes_them_from_calls(
    integration_client, supervisor, salesforce, django_capture_on_commit_callbacks
):
    from tickets.context.privacy import customer_erase

    customer = Customer.objects.create(name="Pat Payer", phone="+14155550100")
    place_result(BILLING_ID, "transcribe.json", load("transcribe_billing.json"))
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.patch(
        f"{SF_SOBJECTS}/Case/Support_Desk_Id__c/case%3A{BILLING_ID}",
        json={"id": "5003000000D8cuIAAR"},
        status=201,
    )
    post(integration_client, load("ctr_billing.json"), django_capture_on_commit_callbacks)
    call = Call.objects.get()
    customer_words = [s["text"] for s in call.transcript.segments if s["speaker"] == "Customer"]
    assert customer_words
    assert "4155550100" in json.dumps(call.raw)

    customer_erase(customer=customer, actor=supervisor, via="test")

    call.refresh_from_db()
    transcript = Transcript.objects.get(call=call)
    assert [s["text"] for s in transcript.segments if s["speaker"] == "Customer"] == [
        "[erased]"
    ] * len(customer_words)
    for words in customer_words:
        assert words not in transcript.text
        assert words not in CallAnalytics.objects.get(call=call).transcript
    assert call.customer_phone == ""
    assert "4155550100" not in json.dumps(call.raw)
    assert "4155550100" not in json.dumps(list(CallEvent.objects.values("payload")))


@pytest.mark.parametrize("backend", ["local", "transcribe"])
def test_a_call_that_reached_an_agent_waits_for_its_recording(backend, settings):
    """Connected to an agent, no recording or result yet: it is coming."""
    from datetime import UTC, datetime

    from calls.services.pipeline import call_transcribe

    settings.CALLS_TRANSCRIPTION_BACKEND = backend
    ended = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
    answered = Call.objects.create(
        contact_id="c-answered", connected_to_agent_at=ended, disconnected_at=ended
    )
    in_progress = Call.objects.create(contact_id="c-in-ivr")  # not disconnected yet
    ivr_only = Call.objects.create(contact_id="c-ivr-only", disconnected_at=ended)
    assert call_transcribe(call_id=answered.pk) == "waiting"
    assert call_transcribe(call_id=in_progress.pk) == "waiting"
    assert call_transcribe(call_id=ivr_only.pk) == "none"
    statuses = dict(Call.objects.values_list("contact_id", "pipeline_status"))
    assert statuses == {
        "c-answered": PipelineStatus.AWAITING_RECORDING,
        "c-in-ivr": PipelineStatus.AWAITING_RECORDING,
        "c-ivr-only": PipelineStatus.NO_RECORDING,
    }


@pytest.mark.parametrize("mapped_teams", [0, 1, 2])
def test_an_escalation_ticket_goes_to_the_team_that_sees_the_call(mapped_teams: int) -> None:
    """The agents who see a call see its escalation: a call whose queue maps to one team
    escalates into that team's ticket (before: a ticket with no team, so every agent saw
    the caller's number and the call's id); no queue, or a queue several teams share,
    leaves the ticket for routing."""
    from calls.models import QueueTeam
    from calls.services.ivr import escalation_create
    from tickets.models import Team

    teams = [Team.objects.create(name=f"Team {i}", slug=f"team-{i}") for i in range(2)]
    for team in teams[:mapped_teams]:
        QueueTeam.objects.create(queue_name="BillingQueue", team=team)
    call = Call.objects.create(
        contact_id=f"c-{mapped_teams}", queue_name="BillingQueue", customer_phone="+14155550112"
    )
    ticket = escalation_create(call=call, kind="max_retries", reason="3 failed attempts").ticket
    assert ticket is not None
    assert ticket.team == (teams[0] if mapped_teams == 1 else None)


def test_a_transcript_of_other_words_is_analysed_again_as_a_new_version(calls_settings):
    """The transcript + model path (Transcribe): a corrected recording's transcript has
    other words, so the stored analytics are stale and made again (a new version, a
    ``call.analysed`` event); the same words from another object keep them."""
    from calls import services
    from calls.parsers import ParsedResult, Segment

    def result(words: str) -> ParsedResult:
        return ParsedResult(
            source="transcribe",
            text="",
            segments=[
                Segment("Customer", 0, 3, words),
                Segment("Agent", 3, 5, "I can help with that today."),
            ],
        )

    call = Call.objects.create(contact_id="c-again")
    billing = "I was charged twice on my bill this month."
    services.transcript_save(call=call, result=result(billing), source_ref="s3://rec/a.wav")
    first = services.call_analyse(call_id=call.pk)
    assert first is not None
    assert first.version == 1
    # Transcribe's output object read after its job: the same words, nothing new
    services.transcript_save(call=call, result=result(billing), source_ref="s3://out/t.json#e1")
    kept = services.call_analyse(call_id=call.pk)
    assert kept is not None
    assert (kept.pk, kept.version, kept.call_summary) == (first.pk, 1, first.call_summary)

    router = "My router keeps dropping the internet connection."
    services.transcript_save(call=call, result=result(router), source_ref="s3://rec/b.wav")
    again = services.call_analyse(call_id=call.pk)
    assert again is not None
    assert (again.pk, again.version, again.source_ref) == (first.pk, 2, "s3://rec/b.wav")
    assert "router" in again.call_summary
    assert "charged twice" not in again.call_summary
    assert OutboxEvent.objects.filter(event_type="call.analysed").count() == 2
    assert services.call_analyse(call_id=call.pk) == again  # an unchanged re-run
    assert OutboxEvent.objects.filter(event_type="call.analysed").count() == 2


def test_ivr_failure_note_is_a_system_entry_not_the_callers_words(
    integration_client, calls_settings, settings, django_capture_on_commit_callbacks
):
    """The escalation's explanation ("IVR failure … not verified: confirm who is calling")
    was stored as the caller's first message: the customer context scored it as the
    caller's mood (-0.5 and lower) and routing and KB suggestions read it as the question.
    It is a system entry of the timeline now, which nothing scores."""
    from support.services import outbox_relay
    from tickets.context.models import Interaction
    from tickets.models import Direction, MessageKind

    settings.CELERY_TASK_ALWAYS_EAGER = True
    customer = Customer.objects.create(name="Ivy Caller", phone="+14155550111")

    post(integration_client, load("ctr_ivr_failure.json"), django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        outbox_relay()

    ticket = Escalation.objects.get().ticket
    assert ticket is not None
    assert ticket.customer == customer
    (note,) = ticket.messages.all()
    assert (note.kind, note.direction) == (MessageKind.SYSTEM, Direction.OUTBOUND)
    assert (note.author_customer_id, note.author_user_id) == (None, None)
    assert note.body_text.startswith(f"IVR failure (max_retries) on call {IVR_FAIL_ID}")
    assert not ticket.messages.filter(direction=Direction.INBOUND).exists()
    assert ticket.waiting_since is not None  # the caller still waits for someone
    assert not Interaction.objects.filter(customer=customer).exists()


def test_an_analysed_call_is_a_contact_in_the_customer_context(
    integration_client, calls_settings, settings, django_capture_on_commit_callbacks
):
    """Calls never reached the customer context, though its churn rules count "messages
    and calls". An analysed call writes one entry, scored from the caller's own words; a
    new version of the analysis replaces it."""
    from calls import services
    from support.sentiment import sentiment_score
    from support.services import outbox_relay
    from tickets.context.models import Interaction

    settings.CELERY_TASK_ALWAYS_EAGER = True
    customer = Customer.objects.create(name="Pat Payer", phone="+14155550100")
    place_result(BILLING_ID, "transcribe.json", load("transcribe_billing.json"))
    post(integration_client, load("ctr_billing.json"), django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        outbox_relay()

    call = Call.objects.get()
    transcript = Transcript.objects.get(call=call)
    said = " ".join(s["text"] for s in transcript.segments if s["speaker"] == "Customer")
    entry = Interaction.objects.get(customer=customer)
    assert (entry.source_key, entry.kind, entry.channel) == (f"call:{BILLING_ID}", "call", "phone")
    assert (entry.ticket_id, entry.summary) == (None, "Phone call (BillingQueue)")
    assert entry.occurred_at == call.initiated_at
    assert entry.sentiment_score == pytest.approx(sentiment_score(said), abs=1e-4)

    # new words (another result): a new version of the analysis, the same one entry
    segments = [dict(s) for s in transcript.segments]
    for s in segments:
        if s["speaker"] == "Customer":
            s["text"] = "This is awful, I am furious and I hate this service."
    Transcript.objects.filter(pk=transcript.pk).update(
        segments=segments, text="changed", source_ref="s3://bucket/other.json"
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.call_analyse(call_id=call.pk)
    with django_capture_on_commit_callbacks(execute=True):
        outbox_relay()
    assert CallAnalytics.objects.get(call=call).version == 2
    entry = Interaction.objects.get(customer=customer)
    assert entry.source_key == f"call:{BILLING_ID}"
    assert entry.sentiment_score is not None
    assert entry.sentiment_score < -0.5

    # an escalation's ticket: the entry is shown to whom may see that ticket
    escalation = services.escalation_create(call=call, kind="error_branch", reason="Error")
    assert services.call_interaction_record(call_id=call.pk) is False
    assert Interaction.objects.get(customer=customer).ticket_id == escalation.ticket_id
