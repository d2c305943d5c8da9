"""Structured logs: the request id goes from the request to its log lines, the response,
the tasks it enqueues and the outbound calls they make (support.logging_context)."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from celery import shared_task
from celery.app.trace import build_tracer
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client
from django.urls import path
from kombu.messaging import Producer

from channels_app.adapters.base import http_call
from support import logging_context
from support.celery import app

task_logger = logging.getLogger("support.tests.logging_task")
VENDOR_URL = "https://vendor.example.test/send"


@shared_task(name="support.tests.test_logging_context.log_something_task")
def log_something_task(ticket_id: int) -> None:
    task_logger.info("task ran")


@shared_task(name="support.tests.test_logging_context.call_vendor_task")
def call_vendor_task() -> None:
    http_call("POST", VENDOR_URL, json={"ok": True})


def _enqueue_view(request: HttpRequest, ticket_id: str) -> HttpResponse:
    logging.getLogger("support.tests.logging_view").info("in the view")
    log_something_task.delay(ticket_id=int(ticket_id))
    return JsonResponse({"ok": True})


def _outbound_view(request: HttpRequest) -> HttpResponse:
    call_vendor_task.delay()
    return JsonResponse({"ok": True})


urlpatterns = [
    path("t/<str:ticket_id>/enqueue", _enqueue_view),
    path("outbound", _outbound_view),
]


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every record (root logger) formatted as the production JSON handler does."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging_context.JsonFormatter())
    handler.addFilter(logging_context.ContextFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.urls(__name__)
def test_request_line_is_json_with_the_request_id_of_the_response(
    json_lines: io.StringIO,
) -> None:
    response = Client().get("/t/42/enqueue")

    assert response.status_code == 200
    request_id = response["X-Request-ID"]
    assert len(request_id) == 32  # generated: none was sent
    records = _records(json_lines)
    access = [r for r in records if r["logger"] == "support.request"]
    assert len(access) == 1
    assert access[0]["request_id"] == request_id
    assert access[0]["route"] == "t/<str:ticket_id>/enqueue"
    assert access[0]["status"] == 200
    assert access[0]["method"] == "GET"
    assert access[0]["ticket_id"] == "42"
    assert access[0]["user_id"] is None
    view = [r for r in records if r["logger"] == "support.tests.logging_view"]
    assert view[0]["request_id"] == request_id
    assert view[0]["message"] == "in the view"


@pytest.mark.urls(__name__)
def test_task_enqueued_by_a_request_logs_the_same_request_id(json_lines: io.StringIO) -> None:
    response = Client().get("/t/7/enqueue", HTTP_X_REQUEST_ID="lb-0123456789abcdef")

    assert response["X-Request-ID"] == "lb-0123456789abcdef"  # well-formed: kept
    task_lines = [r for r in _records(json_lines) if r["message"] == "task ran"]
    assert len(task_lines) == 1
    assert task_lines[0]["request_id"] == "lb-0123456789abcdef"
    assert task_lines[0]["ticket_id"] == "7"


@pytest.mark.urls(__name__)
@pytest.mark.parametrize(
    "incoming",
    ["short", "has space 1234567", "line\nbreak-123456", "x" * 200, 'quote"12345678', ""],
)
def test_malformed_incoming_request_id_is_replaced(json_lines: io.StringIO, incoming: str) -> None:
    response = Client().get("/t/1/enqueue", HTTP_X_REQUEST_ID=incoming)

    request_id = response["X-Request-ID"]
    assert request_id != incoming
    assert logging_context.valid_request_id(request_id)
    assert incoming not in json_lines.getvalue() or incoming == ""
    access = [r for r in _records(json_lines) if r["logger"] == "support.request"]
    assert access[0]["request_id"] == request_id


@pytest.mark.urls(__name__)
def test_incoming_request_id_ignored_when_not_trusted(settings: Any) -> None:
    settings.LOG_TRUST_REQUEST_ID = False

    response = Client().get("/t/1/enqueue", HTTP_X_REQUEST_ID="lb-0123456789abcdef")

    assert response["X-Request-ID"] != "lb-0123456789abcdef"


@pytest.mark.urls(__name__)
@responses.activate
def test_outbound_call_from_an_enqueued_task_carries_the_request_id() -> None:
    responses.post(VENDOR_URL, json={"id": "m1"})

    response = Client().get("/outbound")

    assert len(responses.calls) == 1
    assert responses.calls[0].request.headers["X-Request-ID"] == response["X-Request-ID"]


def test_outbound_headers_keep_the_callers_own_and_add_nothing_without_context() -> None:
    assert logging_context.outbound_headers({"A": "b"}) == {"A": "b"}
    with logging_context.bound(request_id="req-0123456789"):
        assert logging_context.outbound_headers({"A": "b"}) == {
            "A": "b",
            "X-Request-ID": "req-0123456789",
        }
        assert logging_context.outbound_headers({"x-request-id": "mine-12345678"}) == {
            "x-request-id": "mine-12345678"
        }


def test_worker_binds_the_context_carried_in_the_task_message(
    monkeypatch: pytest.MonkeyPatch, json_lines: io.StringIO
) -> None:
    """The real (not eager) path: the publisher puts the context in the message headers,
    and the worker's tracer (what a worker runs for a message) binds it again."""
    published: list[dict[str, Any]] = []

    def publish(self: Producer, body: Any, **kwargs: Any) -> None:
        published.append(kwargs["headers"])

    monkeypatch.setattr(Producer, "publish", publish)
    app.conf.task_always_eager = False  # the autouse fixture sets it back for each test
    try:
        with logging_context.bound(
            request_id="req-0123456789", user_id=5, correlation_id="c0ffee-12"
        ):
            log_something_task.delay(ticket_id=9)
    finally:
        app.conf.task_always_eager = True
    assert len(published) == 1
    headers = published[0]
    assert headers["log_context"] == {
        "request_id": "req-0123456789",
        "user_id": "5",
        "correlation_id": "c0ffee-12",
    }
    assert logging_context.current() == {}

    tracer = build_tracer(log_something_task.name, log_something_task, eager=False, app=app)
    tracer(headers["id"], [], {"ticket_id": 9}, request=dict(headers))  # type: ignore[call-arg]

    line = next(r for r in _records(json_lines) if r["message"] == "task ran")
    assert (line["request_id"], line["user_id"], line["ticket_id"], line["correlation_id"]) == (
        "req-0123456789",
        "5",
        "9",
        "c0ffee-12",
    )
    assert logging_context.current() == {}  # cleared after the task


