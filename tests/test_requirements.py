"""The pinned requirements install on the oldest Python the README promises: Debian
bookworm's own ``python3.11`` (3.11.2), which ``scripts/bootstrap.sh`` uses when no newer
3.11 is on the PATH. soupsieve 4.1 needs 3.11.5, so a fresh Debian machine could not
install the project at all (CI's interpreter was newer)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
OLDEST_PYTHON = "3.11.2"  # Debian 12 (bookworm)
FILES = (
    "requirements.txt",
    "requirements-local.txt",
    "requirements-dev.txt",
    "requirements-openai.txt",
)


def _pins() -> list[tuple[str, str]]:
    pins = []
    for name in FILES:
        for line in (ROOT / name).read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)", line.strip())
            if match:
                pins.append((re.sub(r"\[.*\]", "", match.group(1)), match.group(2)))
    return sorted(set(pins))


def test_every_pinned_requirement_is_read() -> None:
    assert len(_pins()) > 50
    assert ("soupsieve", metadata.version("soupsieve")) in _pins()


@pytest.mark.parametrize(("name", "version"), _pins())
def test_a_pinned_requirement_supports_debians_python(name: str, version: str) -> None:
    try:
        installed = metadata.metadata(name)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{name} is not installed here (a platform-specific pin)")
    assert installed["Version"] == version, f"{name}: the environment is not the pinned one"
    requires = installed["Requires-Python"] or ""
    assert SpecifierSet(requires).contains(OLDEST_PYTHON), f"{name} {version}: {requires}"
