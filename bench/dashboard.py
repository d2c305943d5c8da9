#!/usr/bin/env python
"""Supervisor dashboard benchmark: 100,000 tickets / 1,000,000 messages (and the routing
decisions, CSAT answers, calls and outbox events around them), then the p95 server time
of the dashboard page, of each chart's data endpoint, and of a ``/metrics`` scrape.

Usage (from the repository root; the `make run` PostgreSQL and Redis, in a database of
the bench's own, ``support_bench_dashboard``, seeded once in SQL with generate_series):

    .venv/bin/python bench/dashboard.py [--tickets 100000] [--messages 1000000]
                                        [--runs 30] [--reseed]

Targets (issue #16): page p95 < 300 ms, each data endpoint p95 < 200 ms, /metrics < 100 ms.
Times are measured in-process with Django's test client (middleware, queries, template
or CSV/JSON rendering), not over HTTP, so they exclude the network and the ASGI server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
BENCH_DB = "support_bench_dashboard"
METRICS_TOKEN = "bench-metrics-token"  # noqa: S105 - local benchmark only
DAYS = 365  # tickets spread over a year, so a window is a slice of the table


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


SEED_SQL = [
    (
        "customers",
        """
        INSERT INTO tickets_customer (name, email, phone, vip_tier, account_type,
                                      created_at, updated_at)
        SELECT 'Customer ' || g, 'bench' || g || '@example.com', '+1555' || lpad(g::text, 7, '0'),
               CASE WHEN g %% 20 = 0 THEN 'gold' ELSE 'none' END, 'individual', now(), now()
        FROM generate_series(1, %(customers)s) g
        """,
    ),
    (
        "tickets",
        """
        WITH c AS (SELECT min(id) AS first FROM tickets_customer),
        t AS (SELECT array_agg(id ORDER BY id) AS ids FROM tickets_team),
        a AS (SELECT array_agg(id ORDER BY id) AS ids FROM auth_user
              WHERE username LIKE 'bench-dash-agent%%'),
        g AS (
          SELECT g, now() - (%(days)s * interval '1 day') * ((%(tickets)s - g)::float / %(tickets)s)
                 AS created,
                 (hashint4(g) & 2147483647) %% 100 AS roll
          FROM generate_series(1, %(tickets)s) g)
        INSERT INTO tickets_ticket (customer_id, subject, status, priority, team_id, assignee_id,
            channel, channel_account_id, origin_platform_id, is_bot_handoff, needs_review,
            correlation_id, first_response_at, resolved_at, closed_at, last_message_at,
            waiting_since, created_at, updated_at, first_response_due_at, resolution_due_at,
            sla_paused_seconds)
        SELECT c.first + (g.g %% %(customers)s),
               'Bench ticket ' || g.g,
               CASE WHEN g.created > now() - interval '20 days' AND g.roll < 40 THEN
                      (ARRAY['new', 'open', 'pending'])[1 + g.roll %% 3]
                    WHEN g.roll < 3 THEN (ARRAY['new', 'open', 'pending'])[1 + g.roll %% 3]
                    WHEN g.roll < 80 THEN 'resolved' ELSE 'closed' END,
               (ARRAY['low', 'normal', 'normal', 'high', 'urgent'])[1 + g.g %% 5],
               CASE WHEN g.roll %% 10 < 8 THEN t.ids[1 + g.g %% array_length(t.ids, 1)] END,
               CASE WHEN g.roll %% 10 < 7 THEN a.ids[1 + (g.g / 7) %% array_length(a.ids, 1)] END,
               (ARRAY['whatsapp', 'messenger', 'instagram', 'twitter', 'email', 'webchat',
                      'chatbot', 'phone'])[1 + g.g %% 8],
               '', '', false, g.g %% 97 = 0, md5(g.g::text || 'dash')::uuid,
               g.created + ((g.roll * 7) %% 480 + 2) * interval '1 minute',
               CASE WHEN NOT (g.created > now() - interval '20 days' AND g.roll < 40)
                         AND g.roll >= 3 THEN
                    g.created + ((g.roll * 37) %% 4320 + 30) * interval '1 minute' END,
               NULL, g.created + interval '30 minutes', NULL, g.created, g.created,
               -- SLA due times as a 24/7 policy per priority would set them
               g.created + (ARRAY[480, 240, 240, 60, 30])[1 + g.g %% 5] * interval '1 minute',
               g.created + (ARRAY[2700, 1080, 1080, 480, 240])[1 + g.g %% 5]
                 * interval '1 minute',
               0
        FROM g, c, t, a
        """,
    ),
    (
        "messages",
        """
        WITH t AS (SELECT id, customer_id, assignee_id, channel, created_at,
                          row_number() OVER (ORDER BY id) AS n FROM tickets_ticket)
        INSERT INTO tickets_message (ticket_id, direction, kind, author_customer_id,
            author_user_id, body_text, body_html, channel, delivery_status, delivery_error,
            delivery_error_code, metadata, created_at, updated_at)
        SELECT t.id,
               CASE WHEN m %% 2 = 0 THEN 'inbound' ELSE 'outbound' END,
               CASE WHEN m %% 2 = 1 AND m %% 5 = 3 THEN 'internal_note' ELSE 'public' END,
               CASE WHEN m %% 2 = 0 THEN t.customer_id END,
               CASE WHEN m %% 2 = 1 THEN t.assignee_id END,
               'Bench message ' || m || ' on ticket ' || t.id, '', t.channel,
               CASE WHEN m %% 2 = 1 AND m %% 5 <> 3 THEN 'delivered' ELSE '' END,
               '', '', '{}'::jsonb,
               t.created_at + m * interval '3 minutes', t.created_at + m * interval '3 minutes'
        FROM t, generate_series(0, %(per_ticket)s - 1) m
        """,
    ),
    (
        "CSAT answers",
        """
        INSERT INTO tickets_csatfeedback (ticket_id, customer_id, rating, comment, via_link,
                                          created_at, updated_at)
        SELECT id, customer_id, 1 + (hashint8(id) & 2147483647) %% 5, '', true,
               resolved_at, resolved_at
        FROM tickets_ticket WHERE resolved_at IS NOT NULL AND id %% 3 = 0
        """,
    ),
    (
        "routing decisions",
        """
        INSERT INTO routing_routingdecision (ticket_id, attempt_key, team_slug, priority,
            priority_score, confidence, category, intent, classification, entities, reasoning,
            reasons, requires_manual_review, review_reasons, applied, processing_ms,
            tool_calls, provider, model_id, fallback_from, fallback_reason, tokens_in,
            tokens_out, cost_usd, correlation_id, sync_status, created_at, expires_at)
        SELECT id, 'initial', '', priority, 0.5, 0.5 + (id %% 50) / 100.0, 'ORDER', 'track',
               '{}'::jsonb, '{}'::jsonb, '', '[]'::jsonb, id %% 7 = 0, '[]'::jsonb, true,
               120 + id %% 300, '[]'::jsonb, 'local', '', '', '', 800 + id %% 400,
               100 + id %% 50, 0.0021, correlation_id, 'skipped',
               created_at + interval '2 seconds', now() + interval '365 days'
        FROM tickets_ticket
        """,
    ),
    (
        "routing verdicts",
        """
        INSERT INTO routing_routingfeedback (decision_id, ticket_id, verdict, priority,
            category, intent, team_correct, priority_correct, text, note, created_at)
        SELECT id, ticket_id, CASE WHEN id %% 5 = 0 THEN 'overridden' ELSE 'accepted' END, '',
               '', '', id %% 5 <> 0, true, '', '', created_at + interval '1 hour'
        FROM routing_routingdecision WHERE id %% 10 = 0
        """,
    ),
    (
        "calls",
        """
        INSERT INTO calls_call (contact_id, hash, channel, initiation_method, disconnect_reason,
            queue_name, agent_username, agent_arn, customer_phone, recording_location,
            attributes, raw, pipeline_status, pipeline_error, transcription_job, s3_input_uri,
            s3_output_uri, s3_output_version, created_at, updated_at)
        SELECT 'bench-call-' || g, md5('bench-call-' || g), 'VOICE', 'INBOUND', '', 'Support',
               '', '', '', '', '{}'::jsonb, '{}'::jsonb,
               (ARRAY['synced', 'synced', 'analysed', 'transcribing', 'failed'])[1 + g %% 5],
               '', '', '', '', '', now() - (%(days)s * interval '1 day') * (g::float / %(calls)s),
               now()
        FROM generate_series(1, %(calls)s) g
        """,
    ),
    (
        "call events",
        """
        INSERT INTO calls_callevent (source, external_id, contact_id, raw_body, status, error,
                                     created_at, updated_at, attempts)
        SELECT 'ctr', 'bench-event-' || g, 'bench-call-' || (g / 4), '',
               CASE WHEN g %% 50 = 0 THEN 'failed' ELSE 'processed' END, '',
               now() - (%(days)s * interval '1 day') * (g::float / (%(calls)s * 4)), now(), 0
        FROM generate_series(1, %(calls)s * 4) g
        """,
    ),
]


def seed(n_tickets: int, n_messages: int, reseed: bool) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection, transaction

    from support.auth.roles import AGENTS_GROUP, SUPERVISORS_GROUP
    from tickets.models import Team, Ticket

    have = Ticket.objects.count()
    if have >= n_tickets and not reseed:
        say(f"database {BENCH_DB} already holds {have} tickets; not seeding (--reseed to redo)")
        return
    if have:
        say("emptying the previous seed …")
        with connection.cursor() as cur:
            cur.execute(
                "TRUNCATE tickets_message, tickets_csatfeedback, routing_routingfeedback, "
                "routing_routingdecision, tickets_ticket_tags, tickets_ticketread, "
                "tickets_ticket, tickets_customer, calls_callevent, calls_call CASCADE"
            )
    started = time.monotonic()
    agents_group, _ = Group.objects.get_or_create(name=AGENTS_GROUP)
    supervisors, _ = Group.objects.get_or_create(name=SUPERVISORS_GROUP)
    teams = [
        Team.objects.get_or_create(slug=s, defaults={"name": s.title()})[0]
        for s in ("billing", "orders", "accounts", "care")
    ]
    user_model = get_user_model()
    for i in range(20):
        user, _ = user_model.objects.get_or_create(username=f"bench-dash-agent{i}")
        user.groups.add(agents_group)
        teams[i % len(teams)].members.add(user)
    boss, _ = user_model.objects.get_or_create(username="bench-dash-supervisor")
    boss.groups.add(supervisors)
    params = {
        "tickets": n_tickets,
        "customers": max(1, n_tickets // 5),
        "per_ticket": max(1, n_messages // n_tickets),
        "days": DAYS,
        "calls": max(1, n_tickets // 20),
    }
    with transaction.atomic(), connection.cursor() as cur:
        for label, sql in SEED_SQL:
            t0 = time.monotonic()
            cur.execute(sql, params)
            say(f"  {label:18s} {cur.rowcount:>9,} rows  {time.monotonic() - t0:6.1f}s")
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    say(f"seeded in {time.monotonic() - started:.0f}s")


def measure(runs: int) -> list[tuple[str, float, float, int, float]]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from dashboard.widgets import widget_list
    from tickets.models import Team

    settings.METRICS_TOKEN = METRICS_TOKEN
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-dash-supervisor"))
    team = Team.objects.get(slug="billing")
    targets: list[tuple[str, str, dict[str, str], float]] = [
        ("dashboard page (7 days)", "/dashboard/", {}, 300),
        ("dashboard page (90 days)", "/dashboard/?range=90d", {}, 300),
        (
            "dashboard page (90 d, team+channel)",
            f"/dashboard/?range=90d&team={team.pk}&channel=email",
            {},
            300,
        ),
    ]
    for widget in widget_list():
        targets.append((f"data {widget.name} (7 days)", f"/dashboard/data/{widget.name}/", {}, 200))
        targets.append(
            (
                f"data {widget.name} (90 days, csv)",
                f"/dashboard/data/{widget.name}/?range=90d&format=csv",
                {},
                200,
            )
        )
    auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    targets.append(("/metrics scrape", "/metrics", auth, 100))
    results = []
    for label, url, headers, target in targets:
        for _ in range(3):
            assert client.get(url, headers=headers).status_code == 200, url
        timings = []
        queries = 0
        for _ in range(runs):
            with CaptureQueriesContext(connection) as ctx:
                t0 = time.perf_counter()
                response = client.get(url, headers=headers)
                timings.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, url
            queries = len(ctx.captured_queries)
        results.append((label, p95(timings), statistics.median(timings), queries, target))
        flag = "ok" if p95(timings) < target else "OVER TARGET"
        say(
            f"{label:40s} p95 {p95(timings):7.1f} ms  median {statistics.median(timings):7.1f} ms"
            f"  queries {queries:3d}  (target {target:.0f} ms: {flag})"
        )
    return results


def measure_complete(runs: int) -> None:
    """The whole dashboard at 90 days as a supervisor waits for it: the page, then each lazy
    widget's fragment, one after another (a browser fetches them in parallel, so this is
    an upper bound on the server time). No target: the page's own is the one above."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from dashboard.widgets import widget_list

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-dash-supervisor"))
    urls = ["/dashboard/?range=90d"] + [
        f"/dashboard/widgets/{w.name}/?range=90d" for w in widget_list() if w.lazy
    ]
    timings = []
    for i in range(runs + 3):
        t0 = time.perf_counter()
        for url in urls:
            assert client.get(url).status_code == 200, url
        if i >= 3:  # warm-up
            timings.append((time.perf_counter() - t0) * 1000)
    say(
        f"{'page + its ' + str(len(urls) - 1) + ' lazy fragments (90 days)':40s} "
        f"p95 {p95(timings):7.1f} ms  median {statistics.median(timings):7.1f} ms"
        "  (one after another; no target)"
    )


def measure_metric_sources(runs: int) -> None:
    """What each /metrics source costs at this scale (to say which one is slow)."""
    from support.metrics import metric_sources, register_builtin_sources

    register_builtin_sources()
    for name, source in sorted(metric_sources().items()):
        timings = []
        for _ in range(runs):
            t0 = time.perf_counter()
            list(source())
            timings.append((time.perf_counter() - t0) * 1000)
        say(f"  /metrics source {name:24s} median {statistics.median(timings):7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--reseed", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("DEBUG", "false")
    from _harness import setup_env

    setup_env(db=BENCH_DB)
    say(
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
        f"{os.cpu_count()} CPUs"
    )
    seed(args.tickets, args.messages, args.reseed)
    from django.core.cache import cache

    cache.clear()
    results = measure(args.runs)
    measure_complete(max(5, args.runs // 3))
    measure_metric_sources(max(5, args.runs // 3))
    say(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    over = [r for r in results if r[1] >= r[4]]
    say("all targets met" if not over else f"{len(over)} over target: {[r[0] for r in over]}")


if __name__ == "__main__":
    main()
