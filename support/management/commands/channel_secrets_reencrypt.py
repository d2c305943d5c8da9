"""Re-encrypt every stored channel secret with the newest CHANNELS_SECRETS_KEY.

Key rotation: put the new key first in CHANNELS_SECRETS_KEY (comma-separated, newest
first), keep the old ones, deploy, run this command, then remove the old keys. Safe to run
again: values already under the newest key are left as they are.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from support.crypto import configured_keys, secrets_reencrypt


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=200, help="rows per transaction")

    def handle(self, *args: Any, **options: Any) -> None:
        if not configured_keys():
            self.stdout.write(
                "CHANNELS_SECRETS_KEY is not set: re-encrypting with the key derived from "
                "SECRET_KEY."
            )

        def progress(label: str, done: int, total: int) -> None:
            self.stdout.write(f"{label}: {done}/{total} rows")

        result = secrets_reencrypt(batch_size=max(1, options["batch_size"]), progress=progress)
        self.stdout.write(
            f"{result.rows} rows checked: {result.reencrypted} secret(s) re-encrypted with the "
            f"newest key, {result.current} already current."
        )
        if result.unreadable:
            raise CommandError(
                f"{len(result.unreadable)} secret(s) could not be decrypted with any "
                f"configured key and were left as they are: {', '.join(result.unreadable)}"
            )
