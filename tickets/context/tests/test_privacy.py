from __future__ import annotations

import json
import os
from datetime import timedelta
from decimal import Decimal

import boto3
import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from moto import mock_aws

from support.models import AuditLog
from tickets import services as core
from tickets.context import privacy, services
from tickets.context.interactions import DynamoInteractionBackend, register_backend
from tickets.context.models import CsatFeedback, CustomerErasure, Interaction, Order
from tickets.context.services import OrderInput
from tickets.models import Attachment, ChannelIdentity, Customer, Message, Ticket

pytestmark = pytest.mark.django_db

NAME, EMAIL, PHONE = "Grace Hopper", "grace.hopper@navy.example", "+15550100999"
WA_ID, IG_ID = "15550100999", "ig-grace-1906"


@pytest.fixture
def grace(agent, django_capture_on_commit_callbacks):
    customer = Customer.objects.create(name=NAME, email=EMAIL, phone=PHONE, vip_tier="gold")
    ChannelIdentity.objects.create(
        customer=customer, channel="whatsapp", external_id=WA_ID, display_name=NAME
    )
    ChannelIdentity.objects.create(customer=customer, channel="instagram", external_id=IG_ID)
    services.order_upsert(
        customer=customer,
        data=OrderInput(
            number="ORD-GH-1",
            status="refunded",
            total=Decimal("99.00"),
            refunded_amount=Decimal("99.00"),
            placed_at=timezone.now() - timedelta(days=3),
        ),
    )
    with django_capture_on_commit_callbacks(execute=True):
        ticket = core.ticket_create(
            customer=customer,
            subject=f"Refund for {NAME}",
            body=f"Hi, I'm {NAME}, call me on {PHONE} or write to {EMAIL}. Awful service!",
            channel="whatsapp",
            channel_message_id=f"wamid.{WA_ID}.1",
            message_metadata={"from": WA_ID, "profile": {"name": NAME}},
        )
        core.message_add(ticket=ticket, body="Hello Grace, we are on it.", author_user=agent)
        core.message_add(
            ticket=ticket,
            body=f"Customer {EMAIL} is angry",
            kind="internal_note",
            author_user=agent,
        )
    core.ticket_update(ticket=ticket, status="resolved", actor=agent)
    with django_capture_on_commit_callbacks(execute=True):  # its interaction, from the event
        services.feedback_submit(ticket=ticket, rating=1, comment=f"Signed, {NAME}")
    LogEntry.objects.log_actions(
        user_id=agent.pk,
        queryset=[customer],
        action_flag=CHANGE,
        change_message=f"Changed email to {EMAIL}",
    )
    return customer


def _text_columns():
    """(table, column) for every text-like column of every table in the database."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = 'public'
              AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'tsvector',
                                'character')
            """
        )
        return cursor.fetchall()


def _scan(tokens):
    hits = []
    with connection.cursor() as cursor:
        for table, column in _text_columns():
            for token in tokens:
                cursor.execute(
                    f'SELECT count(*) FROM "{table}" WHERE "{column}"::text ILIKE %s',  # noqa: S608
                    [f"%{token}%"],
                )
                if cursor.fetchone()[0]:
                    hits.append((table, column, token))
    return hits


PERSONAL = [NAME, EMAIL, PHONE, WA_ID, IG_ID, "Grace", "Hopper"]


def test_scan_finds_personal_data_before_erasure(grace):
    hits = {(t, c) for t, c, _ in _scan(PERSONAL)}
    # The scan really looks everywhere the data is spread.
    assert {
        ("tickets_customer", "email"),
        ("tickets_channelidentity", "external_id"),
        ("tickets_message", "body_text"),
        ("tickets_message", "metadata"),
        ("tickets_ticket", "subject"),
        ("tickets_ticket", "search_vector"),
        ("tickets_interaction", "summary"),
        ("tickets_csatfeedback", "comment"),
        ("support_outboxevent", "payload"),
        ("django_admin_log", "object_repr"),
    } <= hits


