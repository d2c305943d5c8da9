"""Inbound events get a status of their own for deliveries a supervisor closed unprocessed,
``closed`` (they were stored ``ignored``, the status of unknown event types).

The choices alone change the schema (no SQL). Rows closed before are moved by the data
step: ``ignored`` with ``closed_by`` in the summary. Only the close writes that key
(``inbound_event_close``, since the action exists), and a later drain of the row rewrites the
summary whole, so such a row's status is the close's. Rows closed and later erased keep
``ignored``: the erasure blanked their summary, and the close's audit entry alone does not
prove the row is still closed (Re-process takes any row, and a re-processed one may end
ignored for an unknown event type). Both statuses have the same retention.
"""

from django.db import migrations, models


def closed_events_restatus(apps, schema_editor):
    InboundEvent = apps.get_model("channels_app", "InboundEvent")
    InboundEvent.objects.filter(status="ignored", summary__has_key="closed_by").update(
        status="closed"
    )


def closed_events_unstatus(apps, schema_editor):
    """Backwards: closed ones are stored as they were before, ``ignored``."""
    InboundEvent = apps.get_model("channels_app", "InboundEvent")
    InboundEvent.objects.filter(status="closed").update(status="ignored")


class Migration(migrations.Migration):

    dependencies = [
        ('channels_app', '0009_sent_message_events'),
    ]

    operations = [
        migrations.AlterField(
            model_name='inboundevent',
            name='status',
            field=models.CharField(choices=[('received', 'Received'), ('processed', 'Processed'), ('ignored', 'Ignored (unknown event type)'), ('malformed', 'Malformed'), ('retrying', 'Retrying'), ('dead', 'Dead letter'), ('quarantined', 'Quarantined (e-mail sender not verified)'), ('closed', 'Closed unprocessed')], default='received', max_length=16),
        ),
        migrations.RunPython(closed_events_restatus, closed_events_unstatus),
    ]
