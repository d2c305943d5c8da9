from django.db import migrations, models


class Migration(migrations.Migration):
    # A nullable column and constant defaults: PostgreSQL adds them without rewriting the
    # table (the index, built concurrently, is 0013). Events received before this keep an
    # empty sequencer: they are ordered by receipt, as before.

    dependencies = [
        ("knowledge", "0011_objectevent_sweep_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="objectevent",
            name="sequencer",
            field=models.CharField(blank=True, db_collation="C", default="", max_length=32),
        ),
        migrations.AddField(
            model_name="knowledgesource",
            name="listed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
