"""Files an agent attaches to a reply or an internal note: the workbench reply box and the
API's message create (multipart; JSON unchanged). Stored as the message's attachments
through ``NewAttachment``; the cap, the type from the name, safe names, refusals by field."""

from __future__ import annotations

from typing import Any

import pytest
from bs4 import BeautifulSoup
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from channels_app.adapters.base import ReplyLimits, get_adapter
from tickets.models import Attachment, Customer, Message, Ticket
from tickets.services import ticket_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def ticket(customer: Customer) -> Ticket:
    """An API ticket: its replies go by e-mail."""
    return ticket_create(customer=customer, subject="Order 77", body="Hi", channel="api")


@pytest.fixture
def files_by_email(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        get_adapter("email"),
        "reply_limits",
        ReplyLimits(files=True, files_max_count=5, file_max_bytes=1_000_000),
    )


@pytest.fixture
def web(client: Client, agent: Any) -> Client:
    client.force_login(agent)
    return client


def upload(name: str, content: bytes = b"%PDF-1.4 x", claimed: str = "text/html") -> Any:
    return SimpleUploadedFile(name, content, content_type=claimed)


def sent(ticket: Ticket) -> list[tuple[str, str, str, int, bytes]]:
    return [
        (a.message.kind, a.filename, a.content_type, a.size, a.file.read())
        for a in Attachment.objects.filter(message__ticket=ticket, message__direction="outbound")
        .select_related("message")
        .order_by("pk")
    ]


# --- workbench ----------------------------------------------------------------------------


def test_a_reply_from_the_workbench_carries_files_shown_on_the_ticket_page(
    web: Client, ticket: Ticket, files_by_email: None
) -> None:
    url = reverse("ticket-message", kwargs={"ref": ticket.number})
    response = web.post(
        url,
        {
            "kind": "public",
            "body": "Your invoice and label.",
            "files": [upload("invoice.pdf"), upload("../../label.png", b"\x89PNG", "text/plain")],
        },
    )
    assert response.status_code == 302
    # the type is the name's, never the browser's claim; the name is made safe
    assert sent(ticket) == [
        ("public", "invoice.pdf", "application/pdf", 10, b"%PDF-1.4 x"),
        ("public", "label.png", "image/png", 4, b"\x89PNG"),
    ]
    reply = Message.objects.get(ticket=ticket, direction="outbound")
    assert (reply.delivery_status, list(reply.attachments.values_list("kind", flat=True))) in [
        ("queued", ["document", "image"]),
        ("failed", ["document", "image"]),  # no e-mail account in this test
    ]
    page = BeautifulSoup(web.get(f"/tickets/{ticket.number}/").content, "html.parser")
    links = {a.get_text(): a["href"] for a in page.select("ul.attachments a[download]")}
    assert links == {
        name: reverse("attachment-download", args=[pk])
        for name, pk in reply.attachments.values_list("filename", "pk")
    }


def test_an_internal_note_may_carry_files_on_a_channel_that_takes_none(
    web: Client, customer: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_adapter("webchat"), "reply_limits", ReplyLimits())  # no files
    chat = ticket_create(customer=customer, subject="Chat", body="Hi", channel="webchat")
    url = reverse("ticket-message", kwargs={"ref": chat.number})
    refused = web.post(url, {"kind": "public", "body": "Here", "files": [upload("a.pdf")]})
    assert refused.status_code == 400
    note = web.post(url, {"kind": "internal_note", "body": "", "files": [upload("a.pdf")]})
    assert note.status_code == 302
    assert sent(chat) == [("internal_note", "a.pdf", "application/pdf", 10, b"%PDF-1.4 x")]


