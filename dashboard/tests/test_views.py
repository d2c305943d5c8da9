"""The dashboard's pages and data endpoints: who may see them, filters, CSV, JSON, and a
bounded number of queries whatever the data."""

from __future__ import annotations

import codecs
import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from calls.models import Call, CallEvent, EventStatus, PipelineStatus
from dashboard.widgets import widget_list
from routing.models import FeedbackVerdict, RoutingDecision, RoutingFeedback
from tickets.context.models import CsatFeedback
from tickets.models import Customer, Team, Ticket

pytestmark = pytest.mark.django_db

WIDGETS = [
    "alerts",
    "backlog",
    "flow",
    "channels",
    "response_times",
    "sla",
    "csat",
    "routing",
    "routing_time",
    "routing_confidence",
    "routing_teams",
    "routing_priority",
    "calls",
    "intake_health",
    "agents",
]


@pytest.fixture
def sup(supervisor) -> Client:
    client = Client()
    client.force_login(supervisor)
    return client


def _world(n: int = 3, team_name: str = "Alpha") -> Team:
    now = timezone.now()
    team, _ = Team.objects.get_or_create(name=team_name, slug=team_name.lower()[:40] or "t")
    customer = Customer.objects.create(name="Ada", email=f"ada{Customer.objects.count()}@x.org")
    for i in range(n):
        ticket = Ticket.objects.create(
            customer=customer,
            subject=f"t{i}",
            team=team,
            channel="email" if i % 2 else "webchat",
            status="resolved" if i % 3 == 0 else "open",
            first_response_at=now - timedelta(hours=1),
            resolved_at=now - timedelta(minutes=30) if i % 3 == 0 else None,
        )
        Ticket.objects.filter(pk=ticket.pk).update(created_at=now - timedelta(hours=2))
        if i % 3 == 0:
            CsatFeedback.objects.create(ticket=ticket, customer=customer, rating=5 - i % 5)
        decision = RoutingDecision.objects.create(
            ticket=ticket,
            team=team,
            team_slug=team.slug,
            priority=["normal", "high", "urgent"][i % 3],
            confidence=[0.9, 0.55, 0.75][i % 3],
            processing_ms=100.0 * (i + 1),
            fallback_from="bedrock" if i == 1 else "",
            provider="local",
            correlation_id=ticket.correlation_id,
            requires_manual_review=i % 2 == 0,
            out_of_scope=[False, None, True, False][i % 4],  # None: the router has no detector
            cost_usd=Decimal("0.002"),
            tokens_in=100,
            tokens_out=20,
        )
        RoutingFeedback.objects.create(
            decision=decision,
            verdict=FeedbackVerdict.ACCEPTED if i % 4 else FeedbackVerdict.OVERRIDDEN,
            team_correct=True,
            priority_correct=True,
        )
        call = Call.objects.create(
            contact_id=f"c-{team_name}-{i}", pipeline_status=PipelineStatus.SYNCED
        )
        CallEvent.objects.create(
            source="ctr",
            external_id=f"e-{team_name}-{i}",
            status=EventStatus.FAILED if i == 0 else EventStatus.PROCESSED,
        )
        del call
    return team


def test_every_widget_is_registered():
    assert [w.name for w in widget_list()] == WIDGETS


@pytest.mark.parametrize(
    "url",
    ["/dashboard/", "/dashboard/widgets/backlog/", "/dashboard/data/backlog/?format=csv"],
)
def test_agents_get_403_and_anonymous_sign_in(client, agent, url):
    assert client.get(url).status_code == 302
    client.force_login(agent)
    response = client.get(url)
    assert response.status_code == 403
    assert b"backlog" not in response.content.lower() or b"supervisors" in response.content


