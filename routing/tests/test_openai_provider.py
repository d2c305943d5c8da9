"""``AI_PROVIDER=openai``: the Strands agent on an OpenAI-compatible server, through the
optional ``openai`` client (requirements-openai.txt), tested against a local HTTP server
thread that answers ``POST /v1/chat/completions`` with recorded streaming responses."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from routing import providers
from routing.providers.agent import AgentProvider
from routing.tests.conftest import ticket_context
from routing.tools import TicketContext

RECORDED = json.loads(
    (Path(__file__).parent / "fixtures" / "openai" / "routing_turns.json").read_text()
)["responses"]


class FakeOpenAI:
    """Serves one recorded answer per request, in order; keeps every request body."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append(json.loads(self.rfile.read(length)))
                outer.headers.append(dict(self.headers))
                answer = outer.answers.pop(0) if outer.answers else 500
                if isinstance(answer, int):
                    body = json.dumps({"error": {"message": "overloaded", "type": "server_error"}})
                    self.send_response(answer)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body.encode())
                    return
                payload = "".join(f"data: {json.dumps(event)}\n\n" for event in answer)
                payload += "data: [DONE]\n\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(payload.encode())))
                self.end_headers()
                self.wfile.write(payload.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def fake_openai(settings: Any) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(RECORDED)
    settings.AI_PROVIDER = "openai"
    settings.ROUTING_OPENAI_BASE_URL = server.url
    settings.ROUTING_OPENAI_MODEL_ID = "llama3.1"
    settings.ROUTING_OPENAI_API_KEY = "sk-local-test"
    settings.ROUTING_BEDROCK_MAX_ATTEMPTS = 2
    settings.ROUTING_REVIEW_THRESHOLD = 0.6
    settings.ROUTING_PRICES = {**settings.ROUTING_PRICES, "llama3.1": (0.0, 0.0)}
    yield server
    server.close()


@pytest.fixture
def ctx(bitext_router: Any) -> TicketContext:
    return ticket_context(
        bitext_router,
        "Hi, I'm Zelda Quimby. Please cancel my order 123456, mail me at zelda.q@example.org",
        redact_names=("Zelda Quimby",),
    )


def test_openai_provider_routes_through_the_recorded_server(
    fake_openai: FakeOpenAI, ctx: TicketContext
) -> None:
    result = providers.decide(ctx, providers.get_provider())
    assert (result.provider, result.model_id, result.fallback_from) == ("openai", "llama3.1", "")
    assert (result.decision.team, result.decision.priority) == ("orders", "normal")
    # tools of one turn run concurrently: compare per turn, unordered
    names = [c["name"] for c in result.trace.calls]
    assert sorted(names[:2]) == ["classify_issue", "extract_entities"]
    assert sorted(names[2:]) == ["calculate_priority", "check_service_status", "route_to_team"]
    assert result.review_reasons == []
    assert (result.tokens_in, result.tokens_out) == (812 + 1204 + 1530, 41 + 77 + 96)
    # three chat-completions requests, authenticated, streamed, with the seven tools
    assert len(fake_openai.requests) == 3
    first = fake_openai.requests[0]
    assert fake_openai.headers[0]["Authorization"] == "Bearer sk-local-test"
    assert (first["model"], first["stream"]) == ("llama3.1", True)
    assert {t["function"]["name"] for t in first["tools"]} >= {
        "classify_issue",
        "calculate_priority",
        "route_to_team",
        "RoutingDecisionOutput",
    }
    # the same redaction as Bedrock: nothing personal in any request
    sent = json.dumps(fake_openai.requests)
    assert "123456" in sent
    assert "[EMAIL]" in sent
    assert "[NAME]" in sent
    for personal in ("Zelda", "Quimby", "zelda.q@example.org"):
        assert personal not in sent
    assert "tool_call_id" in json.dumps(fake_openai.requests[1])  # tool results went back


def test_openai_server_errors_are_retried_then_the_local_router_decides(
    fake_openai: FakeOpenAI, ctx: TicketContext
) -> None:
    fake_openai.answers = [500, 503]
    sleeps: list[float] = []
    provider = AgentProvider(name="openai", sleep=sleeps.append)
    result = providers.decide(ctx, provider)
    assert len(fake_openai.requests) == 2  # ROUTING_BEDROCK_MAX_ATTEMPTS, the client's own off
    assert len(sleeps) == 1
    assert (result.provider, result.fallback_from) == ("local", "openai")
    assert result.fallback_reason.startswith("openai failed 2 time(s): InternalServerError")
    assert result.decision.team == "orders"


def test_openai_needs_a_base_url(settings: Any, ctx: TicketContext) -> None:
    from routing.providers.models import LLMUnavailable, strands_model

    settings.ROUTING_OPENAI_BASE_URL = ""
    with pytest.raises(LLMUnavailable, match="ROUTING_OPENAI_BASE_URL"):
        strands_model("routing", "openai")
    result = providers.decide(ctx, AgentProvider(name="openai"))
    assert (result.provider, result.fallback_from) == ("local", "openai")
