"""``kb_ingest PATH [--source NAME] [--full]``: ingest a folder of documents or a JSONL file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.management.commands._progress import progress_bar
from knowledge.models import IngestionJob, KnowledgeSource
from knowledge.readers import read_path
from knowledge.services import (
    JobAbandoned,
    SourceBusy,
    common_lexemes_count,
    documents_ingest,
    job_create,
    job_finish,
    job_start,
    source_get_or_create,
    source_locks,
)
from support.errors import InvalidInput


class Command(BaseCommand):
    help = (
        "Ingest PATH (a folder: ids are relative paths; or a JSONL file: ids from its 'id' "
        "field) into the named source (created if missing). Unchanged documents are "
        "skipped, changed ones re-chunked, ones no longer in PATH deleted. Prints counts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--source", default="", help="source name (default: PATH's name)")
        parser.add_argument("--full", action="store_true", help="re-embed unchanged documents")
        parser.add_argument("--keep-missing", action="store_true", help="do not delete")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"]).expanduser().resolve()
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        name = options["source"] or path.stem.replace("_", "-").lower()[:100]
        source = source_get_or_create(name=name, kind=KnowledgeSource.Kind.FOLDER, path=str(path))
        job = job_create(source=source, kind=IngestionJob.Kind.INGEST, full=options["full"])
        update, close = progress_bar(f"kb_ingest {name}", self.stderr._out)
        try:
            # One run at a time writes a source (a sync of it waits, or this does).
            with source_locks([source], job=job):
                job_start(job)
                counts = documents_ingest(
                    source=source,
                    items=read_path(path),
                    full=options["full"],
                    delete_missing=not options["keep_missing"],
                    job=job,
                    progress=None if options["no_progress"] else update,
                )
                job_finish(job)
        except SourceBusy as exc:
            job_finish(job, error=f"not run: {exc.message}")
            raise CommandError(f"{exc.message}; try again when it has finished") from exc
        except JobAbandoned as exc:
            raise CommandError(str(exc)) from exc
        except InvalidInput as exc:
            job_finish(job, error=str(exc))
            raise CommandError(str(exc)) from exc
        except (Exception, KeyboardInterrupt) as exc:  # the job says why it stopped
            job_finish(job, error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            close()
        # Counted here too (a worker also counts after the ingestion's commit): searches
        # right after the command find the common words listed.
        started = time.perf_counter()
        common = common_lexemes_count()
        counts.add_time("common_words_s", time.perf_counter() - started)
        summary = {"source": name, "job": job.pk, **counts.as_dict(), "timings": counts.timings}
        self.stdout.write(
            f"source={name} job={job.pk} created={counts.created} updated={counts.updated} "
            f"unchanged={counts.unchanged} deleted={counts.deleted} failed={counts.failed} "
            f"chunks={counts.chunks} embedded={counts.embedded} reused={counts.reused} "
            f"common_words={common}"
        )
        for error in counts.errors[:20]:
            self.stderr.write(f"  failed {error['id']}: {error['error']}")
        if options["verbosity"] > 1:
            self.stdout.write(json.dumps(summary))
