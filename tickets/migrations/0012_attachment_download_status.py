"""Attachments say where their file is: ``download_status`` (``stored``, ``pending``,
``failed``), ``download_error`` (why it failed, in words) and ``download_attempted_at``
(the media sweep's claim).

The new column's default is ``stored``, what nearly every row is (a file we hold): adding
it is a change of the table's description, not a rewrite. The data step then touches only
the rows without a file, in one statement each: those with a channel's reference become
``pending`` (the media sweep fetches them, or marks them ``failed`` when the channel's
reference has expired, saying so), those with nothing to fetch ``failed``. The index of
pending ones is built ``CONCURRENTLY`` (no write blocked), hence a non-atomic migration.

Depends on both 0010 and 0011: they were written side by side from 0009, and this one
joins them.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

NOTHING_TO_FETCH = "the channel gave no address to download it from"


def reference_rows_mark(apps, schema_editor):
    Attachment = apps.get_model("tickets", "Attachment")
    without_file = Attachment.objects.filter(file="")
    without_file.exclude(external_media_id="", external_url="").update(
        download_status="pending"
    )
    without_file.filter(external_media_id="", external_url="").update(
        download_status="failed", download_error=NOTHING_TO_FETCH
    )


def reference_rows_unmark(apps, schema_editor):
    """Backwards: the columns go, nothing to undo."""


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("tickets", "0010_ticket_team_protect"),
        ("tickets", "0011_message_reply_queued_idx"),
    ]

    operations = [
        migrations.AddField(
            model_name="attachment",
            name="download_status",
            field=models.CharField(
                choices=[
                    ("pending", "Downloading"),
                    ("stored", "Stored"),
                    ("failed", "Could not be downloaded"),
                ],
                default="stored",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="attachment",
            name="download_error",
            field=models.CharField(blank=True, max_length=500),
        ),
        migrations.AddField(
            model_name="attachment",
            name="download_attempted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(reference_rows_mark, reference_rows_unmark, atomic=True),
        AddIndexConcurrently(
            model_name="attachment",
            index=models.Index(
                condition=models.Q(("download_status", "pending")),
                fields=["created_at"],
                name="attachment_pending_idx",
            ),
        ),
    ]
