from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CONCURRENTLY: alerts are raised and resolved every minute (rule evaluations, SLA
    # events); building the index must not block those writes.
    atomic = False

    dependencies = [
        ("alerts", "0005_error_rate_counts_failed_routing"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="alert",
            index=models.Index(fields=["fingerprint"], name="alerts_fingerprint_idx"),
        ),
    ]
