from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from knowledge.backends.bedrock import BedrockBackend
from knowledge.embeddings import TitanEmbedder
from knowledge.services import job_create
from support.errors import PermanentError, RetryableError


@pytest.fixture
def bedrock_settings(aws_env: None, settings: Any) -> None:
    settings.KB_BACKEND = "bedrock"
    settings.KB_BEDROCK_KNOWLEDGE_BASE_ID = "KB12345678"
    settings.KB_BEDROCK_DATA_SOURCE_ID = "DS12345678"


def stubbed(service: str):
    client = boto3.client(service, region_name="us-east-1")  # type: ignore[call-overload]
    return client, Stubber(client)


def test_retrieve_maps_results(bedrock_settings):
    runtime, stub = stubbed("bedrock-agent-runtime")
    stub.add_response(
        "retrieve",
        {
            "retrievalResults": [
                {
                    "content": {"text": "Refunds are paid within 5 days.", "type": "TEXT"},
                    "location": {
                        "type": "S3",
                        "s3Location": {"uri": "s3://kb-docs/help/refunds.md"},
                    },
                    "score": 0.82,
                    "metadata": {"x-amz-bedrock-kb-source-uri": "s3://kb-docs/help/refunds.md"},
                },
                {
                    "content": {"text": "Exchanges are free."},
                    "location": {"type": "WEB", "webLocation": {"url": "https://help.test/x"}},
                    "score": 0.41,
                },
            ]
        },
        {
            "knowledgeBaseId": "KB12345678",
            "retrievalQuery": {"text": "refund time"},
            # Two documents wanted: three chunks asked per document (CHUNKS_PER_DOCUMENT).
            "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 6}},
        },
    )
    with stub:
        results = BedrockBackend(runtime_client=runtime).search("refund time", k=2)
        stub.assert_no_pending_responses()
    assert [r.as_dict() for r in results] == [
        {
            "document": {
                "id": None,
                "external_id": "s3://kb-docs/help/refunds.md",
                "title": "refunds.md",
                "url": "",
                "source": "bedrock",
            },
            "chunk": {
                "id": results[0].chunk_id,
                "heading_path": "",
                "text": "Refunds are paid within 5 days.",
            },
            "score": 0.82,
            "vector_score": 0.82,
            "text_score": None,
            "named_score": 0.0,
            "fit": 0.82,
            "snippet": "Refunds are paid within 5 days.",
        },
        {
            "document": {
                "id": None,
                "external_id": "https://help.test/x",
                "title": "x",
                "url": "https://help.test/x",
                "source": "bedrock",
            },
            "chunk": {"id": results[1].chunk_id, "heading_path": "", "text": "Exchanges are free."},
            "score": 0.41,
            "vector_score": 0.41,
            "text_score": None,
            "named_score": 0.0,
            "fit": 0.41,
            "snippet": "Exchanges are free.",
        },
    ]
    assert str(results[0].chunk_id).startswith("bedrock-")


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ThrottlingException", 429, RetryableError),
        ("InternalServerException", 500, RetryableError),
        ("ValidationException", 400, PermanentError),
        ("ResourceNotFoundException", 404, PermanentError),
    ],
)
def test_retrieve_errors_are_classified(bedrock_settings, code, status, error):
    runtime, stub = stubbed("bedrock-agent-runtime")
    stub.add_client_error("retrieve", service_error_code=code, http_status_code=status)
    with stub, pytest.raises(error):
        BedrockBackend(runtime_client=runtime).search("x", k=3)