def test_page_shows_every_chart(sup):
    _world()
    response = sup.get("/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    for name in WIDGETS:
        assert f'id="widget-{name}"' in html
    lazy = {w.name for w in widget_list() if w.lazy}
    # a list, not a chart; the lazy widgets come from their fragments right after the page
    charted = [name for name in WIDGETS if name != "alerts" and name not in lazy]
    for name in charted:
        assert f'id="chart-{name}-t"' in html, f"{name} has no chart"
    assert html.count("<svg") == len(charted)
    assert html.count("data-lazy") == len(lazy)
    for name in lazy:
        fragment = sup.get(f"/dashboard/widgets/{name}/").content.decode()
        assert f'id="chart-{name}-t"' in fragment, f"{name} has no chart"
    assert 'data-page="dashboard"' in html


def test_lazy_widgets_are_left_out_of_the_page_and_keep_their_filters(sup):
    """The page does not compute a lazy widget (its time stays within target as widgets
    are added): it links the fragment, with the page's filters, which the script loads."""
    _world()
    html = sup.get("/dashboard/?range=90d").content.decode()
    lazy = [w.name for w in widget_list() if w.lazy]
    assert lazy  # the routing breakdowns
    for name in lazy:
        assert f'data-fragment-url="/dashboard/widgets/{name}/?range=90d' in html
        assert f'id="chart-{name}-t"' not in html


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("range=forever", "Unknown range"),
        ("range=custom&start=2026-13-01&end=2026-12-02", "start must be a date"),
        ("start=2026-12-02", "needs both start and end"),
        ("start=2026-12-05&end=2026-12-01", "end must not be before start"),
        ("start=2020-01-01&end=2026-01-01", "at most 366 days"),
        ("team=abc", "Unknown team"),
        ("team=99999", "Unknown team"),
        # digits to str.isdigit() that int() refuses (a 500 before)
        ("team=%C2%B2", "Unknown team"),
        ("team=%D9%A3", "Unknown team"),
        ("channel=fax", "Unknown channel"),
    ],
)
def test_bad_filters_are_400_with_a_clear_message(sup, query, message):
    page = sup.get(f"/dashboard/?{query}")
    assert page.status_code == 400
    assert message in page.content.decode()
    data = sup.get(f"/dashboard/data/flow/?{query}")
    assert data.status_code == 400
    assert message in data.json()["error"]["message"]
    assert sup.get(f"/dashboard/data/flow/?{query}&format=csv").status_code == 400
    assert sup.get(f"/dashboard/widgets/flow/?{query}").status_code == 400


def test_unknown_widget_and_format(sup):
    assert sup.get("/dashboard/data/nope/").status_code == 404
    response = sup.get("/dashboard/data/flow/?format=xml")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "format must be json or csv."


