from __future__ import annotations

from celery import shared_task

from alerts.services import alert_rules_evaluate


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def alert_rules_evaluate_task() -> None:
    """The beat's alarm evaluation (idempotent: one run at a time, rules not yet due are
    skipped)."""
    alert_rules_evaluate()
