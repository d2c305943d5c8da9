"""Two indexes for the call metrics (``calls.metrics``, read on every /metrics scrape and
by every alarm evaluation, once per rule window): the calls recorded in the window
(``call_created_idx``) and the failed calls by when they failed (``call_failed_idx``, a
handful of rows). Without them each read scanned every call kept (calls are kept for good,
with their raw records). Built ``CONCURRENTLY`` (intake is not blocked), hence a
non-atomic migration."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("calls", "0015_call_pipeline_restarts"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="call",
            index=models.Index(fields=["created_at"], name="call_created_idx"),
        ),
        AddIndexConcurrently(
            model_name="call",
            index=models.Index(
                condition=models.Q(("pipeline_status", "failed")),
                fields=["updated_at"],
                name="call_failed_idx",
            ),
        ),
    ]
