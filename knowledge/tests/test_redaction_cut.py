"""Conversation turns and KB queries are cut to their length without cutting a personal
detail in two (``support.redaction.truncate``): the remains of a detail split by the cut
(``GB82 WEST 1234 56``, ``zq1815.home@e``) were no longer recognised by the redaction and
reached the provider as they are."""

from __future__ import annotations

import json
from typing import Any

import pytest

from knowledge.selectors import MAX_QUERY_CHARS, MAX_TURN_CHARS, ticket_conversation
from knowledge.tests.test_bedrock import _captured, stubbed

FILLER = "My parcel never arrived, please help. " * 60
IBAN = "GB82 WEST 1234 5698 7654 32"
EMAIL = "zq1815.home@example.com"


@pytest.fixture
def customer(db: Any) -> Any:
    from tickets.models import Customer

    return Customer.objects.create(name="Sean O'Brien", email=EMAIL)


def _at_cut(limit: int, detail: str, before: int) -> tuple[str, str]:
    head = FILLER[: limit - before - 1].rstrip()
    return head, f"{head} {detail} is mine, thanks"


def test_a_turn_is_cut_before_a_detail_the_cut_would_split(customer):
    from tickets.services import ticket_create

    head, body = _at_cut(MAX_TURN_CHARS, IBAN, 17)
    ticket = ticket_create(customer=customer, subject="Refund", body=body)
    [*_, turn] = ticket_conversation(ticket)
    assert turn.text == head  # before: "… GB82 WEST 1234 56"


def test_the_bedrock_kb_query_is_cut_before_a_detail(aws_env, settings, customer, monkeypatch):
    from knowledge import selectors
    from knowledge.backends import bedrock

    settings.KB_BACKEND = "bedrock"
    settings.KB_BEDROCK_KNOWLEDGE_BASE_ID = "KB12345678"
    settings.KB_BEDROCK_DATA_SOURCE_ID = "DS12345678"
    runtime, stub = stubbed("bedrock-agent-runtime")
    sent = _captured(runtime, "Retrieve")
    stub.add_response("retrieve", {"retrievalResults": []})
    monkeypatch.setattr(bedrock, "_client", lambda service: runtime)
    head, query = _at_cut(MAX_QUERY_CHARS, EMAIL, 12)
    with stub:
        assert selectors.kb_search(query, customer_id=customer.pk) == []
    [body] = sent
    text = json.loads(body)["retrievalQuery"]["text"]
    assert text == head  # before: "… zq1815.home@e" went to Bedrock
