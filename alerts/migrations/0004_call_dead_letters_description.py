"""CallDeadLetters (seed 003, "SQS DLQ message count > 0") watches
``support_call_events_failed``, which since calls migration 0005 is a level: every call
record still failed, however long ago it came (it counted only the window's, so an
unhandled dead letter resolved its alert a day later). The rule's description said
"in 24 hours"; it now says what the alert means. Only the seeded wording is replaced (a
supervisor's edit stays)."""

from typing import Any

from django.db import migrations

RULE = "CallDeadLetters"
OLD = "Any call record in the dead letters (failed, waiting for a redelivery) in 24 hours."
NEW = (
    "Any call record still in the dead letters (failed, waiting for a redelivery or a delete "
    "in the admin), however long ago it came."
)


def _reword(apps: Any, old: str, new: str) -> None:
    apps.get_model("alerts", "AlertRule").objects.filter(name=RULE, description=old).update(
        description=new
    )


def description_update(apps: Any, schema_editor: Any) -> None:
    _reword(apps, OLD, NEW)


def description_restore(apps: Any, schema_editor: Any) -> None:
    _reword(apps, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [("alerts", "0003_http_5xx_rate_from_redis_counts")]

    operations = [migrations.RunPython(description_update, description_restore)]
