from typing import Any

from django.db import migrations, models


def backfill(apps: Any, schema_editor: Any) -> None:
    """Decisions made before the column: the classifier's own flag, kept in
    ``classification["classifier"]``, where its router had a detector (an in-scope score:
    a JSON number, which sorts above JSON null); the rest stay empty."""
    decisions = apps.get_model("routing", "RoutingDecision").objects.using(
        schema_editor.connection.alias
    )
    scored = decisions.filter(classification__classifier__in_scope__gte=0)
    scored.filter(classification__classifier__out_of_scope=True).update(out_of_scope=True)
    scored.filter(classification__classifier__out_of_scope=False).update(out_of_scope=False)


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0003_routingfeedback_created_at_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="routingdecision",
            name="out_of_scope",
            field=models.BooleanField(
                null=True,
                blank=True,
                help_text="The trained router found the text unlike any intent it was trained "
                "on (sent to review): a share that grows says customers ask something new. "
                "Empty: the router has no out-of-scope detector.",
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
