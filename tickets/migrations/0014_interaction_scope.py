"""Interactions carry a ``scope``: what else an entry is about whose own rule says who may
see it (an analysed call: ``call:<contact id>``, the call page's rule;
``tickets.context.scopes``). Before, an analysed call with no escalation ticket was an
entry of no ticket, shown to every agent who may see the customer.

The column has a database default (``""``: no scope), so the previous release's workers
keep inserting during the deploy. The data step scopes the analysed calls' entries already
there by their key (kind ``call``, ``source_key`` ``call:<contact id>``, all that
``calls.services.call_interaction_record`` ever wrote), in one statement; the entries the
previous release writes after it are scoped the same way when read
(``tickets.context.interactions.scope_read``).
"""

from django.db import migrations, models
from django.db.models import F


def call_entries_scope(apps, schema_editor):
    Interaction = apps.get_model("tickets", "Interaction")
    Interaction.objects.filter(kind="call", source_key__startswith="call:", scope="").update(
        scope=F("source_key")
    )


def call_entries_unscope(apps, schema_editor):
    """Backwards: the column goes, nothing to undo."""


class Migration(migrations.Migration):
    dependencies = [
        ("tickets", "0013_reply_failed_attachment_failed_idx"),
    ]

    operations = [
        migrations.AddField(
            model_name="interaction",
            name="scope",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text=(
                    "What else the entry is about, whose own rule decides who sees it, as "
                    "<kind>:<key> (an analysed call's: call:<contact id>, the call page's "
                    "rule); empty for none (then the ticket rule alone)."
                ),
                max_length=140,
            ),
        ),
        migrations.RunPython(call_entries_scope, call_entries_unscope),
    ]
