from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing import classifier, selectors, services
from routing.models import RouterModel

MODEL_NAME_MAX_LENGTH = RouterModel._meta.get_field("name").max_length or 100


class Command(BaseCommand):
    help = "Train a router model on a CSV of text and label, store it and activate it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", required=True, help="CSV file")
        parser.add_argument("--text-column", required=True)
        parser.add_argument("--label-column", required=True)
        parser.add_argument("--name", default="router", help="Model name (versions increase).")
        parser.add_argument(
            "--category-column",
            default="",
            help="Optional coarser label (e.g. Bitext category) mapped from each label.",
        )
        parser.add_argument("--features", default="auto", choices=classifier.FEATURE_CHOICES)
        parser.add_argument(
            "--with-feedback",
            action="store_true",
            help="Add people's overrides and acceptances whose label is in the data.",
        )
        parser.add_argument("--no-activate", action="store_true")
        parser.add_argument(
            "--no-out-of-scope",
            action="store_true",
            help="No out-of-scope detector (with embeddings one is calibrated by default).",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        name = opts["name"].strip()
        # checked before the (possibly long) training, not by the database after it
        if not name:
            raise CommandError("--name is empty: give the model a name.")
        if len(name) > MODEL_NAME_MAX_LENGTH:
            raise CommandError(f"--name is over {MODEL_NAME_MAX_LENGTH} characters.")
        try:
            # one pass: each label is paired with the category of its own row
            texts, labels, categories = classifier.read_csv_categories(
                opts["data"], opts["text_column"], opts["label_column"], opts["category_column"]
            )
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        added = 0
        if opts["with_feedback"]:
            extra = selectors.routing_feedback_examples(labels=set(labels))
            if categories is not None:
                mapping = dict(zip(labels, categories, strict=True))
                extra = [(t, lab) for t, lab in extra if lab in mapping]
                categories += [mapping[lab] for _, lab in extra]
            texts += [t for t, _ in extra]
            labels += [lab for _, lab in extra]
            added = len(extra)
        try:
            row, report = services.router_model_train(
                texts=texts,
                labels=labels,
                categories=categories,
                name=name,
                features=opts["features"],
                source=str(opts["data"]),
                activate=not opts["no_activate"],
                out_of_scope=not opts["no_out_of_scope"],
                progress=lambda line: self.stderr.write(line),
            )
        except ValueError as exc:  # e.g. a single label
            raise CommandError(str(exc)) from exc
        summary = {
            "model": row.name,
            "version": row.version,
            "active": row.is_active,
            "rows": report.rows,
            "feedback_rows": added,
            "labels": report.labels,
            "features": report.features,
            "holdout_accuracy": report.holdout,
            "embedded_share": report.embedded_share,
            "out_of_scope": report.out_of_scope,
            "seconds": report.seconds,
        }
        self.stdout.write(json.dumps(summary, indent=2))
