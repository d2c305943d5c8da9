from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing import classifier, services


class Command(BaseCommand):
    help = "Evaluate the active router model on a CSV of text and label."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", required=True, help="CSV file")
        parser.add_argument("--text-column", required=True)
        parser.add_argument("--label-column", required=True)
        parser.add_argument("--json", default="", help="Write the figures to this JSON file.")
        parser.add_argument("--threshold", type=float, default=None)
        parser.add_argument(
            "--out-of-scope",
            default="",
            help="CSV of texts that belong to no label: reports oos_review_rate, the share of "
            "them sent to review.",
        )
        parser.add_argument(
            "--oos-text-column",
            default="",
            help="Text column of the --out-of-scope file (default: --text-column).",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            texts, labels = classifier.read_csv(
                opts["data"], opts["text_column"], opts["label_column"]
            )
            outside: list[str] = []
            if opts["out_of_scope"]:
                outside = classifier.read_texts(
                    opts["out_of_scope"], opts["oos_text_column"] or opts["text_column"]
                )
                if not outside:
                    raise ValueError(f"{opts['out_of_scope']} has no texts")
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        threshold = (
            opts["threshold"]
            if opts["threshold"] is not None
            else settings.ROUTING_REVIEW_THRESHOLD
        )
        router, row = services.router_active()
        self._check_labels(router, labels, opts["data"])
        figures = classifier.evaluate(
            router,
            texts,
            labels,
            threshold=threshold,
            out_of_scope=outside,
            progress=lambda line: self.stderr.write(line),
        )
        self.stdout.write(f"model {row.name} v{row.version} ({row.features}) on {opts['data']}")
        for key, value in figures.items():
            self.stdout.write(f"{key:>15}: {value}")
        if opts["json"]:
            try:
                Path(opts["json"]).write_text(json.dumps(figures, indent=2) + "\n")
            except OSError as exc:
                raise CommandError(f"--json {opts['json']}: {exc}") from exc

    def _check_labels(self, router: classifier.TextRouter, labels: list[str], path: str) -> None:
        """The CSV's labels must be the model's labels or its categories (as ``evaluate``
        reads them): none known is the wrong column or another model's file, not a
        measurement of 0; some unknown is worth a warning (they count as errors)."""
        known = set(router.labels) | set(router.categories)
        unknown = sorted(set(labels) - known)
        if not unknown:
            return
        if len(unknown) == len(set(labels)):
            raise CommandError(
                f"None of the labels in {path} ({', '.join(unknown[:5])}"
                f"{', ...' if len(unknown) > 5 else ''}) is one of the active model's labels "
                f"or categories (e.g. {', '.join(sorted(known)[:5])}): is --label-column right?"
            )
        missing = set(unknown)
        count = sum(1 for label in labels if label in missing)
        self.stderr.write(
            f"{count} of {len(labels)} texts have a label the model does not know: "
            f"{', '.join(unknown[:10])}{', ...' if len(unknown) > 10 else ''} "
            "(they count as errors)"
        )