def test_erase_leaves_no_personal_data_in_any_table(grace, supervisor):
    ticket = Ticket.objects.get(customer=grace)
    counts = privacy.customer_erase(customer=grace, actor=supervisor, via="test")
    assert _scan(PERSONAL) == []
    # Aggregates stay.
    grace.refresh_from_db()
    assert (grace.name, grace.email, grace.phone, grace.vip_tier) == ("", "", "", "gold")
    assert Order.objects.get().total == Decimal("99.00")
    assert CsatFeedback.objects.get().rating == 1
    assert Ticket.objects.get().status == "resolved"
    assert Interaction.objects.filter(customer=grace).count() == 2  # message, feedback
    assert ChannelIdentity.objects.count() == 0
    inbound = Message.objects.get(ticket=ticket, direction="inbound")
    assert (inbound.body_text, inbound.metadata) == ("[erased]", {})
    reply = Message.objects.get(ticket=ticket, kind="public", direction="outbound")
    assert reply.body_text == "Hello [redacted], we are on it."
    assert ticket.messages.count() == 4  # first message, reply, note, resolve entry
    erasure = CustomerErasure.objects.get()
    assert erasure.erased_by == supervisor
    log = AuditLog.objects.get(action="customer.erase")
    assert (log.actor, log.object_type, log.object_id) == (supervisor, "customer", str(grace.pk))
    assert log.details == {"via": "test", **counts}
    assert counts["messages_anonymised"] == 1
    assert counts["identities_deleted"] == 2


def test_erase_command_needs_confirmation_and_is_audited(grace):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("customer_erase", EMAIL)
    assert AuditLog.objects.filter(action="customer.erase").count() == 0
    call_command("customer_erase", str(grace.pk), "--yes")
    assert AuditLog.objects.get(action="customer.erase").actor is None
    assert _scan(PERSONAL) == []


def test_export_contains_everything_and_is_audited(grace, supervisor, tmp_path):
    data = privacy.customer_export(customer=grace, actor=supervisor, via="test")
    assert data["customer"]["email"] == EMAIL
    assert sorted(i["external_id"] for i in data["identities"]) == [WA_ID, IG_ID]
    assert [o["number"] for o in data["orders"]] == ["ORD-GH-1"]
    [ticket] = data["tickets"]
    assert [m["direction"] for m in ticket["messages"]] == ["inbound", "outbound"]
    assert data["csat_feedback"][0]["comment"] == f"Signed, {NAME}"
    assert sorted(i["kind"] for i in data["interactions"]) == ["feedback", "message"]
    json.dumps(data)  # JSON-ready
    log = AuditLog.objects.get(action="customer.export")
    assert (log.actor, log.object_id, log.details["via"]) == (supervisor, str(grace.pk), "test")
    assert EMAIL not in json.dumps(log.details)

    out = tmp_path / "export.json"
    call_command("customer_export", EMAIL, "--output", str(out))
    assert json.loads(out.read_text())["customer"]["id"] == grace.pk
    assert AuditLog.objects.filter(action="customer.export").count() == 2


def test_admin_export_and_erase_actions(grace, supervisor, client):
    from django.contrib.auth.models import Permission

    supervisor.user_permissions.add(
        *Permission.objects.filter(content_type=ContentType.objects.get_for_model(Customer))
    )
    client.force_login(supervisor)
    url = "/admin/tickets/customer/"
    export = client.post(url, {"action": "export_json", "_selected_action": [grace.pk]})
    assert export.status_code == 200
    assert json.loads(export.content)["customer"]["email"] == EMAIL
    confirm = client.post(url, {"action": "erase_personal_data", "_selected_action": [grace.pk]})
    assert confirm.status_code == 200
    assert b"Yes, erase" in confirm.content
    assert not CustomerErasure.objects.exists()
    done = client.post(
        url,
        {"action": "erase_personal_data", "_selected_action": [grace.pk], "confirm": "yes"},
    )
    assert done.status_code == 302
    assert CustomerErasure.objects.filter(customer=grace).exists()
    assert AuditLog.objects.filter(action="customer.erase", actor=supervisor).count() == 1


def test_erase_twice_is_harmless(grace, supervisor):
    first = privacy.customer_erase(customer=grace, actor=supervisor, via="test")
    second = privacy.customer_erase(customer=grace, actor=None, via="test")
    assert first["messages_anonymised"] == 1
    assert second["identities_deleted"] == 0
    assert CustomerErasure.objects.get().counts == first
    assert AuditLog.objects.filter(action="customer.erase").count() == 2
    assert _scan(PERSONAL) == []


