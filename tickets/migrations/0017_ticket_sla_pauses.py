"""The stops of a ticket's SLA clocks (docs/sla.md, "The clocks"), measured in the calendar
of whichever policy applies. ``db_default`` ``[]``: the previous release's inserts work
during the rolling deploy; its tickets keep ``sla_paused_seconds`` as they are."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tickets', '0016_context_dead_letter'),
    ]

    operations = [
        migrations.AddField(
            model_name='ticket',
            name='sla_pauses',
            field=models.JSONField(blank=True, db_default=[], default=list, editable=False, help_text='When the SLA clocks were stopped (docs/sla.md).'),
        ),
    ]