@pytest.mark.django_db
def test_sync_starts_an_ingestion_job_and_records_its_id(bedrock_settings):
    agent, stub = stubbed("bedrock-agent")
    job = job_create(backend="bedrock")
    started = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    stub.add_response(
        "start_ingestion_job",
        {
            "ingestionJob": {
                "knowledgeBaseId": "KB12345678",
                "dataSourceId": "DS12345678",
                "ingestionJobId": "IJOB123456",
                "status": "STARTING",
                "startedAt": started,
                "updatedAt": started,
            }
        },
        {
            "knowledgeBaseId": "KB12345678",
            "dataSourceId": "DS12345678",
            "clientToken": f"support-kb-job-{job.pk:06d}-{job.created_at:%Y%m%d%H%M%S}",
            "description": f"support KB job {job.pk} (sync)",
        },
    )
    backend = BedrockBackend(agent_client=agent)
    with stub:
        backend.sync(job)
        job.refresh_from_db()
        assert (job.external_job_id, job.timings) == ("IJOB123456", {"bedrock_status": "STARTING"})
        stub.assert_no_pending_responses()


def test_sync_without_data_source_is_permanent(bedrock_settings, settings):
    settings.KB_BEDROCK_DATA_SOURCE_ID = ""
    with pytest.raises(PermanentError, match="KB_BEDROCK_DATA_SOURCE_ID"):
        BedrockBackend(agent_client=object()).sync(job=None)  # type: ignore[arg-type]


def test_titan_embeddings_are_padded_to_the_column(bedrock_settings):
    runtime, stub = stubbed("bedrock-runtime")
    vector = [0.0] * 256
    vector[0], vector[1] = 3.0, 4.0
    body = json.dumps({"embedding": vector, "inputTextTokenCount": 3}).encode()
    stub.add_response(
        "invoke_model",
        {"body": StreamingBody(io.BytesIO(body), len(body)), "contentType": "application/json"},
        {
            "modelId": "amazon.titan-embed-text-v2:0",
            "body": json.dumps({"inputText": "hello", "dimensions": 256, "normalize": True}),
            "contentType": "application/json",
            "accept": "application/json",
        },
    )
    with stub:
        out = TitanEmbedder(client=runtime).encode(["hello"])
    assert out.shape == (1, 384)
    assert out[0, :2].tolist() == pytest.approx([0.6, 0.8])
    assert float(abs(out[0, 2:]).sum()) == 0.0


PERSONAL = ("Zelda", "Quimby", "zelda.q@example.org", "555 0177", "Baker", "NW1 6XE")


@pytest.fixture
def zelda_ticket(db):
    from tickets import services as ticket_services
    from tickets.models import Customer

    customer = Customer.objects.create(
        name="Zelda Quimby", email="zelda.q@example.org", phone="+14155550177"
    )
    return ticket_services.ticket_create(
        customer=customer,
        subject="Refund to Zelda",
        body="Hi, Zelda Quimby here: please refund order 123456 to 12 Baker Street, London "
        "NW1 6XE; zelda.q@example.org or 415 555 0177.",
    )


def _captured(client: Any, operation: str) -> list[str]:
    sent: list[str] = []
    client.meta.events.register(
        f"before-parameter-build.{client.meta.service_model.endpoint_prefix}.{operation}",
        lambda params, **_kw: sent.append(json.dumps(params)),
    )
    return sent


def test_bedrock_kb_query_for_a_ticket_is_redacted(bedrock_settings, zelda_ticket, monkeypatch):
    from knowledge import selectors
    from knowledge.backends import bedrock

    runtime, stub = stubbed("bedrock-agent-runtime")
    sent = _captured(runtime, "Retrieve")
    stub.add_response("retrieve", {"retrievalResults": []})
    monkeypatch.setattr(bedrock, "_client", lambda service: runtime)
    with stub:
        assert selectors.ticket_suggestions(zelda_ticket) == []
    [body] = sent
    assert "refund order 123456" in body
    assert "[NAME]" in body
    assert "[ADDRESS]" in body
    assert "[EMAIL]" in body
    assert [p for p in PERSONAL if p.lower() in body.lower()] == []


