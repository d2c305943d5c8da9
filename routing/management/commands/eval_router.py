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
