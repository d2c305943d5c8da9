"""Seed 004's error-rate alarms (HighErrorRate, CriticalErrorRate, WarningErrorRate)
divided ``support_routing_provider_errors`` by ``support_routing_tickets_processed``: both
count decisions, and a ticket whose routing failed outright has none, so a total routing
outage read 0/0 (no data) and no alarm fired. They now divide the tickets that fell back or
failed by every ticket routed or failed (``support_routing_outcomes``, routing/metrics.py):
an outage reads 100%. Only rules still on the seeded selectors move (a supervisor's edit
stays), and HighErrorRate's description is reworded only with them: a rule whose metric
or denominator a supervisor changed keeps its text, which would otherwise claim it counts
failed routing. Running it (or its reverse) again changes nothing."""

from typing import Any

from django.db import migrations

RULES = ("HighErrorRate", "CriticalErrorRate", "WarningErrorRate")
OLD = ("support_routing_provider_errors", "support_routing_tickets_processed")
NEW = ('support_routing_outcomes{outcome=~"fell_back|failed"}', "support_routing_outcomes")
OLD_HIGH = "Routing decisions whose provider failed, > 5% for 5 minutes."
NEW_HIGH = (
    "Tickets whose routing provider failed (fell back) or whose routing failed outright "
    "(no decision), > 5% of the tickets routed or failed in 5 minutes."
)


def _move(apps: Any, old: tuple[str, str], new: tuple[str, str], text: tuple[str, str]) -> None:
    rules = apps.get_model("alerts", "AlertRule").objects.filter(
        name__in=RULES, metric=old[0], denominator=old[1]
    )
    # the description describes the source: reworded only together with it
    rules.filter(name="HighErrorRate", description=text[0]).update(
        metric=new[0], denominator=new[1], description=text[1]
    )
    rules.update(metric=new[0], denominator=new[1])


def rule_source_update(apps: Any, schema_editor: Any) -> None:
    _move(apps, OLD, NEW, (OLD_HIGH, NEW_HIGH))


def rule_source_restore(apps: Any, schema_editor: Any) -> None:
    _move(apps, NEW, OLD, (NEW_HIGH, OLD_HIGH))


class Migration(migrations.Migration):
    dependencies = [("alerts", "0004_call_dead_letters_description")]

    operations = [migrations.RunPython(rule_source_update, rule_source_restore)]
