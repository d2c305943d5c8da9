from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CONCURRENTLY: object events are kept for good (every S3 notification received);
    # building the indexes must not block intake.
    atomic = False

    dependencies = [
        ("knowledge", "0010_objectevent_sweep"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='objectevent',
            index=models.Index(condition=models.Q(('processed_at__isnull', True)), fields=['id'], name='kb_objectevent_pending'),
        ),
        AddIndexConcurrently(
            model_name='objectevent',
            index=models.Index(fields=['bucket', 'key'], name='kb_objectevent_object'),
        ),
    ]
