"""Workbench pages."""

from __future__ import annotations

import json

import pytest

from calls import services
from calls.models import Call
from calls.tests.conftest import load, place_result

pytestmark = pytest.mark.django_db


@pytest.fixture
def call(calls_settings, django_capture_on_commit_callbacks):
    ctr = load("ctr_billing.json")
    place_result(ctr["ContactId"], "transcribe.json", load("transcribe_billing.json"))
    with django_capture_on_commit_callbacks(execute=True):
        services.call_events_intake(body=json.dumps(ctr).encode())
    return Call.objects.get()


def test_list_and_detail(client, agent, call, django_assert_max_num_queries):
    client.force_login(agent)
    listing = client.get("/calls/")
    assert listing.status_code == 200
    assert f"/calls/{call.hash}/" in listing.content.decode()
    with django_assert_max_num_queries(12):
        page = client.get(f"/calls/{call.hash}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert call.analytics.call_summary in html
    assert "BillingQueue" in html
    assert 'class="speaker-customer"' in html
    assert "sentiment-positive" in html
    assert "Press 1 for billing, 2 for support" in html
    assert client.get("/calls/" + "0" * 32 + "/").status_code == 404


def test_board_is_for_supervisors(client, agent, supervisor, db):
    client.force_login(agent)
    assert client.get("/calls/board/").status_code == 403
    client.force_login(supervisor)
    page = client.get("/calls/board/")
    assert page.status_code == 200
    assert "/static/js/calls_board.js" in page.content.decode()  # listens on /ws/events/


def test_pages_need_login(client, db):
    assert client.get("/calls/").status_code == 302
