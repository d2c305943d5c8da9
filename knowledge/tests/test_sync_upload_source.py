"""``POST /api/kb/sync`` naming an upload source: a clear 400, as the admin's "Sync the
selected sources again" refuses it (one rule, ``services.source_sync_check``). Before,
the API queued a job that re-read nothing and succeeded, clearing the source's
``support_kb_sources_failing`` gauge."""

from __future__ import annotations

from html import unescape
from typing import Any

import pytest
from django.test import Client

from knowledge.models import IngestionJob, KnowledgeSource
from support.models import AuditLog

pytestmark = pytest.mark.django_db

REFUSAL = (
    "Source 'uploads' holds uploads: there is nothing to re-read (upload the file again, "
    "or run a failed upload again from the admin's Ingestion jobs)."
)


def test_syncing_an_upload_source_is_a_400_saying_why_and_starts_nothing(
    supervisor_client: Any, supervisor: Any, django_capture_on_commit_callbacks: Any
) -> None:
    uploads = KnowledgeSource.objects.create(name="uploads", kind="upload")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        for full in (False, True):
            response = supervisor_client.post(
                "/api/kb/sync", {"source": "uploads", "full": full}, format="json"
            )
            assert response.status_code == 400
            assert response.json() == {
                "error": {"code": "invalid", "message": REFUSAL, "details": {}}
            }
    assert callbacks == []
    assert not IngestionJob.objects.exists()

    # the admin's action says the same, from the same rule
    browser = Client()
    browser.force_login(supervisor)
    page = browser.post(
        "/admin/knowledge/knowledgesource/",
        {"action": "sync_again", "_selected_action": [uploads.pk]},
        follow=True,
    ).content.decode()
    assert REFUSAL in unescape(page)
    assert not IngestionJob.objects.exists()
    assert not AuditLog.objects.exists()
