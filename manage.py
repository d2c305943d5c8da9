#!/usr/bin/env python
"""Django's command-line utility."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _load_local_env() -> None:
    """Read ``.devdata/env`` (written by ``scripts/services.py``) without overriding."""
    env_file = Path(__file__).resolve().parent / ".devdata" / "env"
    if not env_file.exists():
        return
    for line in env_file.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            os.environ.setdefault(key.strip(), value.strip())


def main() -> None:
    _load_local_env()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
