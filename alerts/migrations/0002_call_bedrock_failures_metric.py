"""CallBedrockFailures (seed 003's "Bedrock invocation failures") watched
``support_call_analytics{bedrock_status=~"ServiceError|ClientError"}``, which nothing
stores: a failed Data Automation job leaves no analytics row, and a summary whose Bedrock call
failed is stored as ``Failed``. Both are counted in ``support_call_bedrock_failures``. The
rule moves to it only where it still has the old default (a supervisor's edit stays)."""

from typing import Any

from django.db import migrations

RULE = "CallBedrockFailures"
OLD_METRIC = 'support_call_analytics{bedrock_status=~"ServiceError|ClientError"}'
NEW_METRIC = "support_call_bedrock_failures"
OLD_DESCRIPTION = "Any Bedrock Data Automation failure in 5 minutes."
NEW_DESCRIPTION = (
    "Any Bedrock failure of the call pipeline in 5 minutes: a Data Automation invocation or "
    "job that failed, or a summary whose Bedrock call failed (the local analysis stood in)."
)


def _move(apps: Any, *, metric: tuple[str, str], description: tuple[str, str]) -> None:
    rules = apps.get_model("alerts", "AlertRule").objects.filter(name=RULE)
    rules.filter(metric=metric[0]).update(metric=metric[1])
    rules.filter(description=description[0]).update(description=description[1])


def rule_metric_update(apps: Any, schema_editor: Any) -> None:
    _move(apps, metric=(OLD_METRIC, NEW_METRIC), description=(OLD_DESCRIPTION, NEW_DESCRIPTION))


def rule_metric_restore(apps: Any, schema_editor: Any) -> None:
    _move(apps, metric=(NEW_METRIC, OLD_METRIC), description=(NEW_DESCRIPTION, OLD_DESCRIPTION))


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_alert_rules_alerts_targets")]

    operations = [migrations.RunPython(rule_metric_update, rule_metric_restore)]
