"""What the kb_* commands share: a progress bar (tqdm on a terminal, plain lines otherwise)
and the ``--source`` option's lookup."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO


def progress_bar(
    label: str, stream: TextIO | Any = None, unit: str = "doc"
) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    from tqdm import tqdm

    bar: Any = None
    out = stream or sys.stderr

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=label, unit=unit, file=out, mininterval=0.5)
        bar.total = total
        bar.n = done
        bar.refresh()

    def close() -> None:
        if bar is not None:
            bar.close()

    return update, close


def source_option(name: str) -> Any:
    """The ``KnowledgeSource`` a ``--source`` option names (``None`` for all), or a
    ``CommandError`` saying there is none by that name."""
    from django.core.management.base import CommandError

    from knowledge.models import KnowledgeSource

    if not name:
        return None
    source = KnowledgeSource.objects.filter(name=name).first()
    if source is None:
        raise CommandError(f"--source: no source named {name!r}")
    return source
