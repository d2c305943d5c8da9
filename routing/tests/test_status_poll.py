"""The poll of the external status endpoint: a delivery of kind ``routing_status_poll`` a
minute (every attempt recorded by the engine), in this project's shape or seed 004's
``POST /status/batch``, with the optional bearer token; a malformed answer is a recorded
failure that changes nothing, never a crash of the poll."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import responses
from django.utils import timezone

from routing import services
from routing.models import Outage, ServiceStatus
from support.delivery.models import Delivery

pytestmark = pytest.mark.django_db
URL = "https://status.example.test/services.json"
SEED_URL = "https://status.example.test/api"
BATCH = f"{SEED_URL}/status/batch"


@pytest.fixture
def poll(django_capture_on_commit_callbacks, monkeypatch):
    """Poll as the beat task does, ``minute`` minutes from now (one delivery a minute),
    the engine attempting it at once (eager Celery); the delivery, reloaded."""
    real_now = timezone.now

    def run(minute: int = 0) -> Delivery | None:
        monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(minutes=minute))
        with django_capture_on_commit_callbacks(execute=True):
            delivery = services.service_status_poll()
        if delivery is not None:
            delivery.refresh_from_db()
        return delivery

    return run


def _summary(delivery: Delivery) -> str:
    return delivery.attempt_log.get().response_summary


@responses.activate
def test_status_poll_upserts_services_and_resolves_gone_outages(settings, poll):
    settings.ROUTING_STATUS_URL = URL
    responses.get(
        URL,
        json={
            "services": [
                {
                    "id": "SVC100",
                    "name": "Payments",
                    "state": "outage",
                    "outages": [{"id": "inc-1", "title": "Cards failing"}],
                },
                {"id": "SVC200", "name": "Bad", "state": "exploded"},
            ]
        },
    )
    delivery = poll()
    assert (delivery.target_kind, delivery.status) == ("routing_status_poll", "succeeded")
    assert delivery.target_key == "status.example.test"
    assert _summary(delivery).startswith("1 service(s) updated\n1 part(s) skipped:")
    svc = ServiceStatus.objects.get()
    assert (svc.service_id, svc.state) == ("SVC100", "outage")
    assert list(Outage.objects.values_list("external_id", "resolved_at")) == [("inc-1", None)]
    # no token set: no Authorization header
    assert "Authorization" not in responses.calls[0].request.headers

    responses.replace(
        responses.GET,
        URL,
        json={
            "services": [
                {"id": "SVC100", "name": "Payments", "state": "operational", "outages": []}
            ]
        },
    )
    assert poll(minute=1).status == "succeeded"
    assert Outage.objects.get().resolved_at is not None
    assert ServiceStatus.objects.get().state == "operational"
    assert Delivery.objects.count() == 2


@responses.activate
def test_one_poll_a_minute(settings, poll):
    settings.ROUTING_STATUS_URL = URL
    responses.get(URL, json={"services": []})
    assert poll().pk == poll().pk
    assert len(responses.calls) == 1


@responses.activate
def test_status_poll_off_or_failing_is_recorded(settings, poll):
    settings.ROUTING_STATUS_URL = ""
    assert poll() is None
    settings.ROUTING_STATUS_URL = URL
    responses.get(URL, body="down", status=500)
    delivery = poll()
    # retried within the minute (eager Celery: at once), then a dead letter
    assert (delivery.status, delivery.attempts, delivery.last_http_status) == ("dead", 3, 500)
    assert (
        list(delivery.attempt_log.values_list("outcome", "http_status")) == [("retryable", 500)] * 3
    )
    assert ServiceStatus.objects.count() == 0


@responses.activate
def test_the_token_is_sent_as_a_bearer_and_never_recorded(settings, poll):
    settings.ROUTING_STATUS_URL = URL
    settings.ROUTING_STATUS_TOKEN = "s3cret-token"
    responses.get(URL, json={"services": []})
    delivery = poll()
    [call] = responses.calls
    assert call.request.headers["Authorization"] == "Bearer s3cret-token"
    attempt = delivery.attempt_log.get()
    assert attempt.request_summary == {"url": URL, "format": "services"}
    assert "s3cret" not in json.dumps(attempt.request_summary) + attempt.response_summary


GOOD = {"id": "SVC200", "name": "Mail", "state": "degraded", "outages": []}


@responses.activate
@pytest.mark.parametrize(
    ("services_value", "updated"),
    [
        (["SVC100", None, 7, GOOD], ["SVC200"]),  # items that are not objects are skipped
        # outages that are not a list: the service is skipped (reading them as none would
        # resolve its open outages)
        ([{"id": "SVC100", "state": "outage", "outages": "inc-1"}, GOOD], ["SVC200"]),
        # outage entries that are not objects are skipped, the service is read
        ([{"id": "SVC100", "state": "outage", "outages": [None, "x"]}, GOOD], ["SVC100", "SVC200"]),
        ([{"id": "SVC100", "state": ["outage"]}, GOOD], ["SVC200"]),  # not a known state
    ],
)
def test_a_status_answer_of_another_shape_is_skipped_not_a_crash(
    settings, poll, services_value, updated
):
    """The status endpoint is outside our control: an answer of another shape was an
    AttributeError every minute (the poll task failed, nothing was updated). Malformed
    parts are skipped with a warning and listed in the attempt's record; the well-formed
    rest is read."""
    settings.ROUTING_STATUS_URL = URL
    responses.get(URL, json={"services": services_value})
    delivery = poll()
    assert delivery.status == "succeeded"
    assert _summary(delivery).startswith(f"{len(updated)} service(s) updated\n")
    assert "skipped" in _summary(delivery)
    assert sorted(ServiceStatus.objects.values_list("service_id", flat=True)) == updated
    assert not Outage.objects.exists()


@responses.activate
@pytest.mark.parametrize(
    "body",
    [
        "<html>maintenance</html>",
        json.dumps({"services": {"SVC100": {"state": "outage"}}}),  # an object, not a list
        json.dumps(["SVC100"]),
        # over the megabyte a status answer may be: refused, never read whole into memory
        json.dumps({"services": [], "pad": "x" * (1024 * 1024)}),
    ],
)
def test_a_malformed_status_answer_is_a_recorded_failure_that_changes_nothing(settings, poll, body):
    settings.ROUTING_STATUS_URL = URL
    svc = ServiceStatus.objects.create(service_id="SVC100", name="Payments", state="outage")
    Outage.objects.create(service=svc, title="Cards failing", external_id="inc-1")
    responses.get(URL, body=body, status=200, content_type="application/json")
    delivery = poll()
    assert (delivery.status, delivery.error_code) == ("dead", "malformed_answer")
    attempt = delivery.attempt_log.get()  # not retried: the next minute asks again
    assert (attempt.outcome, attempt.http_status) == ("permanent", 200)
    assert attempt.error.startswith("Malformed status answer:")
    assert attempt.response_summary  # the start of what came back, for the operator
    assert Outage.objects.get().resolved_at is None
    assert ServiceStatus.objects.get().state == "outage"


# --- seed 004's POST /status/batch -------------------------------------------------------------


@pytest.fixture
def seed_services(settings):
    settings.ROUTING_STATUS_URL = SEED_URL + "/"
    settings.ROUTING_STATUS_FORMAT = "seed"
    settings.ROUTING_STATUS_TOKEN = "tok"
    pay = ServiceStatus.objects.create(service_id="SVC100", name="Payments", state="outage")
    ServiceStatus.objects.create(service_id="SVC200", name="Mail")
    ServiceStatus.objects.create(service_id="SVC300", name="Search", state="degraded")
    Outage.objects.create(service=pay, title="Old incident", external_id="inc-0")
    Outage.objects.create(service=pay, title="Declared by hand")  # no endpoint id
    return settings


@responses.activate
def test_seed_format_posts_the_known_service_ids_and_maps_the_answer(seed_services, poll):
    responses.post(
        BATCH,
        json={
            "outages": [
                {"service_id": "SVC200", "id": "inc-9", "title": "Mail delayed"},
                "SVC100",  # a bare service id
            ],
            "known_issues": [{"service_id": "SVC200", "description": "Slow search index"}],
            "overall_health": "Degraded",
        },
    )
    delivery = poll()
    assert delivery.status == "succeeded"
    [call] = responses.calls
    assert call.request.headers["Authorization"] == "Bearer tok"
    assert json.loads(call.request.body or b"") == {"service_ids": ["SVC100", "SVC200", "SVC300"]}
    attempt = delivery.attempt_log.get()
    assert attempt.request_summary == {"url": BATCH, "format": "seed", "service_ids": 3}
    assert attempt.response_summary == "3 service(s) updated\noverall_health: Degraded"
    states = dict(ServiceStatus.objects.values_list("service_id", "state"))
    assert states == {"SVC100": "outage", "SVC200": "outage", "SVC300": "operational"}
    assert dict(ServiceStatus.objects.values_list("service_id", "name")) == {
        "SVC100": "Payments",  # the seed's answer names no service: names stay
        "SVC200": "Mail",
        "SVC300": "Search",
    }
    open_ = set(
        Outage.objects.filter(resolved_at__isnull=True).values_list(
            "service__service_id", "external_id", "title", "is_known_issue"
        )
    )
    assert open_ == {
        ("SVC100", "outages", "Outage", False),
        ("SVC100", "", "Declared by hand", False),  # left alone
        ("SVC200", "inc-9", "Mail delayed", False),
        ("SVC200", "Slow search index", "Slow search index", True),
    }
    assert Outage.objects.get(external_id="inc-0").resolved_at is not None


@responses.activate
def test_seed_format_all_healthy_resolves_what_the_endpoint_listed(seed_services, poll):
    responses.post(BATCH, json={"outages": [], "known_issues": [], "overall_health": "Healthy"})
    assert poll().status == "succeeded"
    assert set(ServiceStatus.objects.values_list("state", flat=True)) == {"operational"}
    assert list(
        Outage.objects.filter(resolved_at__isnull=True).values_list("title", flat=True)
    ) == ["Declared by hand"]


@responses.activate
@pytest.mark.parametrize(
    "answer",
    [
        {"outages": "SVC100"},
        {"outages": [], "known_issues": {"SVC100": "slow"}},
        {"outages": [], "overall_health": {"status": "Healthy"}},
        ["SVC100"],
    ],
)
def test_seed_format_malformed_answer_is_recorded_and_changes_nothing(seed_services, poll, answer):
    responses.post(BATCH, json=answer)
    delivery = poll()
    assert (delivery.status, delivery.error_code) == ("dead", "malformed_answer")
    assert ServiceStatus.objects.get(service_id="SVC100").state == "outage"
    assert Outage.objects.get(external_id="inc-0").resolved_at is None


@responses.activate
def test_seed_format_skips_entries_of_another_shape_and_unknown_services(seed_services, poll):
    responses.post(
        BATCH,
        json={
            "outages": [None, {"id": "x"}, {"service_id": "SVC999", "id": "inc-5"}, "SVC100"],
            "known_issues": [{"service_id": "SVC300", "title": ["not", "text"]}],
        },
    )
    delivery = poll()
    assert delivery.status == "succeeded"
    summary = _summary(delivery)
    assert summary.startswith("3 service(s) updated\n4 part(s) skipped:\n")
    assert "'SVC999'" in summary
    assert ServiceStatus.objects.filter(service_id="SVC999").exists() is False
    assert ServiceStatus.objects.get(service_id="SVC100").state == "outage"
    assert ServiceStatus.objects.get(service_id="SVC300").state == "operational"


@responses.activate
def test_seed_format_with_no_known_service_asks_nothing(settings, poll):
    settings.ROUTING_STATUS_URL = SEED_URL
    settings.ROUTING_STATUS_FORMAT = "seed"
    assert poll() is None
    assert not responses.calls


@responses.activate
def test_old_poll_records_are_purged(settings, poll):
    settings.ROUTING_STATUS_URL = URL
    settings.ROUTING_STATUS_RECORD_DAYS = 7
    responses.get(URL, json={"services": []})
    first = poll(minute=-8 * 24 * 60)
    Delivery.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(days=8))
    recent = poll()
    assert list(Delivery.objects.values_list("pk", flat=True)) == [recent.pk]
