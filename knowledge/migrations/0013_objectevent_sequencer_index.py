from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # CONCURRENTLY: building or dropping an index must not block the intake of S3 events.
    # The new index (bucket, key, sequencer) serves the (bucket, key) lookups the old one
    # did, and the "later by sequencer" one: the old one is dropped once it is built.
    atomic = False

    dependencies = [
        ("knowledge", "0012_objectevent_sequencer"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="objectevent",
            index=models.Index(
                fields=["bucket", "key", "sequencer"], name="kb_objectevent_object_seq"
            ),
        ),
        RemoveIndexConcurrently(
            model_name="objectevent",
            name="kb_objectevent_object",
        ),
    ]
