from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CONCURRENTLY: every S3 event is a job, so the table grows with the bucket; building
    # the index must not block the jobs written meanwhile.
    atomic = False

    dependencies = [
        ("knowledge", "0014_objectevent_sequencer_backfill"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="ingestionjob",
            index=models.Index(
                condition=models.Q(
                    ("kind__in", ["sync", "ingest"]), ("status__in", ["succeeded", "failed"])
                ),
                fields=["source", "finished_at", "id"],
                name="kb_job_last_run",
            ),
        ),
    ]
