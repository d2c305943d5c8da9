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
