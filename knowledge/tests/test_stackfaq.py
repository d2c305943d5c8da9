"""The fused ranking is at least as good as the better of full text alone and vectors alone
on StackFAQ (every other paraphrase as a query, to keep the test near 20 s). Queries go
through the conversation query builder as single-turn conversations, as ``kb_eval`` and
the API send them."""

from __future__ import annotations

import pytest
from django.db import connection

from bench.stackfaq_prepare import convert, find_xml
from knowledge.embeddings import get_embedder
from knowledge.models import Document
from knowledge.parsing import ParsedDocument, parse_jsonl
from knowledge.retrieval import conversation_query, rank_documents
from knowledge.services import documents_ingest, source_get_or_create

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def _metrics(rankings: list[list[str]], relevant: list[str]) -> tuple[float, float]:
    hits5 = rr = 0.0
    for ranked, wanted in zip(rankings, relevant, strict=True):
        if wanted in ranked:
            rank = ranked.index(wanted) + 1
            hits5 += rank <= 5
            rr += 1 / rank
    return hits5 / len(relevant), rr / len(relevant)


def test_fusion_beats_each_retriever_alone():
    xml = find_xml()
    if xml is None:
        pytest.skip("StackFAQ data not found (set STACKFAQ_XML)")
    import json

    docs, queries = convert(xml)
    assert (len(docs), len(queries)) == (125, 1249)
    source = source_get_or_create(name="stackfaq")
    items: list[ParsedDocument] = list(parse_jsonl("\n".join(json.dumps(d) for d in docs)))
    counts = documents_ingest(source=source, items=items)
    assert counts.created == 125
    sample = queries[::2]
    conversations = [conversation_query(q["query"]) for q in sample]
    vectors = get_embedder().encode([c.focus for c in conversations])
    external = dict(Document.objects.values_list("id", "external_id"))
    results: dict[str, list[list[str]]] = {"text": [], "vector": [], "hybrid": []}
    with connection.cursor() as cursor:
        for conversation, vector in zip(conversations, vectors, strict=True):
            for mode in results:
                ranking = rank_documents(
                    conversation, k=10, mode=mode, query_vector=vector, cursor=cursor
                )
                results[mode].append([external[d] for d, _ in ranking.ranked])
    relevant = [q["relevant"][0] for q in sample]
    text, vector, hybrid = (_metrics(results[m], relevant) for m in ("text", "vector", "hybrid"))
    print(f"recall@5 / MRR@10  text {text}  vector {vector}  hybrid {hybrid}")
    assert hybrid[0] >= max(text[0], vector[0])
    assert hybrid[1] >= max(text[1], vector[1])
    assert hybrid[0] >= 0.99
    assert hybrid[1] >= 0.95
