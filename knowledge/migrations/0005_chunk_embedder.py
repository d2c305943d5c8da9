"""``Chunk.embedder``: the name of the embedder each stored vector came from.

Existing chunks get it from their ``embedding_key`` (sha256 of the embedder's name and the
text it embedded) by trying the names this project has produced; chunks from before
``embedding_key`` existed stay empty (unknown: search counts them as the float32 ``minilm``,
the only MiniLM the knowledge base had then, and ``kb_reembed`` re-embeds them).
"""

import hashlib

from django.db import migrations, models

CANDIDATES = [
    f"{base}{suffix}"
    for base in ("minilm", "minilm-int8", "titan")
    for suffix in ("", "-t64", "-t96", "-t128", "-t192")
]


def _embedding_text(kind: str, title: str, heading_path: str, text: str) -> str:
    # As knowledge.services.embedding_text wrote it (copied: a migration is frozen).
    if kind == "title":
        return text
    context = " > ".join(p for p in (title, heading_path) if p)
    return f"{context}\n{text}" if context else text


def backfill(apps, schema_editor):  # noqa: ANN001 - migration signature
    Chunk = apps.get_model("knowledge", "Chunk")
    rows = (
        Chunk.objects.exclude(embedding_key="")
        .values_list("id", "kind", "document__title", "heading_path", "text", "embedding_key")
        .iterator(chunk_size=2000)
    )
    found: dict[str, list[int]] = {}
    for pk, kind, title, heading_path, text, key in rows:
        text = _embedding_text(kind, title or "", heading_path, text)
        for name in CANDIDATES:
            if hashlib.sha256(f"{name}\x00{text}".encode()).hexdigest() == key:
                found.setdefault(name, []).append(pk)
                break
    for name, ids in found.items():
        for start in range(0, len(ids), 5000):
            Chunk.objects.filter(pk__in=ids[start : start + 5000]).update(embedder=name)


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0004_reply_drafts"),
    ]

    operations = [
        migrations.AddField(
            model_name="chunk",
            name="embedder",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="chunk",
            index=models.Index(fields=["embedder"], name="kb_chunk_embedder"),
        ),
    ]
