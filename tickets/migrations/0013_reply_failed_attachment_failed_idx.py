"""Two partial indexes for the supervisor dashboard's "Intake and delivery health" widget
and ``support_media_downloads``: replies whose sending failed, by when they failed
(``message_reply_failed_idx``), and attachments that could not be downloaded, by when they
came (``attachment_failed_idx``). Both cover a handful of rows of large tables, so a count
over a window reads the index, not the table. Built ``CONCURRENTLY`` (no write blocked on
the messages table), hence a non-atomic migration."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("tickets", "0012_attachment_download_status"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="message",
            index=models.Index(
                condition=models.Q(
                    ("delivery_status", "failed"), ("direction", "outbound"), ("kind", "public")
                ),
                fields=["failed_at"],
                name="message_reply_failed_idx",
            ),
        ),
        AddIndexConcurrently(
            model_name="attachment",
            index=models.Index(
                condition=models.Q(("download_status", "failed")),
                fields=["created_at"],
                name="attachment_failed_idx",
            ),
        ),
    ]
