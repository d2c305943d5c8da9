from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CONCURRENTLY: every change a person makes writes an outbox event, and the outbox
    # keeps OUTBOX_RETENTION_DAYS of them; building the index must not block those writes.
    atomic = False

    dependencies = [
        ('support', '0004_idempotency_key'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='outboxevent',
            index=models.Index(condition=models.Q(('failed_at__isnull', False)), fields=['id'], name='outbox_failed_idx'),
        ),
    ]
