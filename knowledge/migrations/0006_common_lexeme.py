"""``CommonLexeme``: the words more than 200 passages hold, counted once here for existing
knowledge bases (afterwards after each ingestion and deletion)."""

from django.db import migrations, models

# knowledge.retrieval.BODY_NAME_MAX_CHUNKS when this migration was written (a migration is
# frozen; the service counts with the current value).
MORE_THAN = 200


def count(apps, schema_editor):  # noqa: ANN001 - migration signature
    schema_editor.execute(
        "INSERT INTO knowledge_commonlexeme (lexeme, passages) SELECT word, ndoc FROM ts_stat("
        "'SELECT search_vector FROM knowledge_chunk WHERE kind = ''body''') WHERE ndoc > %s",
        [MORE_THAN],
    )


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0005_chunk_embedder")]

    operations = [
        migrations.CreateModel(
            name="CommonLexeme",
            fields=[
                ("lexeme", models.TextField(primary_key=True, serialize=False)),
                ("passages", models.PositiveIntegerField()),
            ],
        ),
        migrations.RunPython(count, migrations.RunPython.noop),
    ]
