"""The knowledge base's records in the admin: shown to supervisors and superusers, never
added, edited or deleted by hand (the ingestion writes them)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from knowledge.models import Document, IngestionJob, KnowledgeSource, ObjectEvent

pytestmark = pytest.mark.django_db

RECORDS = ("document", "ingestionjob", "objectevent", "suggestionfeedback")


@pytest.mark.parametrize("who", ["supervisor", "superuser"])
@pytest.mark.parametrize("model", RECORDS)
def test_records_cannot_be_added_by_hand(request: Any, who: str, model: str) -> None:
    browser = Client()
    browser.force_login(request.getfixturevalue(who))
    assert browser.get(f"/admin/knowledge/{model}/add/").status_code == 403
    index = browser.get("/admin/knowledge/").content.decode()
    assert f'href="/admin/knowledge/{model}/add/"' not in index


def test_a_received_event_key_cannot_be_forged_or_edited(superuser: Any) -> None:
    """A hand-made event key would make the real S3 event look like a redelivery."""
    browser = Client()
    browser.force_login(superuser)
    form = {"event_key": "bucket/key#1", "via": "http", "bucket": "b", "key": "k"}
    assert browser.post("/admin/knowledge/objectevent/add/", form).status_code == 403
    assert not ObjectEvent.objects.exists()

    event = ObjectEvent.objects.create(event_key="real", via="sqs", bucket="b", key="k")
    page = browser.get(f"/admin/knowledge/objectevent/{event.pk}/change/")
    assert page.status_code == 200  # shown, read-only
    browser.post(f"/admin/knowledge/objectevent/{event.pk}/change/", {**form, "key": "x"})
    event.refresh_from_db()
    assert (event.event_key, event.key) == ("real", "k")


def test_documents_are_not_deleted_behind_their_chunks(superuser: Any) -> None:
    source = KnowledgeSource.objects.create(name="faq")
    document = Document.objects.create(source=source, external_id="a", title="A")
    job = IngestionJob.objects.create(source=source)
    browser = Client()
    browser.force_login(superuser)
    assert browser.get(f"/admin/knowledge/document/{document.pk}/delete/").status_code == 403
    assert browser.get(f"/admin/knowledge/ingestionjob/{job.pk}/change/").status_code == 200
    assert Document.objects.filter(pk=document.pk).exists()