def test_user_id_not_name_on_the_request_line(
    json_lines: io.StringIO, django_user_model: Any, client: Client
) -> None:
    agent = django_user_model.objects.create_user(
        username="zelda-q", email="zelda-q@example.test", password="x"
    )
    client.force_login(agent)

    response = client.get("/")

    access = [r for r in _records(json_lines) if r["logger"] == "support.request"]
    assert access[0]["user_id"] == str(agent.pk)
    assert access[0]["request_id"] == response["X-Request-ID"]
    assert "zelda-q" not in json_lines.getvalue()


@pytest.mark.parametrize(("fmt", "is_json"), [("json", True), ("plain", False)])
def test_logging_config_formats(fmt: str, is_json: bool, capsys: Any) -> None:
    config = logging_context.logging_config(fmt, "INFO")
    config["handlers"]["console"]["stream"] = "ext://sys.stdout"
    config["root"]["handlers"] = ["console"]
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logging.config.dictConfig(config)
        with logging_context.bound(request_id="req-0123456789"):
            logging.getLogger("x").info("hello %s", "world")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    out = capsys.readouterr().out.strip().splitlines()[-1]
    if is_json:
        record = json.loads(out)
        assert record["message"] == "hello world"
        assert record["request_id"] == "req-0123456789"
        assert record["level"] == "INFO"
    else:
        assert out.endswith("INFO x hello world [request_id=req-0123456789]")


def test_log_format_must_be_json_or_plain() -> None:
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured):
        logging_context.logging_config("xml", "INFO")


@responses.activate
def test_every_outbound_client_sends_the_request_id(settings: Any) -> None:
    """Media downloads, SNS certificate fetches, Salesforce and JWKS calls carry the id of
    the request (or task) they run for, like the channel sends do."""
    from calls.salesforce import SalesforceClient
    from calls.sns import SnsHttp
    from channels_app.adapters.base import media_download
    from support.auth.tokens import _jwks_fetch

    settings.SALESFORCE_AUTH_FLOW = "client_credentials"
    settings.SALESFORCE_LOGIN_URL = "https://login.example.test"
    responses.get("https://media.example.test/a.jpg", body=b"jpeg", content_type="image/jpeg")
    responses.get("https://sns.example.test/cert.pem", body=b"pem")
    responses.post(
        "https://login.example.test/services/oauth2/token",
        json={"access_token": "t", "instance_url": "https://sf.example.test"},
    )
    responses.get("https://idp.example.test/jwks.json", json={"keys": []})

    with logging_context.bound(request_id="req-0123456789abcdef"):
        media_download("https://media.example.test/a.jpg", allowed_hosts=("example.test",))
        SnsHttp().get("https://sns.example.test/cert.pem")
        SalesforceClient().token(refresh=True)
        _jwks_fetch("https://idp.example.test/jwks.json")

    assert len(responses.calls) == 4
    for call in responses.calls:
        assert call.request.headers.get("X-Request-ID") == "req-0123456789abcdef", call.request.url


