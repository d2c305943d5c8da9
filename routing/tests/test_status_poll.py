from __future__ import annotations

import pytest
import responses

from routing import services
from routing.models import Outage, ServiceStatus

pytestmark = pytest.mark.django_db
URL = "https://status.example.test/services.json"


@responses.activate
def test_status_poll_upserts_services_and_resolves_gone_outages(settings):
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
    assert services.service_status_poll() == 1
    svc = ServiceStatus.objects.get()
    assert (svc.service_id, svc.state) == ("SVC100", "outage")
    assert list(Outage.objects.values_list("external_id", "resolved_at")) == [("inc-1", None)]

    responses.replace(
        responses.GET,
        URL,
        json={
            "services": [
                {"id": "SVC100", "name": "Payments", "state": "operational", "outages": []}
            ]
        },
    )
    assert services.service_status_poll() == 1
    assert Outage.objects.get().resolved_at is not None
    assert ServiceStatus.objects.get().state == "operational"


@responses.activate
def test_status_poll_off_or_failing(settings):
    settings.ROUTING_STATUS_URL = ""
    assert services.service_status_poll() == 0
    settings.ROUTING_STATUS_URL = URL
    responses.get(URL, status=500)
    assert services.service_status_poll() == 0
    assert ServiceStatus.objects.count() == 0


GOOD = {"id": "SVC200", "name": "Mail", "state": "degraded", "outages": []}


@responses.activate
@pytest.mark.parametrize(
    ("services_value", "updated"),
    [
        ({"SVC100": {"state": "outage"}}, []),  # an object, not a list: nothing to read
        (["SVC100", None, 7, GOOD], ["SVC200"]),  # items that are not objects are skipped
        # outages that are not a list: the service is skipped (reading them as none would
        # resolve its open outages)
        ([{"id": "SVC100", "state": "outage", "outages": "inc-1"}, GOOD], ["SVC200"]),
        # outage entries that are not objects are skipped, the service is read
        ([{"id": "SVC100", "state": "outage", "outages": [None, "x"]}, GOOD], ["SVC100", "SVC200"]),
        ([{"id": "SVC100", "state": ["outage"]}, GOOD], ["SVC200"]),  # not a known state
    ],
)
def test_a_status_answer_of_another_shape_is_skipped_not_a_crash(settings, services_value, updated):
    """The status endpoint is outside our control: an answer of another shape was an
    AttributeError every minute (the poll task failed, nothing was updated). Malformed
    parts are skipped with a warning; the well-formed rest is read."""
    settings.ROUTING_STATUS_URL = URL
    responses.get(URL, json={"services": services_value})
    assert services.service_status_poll() == len(updated)
    assert sorted(ServiceStatus.objects.values_list("service_id", flat=True)) == updated
    assert not Outage.objects.exists()
