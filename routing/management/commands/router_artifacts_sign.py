from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from routing import services
from routing.models import RouterModel


class Command(BaseCommand):
    help = (
        "Check the signature of every stored router model; with --trust-unverified, sign "
        "the ones that fail with the current ROUTER_ARTIFACT_KEY (models stored before "
        "artifacts were signed, or after a key change). Nothing is unpickled."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", type=int, action="append", help="RouterModel id(s)")
        parser.add_argument(
            "--trust-unverified",
            action="store_true",
            help="Re-sign the artifacts that fail the check (only if you trust the database).",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        models = RouterModel.objects.defer("artifact").order_by("pk")
        if opts["model"]:
            models = models.filter(pk__in=opts["model"])
        failed = 0
        for model in models:
            status = services.router_model_artifact_check(model=model)
            if status == "ok":
                self.stdout.write(f"{model.pk} {model}: signature ok")
                continue
            if opts["trust_unverified"]:
                services.router_model_artifact_resign(model=model)
                self.stdout.write(f"{model.pk} {model}: re-signed ({status})")
            else:
                failed += 1
                self.stdout.write(f"{model.pk} {model}: REFUSED: {status}")
        if failed:
            self.stderr.write(
                f"{failed} model(s) would be refused; retrain them, or re-run with "
                "--trust-unverified if you trust the stored bytes."
            )