def test_titan_embedding_of_a_ticket_query_is_redacted(
    bedrock_settings, settings, zelda_ticket, monkeypatch
):
    from knowledge import retrieval, selectors

    settings.KB_BACKEND = "local"
    runtime, stub = stubbed("bedrock-runtime")
    sent = _captured(runtime, "InvokeModel")
    body = json.dumps({"embedding": [0.1] * 256, "inputTextTokenCount": 3}).encode()
    for _ in range(6):  # one Titan call per conversation turn (subject, messages)
        stub.add_response(
            "invoke_model",
            {
                "body": StreamingBody(io.BytesIO(body), len(body)),
                "contentType": "application/json",
            },
        )
    monkeypatch.setattr(retrieval, "get_query_embedder", lambda: TitanEmbedder(client=runtime))
    with stub:
        assert selectors.ticket_suggestions(zelda_ticket) == []
    assert sent
    input_text = " ".join(json.loads(json.loads(p)["body"])["inputText"] for p in sent)
    assert "refund order 123456" in input_text
    assert "[NAME]" in input_text
    assert "[ADDRESS]" in input_text
    assert [p for p in PERSONAL if p.lower() in input_text.lower()] == []


@pytest.mark.parametrize(
    ("sources", "tags", "expected"),
    [
        (
            ["faq", "help-center"],
            ["billing", "refunds"],
            {
                "andAll": [
                    {"in": {"key": "source", "value": ["faq", "help-center"]}},
                    {
                        "orAll": [
                            {"listContains": {"key": "tags", "value": "billing"}},
                            {"listContains": {"key": "tags", "value": "refunds"}},
                        ]
                    },
                ]
            },
        ),
        (["faq"], None, {"equals": {"key": "source", "value": "faq"}}),
        (None, ["billing"], {"listContains": {"key": "tags", "value": "billing"}}),
        (
            ["faq"],
            ["a", "b", "c", "d", "e", "f"],
            {
                "andAll": [
                    {"equals": {"key": "source", "value": "faq"}},
                    {
                        "orAll": [
                            {
                                "orAll": [
                                    {"listContains": {"key": "tags", "value": t}} for t in "abcde"
                                ]
                            },
                            {"listContains": {"key": "tags", "value": "f"}},
                        ]
                    },
                ]
            },
        ),
    ],
    ids=["sources-and-tags", "one-source", "one-tag", "many-tags"],
)
def test_retrieve_filters_by_every_source_and_tag(bedrock_settings, sources, tags, expected):
    """The backend ignored ``sources`` and used only the first tag."""
    runtime, stub = stubbed("bedrock-agent-runtime")
    stub.add_response(
        "retrieve",
        {"retrievalResults": []},
        {
            "knowledgeBaseId": "KB12345678",
            "retrievalQuery": {"text": "refund time"},
            "retrievalConfiguration": {
                "vectorSearchConfiguration": {"numberOfResults": 9, "filter": expected}
            },
        },
    )
    with stub:
        BedrockBackend(runtime_client=runtime).search(
            "refund time", k=3, sources=sources, tags=tags
        )
        stub.assert_no_pending_responses()


def _chunk(uri: str, text: str, score: float) -> dict[str, Any]:
    """One ``retrieve`` result: a chunk of the S3 document ``uri``."""
    return {
        "content": {"text": text, "type": "TEXT"},
        "location": {"type": "S3", "s3Location": {"uri": uri}},
        "score": score,
        "metadata": {"x-amz-bedrock-kb-source-uri": uri},
    }


REFUNDS = "s3://kb-docs/help/refunds.md"
EXCHANGES = "s3://kb-docs/help/exchanges.md"


def _retrieve(chunks: list[dict[str, Any]], k: int) -> list[Any]:
    runtime, stub = stubbed("bedrock-agent-runtime")
    stub.add_response("retrieve", {"retrievalResults": chunks})
    with stub:
        results = BedrockBackend(runtime_client=runtime).search("refund time", k=k)
        stub.assert_no_pending_responses()
    return results


