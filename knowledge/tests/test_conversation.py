"""Conversational retrieval: the query builder, the turns format of kb_eval, and ticket
suggestions built from the ticket's recent messages."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from knowledge.conversation import (
    AGENT,
    CUSTOMER,
    Turn,
    build_query,
    clean,
    entity_phrases,
    parse_turns,
)
from knowledge.evaluation import evaluate, load_queries
from knowledge.models import Document, KnowledgeSource
from knowledge.panels import suggestions_panel_context
from knowledge.parsing import parse_jsonl
from knowledge.retrieval import search
from knowledge.selectors import ticket_conversation
from knowledge.services import document_delete, documents_ingest, source_get_or_create
from support.errors import InvalidInput
from support.lru import BoundedLRU
from support.redis_client import get_redis
from tickets.services import message_add, ticket_create

HOTELS = ["Acorn Guest House", "Kirkwood House", "Alexander Bed and Breakfast", "Hamilton Lodge"]
ATTRIBUTES = {
    "parking": ("Does {name} have free parking?", "Yes, {name} offers free parking to guests."),
    "phone": ("What is the phone number of {name}?", "You can call {name} on 01223 000000."),
    "wifi": ("Does {name} have free wifi?", "Yes, free wifi is available at {name}."),
}


def _slug(name: str) -> str:
    return name.lower().replace(" ", "-")


def faq_articles() -> list[dict[str, str]]:
    return [
        {
            "id": f"{_slug(name)}/{attribute}",
            "title": title.format(name=name),
            "text": text.format(name=name),
        }
        for name in HOTELS
        for attribute, (title, text) in ATTRIBUTES.items()
    ]


@pytest.fixture
def faq(db, django_capture_on_commit_callbacks):
    source = source_get_or_create(name="hotels")
    lines = "\n".join(json.dumps(a) for a in faq_articles())
    # On commit, ingestion tells every process that the titles changed (title statistics).
    with django_capture_on_commit_callbacks(execute=True):
        documents_ingest(source=source, items=parse_jsonl(lines))
    return source


CONVERSATION = [
    Turn(CUSTOMER, "Hi there! I need a guesthouse in the north for two nights."),
    Turn(AGENT, "How about the Acorn Guest House? Is there anything else I can help you with?"),
    Turn(CUSTOMER, "Sounds lovely. Do they have free parking?"),
]


# --- the query builder --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi there!", ""),
        ("Thanks so much. Have a nice day!", ""),
        ("Thanks, that helps.", ""),
        ("That was really helpful, thank you!", ""),
        ("Is there anything else I can help you with today?", ""),
        ("You're welcome! Thank you for contacting us.", ""),
        ("Hello! Do they have free parking?", "Do they have free parking?"),
        ("Thanks. What is the phone number?", "What is the phone number?"),
        ("Order 12345 never arrived.", "Order 12345 never arrived."),
    ],
)
def test_clean_drops_greetings_thanks_and_boilerplate(text, expected):
    assert clean(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi, this is Pierre Tanaka. How do I delete my account?", "How do I delete my account?"),
        ("My name is Jo. The router keeps dropping wifi.", "The router keeps dropping wifi."),
        ("How do I export my data? Thanks, Maria", "How do I export my data?"),
        ("Can I pay by card? Kind regards, Jo Smith", "Can I pay by card?"),
        ("Can I change it? You can reach me at jo.smith@example.com", "Can I change it?"),
        ("Is the shop open? Please call me on +44 20 7946 0958.", "Is the shop open?"),
        ("Where is my parcel?\n\nSent from my iPhone", "Where is my parcel?"),
        ("Where is my parcel?\n-- \nJo Smith\nAcme Ltd | jo@acme.example", "Where is my parcel?"),
        # what is not an introduction or a signature stays
        ("Hi, this is not working.", "Hi, this is not working."),
        ("I'm locked out.", "I'm locked out."),
        ("Regards, the printer is still broken", "Regards, the printer is still broken"),
        ("Best way to reset a password?", "Best way to reset a password?"),
    ],
)
def test_clean_drops_introductions_contact_details_and_signatures(text, expected):
    """A customer's own name, address or phone number is no article's word; they dilute the
    query (StackFAQ questions wrapped in them: docs/benchmarks.md)."""
    assert clean(text) == expected


def test_the_last_customer_turn_is_the_focus_and_earlier_turns_are_weighted_context():
    query = build_query(CONVERSATION, context_weight=0.5, agent_weight=0.6, decay=0.7)
    assert query.focus == "Do they have free parking?"  # "Sounds lovely." dropped
    assert [(c.speaker, c.text) for c in query.context] == [
        (AGENT, "How about the Acorn Guest House?"),  # boilerplate dropped
        (CUSTOMER, "I need a guesthouse in the north for two nights."),  # greeting dropped
    ]
    agent, customer = query.context
    assert agent.weight == pytest.approx(0.6)  # next to the focus, agent weight
    assert customer.weight == pytest.approx(0.7)  # one turn further back: decay
    assert query.parts[0].weight == 1.0  # the focus weighs most


def test_a_trailing_thank_you_does_not_become_the_question():
    turns = [*CONVERSATION, Turn(AGENT, "Yes, they do."), Turn(CUSTOMER, "Great, thanks!")]
    assert build_query(turns).focus == "Do they have free parking?"


def test_a_message_sent_twice_is_the_question_not_its_context():
    """Its words are the question's own, not names mentioned earlier."""
    turns = [
        Turn(CUSTOMER, "I need to cancel  my Order"),
        Turn(CUSTOMER, "i need to cancel my order"),
    ]
    query = build_query(turns)
    assert query.focus == "i need to cancel my order"
    assert query.context == ()


