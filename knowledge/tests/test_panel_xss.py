"""A knowledge-base passage or link can never run script in the workbench (issue #13, 7).

Documents come from sources anyone with write access to a folder, bucket or Bedrock data
source controls: the snippet is escaped (only our own ``<mark>`` is markup) and only http(s)
URLs become links, for both backends, at ingestion and at render time.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from django.template.loader import render_to_string
from django.test import Client, RequestFactory

from knowledge.backends.bedrock import BedrockBackend
from knowledge.models import Document
from knowledge.panels import suggestions_panel_context
from knowledge.parsing import parse_jsonl
from knowledge.retrieval import highlight_html
from knowledge.services import documents_ingest, source_get_or_create
from tickets.services import ticket_create

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert('kb')</script>"
IMG = '<img src=x onerror="alert(2)">'
EVIL_TEXT = f"{SCRIPT} Refunds reach your card within 5 business days. {IMG}"


def _panel_html(ticket: Any, user: Any) -> str:
    request = RequestFactory().get("/")
    request.user = user
    context = suggestions_panel_context(request, ticket)
    assert context is not None
    assert context["suggestions"], "the evil passage must be suggested"
    return render_to_string("knowledge/suggestions_panel.html", context)


def _assert_inert(html: str) -> None:
    assert "<script>alert" not in html
    assert "<img" not in html
    assert "javascript:" not in html.lower()
    assert "&lt;script&gt;alert(&#x27;kb&#x27;)&lt;/script&gt;" in html
    assert "<script" not in html.replace('<script src="/static/knowledge/suggestions.js"', "")


@pytest.fixture
def ticket(customer):
    return ticket_create(customer=customer, subject="Refund", body="When do I get my refund?")


def test_highlight_escapes_everything_but_its_own_marks():
    html = highlight_html(f"\x02Refunds\x03 {SCRIPT} \x02<b>card</b>\x03 \x03stray\x02")
    assert str(html) == (
        "<mark>Refunds</mark> &lt;script&gt;alert(&#x27;kb&#x27;)&lt;/script&gt; "
        "<mark>&lt;b&gt;card&lt;/b&gt;</mark> stray"
    )


def test_local_backend_passage_and_jsonl_url_render_inert(ticket, agent):
    source = source_get_or_create(name="help")
    row = {"id": "evil", "title": "Refunds", "text": EVIL_TEXT, "url": "javascript:alert(1)"}
    documents_ingest(source=source, items=parse_jsonl(json.dumps(row)))
    assert Document.objects.get(external_id="evil").url == ""  # refused at ingestion
    html = _panel_html(ticket, agent)
    _assert_inert(html)
    assert "<mark>" in html  # highlighting still works


def test_a_stored_javascript_url_is_not_linked_at_render_time(ticket, agent):
    source = source_get_or_create(name="help")
    row = {"id": "old", "title": "Refunds", "text": "Refunds reach your card in 5 days."}
    documents_ingest(source=source, items=parse_jsonl(json.dumps(row)))
    Document.objects.update(url="JavaScript:alert(document.cookie)")  # e.g. an older row
    html = _panel_html(ticket, agent)
    assert "javascript:" not in html.lower()
    assert "<a " not in html
    assert "Refunds" in html


def test_bedrock_raw_passage_and_url_render_inert(ticket, agent, monkeypatch, aws_env, settings):
    settings.KB_BEDROCK_KNOWLEDGE_BASE_ID = "KB12345678"
    runtime = boto3.client("bedrock-agent-runtime", region_name="us-east-1")
    stub = Stubber(runtime)
    stub.add_response(
        "retrieve",
        {
            "retrievalResults": [
                {
                    "content": {"text": EVIL_TEXT},
                    "location": {"type": "WEB", "webLocation": {"url": "javascript:alert(1)"}},
                    "score": 0.9,
                    "metadata": {"title": f"Refunds {SCRIPT}"},
                }
            ]
        },
    )
    monkeypatch.setattr(
        "knowledge.selectors.get_backend", lambda: BedrockBackend(runtime_client=runtime)
    )
    with stub:
        html = _panel_html(ticket, agent)
    _assert_inert(html)
    assert "Refunds &lt;script&gt;" in html  # the title, escaped


def test_ticket_page_renders_the_evil_passage_inert(ticket, supervisor):
    source = source_get_or_create(name="help")
    row = {"id": "evil", "title": "Refunds", "text": EVIL_TEXT, "url": "javascript:alert(1)"}
    documents_ingest(source=source, items=parse_jsonl(json.dumps(row)))
    client = Client()
    client.force_login(supervisor)
    page = client.get(f"/tickets/{ticket.number}/").content.decode()
    assert "kb-suggestion" in page
    assert "<script>alert" not in page
    assert "javascript:" not in page.lower()