@pytest.fixture
def production_log() -> Iterator[io.StringIO]:
    """The root logger as ``LOGGING`` configures it in production (``LOG_FORMAT=json``),
    its handler's filters included, writing to a buffer."""
    stream = io.StringIO()
    config = logging_context.logging_config("json", "INFO")
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logging.config.dictConfig(config)
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield stream
    root.handlers[:], root.level = saved[0], saved[1]


@pytest.mark.django_db
def test_django_request_warnings_name_the_route_not_a_path_holding_a_token(
    production_log: io.StringIO, customer: Any
) -> None:
    """Django logs every 4xx with the request's path, and the JSON line also printed the
    request object: path and query string, here a feedback link's signed token (valid: it
    lets anyone rate the ticket and read its subject)."""
    from tickets import services
    from tickets.context.services import feedback_token_make
    from tickets.models import TicketStatus

    ticket = services.ticket_create(customer=customer, subject="Broken kettle", body="Help")
    ticket.status = TicketStatus.RESOLVED
    ticket.save(update_fields=["status"])
    token = feedback_token_make(ticket)

    page = Client().post(f"/feedback/{token}", {"rating": "9"})  # out of range: 400
    api = Client().post(
        f"/api/tickets/{ticket.pk}/feedback?token={token}",
        json.dumps({"rating": 9}),
        content_type="application/json",
    )
    csrf = Client(enforce_csrf_checks=True).post(f"/feedback/{token}", {"rating": "5"})

    assert (page.status_code, api.status_code, csrf.status_code) == (400, 400, 403)
    text = production_log.getvalue()
    assert token not in text
    assert token.split(":")[-1] not in text  # not even the signature part
    warnings = [r for r in _records(production_log) if r["logger"].startswith("django.")]
    assert [r["message"] for r in warnings] == [
        "Bad Request: feedback/<str:token>",
        "Bad Request: api/tickets/<str:ticket_id>/feedback",
        "Forbidden (CSRF cookie not set.): feedback/<str:token>",
    ]
    assert all("request" not in r for r in warnings)
    assert [r["status_code"] for r in warnings] == [400, 400, 403]


def test_a_path_no_route_matched_is_not_logged(production_log: io.StringIO) -> None:
    response = Client().get("/feedback/not-a-route/secret-part/")
    assert response.status_code == 404
    text = production_log.getvalue()
    assert "secret-part" not in text
    assert "Not Found: -" in text


def test_no_query_string_reaches_the_logs_not_even_in_a_traceback(
    production_log: io.StringIO,
) -> None:
    """A signed media URL's signature (and any URL's query) was written to the logs by
    Celery's retry line and by tracebacks of client errors that quote the URL."""
    signed = "https://scontent.cdninstagram.com/v/t51/x.jpg?stp=dst-jpg&oh=00_SECRETSIG&oe=65F0"
    log = logging.getLogger("celery.app.trace")
    log.info("Task media[1] retry: Retry in 5s: ConnectionError('%s')", signed)
    try:
        raise ConnectionError("Max retries exceeded with url: /v/t51/x.jpg?oh=00_SECRETSIG&oe=1")
    except ConnectionError:
        logging.getLogger("channels_app.tasks").exception("Media download of attachment 7 failed")
    logging.getLogger("support").warning("Is this still a question? %s", "yes")
    text = production_log.getvalue()
    assert "SECRETSIG" not in text
    first, second, third = _records(production_log)
    assert first["message"] == (
        "Task media[1] retry: Retry in 5s: ConnectionError("
        "'https://scontent.cdninstagram.com/v/t51/x.jpg?<query>')"
    )
    assert second["message"] == "Media download of attachment 7 failed"
    assert "Traceback (most recent call last)" in second["exc_info"]
    assert (
        "ConnectionError: Max retries exceeded with url: /v/t51/x.jpg?<query>" in second["exc_info"]
    )
    assert third["message"] == "Is this still a question? yes"


def test_the_plain_format_leaves_out_query_strings_too_and_the_record_stays_whole() -> None:
    record = logging.LogRecord(
        "celery.app.trace", logging.INFO, __file__, 1, "Retry: %s", ("/x.jpg?oh=SIG&oe=1",), None
    )
    try:
        raise ConnectionError("url: /x.jpg?oh=SIG")
    except ConnectionError:
        import sys

        record.exc_info = sys.exc_info()
    text = logging_context.PlainFormatter().format(record)
    assert "SIG" not in text
    assert "Retry: /x.jpg?<query>" in text
    assert "ConnectionError: url: /x.jpg?<query>" in text
    assert record.exc_info is not None  # other handlers (tests' capture) see it whole
    assert record.getMessage() == "Retry: /x.jpg?oh=SIG&oe=1"