def test_names_and_codes_named_earlier_are_carried_into_the_one_string_form():
    query = build_query(
        [
            Turn(CUSTOMER, "My order A-10042 was for the Aeron Chair."),
            Turn(AGENT, "Thanks, I found it."),
            Turn(CUSTOMER, "when will it arrive?"),
        ]
    )
    assert query.focus == "when will it arrive?"
    assert query.text == "when will it arrive? A-10042 Aeron Chair"
    assert build_query("Hello! how do I reset my password?").text == ("how do I reset my password?")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "turns: a non-empty list"),
        ([{"speaker": "bot", "text": "x"}], "turns[1].speaker: one of customer, agent"),
        ([{"speaker": "customer", "text": 3}], "turns[1].text: a string is required"),
        ([{"speaker": "agent", "text": "hello"}], "turns: at least one customer turn"),
    ],
)
def test_parse_turns_validates(raw, message):
    with pytest.raises(InvalidInput) as exc:
        parse_turns(raw)
    assert exc.value.message.startswith(message)


# --- retrieval ----------------------------------------------------------------------------


def test_the_entity_named_turns_earlier_decides_among_same_question_articles(faq):
    results = search(CONVERSATION, k=3)
    assert results[0].document_external_id == "acorn-guest-house/parking"
    # The last turn alone cannot tell the hotels apart: every parking article ties.
    alone = search(CONVERSATION[-1].text, k=4)
    assert {r.document_external_id for r in alone} == {f"{_slug(h)}/parking" for h in HOTELS}


def test_names_are_carried_from_turns_too_far_back_to_be_embedded(faq, settings, monkeypatch):
    from knowledge import retrieval

    turns = [
        Turn(CUSTOMER, "I need a guesthouse in the north."),
        Turn(AGENT, "How about the Acorn Guest House?"),
        Turn(CUSTOMER, "Is it expensive?"),
        Turn(AGENT, "It is in the moderate price range."),
        Turn(CUSTOMER, "Is it far from the station?"),
        Turn(AGENT, "About ten minutes by taxi."),
        Turn(CUSTOMER, "Do they have free parking?"),
    ]
    settings.KB_CONTEXT_EMBED_TURNS = 2
    encoded: list[str] = []
    embedder = retrieval.get_query_embedder()

    class Recording:
        name = embedder.name
        dimensions = embedder.dimensions

        def encode(self, texts):
            encoded.extend(texts)
            return embedder.encode(texts)

    monkeypatch.setattr(retrieval, "get_query_embedder", lambda: Recording())
    monkeypatch.setattr(retrieval, "_TURN_VECTORS", BoundedLRU(4096))
    results = search(turns, k=3)
    # The focus and the two nearest turns were embedded, not the four before them ...
    assert sorted(encoded) == sorted(
        ["Do they have free parking?", "About ten minutes by taxi.", "Is it far from the station?"]
    )
    # ... yet the hotel named five turns back still decides among the parking articles.
    assert results[0].document_external_id == "acorn-guest-house/parking"


