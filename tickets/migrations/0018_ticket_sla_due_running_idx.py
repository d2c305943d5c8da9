"""The SLA due times indexed where the clock runs only.

The SLA checker (``tickets.services.sla.sla_check``, every minute) asks for the tickets
whose clock runs and is past due, most overdue first; the plain indexes on
``first_response_due_at`` / ``resolution_due_at`` hold every resolved and closed ticket too,
so each run walked the whole history (about 17k buffers at 100k tickets, and growing).
Two partial indexes with the checker's conditions replace them (nothing else reads the
plain ones: the inbox and dashboard SLA filters, ``tickets.selectors.sla_due_q``, carry the
same conditions).

Built and dropped ``CONCURRENTLY`` (no write blocked on the tickets table), hence a
non-atomic migration; the new indexes exist before the old ones go."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

#: The names Django gave the fields' ``db_index`` (0005_sla_policies).
PLAIN = {
    "first_response_due_at": "tickets_ticket_first_response_due_at_18cb1c2f",
    "resolution_due_at": "tickets_ticket_resolution_due_at_5d8ffe18",
}


def _drop_plain(field: str) -> migrations.SeparateDatabaseAndState:
    name = PLAIN[field]
    return migrations.SeparateDatabaseAndState(
        state_operations=[
            migrations.AlterField(
                model_name="ticket",
                name=field,
                field=models.DateTimeField(blank=True, null=True),
            ),
        ],
        database_operations=[
            migrations.RunSQL(
                f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"',
                reverse_sql=(
                    f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" '
                    f'ON "tickets_ticket" ("{field}")'
                ),
            ),
        ],
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("tickets", "0017_ticket_sla_pauses"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="ticket",
            index=models.Index(
                condition=models.Q(
                    ("first_response_at__isnull", True),
                    ("first_response_due_at__isnull", False),
                    ("status__in", ["new", "open", "pending"]),
                ),
                fields=["first_response_due_at", "id"],
                name="ticket_first_response_due_idx",
            ),
        ),
        AddIndexConcurrently(
            model_name="ticket",
            index=models.Index(
                condition=models.Q(
                    ("resolution_due_at__isnull", False),
                    ("sla_paused_at__isnull", True),
                    ("status__in", ["new", "open"]),
                ),
                fields=["resolution_due_at", "id"],
                name="ticket_resolution_due_idx",
            ),
        ),
        _drop_plain("first_response_due_at"),
        _drop_plain("resolution_due_at"),
    ]
