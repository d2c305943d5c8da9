"""The system check ``knowledge.W001``: the Bedrock backend with score thresholds
calibrated on the local backend's scores."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command

from knowledge.checks import LOCAL_CALIBRATION, check_bedrock_thresholds


def test_the_checked_values_are_the_shipped_defaults(settings: Any) -> None:
    for name, value in LOCAL_CALIBRATION.items():
        assert getattr(settings, name) == value, name


def test_bedrock_with_the_local_thresholds_warns_and_says_how_to_calibrate(
    settings: Any,
) -> None:
    settings.KB_BACKEND = "bedrock"
    [warning] = check_bedrock_thresholds()
    assert warning.id == "knowledge.W001"
    assert not warning.is_serious()  # a warning: migrate and check still pass
    assert warning.msg.startswith(
        "KB_BACKEND is bedrock but KB_SUGGESTION_MIN_SCORE=0.35, KB_DRAFT_MIN_SCORE=0.55, "
        "KB_DRAFT_MIN_MARGIN=0.0475 are the local backend's calibration"
    )
    assert "manage.py kb_eval --drafts" in (warning.hint or "")
    assert "KB_SUGGESTION_MIN_SCORE" in (warning.hint or "")


def test_only_the_thresholds_left_at_the_local_values_are_named(settings: Any) -> None:
    settings.KB_BACKEND = "bedrock"
    settings.KB_DRAFT_MIN_SCORE = 0.62
    settings.KB_DRAFT_MIN_MARGIN = 0.03
    [warning] = check_bedrock_thresholds()
    assert warning.msg.startswith("KB_BACKEND is bedrock but KB_SUGGESTION_MIN_SCORE=0.35 is ")


def test_bedrock_with_calibrated_thresholds_does_not_warn(settings: Any) -> None:
    settings.KB_BACKEND = "bedrock"
    settings.KB_SUGGESTION_MIN_SCORE = 0.4
    settings.KB_DRAFT_MIN_SCORE = 0.62
    settings.KB_DRAFT_MIN_MARGIN = 0.03
    assert check_bedrock_thresholds() == []


def test_the_local_backend_does_not_warn(settings: Any) -> None:
    settings.KB_BACKEND = "local"
    assert check_bedrock_thresholds() == []


def test_manage_py_check_prints_the_warning(settings: Any, capsys: pytest.CaptureFixture) -> None:
    settings.KB_BACKEND = "bedrock"
    call_command("check")  # a warning does not fail it
    assert "knowledge.W001" in capsys.readouterr().err


# --- knowledge.W002: Bedrock with no S3 source ---------------------------------------------


@pytest.mark.django_db
def test_bedrock_without_an_s3_source_warns_on_a_database_check(settings: Any) -> None:
    """S3 events start an ingestion job only for an object an S3 source covers; without
    one each event was marked processed, unsaid."""
    from knowledge.checks import check_bedrock_s3_source
    from knowledge.models import KnowledgeSource

    settings.KB_BACKEND = "bedrock"
    KnowledgeSource.objects.filter(kind=KnowledgeSource.Kind.S3).delete()
    [warning] = check_bedrock_s3_source(databases=["default"])
    assert (warning.id, warning.is_serious()) == ("knowledge.W002", False)
    assert "no knowledge source of kind s3" in warning.msg
    assert check_bedrock_s3_source() == []  # not a database check run: no query
    KnowledgeSource.objects.create(name="kb-bucket", kind="s3", bucket="kb-docs")
    assert check_bedrock_s3_source(databases=["default"]) == []
    settings.KB_BACKEND = "local"
    KnowledgeSource.objects.all().delete()
    assert check_bedrock_s3_source(databases=["default"]) == []


@pytest.mark.django_db
def test_the_s3_source_check_is_registered_as_a_database_check(settings: Any) -> None:
    from django.core.checks import registry

    settings.KB_BACKEND = "bedrock"
    found = registry.run_checks(tags=["database"], databases=["default"])
    assert "knowledge.W002" in {message.id for message in found}