def test_files_over_the_cap_are_refused_by_the_form_with_the_text_kept(
    web: Client, ticket: Ticket, files_by_email: None, settings: Any
) -> None:
    settings.TICKET_REPLY_FILES_MAX_BYTES = 1000
    url = reverse("ticket-message", kwargs={"ref": ticket.number})
    chosen = [upload("a.pdf", b"a" * 600), upload("b.pdf", b"b" * 600)]
    data = {"kind": "public", "body": "Two files", "files": chosen}
    says = "The files of one message can be at most 1 KB together; these are 1.2 KB."
    with_js = web.post(url, data, HTTP_HX_REQUEST="true")
    assert (with_js.status_code, with_js.content.decode()) == (400, says)
    for item in chosen:
        item.seek(0)
    without_js = web.post(url, data)
    assert without_js.status_code == 400
    form = BeautifulSoup(without_js.content, "html.parser").select_one("form#composer")
    assert form is not None
    textarea = form.select_one("textarea")
    error = form.select_one(".form-error")
    files = form.select_one("input[type=file]")
    assert textarea is not None
    assert error is not None
    assert files is not None
    assert textarea.get_text().lstrip("\n") == "Two files"
    assert error.get_text() == f"{says} Choose the files again."
    assert files.get("aria-invalid") == "true"
    assert sent(ticket) == []
    assert ticket.messages.count() == 1


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ([("empty.pdf", b"")], "empty.pdf is empty."),
        ([(f"f{i}.pdf", b"x") for i in range(11)], "A message can carry at most 10 files"),
    ],
)
def test_empty_files_and_too_many_files_are_refused(
    web: Client, ticket: Ticket, files_by_email: None, files: Any, says: str
) -> None:
    url = reverse("ticket-message", kwargs={"ref": ticket.number})
    response = web.post(
        url,
        {"kind": "internal_note", "body": "x", "files": [upload(n, c) for n, c in files]},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 400
    assert response.content.decode().startswith(says)
    assert sent(ticket) == []


def test_the_reply_box_offers_a_file_input_in_a_multipart_form(web: Client, ticket: Ticket) -> None:
    page = BeautifulSoup(web.get(f"/tickets/{ticket.number}/").content, "html.parser")
    form = page.select_one("form#composer")
    assert form is not None
    assert form["enctype"] == "multipart/form-data"
    assert form.select_one("input[name=csrfmiddlewaretoken]") is not None
    files = form.select_one("input[type=file][name=files][multiple]")
    assert files is not None


# --- API ----------------------------------------------------------------------------------


def test_the_api_takes_files_as_multipart_and_json_still_works(
    agent_client: Any, ticket: Ticket, files_by_email: None
) -> None:
    url = f"/api/tickets/{ticket.pk}/messages"
    response = agent_client.post(
        url, {"body": "", "files": [upload("invoice.pdf")]}, format="multipart"
    )
    assert response.status_code == 201, response.json()
    [attachment] = response.json()["attachments"]
    assert (attachment["filename"], attachment["content_type"], attachment["size"]) == (
        "invoice.pdf",
        "application/pdf",
        10,
    )
    as_json = agent_client.post(url, {"body": "Thanks!"}, format="json")
    assert as_json.status_code == 201
    assert as_json.json()["attachments"] == []
    neither = agent_client.post(url, {"body": ""}, format="json")
    assert neither.status_code == 400
    assert neither.json()["error"]["details"] == {"body": ["Required."]}


def test_the_api_refuses_files_by_field(
    agent_client: Any, ticket: Ticket, files_by_email: None, settings: Any
) -> None:
    settings.TICKET_REPLY_FILES_MAX_BYTES = 100
    response = agent_client.post(
        f"/api/tickets/{ticket.pk}/messages",
        {"body": "x", "files": [upload("big.pdf", b"z" * 101)]},
        format="multipart",
    )
    assert response.status_code == 400
    says = "The files of one message can be at most 100 bytes together; these are 101 bytes."
    assert response.json() == {
        "error": {"code": "invalid", "message": says, "details": {"files": [says]}}
    }
    assert sent(ticket) == []


def test_a_body_far_over_the_cap_is_refused_before_it_is_parsed(
    agent_client: Any, ticket: Ticket, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.http.multipartparser import MultiPartParser

    settings.TICKET_REPLY_FILES_MAX_BYTES = 1000
    parsed: list[bool] = []
    real_parse = MultiPartParser.parse

    def parse(self: MultiPartParser) -> Any:
        parsed.append(True)
        return real_parse(self)

    monkeypatch.setattr(MultiPartParser, "parse", parse)
    response = agent_client.post(
        f"/api/tickets/{ticket.pk}/messages",
        {"body": "x", "files": [upload("huge.pdf", b"z" * 500_000)]},
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {
        "files": [
            "The files of one message can be at most 1 KB together; this request is 500.2 KB."
        ]
    }
    assert parsed == []


def test_an_agent_cannot_attach_to_a_ticket_it_may_not_see(
    agent_client: Any, customer: Customer, files_by_email: None
) -> None:
    from tickets.models import Team

    other = Team.objects.create(name="Billing", slug="billing")
    hidden = ticket_create(
        customer=customer, subject="Hidden", body="Hi", channel="api", team=other
    )
    response = agent_client.post(
        f"/api/tickets/{hidden.pk}/messages",
        {"body": "x", "files": [upload("a.pdf")]},
        format="multipart",
    )
    assert response.status_code == 404
    assert sent(hidden) == []


def test_a_reply_refused_for_its_text_asks_for_its_files_again(
    web: Client, ticket: Ticket, files_by_email: None, settings: Any
) -> None:
    """Without JavaScript a refused reply comes back as a page, whose file input is empty
    (a browser never fills one in): when files came with it, the reason says to choose them
    again whatever the refusal was about (it said so only when the files were refused)."""
    url = reverse("ticket-message", kwargs={"ref": ticket.number})
    data = {"kind": "bogus", "body": "With a file", "files": [upload("a.pdf", b"%PDF-1.4 x")]}
    page = web.post(url, data)
    assert page.status_code == 400
    error = BeautifulSoup(page.content, "html.parser").select_one("form#composer .form-error")
    assert error is not None
    assert error.get_text().endswith(" Choose the files again.")
    # no files sent: nothing to choose again
    page = web.post(url, {"kind": "bogus", "body": "No file"})
    error = BeautifulSoup(page.content, "html.parser").select_one("form#composer .form-error")
    assert error is not None
    assert "Choose the files again" not in error.get_text()
