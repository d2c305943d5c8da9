"""Http5xxRate (seed 003) watched the increase of ``support_http_requests_total``, counters
that live only in the web processes (their memory, or their multiprocess directory), while
rules are evaluated by a Celery worker, another process and, deployed, another ECS task,
which saw none of them: the rule could never fire. The web processes now add their requests
per minute to Redis (``support.request_metrics``), exported to every process by the
``http_window`` source as ``support_http_window_errors`` / ``support_http_window_requests``
over the rule's window. The rule moves to them only where it still has the old defaults (a
supervisor's edit stays)."""

from typing import Any

from django.db import migrations

RULE = "Http5xxRate"
OLD = ('support_http_requests_total{status=~"5.."}', "support_http_requests_total", "increase")
NEW = ("support_http_window_errors", "support_http_window_requests", "window")


def _move(apps: Any, old: tuple[str, str, str], new: tuple[str, str, str]) -> None:
    apps.get_model("alerts", "AlertRule").objects.filter(
        name=RULE, metric=old[0], denominator=old[1], aggregation=old[2]
    ).update(metric=new[0], denominator=new[1], aggregation=new[2])


def rule_source_update(apps: Any, schema_editor: Any) -> None:
    _move(apps, OLD, NEW)


def rule_source_restore(apps: Any, schema_editor: Any) -> None:
    _move(apps, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [("alerts", "0002_call_bedrock_failures_metric")]

    operations = [migrations.RunPython(rule_source_update, rule_source_restore)]
