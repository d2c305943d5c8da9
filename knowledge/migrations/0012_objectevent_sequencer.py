from django.db import migrations, models


class Migration(migrations.Migration):
    # Columns with a database default (``db_default``: kept in the table, so the previous
    # release's code, which does not know the column, can still insert while it runs) or
    # nullable: PostgreSQL adds them without rewriting the table (the index, built
    # concurrently, is 0013).

    dependencies = [
        ("knowledge", "0011_objectevent_sweep_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="objectevent",
            name="sequencer",
            field=models.CharField(
                blank=True, db_collation="C", db_default="", default="", max_length=32
            ),
        ),
        migrations.AddField(
            model_name="knowledgesource",
            name="listed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
