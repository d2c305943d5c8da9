"""The benchmarks' seeding, at toy sizes: it writes the tables with raw SQL and COPY, so a new
NOT NULL column breaks it without any other test noticing (bench/dashboard.py and bench/kb.py
were both found broken that way, long after the columns landed). Figures are not measured
here; only that each seed still fills the current schema."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_dashboard_bench_seeds_the_current_schema() -> None:
    from bench import dashboard
    from calls.models import Call
    from routing.models import RoutingDecision
    from tickets.models import Message, Ticket

    dashboard.seed(n_tickets=60, n_messages=240, reseed=True)
    assert Ticket.objects.count() == 60
    assert Message.objects.count() >= 60
    assert RoutingDecision.objects.exists()
    assert Call.objects.exists()
    # Reseeding empties the previous seed first instead of failing on it.
    dashboard.seed(n_tickets=60, n_messages=240, reseed=True)
    assert Ticket.objects.count() == 60


def test_inbox_bench_seeds_the_current_schema() -> None:
    from bench import inbox
    from tickets.models import Message, Ticket

    inbox.seed(n_tickets=40, n_messages=120, n_agents=3)
    assert Ticket.objects.count() == 40
    assert Message.objects.count() >= 40


def test_context_bench_seeds_the_current_schema() -> None:
    from bench import context
    from tickets.context.models import Interaction, Order
    from tickets.models import Ticket

    ticket_id, raw_key = context.seed_customer()
    customer = Ticket.objects.get(pk=ticket_id).customer
    assert Order.objects.filter(customer=customer).count() == 200
    assert Interaction.objects.filter(customer=customer).count() == 1000
    assert raw_key


def test_kb_bench_fills_synthetic_chunks_into_the_current_schema() -> None:
    from bench import kb
    from knowledge.models import Chunk, Document
    from knowledge.services import source_get_or_create

    base = source_get_or_create(name="bench-stackfaq")
    document = Document.objects.create(
        source=base, external_id="q1", title="Reset a password", content_hash="x", version=1
    )
    vector = np.zeros(384, dtype=np.float32)
    vector[0] = 1.0
    Chunk.objects.create(
        document=document,
        source=base,
        kind="body",
        position=0,
        text="Open settings, choose security and reset the password",
        token_count=9,
        embedding=vector.tolist(),
        embedding_key="bench",
    )
    source = kb.fill(12, np.random.default_rng(1))
    assert Chunk.objects.filter(source=source).count() == 12
    assert not Chunk.objects.filter(source=source, search_vector__isnull=True).exists()


def test_kb_name_stats_bench_fills_titled_documents_into_the_current_schema() -> None:
    from bench import kb_name_stats
    from knowledge.models import Chunk

    passages = [["Reset", "the", "password", "from", "settings"], ["Refunds", "take", "days"]]
    source = kb_name_stats.fill(10, 5, passages)
    assert Chunk.objects.filter(source=source).count() == 10
    assert Chunk.objects.filter(source=source, kind="title").count() == 2
    assert not Chunk.objects.filter(source=source, search_vector__isnull=True).exists()
