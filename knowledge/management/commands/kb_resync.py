"""``kb_resync [--source NAME] [--full]``: re-read sources (folder, S3) or start a Bedrock
ingestion job, in this process with a progress bar. A source another run is syncing is
waited for briefly, then the command stops with the holder's name (its job failed with
the reason)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.management.commands._progress import progress_bar, source_option
from knowledge.services import SourceBusy, job_create, job_fail, job_run


class Command(BaseCommand):
    help = "Resync the knowledge base: new and changed documents in, removed ones out."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", default="", help="only this source")
        parser.add_argument("--full", action="store_true", help="re-embed unchanged documents")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        source = source_option(options["source"])
        job = job_create(source=source, full=options["full"], backend=settings.KB_BACKEND)
        update, close = progress_bar("kb_resync", self.stderr._out)
        try:
            job = job_run(job.pk, progress=None if options["no_progress"] else update)
        except SourceBusy as exc:
            job_fail(job.pk, error=f"not run: {exc.message}")
            raise CommandError(f"{exc.message}; try again when it has finished") from exc
        finally:
            close()
        job.refresh_from_db()
        self.stdout.write(
            f"job={job.pk} status={job.status} backend={job.backend} "
            f"created={job.created_count} updated={job.updated_count} "
            f"unchanged={job.unchanged_count} deleted={job.deleted_count} "
            f"failed={job.failed_count} chunks={job.chunk_count}"
            + (f" external_job_id={job.external_job_id}" if job.external_job_id else "")
        )