def test_two_chunks_of_one_article_are_one_result_not_a_rival(bedrock_settings):
    """Bedrock returns chunks: two of one article at 0.71 and 0.70 made the draft gate say
    "Several articles fit this ticket about equally" (its margin compared the article with
    itself) and showed the article twice among the suggestions. Grouped per document (the
    best chunk's score and text), the runner-up is the next *article*."""
    from knowledge.drafts import draft_gate

    results = _retrieve(
        [
            _chunk(REFUNDS, "Refunds reach your card within 5 days.", 0.71),
            _chunk(REFUNDS, "Refunds: the parcel must arrive first.", 0.70),
            _chunk(EXCHANGES, "Exchanges are free within 30 days.", 0.40),
        ],
        k=5,
    )
    assert [(r.document_external_id, r.score, r.text) for r in results] == [
        (REFUNDS, 0.71, "Refunds reach your card within 5 days."),
        (EXCHANGES, 0.40, "Exchanges are free within 30 days."),
    ]
    gate = draft_gate(results)
    assert (gate.offered, gate.reason, gate.margin) == (True, "", pytest.approx(0.31))


def test_a_draft_does_not_draw_on_one_article_twice(bedrock_settings):
    """The runner-up chunk of the best article cleared the score bar, so the draft's
    related articles (what a model drafter reads and cites) were the same article twice."""
    from knowledge.conversation import CUSTOMER, Turn
    from knowledge.drafts import draft_compose, draft_gate, related_articles

    results = _retrieve(
        [
            _chunk(REFUNDS, "Refunds reach your card within 5 days of the return.", 0.80),
            _chunk(REFUNDS, "A refund starts when the parcel arrives.", 0.70),
            _chunk(EXCHANGES, "An exchange is free within 30 days.", 0.60),
        ],
        k=5,
    )
    related = related_articles(results, draft_gate(results))
    assert [r.document_external_id for r in related] == [REFUNDS, EXCHANGES]
    draft = draft_compose(
        [Turn(CUSTOMER, "When does my refund reach my card?")], results, channel="email"
    )
    assert draft.offered
    assert draft.citations[0].external_id == REFUNDS


def test_results_are_grouped_by_document_before_k(bedrock_settings):
    """``k`` counts documents: chunks beyond a document's best do not crowd others out,
    which is why the backend asks Bedrock for more chunks than documents."""
    chunks = [_chunk(REFUNDS, f"Refund passage {i}.", 0.9 - i / 100) for i in range(4)]
    chunks += [
        _chunk(EXCHANGES, "Exchanges are free.", 0.5),
        _chunk("s3://kb-docs/help/returns.md", "Returns within 30 days.", 0.45),
    ]
    results = _retrieve(chunks, k=2)
    assert [(r.document_external_id, r.score) for r in results] == [
        (REFUNDS, 0.9),
        (EXCHANGES, 0.5),
    ]


def test_ticket_suggestions_show_each_article_once(bedrock_settings, zelda_ticket, monkeypatch):
    from knowledge import selectors
    from knowledge.backends import bedrock

    runtime, stub = stubbed("bedrock-agent-runtime")
    stub.add_response(
        "retrieve",
        {
            "retrievalResults": [
                _chunk(REFUNDS, "Refunds reach your card within 5 days.", 0.71),
                _chunk(REFUNDS, "Refunds: the parcel must arrive first.", 0.70),
                _chunk(EXCHANGES, "Exchanges are free within 30 days.", 0.40),
            ]
        },
    )
    monkeypatch.setattr(bedrock, "_client", lambda service: runtime)
    with stub:
        suggestions = selectors.ticket_suggestions(zelda_ticket)
    assert [s.document_external_id for s in suggestions] == [REFUNDS, EXCHANGES]


def test_chunks_without_a_location_are_grouped_by_document_id():
    from knowledge.backends.bedrock import best_chunk_per_document

    results = best_chunk_per_document(
        [
            {"content": {"text": "First."}, "documentId": "doc-1", "score": 0.6},
            {"content": {"text": "Better."}, "documentId": "doc-1", "score": 0.7},
            {"content": {"text": "Alone."}, "score": 0.65},
        ]
    )
    assert [(r.document_external_id, r.text, r.score) for r in results] == [
        ("doc-1", "Better.", 0.7),
        ("", "Alone.", 0.65),
    ]
