"""``kb_reembed [--source NAME] [--batch 256] [--no-progress]``: move every stored chunk to
the configured embedder (``KB_EMBEDDER``, ``KB_EMBED_MAX_TOKENS``) after changing it, from
the chunks' stored text, with a progress bar. Idempotent: run it again after an
interruption and it continues; a second complete run embeds nothing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.embeddings import get_embedder
from knowledge.management.commands._progress import progress_bar, source_option
from knowledge.services import chunks_reembed


class Command(BaseCommand):
    help = "Re-embed the chunks whose vectors came from another embedder than KB_EMBEDDER's."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", default="", help="only this source")
        parser.add_argument("--batch", type=int, default=256, help="chunks per transaction")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        source = source_option(options["source"])
        if options["batch"] < 1:
            raise CommandError("--batch must be at least 1")
        embedder = get_embedder()
        update, close = progress_bar("kb_reembed", self.stderr._out, unit="chunk")
        try:
            counts = chunks_reembed(
                source=source,
                embedder=embedder,
                batch_size=options["batch"],
                progress=None if options["no_progress"] else update,
            )
        finally:
            close()
        self.stdout.write(
            f"embedder={embedder.name} pending={counts.total} embedded={counts.embedded} "
            f"seconds={counts.seconds}"
        )
