from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from calls.demo import load_demo_calls


class Command(BaseCommand):
    help = "Load demo calls (CTRs, Transcribe and Data Automation results, agent events)."

    def handle(self, *args: Any, **options: Any) -> None:
        load_demo_calls(progress=self.stdout.write)
