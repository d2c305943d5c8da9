"""System checks of the knowledge app (``manage.py check``; ``migrate`` runs them too).
Registered in ``KnowledgeConfig.ready()``."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning
from django.db import DatabaseError

# The score thresholds as shipped: calibrated on the local backend's fused scores
# (StackFAQ's dev split, bench/kb_draft_calibrate.py; docs/knowledge.md "Reply drafts").
LOCAL_CALIBRATION: dict[str, float] = {
    "KB_SUGGESTION_MIN_SCORE": 0.35,
    "KB_DRAFT_MIN_SCORE": 0.55,
    "KB_DRAFT_MIN_MARGIN": 0.0475,
}

BEDROCK_CALIBRATION_HINT = (
    "Calibrate them on Bedrock's own scores: label questions of your knowledge base as "
    'kb_eval\'s JSONL ({"query": ..., "relevant": [the answering documents\' S3 URIs]}), '
    "then compare candidate thresholds with `KB_BACKEND=bedrock KB_DRAFT_MIN_SCORE=S "
    "KB_DRAFT_MIN_MARGIN=M python manage.py kb_eval --drafts --queries FILE.jsonl` "
    "(coverage and citation precision; the rule bench/kb_draft_calibrate.py applies to "
    "the local scores: the smallest margin whose precision clears 0.98, then the highest "
    "score that keeps coverage) and set KB_DRAFT_MIN_SCORE, KB_DRAFT_MIN_MARGIN and "
    'KB_SUGGESTION_MIN_SCORE to what you chose (docs/knowledge.md, "Reply drafts").'
)


def check_bedrock_thresholds(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``KB_BACKEND=bedrock`` with the score thresholds still at the local calibration
    (``knowledge.W001``). Bedrock's ``retrieve`` scores are on another scale than the local
    fused scores, so 0.55 / 0.0475 neither mean "confident" there nor were ever measured:
    drafts and suggestions would be gated by numbers chosen for another scorer. A warning,
    not an error: the values may be right for a given knowledge base, but only a
    calibration on it can say so. Compared by value, so thresholds copied from
    ``.env.example`` (the same numbers) warn too."""
    if settings.KB_BACKEND != "bedrock":
        return []
    unchanged = [
        name
        for name, value in LOCAL_CALIBRATION.items()
        if math.isclose(float(getattr(settings, name)), value)
    ]
    if not unchanged:
        return []
    values = ", ".join(f"{name}={getattr(settings, name)}" for name in unchanged)
    return [
        Warning(
            f"KB_BACKEND is bedrock but {values} "
            f"{'is' if len(unchanged) == 1 else 'are'} the local backend's calibration: "
            "Bedrock's retrieve scores are on another scale, so reply drafts and "
            "suggestions are gated by thresholds never measured on them.",
            hint=BEDROCK_CALIBRATION_HINT,
            id="knowledge.W001",
        )
    ]


def check_bedrock_s3_source(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """``KB_BACKEND=bedrock`` with no S3 knowledge source (``knowledge.W002``). S3 object
    events start a Bedrock ingestion job only for an object a ``KnowledgeSource`` of kind
    ``s3`` covers (bucket and prefix); without one every event is marked processed and
    nothing is ingested. A database check (registered with ``Tags.database``): it runs on
    ``migrate`` and ``manage.py check --database default``, not on every command, and says
    nothing before the knowledge tables exist."""
    if settings.KB_BACKEND != "bedrock" or not databases or "default" not in databases:
        return []
    from knowledge.models import KnowledgeSource

    try:
        found = KnowledgeSource.objects.filter(kind=KnowledgeSource.Kind.S3).exists()
    except DatabaseError:  # not migrated yet: the first migrate
        return []
    if found:
        return []
    return [
        Warning(
            "KB_BACKEND is bedrock but no knowledge source of kind s3 exists: S3 object "
            "events are marked processed without starting an ingestion job.",
            hint='Add a knowledge source of kind "S3 bucket" with the Bedrock data '
            "source's bucket and prefix (admin: Knowledge sources, with the add permission; "
            'docs/knowledge.md, "Backends").',
            id="knowledge.W002",
        )
    ]
