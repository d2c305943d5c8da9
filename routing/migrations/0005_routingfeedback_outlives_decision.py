from typing import Any

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def backfill(apps: Any, schema_editor: Any) -> None:
    """Each verdict's ticket is its decision's (every verdict has one before this)."""
    alias = schema_editor.connection.alias
    decisions = apps.get_model("routing", "RoutingDecision").objects.using(alias)
    verdicts = apps.get_model("routing", "RoutingFeedback").objects.using(alias)
    verdicts.update(
        ticket_id=Subquery(decisions.filter(pk=OuterRef("decision_id")).values("ticket_id")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0004_routingdecision_out_of_scope"),
    ]

    operations = [
        migrations.AddField(
            model_name="routingfeedback",
            name="ticket",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="routing_verdicts",
                to="tickets.ticket",
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="routingfeedback",
            name="ticket",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="routing_verdicts",
                to="tickets.ticket",
            ),
        ),
        migrations.AlterField(
            model_name="routingfeedback",
            name="decision",
            field=models.ForeignKey(
                blank=True,
                help_text="Empty once the decision was purged (retention); the verdict stays.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="feedback",
                to="routing.routingdecision",
            ),
        ),
    ]
