"""The fused ranking is at least as good as the better of full text alone and vectors alone
on StackFAQ (every other paraphrase as a query, to keep the test near 20 s). Queries go
through the conversation query builder as single-turn conversations, as ``kb_eval`` and
the API send them.

The fusion's full-text weight (``KB_TEXT_WEIGHT`` 0.02) was tuned on float32 passages
(``minilm``, 256 tokens): there fusion beats each retriever on both figures. With the
default int8 passages at 128 tokens it keeps recall@5 and the StackFAQ targets, but its
MRR@10 is level with the vectors alone, ahead or behind by a hair depending on the CPU:
0.0016 below on this sample on the machine it was measured on first (0.9755 against
0.9771), 0.0002 above on an AMD EPYC with AVX2 only (0.9811 against 0.9809; int8 matrix
products are computed differently without VNNI). The test asks for no more than
``MRR_TOLERANCE`` below (it was a strict xfail on the sign, which the CPU decides). Retuned
on the int8 vectors (docs/benchmarks.md, "Retuned on today's vectors"), no weight did
better on the held-out halves, so 0.02 stays; a future retune moves the reply-draft gate's
scores too (recalibrate it then)."""

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

MRR_TOLERANCE = 0.005


def _metrics(rankings: list[list[str]], relevant: list[str]) -> tuple[float, float]:
    hits5 = rr = 0.0
    for ranked, wanted in zip(rankings, relevant, strict=True):
        if wanted in ranked:
            rank = ranked.index(wanted) + 1
            hits5 += rank <= 5
            rr += 1 / rank
    return hits5 / len(relevant), rr / len(relevant)


Figures = tuple[float, float]


def _rankings(settings) -> tuple[Figures, Figures, Figures]:
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
    return text, vector, hybrid


def test_fusion_beats_each_retriever_alone(settings):
    # float32 passages, as the fusion weights were tuned
    settings.KB_EMBEDDER, settings.KB_EMBED_MAX_TOKENS = "minilm", 256
    text, vector, hybrid = _rankings(settings)
    assert hybrid[0] >= max(text[0], vector[0])
    assert hybrid[1] >= max(text[1], vector[1])
    assert hybrid[0] >= 0.99
    assert hybrid[1] >= 0.95


_INT8: list[tuple[Figures, Figures, Figures]] = []


def _int8(settings) -> tuple[Figures, Figures, Figures]:
    # The defaults: int8 passages (fused graph) at 128 tokens, ingested and ranked once for
    # the two tests below (the figures are numbers: nothing of the database is kept).
    assert (settings.KB_EMBEDDER, settings.KB_EMBED_MAX_TOKENS) == ("minilm-int8-fused-ln", 128)
    if not _INT8:
        _INT8.append(_rankings(settings))
    return _INT8[0]


def test_default_int8_passages_meet_the_stackfaq_targets_and_fused_recall(settings):
    text, vector, hybrid = _int8(settings)
    assert hybrid[0] >= max(text[0], vector[0])
    assert hybrid[1] >= text[1]
    assert hybrid[0] >= 0.99
    assert hybrid[1] >= 0.95


def test_default_int8_passages_fused_mrr_within_half_a_point_of_vectors_alone(settings):
    # Which of the two is ahead depends on the CPU's int8 arithmetic (see the docstring).
    _, vector, hybrid = _int8(settings)
    assert hybrid[1] >= vector[1] - MRR_TOLERANCE