def test_json_and_csv_carry_the_same_rows(sup):
    team = _world()
    json_body = sup.get(f"/dashboard/data/backlog/?team={team.pk}").json()
    assert json_body["columns"] == ["Team", "New", "Open", "Pending", "Total"]
    assert json_body["rows"] == [["Alpha", 0, 2, 0, 2]]
    assert json_body["filters"]["team"] == [team.pk]
    response = sup.get(f"/dashboard/data/backlog/?team={team.pk}&format=csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="backlog_')
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows == [["Team", "New", "Open", "Pending", "Total"], ["Alpha", "0", "2", "0", "2"]]


def test_every_widget_has_json_and_csv(sup):
    _world()
    from alerts.services import alert_raise

    alert_raise(fingerprint="rule:t", title="Alarm", summary="Over.", severity="warning")
    for name in WIDGETS:
        body = sup.get(f"/dashboard/data/{name}/?range=24h").json()
        assert body["rows"], name
        response = sup.get(f"/dashboard/data/{name}/?range=24h&format=csv")
        assert response.status_code == 200
        assert (
            len(list(csv.reader(io.StringIO(response.content.decode("utf-8-sig")))))
            == len(body["rows"]) + 1
        )


def test_csv_starts_with_a_utf8_bom_so_excel_reads_accents(sup):
    """Without a byte order mark Excel opened the export in the machine's legacy code
    page: "Équipe Zoë" showed as "Ã‰quipe ZoÃ«"."""
    _world(n=2, team_name="Équipe Zoë")
    response = sup.get("/dashboard/data/backlog/?format=csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response.content.startswith(codecs.BOM_UTF8)
    assert response.content.count(codecs.BOM_UTF8) == 1
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows == [["Team", "New", "Open", "Pending", "Total"], ["Équipe Zoë", "0", "1", "0", "1"]]


@pytest.mark.parametrize("name", ["=HYPERLINK(1)", "+1+cmd", "-1+cmd", "@SUM(A1)", "\t=1", "\r=1"])
def test_csv_neutralises_formulas(sup, name):
    _world(n=2, team_name=name)
    text = sup.get("/dashboard/data/backlog/?format=csv").content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1][0] == "'" + name


def test_widget_figures_on_known_data(sup):
    _world(n=4)
    routing = sup.get("/dashboard/data/routing/").json()
    stats = {s["label"]: s["value"] for s in routing["stats"]}
    assert stats["Manual review rate"] == 50.0  # 2 of 4 decisions
    assert stats["Unlike any trained intent"] == 33.3  # decision 2 of the 3 with a detector
    assert routing["columns"][3] == "Unlike any trained intent"
    assert sum(row[1] for row in routing["rows"]) == 4
    assert [row[3] for row in routing["rows"]] == [33.3]  # one bucket: today
    assert stats["Routing accepted by reviewers"] == 75.0  # 3 of 4 verdicts accepted
    assert "decisions applied without a review have no verdict" in routing["note"]
    assert stats["Cost per ticket"] == pytest.approx(0.002)
    assert stats["Tokens per ticket"] == 120
    assert stats["Provider error rate"] == 25.0  # decision 1 of 4 fell back
    assert [row[5] for row in routing["rows"]] == [25.0]
    csat = {s["label"]: s["value"] for s in sup.get("/dashboard/data/csat/").json()["stats"]}
    assert csat["Answers"] == 2  # tickets 0 and 3: ratings 5 and 2
    assert csat["CSAT (4–5 ★)"] == 50.0
    assert csat["Average rating"] == 3.5
    calls = sup.get("/dashboard/data/calls/").json()
    assert dict(calls["rows"])["Synced"] == 4
    call_stats = {s["label"]: s["value"] for s in calls["stats"]}
    assert call_stats["Records awaiting redelivery"] == 1
    times = sup.get("/dashboard/data/response_times/").json()
    assert {s["label"]: s["value"] for s in times["stats"]}["First response, median"] == 1.0


def test_team_and_channel_filters_reach_the_widgets(sup):
    alpha = _world(n=3, team_name="Alpha")
    _world(n=5, team_name="Beta")
    rows = sup.get(f"/dashboard/data/channels/?team={alpha.pk}").json()["rows"]
    assert sum(r[1] for r in rows) == 3
    rows = sup.get("/dashboard/data/channels/?channel=email").json()["rows"]
    assert rows == [["Email", 3, 2]]  # Alpha 1 + Beta 2 email tickets


def test_dashboard_queries_do_not_grow_with_data(sup, django_assert_max_num_queries):
    _world(n=2, team_name="Alpha")
    sup.get("/dashboard/")  # warm caches (content types, sessions)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        assert sup.get("/dashboard/").status_code == 200
    _world(n=12, team_name="Beta")
    _world(n=12, team_name="Gamma")
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert sup.get("/dashboard/").status_code == 200
    assert len(small.captured_queries) <= 20  # heavy widgets are lazy (their fragments)


def test_supervisor_sees_the_dashboard_link(sup, client, agent):
    assert 'href="/dashboard/"' in sup.get("/?view=all").content.decode()
    client.force_login(agent)
    assert 'href="/dashboard/"' not in client.get("/?view=all").content.decode()


def test_routing_figures_follow_the_team_filter_and_hourly_buckets(sup):
    alpha = _world(n=3, team_name="Alpha")
    _world(n=5, team_name="Beta")
    body = sup.get(f"/dashboard/data/routing/?team={alpha.pk}&range=24h").json()
    stats = {s["label"]: s["value"] for s in body["stats"]}
    assert stats["Manual review rate"] == 66.7  # decisions 0 and 2 of 3
    assert stats["Routing accepted by reviewers"] == 66.7  # verdict 0 overridden, 1, 2 not
    assert body["columns"][0] == "Hour"
    assert sum(row[1] for row in body["rows"]) == 3
    everyone = {s["label"]: s["value"] for s in sup.get("/dashboard/data/routing/").json()["stats"]}
    assert everyone["Manual review rate"] == 62.5  # 2 + 3 of 8


def test_routing_breakdown_widgets_on_known_data(sup, settings):
    settings.ROUTING_REVIEW_THRESHOLD = 0.6
    _world(n=4)  # processing 100-400 ms; confidence .9 .55 .75 .9; normal high urgent normal
    times = sup.get("/dashboard/data/routing_time/").json()
    assert times["columns"] == ["Day", "Decisions", "Average", "p95"]
    assert times["rows"] == [[times["rows"][0][0], 4, 250.0, 385.0]]
    assert times["unit"] == "ms"
    stats = {s["label"]: s["value"] for s in times["stats"]}
    assert stats["Average processing time"] == 250.0
    assert stats["p95 processing time"] == 385.0
    day = sup.get("/dashboard/data/routing_time/?range=24h").json()
    rate = {s["label"]: s for s in day["stats"]}["Processing rate"]
    assert (rate["value"], rate["unit"]) == (0.2, "per hour")  # 4 decisions in 24 hours
    confidence = sup.get("/dashboard/data/routing_confidence/").json()
    assert len(confidence["rows"]) == 10
    assert confidence["rows"][5] == ["50%–60%", 1, 1, 0]
    assert confidence["rows"][7] == ["70%–80%", 1, 0, 1]
    assert confidence["rows"][9] == ["90%–100%", 2, 0, 2]
    stats = {s["label"]: s["value"] for s in confidence["stats"]}
    assert stats["Below review threshold"] == 25.0
    assert stats["Average confidence"] == 77.5
    assert "Review threshold 60%" in confidence["note"]
    assert "the classifier's calibrated probability for every provider" in confidence["note"]
    teams = sup.get("/dashboard/data/routing_teams/").json()
    assert teams["rows"] == [["Alpha", 4, 100.0, 2]]
    priority = sup.get("/dashboard/data/routing_priority/?format=csv").content.decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(priority))) == [
        ["Priority", "Decisions", "Share (%)", "Sent to review"],
        ["Low", "0", "0.0", "0"],
        ["Normal", "2", "50.0", "1"],  # decisions 0 and 3; 0 sent to review
        ["High", "1", "25.0", "0"],
        ["Urgent", "1", "25.0", "1"],
    ]