def test_the_last_turn_outweighs_the_context(faq):
    turns = [
        Turn(CUSTOMER, "What is the phone number of Kirkwood House?"),
        Turn(AGENT, "You can call them on 01223 000000."),
        Turn(CUSTOMER, "And do they have free wifi?"),
    ]
    assert search(turns, k=1)[0].document_external_id == "kirkwood-house/wifi"


# --- kb_eval ----------------------------------------------------------------------------


def test_kb_eval_reads_turns_and_strings(tmp_path, faq):
    path = tmp_path / "queries.jsonl"
    rows = [
        {
            "turns": [{"speaker": t.speaker, "text": t.text} for t in CONVERSATION],
            "relevant": ["acorn-guest-house/parking"],
        },
        {"query": "Does Hamilton Lodge have wifi?", "relevant": ["hamilton-lodge/wifi"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    queries = load_queries(path)
    assert queries[0]["query"] == CONVERSATION
    assert queries[1]["query"] == "Does Hamilton Lodge have wifi?"
    report = evaluate(queries, source="hotels")
    assert (report["n"], report["recall_at_1"], report["mrr_at_10"]) == (2, 1.0, 1.0)
    out = StringIO()
    call_command("kb_eval", "--queries", str(path), "--source", "hotels", stdout=out)
    assert out.getvalue().startswith("n=2 recall@1=1.000 recall@5=1.000 mrr@10=1.000")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"relevant": ["a"]}, "needs a 'query' string or a 'turns' list"),
        ({"turns": [{"speaker": "customer"}], "relevant": ["a"]}, "turns[1].text"),
        ({"query": "x"}, "needs a 'relevant' list (empty: the knowledge base has no answer)"),
        ({"query": "x", "relevant": "a"}, "needs a 'relevant' list"),
    ],
)
def test_kb_eval_rejects_malformed_rows(tmp_path, row, message, db):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(CommandError) as exc:
        call_command("kb_eval", "--queries", str(path))
    assert str(exc.value) == f"{path}:1: " + message or message in str(exc.value)
    assert message in str(exc.value)


