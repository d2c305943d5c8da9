"""Ticket-page panels that other apps register (the core knows a slot, not the code).

An app calls :func:`register_panel` in its ``AppConfig.ready()``; the ticket page renders
every registered panel in ``order``. ``context(request, ticket)`` returns the template's
variables (or ``None`` to hide the panel); they are top-level names in the template, also
reachable as ``panel``, and ``ticket`` is always there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from tickets.models import Ticket

ContextFn = Callable[[HttpRequest, Ticket], dict[str, Any] | None]


@dataclass(frozen=True)
class Panel:
    name: str
    title: str
    template: str
    context: ContextFn
    order: int = 100
    slot: str = "sidebar"


_panels: dict[str, Panel] = {}


def register_panel(panel: Panel) -> None:
    _panels[panel.name] = panel


def panels_for(slot: str | None = None) -> list[Panel]:
    found = [p for p in _panels.values() if slot is None or p.slot == slot]
    return sorted(found, key=lambda p: (p.order, p.name))
