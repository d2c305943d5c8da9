"""A draft model's failure is stored (``ReplyDraft.fallback_reason``) and logged by its
type, fields and error types (``support.fallback.provider_error_summary``), never by its
message, which may repeat what the model answered."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from strands.types.exceptions import StructuredOutputException

from knowledge.drafts import EMAIL, DraftRequest, ModelDrafter
from knowledge.retrieval import SearchResult
from routing.tests.conftest import ScriptedModel

MARKER = "MODEL-OUTPUT-MARKER customer zq1815.home@exa wants a refund"


class _Answer(BaseModel):
    body: str


class Refusing(ScriptedModel):
    async def stream(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        try:
            _Answer.model_validate({"body": [MARKER]})
        except ValidationError as error:
            raise StructuredOutputException(f"failed validation: {error}") from error
        yield  # pragma: no cover


def test_the_draft_fallback_reason_holds_no_model_output(caplog: pytest.LogCaptureFixture):
    article = SearchResult(
        document_id=None,
        document_external_id="d",
        title="Refunds",
        url="",
        source="s",
        chunk_id=1,
        heading_path="",
        text="Refunds take 5 days.",
        headline="Refunds take 5 days.",
        score=1.0,
    )
    request = DraftRequest(turns=[], articles=[article], style=EMAIL)
    with caplog.at_level(logging.INFO):
        draft = ModelDrafter("bedrock", model_factory=lambda: Refusing([])).compose(request)
    assert draft.provider == "local"
    assert draft.fallback_reason == (
        "bedrock: StructuredOutputException <- ValidationError (body: string_type)"
    )
    assert [r.getMessage() for r in caplog.records if "zq1815" in r.getMessage()] == []
