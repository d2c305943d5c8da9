"""Backfill ``ObjectEvent.sequencer`` of the events recorded without one (before 0012,
or by the code before it during the deploy) from the notification they stored
(``payload``), so that they are ordered with the others by S3's sequencer, not as the
earliest events of their object (``services.object_events_order_q``)."""

import re

from django.db import migrations, transaction

BATCH = 1000

# Frozen copy of ``knowledge.s3events.sequencer_normalize`` and of where the intake reads
# the sequencer (``_eventbridge``, ``_records``) as of 2026-12-06: a data migration must
# not follow later changes of the app's code.
SEQUENCER_WIDTH = 32
_HEX = re.compile(r"[0-9A-Fa-f]+")


def sequencer_normalize(raw):
    if not isinstance(raw, str) or not _HEX.fullmatch(raw) or len(raw) > SEQUENCER_WIDTH:
        return ""
    return raw.upper().rjust(SEQUENCER_WIDTH, "0")


def payload_sequencer(payload):
    """The normalized sequencer of a stored payload: an EventBridge event
    (``detail.object.sequencer``) or one S3 notification record (``s3.object.sequencer``,
    unwrapped from its SNS envelope and ``Records`` at intake); "" when it has none."""
    if not isinstance(payload, dict):
        return ""
    holder = payload.get("detail") if "detail" in payload else payload.get("s3")
    obj = holder.get("object") if isinstance(holder, dict) else None
    return sequencer_normalize(obj.get("sequencer")) if isinstance(obj, dict) else ""


def backfill(apps, schema_editor):
    """In batches by id, each in its own transaction (short locks: the intake writes to
    the table meanwhile); an event whose payload holds no sequencer keeps ""."""
    ObjectEvent = apps.get_model("knowledge", "ObjectEvent")
    last = 0
    while True:
        rows = list(
            ObjectEvent.objects.filter(sequencer="", pk__gt=last)
            .order_by("pk")
            .values_list("pk", "payload")[:BATCH]
        )
        if not rows:
            return
        last = rows[-1][0]
        with transaction.atomic():
            for pk, payload in rows:
                sequencer = payload_sequencer(payload)
                if sequencer:
                    ObjectEvent.objects.filter(pk=pk, sequencer="").update(sequencer=sequencer)


class Migration(migrations.Migration):
    atomic = False  # one transaction per batch, not one for the whole table

    dependencies = [
        ("knowledge", "0013_objectevent_sequencer_index"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
