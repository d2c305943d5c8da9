"""Shared helpers of the customer-context management commands (thin wrappers)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from support.errors import NotFound
from tickets.context import imports
from tickets.context.selectors import customer_get
from tickets.models import Customer

Importer = Callable[..., imports.ImportReport]


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return max(0, sum(1 for _ in fh) - 1)


class ImportCommand(BaseCommand):
    importer: Importer
    noun = "rows"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="CSV file with a header row.")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="Write the valid rows even when some are rejected (default: write nothing).",
        )
        parser.add_argument(
            "--report", type=Path, help="Write rejected rows (row, field, error) to this CSV."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        from tqdm import tqdm

        path: Path = options["file"]
        if not path.exists():
            raise CommandError(f"{path}: no such file")
        bar = tqdm(
            total=2 * _count_lines(path),  # validating, then writing
            unit=" rows",
            desc="importing",
            disable=options["no_progress"],
            file=sys.stderr,
        )
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                report = type(self).importer(
                    handle, skip_invalid=options["skip_invalid"], progress=bar.update
                )
        except imports.ImportFileError as exc:
            raise CommandError(f"{path}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise CommandError(
                f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8 CSV"
            ) from exc
        finally:
            bar.close()
        for rejection in report.rejected[:50]:
            self.stderr.write(rejection.text())
        if len(report.rejected) > 50:
            self.stderr.write(f"… and {len(report.rejected) - 50} more rejected rows")
        if options["report"]:
            with options["report"].open("w", newline="", encoding="utf-8") as out:
                imports.rejected_rows_write(report, out)
        summary = (
            f"{report.total} {self.noun} read, {report.valid} valid, "
            f"{len(report.rejected)} rejected; "
        )
        if report.written:
            self.stdout.write(
                self.style.SUCCESS(summary + f"{report.created} created, {report.updated} updated.")
            )
        elif report.rejected:
            raise CommandError(summary + "nothing imported (fix the rows, or use --skip-invalid).")
        else:
            self.stdout.write(summary + "nothing to import.")


def customer_from_ref(ref: str) -> Customer:
    """A customer by id or email."""
    if "@" in ref:
        customer = Customer.objects.filter(email__iexact=ref.strip()).first()
        if customer is None:
            raise CommandError(f"No customer with email {ref!r}.")
        return customer
    try:
        return customer_get(ref)
    except NotFound as exc:
        raise CommandError(f"No customer {ref!r}.") from exc


def open_output(path: str | None, stdout: TextIO) -> TextIO:
    if not path or path == "-":
        return stdout
    return Path(path).open("w", encoding="utf-8")
