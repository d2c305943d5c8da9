from __future__ import annotations

import pytest

from tickets.context.interactions import reset_backends
from tickets.context.sentiment import reset_analysers


@pytest.fixture(autouse=True)
def _fresh_backends():
    reset_backends()
    reset_analysers()
    yield
    reset_backends()
    reset_analysers()