def test_admin_customer_pages_show_orders(grace, supervisor, client):
    client.force_login(supervisor)
    supervisor.is_superuser = True
    supervisor.save()
    assert client.get("/admin/tickets/customer/").status_code == 200
    page = client.get(f"/admin/tickets/customer/{grace.pk}/change/")
    assert page.status_code == 200
    assert b"ORD-GH-1" in page.content
    for url in ("order", "interaction", "csatfeedback", "customererasure"):
        assert client.get(f"/admin/tickets/{url}/").status_code == 200


def test_erase_frees_callers_ticket_ids_it_redacts(supervisor):
    """Two of one caller's ticket ids that differ only in the customer's address redact to
    the same text: they stop being the caller's ids (the per-caller unique constraint)."""
    customer = Customer.objects.create(name="Ida Pell", email="ida.pell@example.com")
    for external_id in ("web ida.pell@example.com", "web IDA.PELL@example.com"):
        core.ticket_create(
            customer=customer,
            subject="Hi",
            origin_platform_id=external_id,
            origin_caller=supervisor,
        )
    privacy.customer_erase(customer=customer, actor=supervisor, via="test")
    tickets = Ticket.objects.filter(customer=customer)
    assert {t.origin_platform_id for t in tickets} == {f"web {privacy.REDACTED}"}
    assert not tickets.filter(origin_caller__isnull=False).exists()


def test_erase_blanks_the_ticketing_systems_customer_id(supervisor):
    """``external_id`` is the ticketing system's id for the person: erased with the name,
    so a later ticket under it makes a new customer instead of finding the erased one."""
    customer = Customer.objects.create(name="Ivo Marsh", external_id="CUST-77")
    privacy.customer_erase(customer=customer, actor=supervisor, via="test")
    customer.refresh_from_db()
    assert customer.external_id == ""
    assert not Customer.objects.filter(external_id="CUST-77").exists()


def test_tasks_queued_before_an_erasure_write_no_interaction_after_it(supervisor):
    """A CSAT answer's or an inbound message's interaction is written by a task from its
    event; one that runs after the customer was erased writes nothing."""
    from datetime import datetime

    from support.models import OutboxEvent

    customer = Customer.objects.create(name="Ida Erased", email="ida@example.org")
    ticket = core.ticket_create(customer=customer, subject="Help", body="My order is late")
    message = ticket.messages.get()
    core.ticket_update(ticket=ticket, status="resolved")
    services.feedback_submit(ticket=ticket, rating=1, comment="Still late, Ida")
    event = OutboxEvent.objects.filter(event_type="csat.submitted").latest("pk")
    submitted_at = datetime.fromisoformat(event.payload["submitted_at"])
    Interaction.objects.all().delete()  # as if none of the tasks had run yet
    privacy.customer_erase(customer=customer, actor=supervisor, via="test")
    assert not services.interaction_record_for_csat(ticket_id=ticket.pk, submitted_at=submitted_at)
    assert not services.interaction_record_for_message(message_id=message.pk)
    assert not services.interaction_record_reopen(
        event_id=event.pk, ticket_id=ticket.pk, at=timezone.now()
    )
    assert not Interaction.objects.filter(customer=customer).exists()