def test_kb_eval_leaves_unanswerable_questions_out_of_retrieval_figures(tmp_path, faq):
    """``"relevant": []``: the knowledge base has no answer (``--drafts`` counts how often
    such a question still gets a draft); recall and MRR are over the others."""
    path = tmp_path / "queries.jsonl"
    rows = [
        {"query": "Does Hamilton Lodge have wifi?", "relevant": ["hamilton-lodge/wifi"]},
        {"query": "Which football team won the league in 1998?", "relevant": []},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = evaluate(load_queries(path), source="hotels")
    assert (report["n"], report["unanswerable"], report["recall_at_1"]) == (1, 1, 1.0)
    path.write_text(json.dumps(rows[1]) + "\n")
    with pytest.raises(CommandError, match="no query names a relevant document"):
        call_command("kb_eval", "--queries", str(path))


# --- ticket suggestions --------------------------------------------------------------------


@pytest.fixture
def hotel_ticket(customer, agent):
    ticket = ticket_create(
        customer=customer,
        subject="Question",
        body="Hello, I am looking for a place to stay in the north.",
    )
    message_add(ticket=ticket, body="How about the Acorn Guest House?", author_user=agent)
    message_add(ticket=ticket, body="Internal: upsell breakfast", kind="internal_note")
    message_add(ticket=ticket, body="Sounds good.", direction="inbound", author_customer=customer)
    message_add(ticket=ticket, body="Thanks! Do they have free parking?", direction="inbound")
    return ticket


def test_ticket_conversation_uses_the_recent_public_messages_in_order(hotel_ticket):
    assert ticket_conversation(hotel_ticket) == [
        Turn(CUSTOMER, "Question"),
        Turn(CUSTOMER, "Hello, I am looking for a place to stay in the north."),
        Turn(AGENT, "How about the Acorn Guest House?"),
        Turn(CUSTOMER, "Sounds good."),
        Turn(CUSTOMER, "Thanks! Do they have free parking?"),
    ]


def test_a_subject_the_first_message_repeats_is_not_a_turn_of_its_own(customer):
    """Case and spacing aside (e-mail clients and customers vary both)."""
    ticket = ticket_create(
        customer=customer, subject="Cancel  my Order", body="cancel my order please, it is late"
    )
    assert ticket_conversation(ticket) == [Turn(CUSTOMER, "cancel my order please, it is late")]


def test_an_ivr_escalation_suggests_nothing_until_the_customer_writes(
    agent, customer, faq, settings
):
    """The subject of a ticket the IVR opened ("IVR failure: max retries (…)") is the
    system's words: it was the customer's question of the suggestions (and of drafts).
    Now the query is empty, the panel says no article matches and no draft is offered;
    the customer's message, once it arrives, is the question."""
    from django.template.loader import render_to_string

    from calls.models import Call
    from calls.services.ivr import escalation_create
    from knowledge.draft_services import reply_draft_create
    from knowledge.selectors import ticket_suggestions

    settings.KB_SUGGESTION_MIN_SCORE = 0.0  # any article matched to anything would show
    call = Call.objects.create(contact_id="ivr-kb-1", customer=customer, customer_phone="+1")
    ticket = escalation_create(call=call, kind="max_retries", reason="3 failed attempts").ticket
    assert ticket is not None
    assert ticket.subject.startswith("IVR failure: max retries")

    assert ticket_conversation(ticket) == []
    assert ticket_suggestions(ticket) == []
    request = RequestFactory().get("/")
    request.user = agent
    context = suggestions_panel_context(request, ticket)
    assert context is not None
    assert context["suggestions"] == []
    html = render_to_string("knowledge/suggestions_panel.html", context, request=request)
    assert "No knowledge-base article matches this ticket." in html
    offer = reply_draft_create(ticket=ticket, user=agent)
    assert (offer.draft, offer.gate.reason) == (None, "no_question")

    message_add(
        ticket=ticket,
        body="Does Kirkwood House have free parking?",
        direction="inbound",
        author_customer=customer,
    )
    ticket.refresh_from_db()
    assert ticket_conversation(ticket) == [Turn(CUSTOMER, "Does Kirkwood House have free parking?")]
    top = ticket_suggestions(ticket)[0]
    assert top.document_external_id == "kirkwood-house/parking"


def test_suggestions_api_builds_its_query_from_the_recent_messages(
    agent_client, faq, hotel_ticket, settings
):
    settings.KB_SUGGESTION_MIN_SCORE = 0.0
    response = agent_client.get(f"/api/tickets/{hotel_ticket.pk}/suggestions")
    assert response.status_code == 200
    top = response.json()["suggestions"][0]
    # The hotel was named by the agent two messages before the question.
    assert top["document"]["external_id"] == "acorn-guest-house/parking"


def test_suggestions_panel_builds_its_query_from_the_recent_messages(
    agent, faq, hotel_ticket, settings
):
    settings.KB_SUGGESTION_MIN_SCORE = 0.0
    request = RequestFactory().get("/")
    request.user = agent
    context = suggestions_panel_context(request, hotel_ticket)
    assert context is not None
    assert context["suggestions"][0]["document"]["external_id"] == "acorn-guest-house/parking"


def test_the_panel_shows_how_well_each_article_fits_and_when_a_name_lifted_it(
    agent, customer, faq, hotel_ticket, settings
):
    """The number beside a suggestion is its fit (what the suggestion and draft floors
    read), not the score the names lifted; "named earlier" says why it ranks first."""
    from django.template.loader import render_to_string

    settings.KB_SUGGESTION_MIN_SCORE = 0.0
    request = RequestFactory().get("/")
    request.user = agent
    context = suggestions_panel_context(request, hotel_ticket)
    assert context is not None
    top = context["suggestions"][0]
    assert top["named_score"] >= 0.05
    assert top["fit"] == pytest.approx(top["score"] - top["named_score"], abs=1e-5)
    html = render_to_string("knowledge/suggestions_panel.html", context, request=request)
    items = html.split('<li class="kb-suggestion"')[1:]
    assert len(items) == len(context["suggestions"])
    assert f"{top['fit']:.2f}</span>" in items[0]
    assert f"{top['score']:.2f}</span>" not in items[0]
    assert "named earlier" in items[0]
    # The name in the question itself: nothing named earlier, the fit is the score.
    asked = ticket_create(customer=customer, subject="Does Kirkwood House have free parking?")
    context = suggestions_panel_context(request, asked)
    assert context is not None
    assert context["suggestions"]
    assert all(s["named_score"] == 0 for s in context["suggestions"])
    html = render_to_string("knowledge/suggestions_panel.html", context, request=request)
    assert "named earlier" not in html


def test_other_backends_get_the_one_string_form(monkeypatch):
    from knowledge import selectors

    calls = []

    class FakeBackend:
        name = "bedrock"
        sends_text = True

        def search(self, query, *, k, sources=None, tags=None, redact_names=()):
            calls.append((query, k))
            return []

    monkeypatch.setattr(selectors, "get_backend", lambda: FakeBackend())
    turns = [
        Turn(CUSTOMER, "Hi! My order A-10042 has not arrived."),
        Turn(AGENT, "Thank you for contacting us. Let me check that for you."),
        Turn(CUSTOMER, "Thanks. When will it arrive?"),
    ]
    assert selectors.kb_search_conversation(turns, k=2) == []
    assert calls == [("When will it arrive? A-10042", 2)]


def test_a_ticket_turn_is_embedded_once_per_process(monkeypatch, settings):
    import numpy as np

    from knowledge import retrieval

    encoded: list[str] = []

    class CountingEmbedder:
        name = "counting"
        dimensions = 4

        def encode(self, texts):
            encoded.extend(texts)
            return np.eye(4, dtype=np.float32)[[len(t) % 4 for t in texts]]

    monkeypatch.setattr(retrieval, "get_query_embedder", lambda: CountingEmbedder())
    monkeypatch.setattr(retrieval, "_TURN_VECTORS", BoundedLRU(4096))
    settings.KB_CONTEXT_EMBED_TURNS = 0  # every turn embedded
    first = build_query(CONVERSATION)
    retrieval.conversation_vector(first)
    assert sorted(encoded) == sorted(p.text for p in first.parts)
    encoded.clear()
    later = build_query(
        [*CONVERSATION, Turn(AGENT, "Yes, parking is free."), Turn(CUSTOMER, "And wifi?")]
    )
    retrieval.conversation_vector(later)
    assert sorted(encoded) == ["And wifi?", "Yes, parking is free."]  # the rest was cached


def _ingest_untitled(source_name: str, hotels: list[str], capture) -> None:
    """The FAQ with titles that name no hotel ("Parking", the same for every hotel)."""
    articles = [
        {**article, "title": article["id"].split("/")[1].capitalize()}
        for article in faq_articles()
        if any(article["id"].startswith(_slug(hotel) + "/") for hotel in hotels)
    ]
    with capture(execute=True):
        documents_ingest(
            source=source_get_or_create(name=source_name),
            items=parse_jsonl("\n".join(map(json.dumps, articles))),
        )


def test_a_name_only_the_articles_bodies_hold_still_decides(db, django_capture_on_commit_callbacks):
    """Titles that name no hotel: the name the agent said turns earlier is found in the
    articles' text instead."""
    _ingest_untitled("hotels-untitled", HOTELS, django_capture_on_commit_callbacks)
    results = search(CONVERSATION, k=3, sources=["hotels-untitled"])
    assert results[0].document_external_id == "acorn-guest-house/parking"
    # Without the context the parking articles tie: the name decided, not the question.
    alone = search(CONVERSATION[-1].text, k=4, sources=["hotels-untitled"])
    assert {r.document_external_id for r in alone} == {f"{_slug(h)}/parking" for h in HOTELS}


STEPS = (
    "Log in, open settings, choose billing, download statements, enter the postcode, verify "
    "your identity, confirm the email, upload a receipt, select a currency, print the voucher, "
    "review the history and export a spreadsheet."
)


def test_a_turn_that_describes_rather_than_names_carries_no_names(
    db, django_capture_on_commit_callbacks
):
    """An agent's step-by-step reply holds many words few articles hold: it describes, it
    does not name, so none of its words count as names (``ENTITY_MAX_PER_TURN``), even the
    hotel it also mentions; a turn that names the hotel alone still does."""
    from knowledge import retrieval

    _ingest_untitled("hotels-untitled", HOTELS, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        documents_ingest(
            source=source_get_or_create(name="hotels-untitled"),
            items=parse_jsonl(json.dumps({"id": "guide", "title": "Guide", "text": STEPS})),
        )
    naming = retrieval.conversation_query(CONVERSATION)
    named = retrieval.rank_documents(naming, k=3, sources=["hotels-untitled"]).doc_entity
    assert {Document.objects.get(pk=pk).external_id for pk in named} >= {
        "acorn-guest-house/parking"
    }
    rambling = [
        CONVERSATION[0],
        Turn(AGENT, f"How about the Acorn Guest House? To book: {STEPS}"),
        CONVERSATION[-1],
    ]
    with retrieval.connection.cursor() as cursor:
        held = retrieval.entity_terms(cursor, retrieval.conversation_query(rambling))
    assert "acorn" not in held.terms
    assert not {"voucher", "spreadsheet", "currenc"} & set(held.terms)
    query = retrieval.conversation_query(rambling)
    assert retrieval.rank_documents(query, k=3, sources=["hotels-untitled"]).doc_entity == {}


def test_a_name_other_sources_titles_hold_is_found_in_the_filtered_sources_text(
    faq, django_capture_on_commit_callbacks, settings
):
    """The titled FAQ ("Does Acorn Guest House have free parking?") is one source, the
    same articles under generic titles another: a search filtered to the second finds
    the name in its passages, since none of the titles searched holds it."""
    # 24 articles, six of them the Acorn's: "rare" has to allow a quarter here.
    settings.KB_ENTITY_MAX_DF = 0.25
    _ingest_untitled("hotels-untitled", HOTELS, django_capture_on_commit_callbacks)
    results = search(CONVERSATION, k=3, sources=["hotels-untitled"])
    assert results[0].document_external_id == "acorn-guest-house/parking"
    assert results[0].source == "hotels-untitled"


def test_a_name_held_by_another_sources_passages_stays_out_of_a_filtered_search(
    db, django_capture_on_commit_callbacks
):
    """Only the Acorn's articles name the Acorn, and they are in another source: a search
    filtered to the first source must not return them (nor fail)."""
    _ingest_untitled("untitled-a", HOTELS[1:], django_capture_on_commit_callbacks)
    _ingest_untitled("untitled-b", HOTELS[:1], django_capture_on_commit_callbacks)
    results = search(CONVERSATION, k=4, sources=["untitled-a"])
    assert results
    assert all(r.source == "untitled-a" for r in results)
    assert search(CONVERSATION, k=1)[0].document_external_id == "acorn-guest-house/parking"


def test_a_name_lifts_its_articles_but_does_not_make_them_fit_another_question(
    db, django_capture_on_commit_callbacks, settings
):
    _ingest_untitled("hotels-untitled", HOTELS, django_capture_on_commit_callbacks)
    turns = [
        Turn(AGENT, "How about the Acorn Guest House?"),
        Turn(CUSTOMER, "Which football team won the league in 1998?"),
    ]
    best = search(turns, k=3, sources=["hotels-untitled"])[0]
    assert best.document_external_id.startswith("acorn-guest-house/")
    assert best.named_score > 0
    assert best.fit == pytest.approx(best.score - best.named_score)
    assert best.fit < settings.KB_SUGGESTION_MIN_SCORE < best.score


def test_passages_named_after_a_search_are_read_again_once_the_knowledge_base_changes(
    db, django_capture_on_commit_callbacks
):
    """A process remembers which passages hold a name; an ingestion (which tells every
    process the knowledge base changed) makes it read them again."""
    _ingest_untitled("untitled-a", HOTELS[1:], django_capture_on_commit_callbacks)
    before = search(CONVERSATION, k=1, sources=["untitled-a"])[0]
    assert not before.document_external_id.startswith("acorn-guest-house/")
    _ingest_untitled("untitled-a-more", HOTELS[:1], django_capture_on_commit_callbacks)
    after = search(CONVERSATION, k=1)[0]
    assert after.document_external_id == "acorn-guest-house/parking"


def test_a_word_many_passages_hold_is_not_a_name(
    db, django_capture_on_commit_callbacks, monkeypatch
):
    """ "Acorn" in more passages than ``BODY_NAME_MAX_CHUNKS`` is an ordinary word there:
    it no longer scores the Acorn's articles, and is not read again for every search."""
    from knowledge import retrieval

    _ingest_untitled("hotels-untitled", HOTELS, django_capture_on_commit_callbacks)
    query = retrieval.conversation_query(CONVERSATION)
    named = retrieval.rank_documents(query, k=3, sources=["hotels-untitled"]).doc_entity
    assert named
    assert all(
        Document.objects.get(pk=pk).external_id.startswith("acorn-guest-house/") for pk in named
    )
    monkeypatch.setattr(retrieval, "BODY_NAME_MAX_CHUNKS", 2)  # the Acorn has 3 articles
    retrieval.name_stats.forget_passages()
    assert retrieval.rank_documents(query, k=3, sources=["hotels-untitled"]).doc_entity == {}
    # (the cursor is opened inside the capture, or its queries would go unseen)
    with (
        CaptureQueriesContext(retrieval.connection) as seen,
        retrieval.connection.cursor() as cursor,
    ):
        assert retrieval.name_stats.passages(cursor, ["acorn"]) == {}
        assert retrieval.name_stats.passages(cursor, ["kirkwood"]) == {}  # read: common too
    assert len(seen.captured_queries) == 1  # "acorn" remembered as common: not read again


def test_the_passages_a_process_remembers_stay_bounded(
    db, django_capture_on_commit_callbacks, monkeypatch
):
    """Whatever words customers send, the passages remembered for names are bounded in
    number (oldest forgotten first), not only the words."""
    from knowledge import retrieval

    _ingest_untitled("hotels-untitled", HOTELS, django_capture_on_commit_callbacks)
    monkeypatch.setattr(retrieval, "BODY_NAME_ROWS_CACHED", 4)
    stats = retrieval.name_stats
    with CaptureQueriesContext(retrieval.connection) as seen, retrieval.connection.cursor() as c:
        stats.get(c)
        assert len(stats.passages(c, ["acorn"])["acorn"]) == 3
        assert len(stats.passages(c, ["kirkwood"])["kirkwood"]) == 3
        # both found, only the newest kept: 3 passages, not 6
        assert "kirkwood" in stats._passages
        assert "acorn" not in stats._passages
        assert stats._passages.total_weight == 3
        before = len(seen.captured_queries)
        assert len(stats.passages(c, ["kirkwood"])["kirkwood"]) == 3  # remembered
        assert len(seen.captured_queries) == before
        assert len(stats.passages(c, ["acorn"])["acorn"]) == 3  # forgotten: read again
        assert len(seen.captured_queries) == before + 1


def test_ingestion_and_deletion_count_the_common_words(
    db, django_capture_on_commit_callbacks, monkeypatch
):
    """After an ingestion (and a deletion) the words more than ``BODY_NAME_MAX_CHUNKS``
    passages hold are counted again into ``CommonLexeme``, with how many passages."""
    from knowledge import retrieval, services
    from knowledge.models import CommonLexeme

    get_redis().delete(services.LEXEME_COUNT_FLAG)  # no count pending
    monkeypatch.setattr(retrieval, "BODY_NAME_MAX_CHUNKS", 2)  # each hotel has 3 articles
    _ingest_untitled("hotels-untitled", HOTELS, django_capture_on_commit_callbacks)
    counted = dict(CommonLexeme.objects.values_list("lexeme", "passages"))
    assert counted["acorn"] == 3
    assert counted["kirkwood"] == 3
    assert counted["park"] == len(HOTELS)  # "parking": every hotel's parking article
    source = KnowledgeSource.objects.get(name="hotels-untitled")
    with django_capture_on_commit_callbacks(execute=True):
        assert document_delete(source=source, external_id="acorn-guest-house/parking")
    counted = dict(CommonLexeme.objects.values_list("lexeme", "passages"))
    assert "acorn" not in counted  # two passages left: a name again
    assert counted["park"] == len(HOTELS) - 1


def test_words_the_count_lists_are_not_read_for_names(db, django_capture_on_commit_callbacks):
    """A word ``CommonLexeme`` lists as held by too many passages is not read: "acorn" is
    in three passages here, but the (deliberately wrong) count says 500, so it names
    nothing, and the conversation's other names still are read."""
    from knowledge import retrieval
    from knowledge.models import CommonLexeme

    _ingest_untitled("hotels-untitled", HOTELS, django_capture_on_commit_callbacks)
    CommonLexeme.objects.create(lexeme="acorn", passages=500)
    retrieval.name_stats.forget_passages()
    with retrieval.connection.cursor() as cursor:
        found = retrieval.name_stats.passages(cursor, ["acorn", "kirkwood"])
    assert set(found) == {"kirkwood"}
    assert len(found["kirkwood"]) == 3
    query = retrieval.conversation_query(CONVERSATION)
    assert retrieval.rank_documents(query, k=3, sources=["hotels-untitled"]).doc_entity == {}
    CommonLexeme.objects.all().delete()
    retrieval.name_stats.forget_passages()
    assert retrieval.rank_documents(query, k=3, sources=["hotels-untitled"]).doc_entity


def test_a_burst_of_changes_enqueues_one_count(db, monkeypatch):
    """The count is enqueued once while one is pending (a Redis flag the count clears when
    it starts); without Redis the change still succeeds (the hourly count follows)."""
    from knowledge import services, tasks

    enqueued: list[int] = []
    monkeypatch.setattr(tasks.kb_common_lexemes_count_task, "delay", lambda: enqueued.append(1))
    get_redis().delete(services.LEXEME_COUNT_FLAG)
    services.common_lexemes_count_wake()
    services.common_lexemes_count_wake()
    assert enqueued == [1]
    assert services.common_lexemes_count_run() == 0  # nothing ingested: no common word
    services.common_lexemes_count_wake()
    assert enqueued == [1, 1]

    def down() -> None:
        raise ConnectionError("redis down")

    redis = get_redis()
    monkeypatch.setattr("support.redis_client.get_redis", down)
    services.common_lexemes_count_wake()  # logged, not raised
    assert enqueued == [1, 1]
    redis.delete(services.LEXEME_COUNT_FLAG)  # the enqueued count never ran here


@pytest.mark.parametrize(
    "lexeme", ["x.com/a'b", "h.com/%5c'", "a\\b", "'", "\\", "o'neil\\'", "plain"]
)
def test_any_lexeme_is_one_tsquery_term(db, lexeme):
    """Names are looked up with lexemes of customers' text: quotes and backslashes stay
    inside the term (no syntax error, no operator smuggled in)."""
    from knowledge.retrieval import _tsquery_any, connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::tsquery::text", [_tsquery_any([lexeme, "other"])])
        terms = cursor.fetchone()[0]
    assert terms.count(" | ") == 1
    assert terms.startswith("'")


def test_a_customers_hostile_text_gets_suggestions_not_an_error(
    agent_client, faq, customer, settings
):
    settings.KB_SUGGESTION_MIN_SCORE = 0.0
    ticket = ticket_create(customer=customer, subject="x.com/a'b \\\\server\\share", body="hi")
    hostile = (
        "See http://h.com/%5C' and x.com/a'b or o'neil\\' & (acorn | !kirkwood) <-> :* "
        + " ".join(f"word{i}x" for i in range(400))
    )
    message_add(ticket=ticket, body=hostile, direction="inbound", author_customer=customer)
    message_add(ticket=ticket, body="Do they have free parking?", direction="inbound")
    response = agent_client.get(f"/api/tickets/{ticket.pk}/suggestions")
    assert response.status_code == 200
    assert response.json()["suggestions"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Order 12345 never arrived", ["12345"]),
        ("SKU AB-1234-X", ["AB-1234-X"]),
        ("ref #A-99812 from 2024-12-03", ["A-99812", "2024-12-03"]),
        ("abc1-- and -xyz9", ["abc1", "xyz9"]),
        ("postcode cb2 1tn", []),  # each part under four characters
        ("no codes here", []),
    ],
)
def test_codes_carried_from_the_context(text, expected):
    """Runs of letters, digits and hyphens, four or more, with a digit (order numbers,
    SKUs); each run read once, whatever its length."""
    assert entity_phrases([text]) == expected
