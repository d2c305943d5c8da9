"""The retention purge's index (``services.deliveries_purge``, hourly): finished deliveries
by when they finished, so each run reads the hour or so past its cutoff instead of every
delivery kept. Built ``CONCURRENTLY`` (sends and their records are not blocked while it
builds), hence a non-atomic migration."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("delivery", "0004_outcome_replay"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="delivery",
            index=models.Index(
                condition=models.Q(("status__in", ("succeeded", "dead"))),
                fields=["completed_at"],
                name="delivery_finished_idx",
            ),
        ),
    ]