def test_routing_breakdown_widgets_render_accessible_charts(sup, settings):
    settings.ROUTING_REVIEW_THRESHOLD = 0.6
    _world(n=4)
    html = "".join(  # the page and its lazy widgets' fragments
        sup.get(url).content.decode()
        for url in ["/dashboard/"] + [f"/dashboard/widgets/{w.name}/" for w in widget_list()]
    )
    assert "Routing processing time" in html
    assert "Lines of Average, p95 over 1 day buckets." in html
    assert "Stacked bars of Below review threshold, At or above it by Confidence." in html
    assert "50%–60% · Below review threshold: 1" in html  # a tooltip per mark
    assert "Grouped bars of Decisions by Team." in html
    assert "Urgent · Decisions: 1" in html
    assert "Provider errors" in html
    fragment = sup.get("/dashboard/widgets/routing_confidence/").content.decode()
    assert '<th scope="row">90%–100%</th>' in fragment
    assert "ROUTING_REVIEW_THRESHOLD" in fragment


def test_routing_breakdown_widgets_say_no_data_in_an_empty_range(sup):
    for name in ("routing_time", "routing_confidence", "routing_teams", "routing_priority"):
        body = sup.get(f"/dashboard/data/{name}/").json()
        assert body["rows"] == [], name
        fragment = sup.get(f"/dashboard/widgets/{name}/").content.decode()
        assert "No data in this range." in fragment, name
        assert "<svg" not in fragment, name


@pytest.mark.parametrize(("preset", "days"), [("7d", 7), ("30d", 30), ("90d", 90)])
def test_day_presets_are_whole_local_days_and_rows_match_totals(preset, days):
    """Review r5: "Last 7 days" was 7 × 24 h back from now, so its day rows were 8, the
    first a partial day whose tickets before the cut-off were missing. A day preset is
    now whole local days, today included: 7 rows, each a whole day, and every ticket of
    the first day is in its row and in the totals."""
    from dashboard.filters import filters_parse
    from tickets.dashboard_widgets import channel_data, flow_data

    now = timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0)
    parsed = filters_parse({"range": preset}, team_ids=[], channels=[], now=now)
    first_day = now - timedelta(days=days - 1)
    assert parsed.filters.start == first_day.replace(hour=0)
    assert (parsed.start_date, parsed.end_date) == (first_day.date(), now.date())
    customer = Customer.objects.create(name="Ada", email="ada-days@x.org")
    for at in (
        first_day.replace(hour=0, minute=30),  # the first day's early hours
        first_day.replace(hour=23),
        first_day - timedelta(hours=13),  # the day before the range (23:00)
    ):
        ticket = Ticket.objects.create(customer=customer, subject="s", channel="email")
        Ticket.objects.filter(pk=ticket.pk).update(created_at=at)
    data = flow_data(parsed.filters)
    assert len(data.rows) == days
    assert data.rows[0][0] == first_day.strftime("%Y-%m-%d")
    assert data.rows[0][1] == 2
    assert {s.label: s.value for s in data.stats}["Created"] == 2
    assert channel_data(parsed.filters).rows == [["Email", 2, 2]]


def test_the_24_hour_preset_stays_rolling():
    from dashboard.filters import filters_parse

    now = timezone.localtime().replace(hour=12, minute=30, second=0, microsecond=0)
    parsed = filters_parse({"range": "24h"}, team_ids=[], channels=[], now=now)
    assert (parsed.filters.start, parsed.filters.end) == (now - timedelta(hours=24), now)
    assert parsed.filters.bucket == "hour"
