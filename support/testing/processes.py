"""A fresh interpreter for tests that need one (settings read at start, the image's commands
in a clean environment): this Python, run from the repository root with only the given
environment, its output captured."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def python_run(
    args: Sequence[str], *, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python *args`` in ``ROOT`` with ``env`` only; never raises on a non-zero exit."""
    return subprocess.run(  # noqa: S603 - this interpreter; the test's own arguments
        [sys.executable, *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