@mock_aws
def test_export_and_erase_in_dynamodb_mode(supervisor, settings, customer):
    """With INTERACTIONS_BACKEND=dynamodb the export lists the customer's interactions
    from the table (not PostgreSQL) with orders and CSAT comments; erase (twice) blanks
    the summaries there and the comments, and keeps orders, kinds and scores."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    backend = DynamoInteractionBackend(client=client, table="interactions-privacy")
    backend.table_create()
    register_backend("dynamodb-privacy", lambda: backend)
    settings.INTERACTIONS_BACKEND = "dynamodb-privacy"
    services.order_upsert(
        customer=customer,
        data=OrderInput(number="P-1", status="paid", total=Decimal(9), placed_at=timezone.now()),
    )
    ticket = core.ticket_create(customer=customer, subject="Help", body="Where is P-1?")
    Ticket.objects.filter(pk=ticket.pk).update(status="resolved")
    CsatFeedback.objects.create(ticket=ticket, customer=customer, rating=2, comment="Ada was sad")
    assert services.interaction_record(
        customer_id=customer.pk,
        source_key="call:1",
        channel="voice",
        kind="call",
        occurred_at=timezone.now(),
        summary="Ada Lovelace called about P-1",
    )
    data = privacy.customer_export_build(customer)
    assert [o["number"] for o in data["orders"]] == ["P-1"]
    assert [f["comment"] for f in data["csat_feedback"]] == ["Ada was sad"]
    assert [(i["source_key"], i["summary"]) for i in data["interactions"]] == [
        ("call:1", "Ada Lovelace called about P-1")
    ]
    assert Interaction.objects.count() == 0
    for _ in range(2):
        privacy.customer_erase(customer=customer, actor=supervisor, via="test")
    customer.refresh_from_db()
    after = privacy.customer_export_build(customer)
    assert [(i["source_key"], i["kind"], i["summary"]) for i in after["interactions"]] == [
        ("call:1", "call", "[erased]")
    ]
    assert [(f["rating"], f["comment"]) for f in after["csat_feedback"]] == [(2, "")]
    assert [o["number"] for o in after["orders"]] == ["P-1"]
    assert "Ada" not in json.dumps(after)


# --- side effects outside PostgreSQL run after the erase commits (review ctx) -----------


def _customer_with_attachment(name: str, email: str) -> tuple[Customer, Attachment]:
    customer = Customer.objects.create(name=name, email=email)
    ticket = core.ticket_create(
        customer=customer,
        subject="Photo",
        body="The parcel arrived broken, see the photo",
        channel="email",
        attachments=[
            core.NewAttachment(
                filename="broken-parcel.jpg",
                content=b"\xff\xd8 jpeg bytes",
                content_type="image/jpeg",
                kind="image",
            )
        ],
    )
    return customer, Attachment.objects.get(message__ticket=ticket)


def test_an_erase_rolled_back_leaves_the_customers_files_in_place(
    supervisor, settings, tmp_path, monkeypatch
):
    """Before: attachment files were deleted from storage inside the erase transaction, so
    an erase that failed later (here: another app's hook) rolled the database back to
    rows pointing at files that were gone. Files are deleted only once the rows' erase
    has committed."""
    settings.MEDIA_ROOT = tmp_path
    customer, attachment = _customer_with_attachment("Ida Pell", "ida.pell@example.com")
    path = attachment.file.path

    def failing_hook(subject: privacy.ErasureSubject) -> int:
        raise RuntimeError("hook failed")

    monkeypatch.setitem(privacy._erasure_hooks, "zz-failing", failing_hook)
    with pytest.raises(RuntimeError, match="hook failed"):
        privacy.customer_erase(customer=customer, actor=supervisor, via="test")
    customer.refresh_from_db()
    assert customer.name == "Ida Pell"
    assert not CustomerErasure.objects.exists()
    attachment.refresh_from_db()
    assert attachment.filename == "broken-parcel.jpg"
    with open(path, "rb") as handle:
        assert handle.read() == b"\xff\xd8 jpeg bytes"


def test_erase_deletes_s3_attachment_files_with_no_transaction_open(
    supervisor, settings, monkeypatch
):
    """Before: the S3 DeleteObject ran inside the erase transaction (the suite's network
    guard refused it, so erase failed with S3 storage)."""
    from support.storage import S3Storage
    from tickets.models import Attachment as AttachmentModel

    settings.S3_ENABLED = True
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="files")
        storage = S3Storage(bucket_name="files")
        monkeypatch.setattr(AttachmentModel._meta.get_field("file"), "storage", storage)
        customer, attachment = _customer_with_attachment("Ida Pell", "ida.pell@example.com")
        name = attachment.file.name
        assert storage.exists(name)
        counts = privacy.customer_erase(customer=customer, actor=supervisor, via="test")
        assert not storage.exists(name)
    assert counts["attachments_deleted"] == 1
    assert CustomerErasure.objects.get().counts["attachments_deleted"] == 1
    assert not AttachmentModel.objects.exists()


def test_a_file_delete_that_fails_after_commit_is_finished_by_erasing_again(
    supervisor, settings, tmp_path, monkeypatch
):
    """The rows are erased and committed; a storage failure after that reaches the caller
    (no audit row yet), the attachment row stays (without its name) so erasing again
    deletes the file and the row."""
    from django.core.files.storage import FileSystemStorage

    settings.MEDIA_ROOT = tmp_path
    customer, attachment = _customer_with_attachment("Ida Pell", "ida.pell@example.com")
    path = attachment.file.path
    real_delete = FileSystemStorage.delete

    def unavailable(self: FileSystemStorage, name: str) -> None:
        raise OSError("storage unavailable")

    monkeypatch.setattr(FileSystemStorage, "delete", unavailable)
    with pytest.raises(privacy.ErasureIncomplete, match="storage unavailable"):
        privacy.customer_erase(customer=customer, actor=supervisor, via="test")
    customer.refresh_from_db()
    assert (customer.name, customer.email) == ("", "")
    assert CustomerErasure.objects.filter(customer=customer).exists()
    assert not AuditLog.objects.filter(action="customer.erase").exists()
    attachment.refresh_from_db()
    assert attachment.filename == privacy.ERASED

    monkeypatch.setattr(FileSystemStorage, "delete", real_delete)
    counts = privacy.customer_erase(customer=customer, actor=supervisor, via="test")
    assert counts["attachments_deleted"] == 1
    assert not Attachment.objects.exists()
    assert not os.path.exists(path)
    assert AuditLog.objects.filter(action="customer.erase").count() == 1


def test_after_commit_hooks_run_outside_the_transaction_on_every_erase(supervisor, monkeypatch):
    """An app's eraser for data outside PostgreSQL (here: an S3 call under moto, which
    the suite's network guard refuses inside a transaction) runs after the rows' erase
    committed, on the first erase and on a repeat, and gets the customer's ids."""
    customer = Customer.objects.create(name="Ida Pell", email="ida.pell@example.com")
    ticket = core.ticket_create(customer=customer, subject="Hi", body="Hello there friends")
    seen = []

    def outside(subject: privacy.ErasureSubject) -> int:
        boto3.client("s3", region_name="us-east-1").list_buckets()
        seen.append((subject.customer_id, subject.ticket_ids, bool(subject.tokens)))
        return 1

    monkeypatch.setitem(privacy._after_commit_erasure_hooks, "outside", outside)
    with mock_aws():
        first = privacy.customer_erase(customer=customer, actor=supervisor, via="test")
        privacy.customer_erase(customer=customer, actor=supervisor, via="test")
    assert first["hook_outside"] == 1
    assert seen == [(customer.pk, [ticket.pk], True), (customer.pk, [ticket.pk], False)]


def test_admin_and_command_show_an_unfinished_erase_and_how_to_finish_it(
    supervisor, client, settings, tmp_path, monkeypatch
):
    """Before: a failure after the commit (file storage, DynamoDB) was a 500 page in the
    admin, and the other selected customers were not erased; the command printed a
    traceback. Now: the admin says which customer is not finished and to erase again, and
    goes on with the others; the command fails with that one line."""
    from django.contrib.auth.models import Permission
    from django.core.files.storage import FileSystemStorage
    from django.core.management.base import CommandError

    settings.MEDIA_ROOT = tmp_path
    ida, _ = _customer_with_attachment("Ida Pell", "ida.pell@example.com")
    bob = Customer.objects.create(name="Bob Stone", email="bob.stone@example.com")

    def unavailable(self: FileSystemStorage, name: str) -> None:
        raise OSError("storage unavailable")

    monkeypatch.setattr(FileSystemStorage, "delete", unavailable)
    supervisor.user_permissions.add(
        *Permission.objects.filter(content_type=ContentType.objects.get_for_model(Customer))
    )
    client.force_login(supervisor)
    done = client.post(
        "/admin/tickets/customer/",
        {"action": "erase_personal_data", "_selected_action": [ida.pk, bob.pk], "confirm": "yes"},
        follow=True,
    )
    assert done.status_code == 200
    text = done.content.decode()
    assert f"Customer {ida.pk}" in text
    assert "erase again" in text
    assert "storage unavailable" in text
    assert set(CustomerErasure.objects.values_list("customer_id", flat=True)) == {ida.pk, bob.pk}
    assert list(
        AuditLog.objects.filter(action="customer.erase").values_list("object_id", flat=True)
    ) == [str(bob.pk)]
    with pytest.raises(CommandError, match="erase again"):
        call_command("customer_erase", str(ida.pk), "--yes")


def test_redaction_matches_whole_words_in_the_folded_form():
    """Names are found as whole words ("_" a boundary, digits may follow a name),
    case-insensitively and without accents; not inside another word."""
    tokens = ["ana@example.com", "14155550100", "Ana Núñez", "Ana", "Núñez"]
    assert privacy.redact(
        "Ana wrote from ana@example.com: ANA_nunez.pdf, @ana88, tel +14155550100. "
        "Anabel, banana, Nunezco and 141555501009 stay; Ana Nunez goes.",
        tokens,
    ) == (
        "[redacted] wrote from [redacted]: [redacted]_[redacted].pdf, @[redacted]88, tel "
        "+[redacted]. Anabel, banana, Nunezco and 141555501009 stay; [redacted] goes."
    )
    assert privacy.redact("José Núñez", ["Jose Nunez"]) == "[redacted]"


def test_admin_log_entries_of_other_records_naming_them_are_redacted_not_replaced(
    grace, supervisor
):
    """Before: every admin log entry whose text held a name word was replaced whole by
    "[erased]", whoever's record it was. Their own customer row's entries still are (its
    ``str()`` is their name); another record's is redacted."""
    other = Customer.objects.create(name="Ada Byron", email="ada@example.org")
    entry = LogEntry.objects.create(
        user=supervisor,
        content_type=ContentType.objects.get_for_model(Customer),
        object_id=str(other.pk),
        object_repr=f"Ada Byron (referred by {EMAIL})",
        action_flag=CHANGE,
        change_message="[]",
    )
    privacy.customer_erase(customer=grace, actor=supervisor, via="test")
    entry.refresh_from_db()
    assert entry.object_repr == "Ada Byron (referred by [redacted])"
    own = LogEntry.objects.get(object_id=str(grace.pk), content_type_id=entry.content_type_id)
    assert own.object_repr == privacy.ERASED


def _reply_with_file(agent, django_capture_on_commit_callbacks):
    customer, _ = core.customer_get_or_create(
        name="Jane Doe", email="jane.doe@example.org", phone="+14155550111"
    )
    with django_capture_on_commit_callbacks(execute=True):
        ticket = core.ticket_create(
            customer=customer, subject="Refund please", body="I want a refund for order 7731"
        )
        core.message_add(
            ticket=ticket,
            body="Here is your corrected invoice.",
            author_user=agent,
            attachments=[
                core.NewAttachment(
                    filename="Invoice Jane Doe 14155550111.pdf",
                    content_type="application/pdf",
                    content=b"%PDF Bill to: Jane Doe, jane.doe@example.org",
                )
            ],
        )
    return customer, Attachment.objects.get()


def test_files_an_agent_sent_them_are_deleted_after_commit(
    agent, supervisor, settings, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    """Before: an invoice an agent sent them kept its name ("Invoice Jane Doe ….pdf"), its
    storage key (built from that name) and its contents. Its name is redacted in the
    erase transaction; its file, then its row, are deleted after commit, a storage
    failure being finished by erasing again (as for their own files)."""
    from django.core.files.storage import FileSystemStorage

    settings.MEDIA_ROOT = str(tmp_path)
    customer, attachment = _reply_with_file(agent, django_capture_on_commit_callbacks)
    path = attachment.file.path
    real_delete = FileSystemStorage.delete

    def unavailable(self: FileSystemStorage, name: str) -> None:
        raise OSError("storage unavailable")

    monkeypatch.setattr(FileSystemStorage, "delete", unavailable)
    with pytest.raises(privacy.ErasureIncomplete, match="storage unavailable"):
        privacy.customer_erase(customer=customer, actor=supervisor, via="test")
    attachment.refresh_from_db()
    assert attachment.filename == "Invoice [redacted] [redacted].pdf"  # name, phone
    assert os.path.exists(path)

    monkeypatch.setattr(FileSystemStorage, "delete", real_delete)
    counts = privacy.customer_erase(customer=customer, actor=supervisor, via="test")
    assert counts["attachments_deleted"] == 1
    assert not Attachment.objects.exists()
    assert not os.path.exists(path)
    assert Message.objects.get(kind="public", direction="outbound").body_text == (
        "Here is your corrected invoice."
    )
