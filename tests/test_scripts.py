"""The run/test commands' setup logic (scripts/services.py, manage.py env loading)."""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


services = _load("services_script", ROOT / "scripts" / "services.py")


def test_given_urls_are_used_and_nothing_is_started(monkeypatch, tmp_path):
    monkeypatch.setattr(services, "DATA", tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db.internal/x")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/0")

    def forbidden(profile):
        raise AssertionError("must not start a local service")

    monkeypatch.setattr(services, "start_postgres", forbidden)
    monkeypatch.setattr(services, "start_redis", forbidden)
    env = services.start("run")
    assert env == {
        "DATABASE_URL": "postgresql://u@db.internal/x",
        "REDIS_URL": "redis://cache.internal:6379/0",
    }
    # manage.py reads this file: local commands run as ENVIRONMENT=dev (unset means prod).
    assert (tmp_path / "env").read_text() == (
        "DATABASE_URL=postgresql://u@db.internal/x\nREDIS_URL=redis://cache.internal:6379/0\n"
        "ENVIRONMENT=dev\n"
    )


def test_test_profile_writes_its_own_env_file(monkeypatch, tmp_path):
    monkeypatch.setattr(services, "DATA", tmp_path)
    monkeypatch.setattr(services, "start_postgres", lambda profile: f"pg-{profile}")
    monkeypatch.setattr(services, "start_redis", lambda profile: f"redis-{profile}")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert services.start("test") == {"DATABASE_URL": "pg-test", "REDIS_URL": "redis-test"}
    assert (tmp_path / "env-test").exists()
    assert "ENVIRONMENT" not in (tmp_path / "env-test").read_text()
    assert not (tmp_path / "env").exists()


def test_redis_ping_is_false_on_a_closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert services.redis_ping(port) is False


def test_running_redis_is_reused(monkeypatch, tmp_path):
    monkeypatch.setattr(services, "DATA", tmp_path)
    monkeypatch.setattr(services, "redis_ping", lambda port: True)
    monkeypatch.setattr(services, "redis_binary", lambda: pytest.fail("must not start redis"))
    assert services.start_redis("test") == f"redis://127.0.0.1:{services.REDIS_PORTS['test']}/0"


def test_missing_redis_without_root_or_apt_fails_with_a_clear_message(monkeypatch, capsys):
    monkeypatch.setattr(services.shutil, "which", lambda name: None)
    monkeypatch.setattr(services, "Path", lambda p: type("P", (), {"exists": lambda self: False})())
    monkeypatch.setattr(services.os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit):
        services.redis_binary()
    assert "REDIS_URL" in capsys.readouterr().err


def test_manage_py_loads_devdata_env_without_overriding(monkeypatch, tmp_path):
    manage = _load("manage_script", ROOT / "manage.py")
    fake_root = tmp_path / "proj"
    (fake_root / ".devdata").mkdir(parents=True)
    (fake_root / ".devdata" / "env").write_text("ALPHA_X=from-file\nBETA_X=from-file\n")
    monkeypatch.setattr(manage, "__file__", str(fake_root / "manage.py"))
    monkeypatch.setenv("BETA_X", "from-env")
    monkeypatch.delenv("ALPHA_X", raising=False)
    manage._load_local_env()
    assert os.environ["ALPHA_X"] == "from-file"
    assert os.environ["BETA_X"] == "from-env"
    monkeypatch.delenv("ALPHA_X")


audit = _load("audit_script", ROOT / "scripts" / "audit.py")


def test_audit_stops_clearly_without_the_vulnerability_database(monkeypatch, capsys):
    """No network (as here): exit 2 and say why, instead of "not found" for every package."""

    def no_network(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(audit.urllib.request, "urlopen", no_network)
    monkeypatch.setattr(audit, "ensure_pip_audit", lambda: pytest.fail("must not install"))
    assert audit.main([]) == 2
    err = capsys.readouterr().err
    assert "not reachable" in err
    assert "needs network access" in err


def test_audit_runs_pip_audit_strictly_over_the_pinned_requirements(monkeypatch):
    calls = []
    monkeypatch.setattr(audit, "database_reachable", lambda service: None)
    monkeypatch.setattr(audit, "ensure_pip_audit", lambda: Path("/x/pip-audit"))

    class Done:
        returncode = 0

    def run(command, check):
        calls.append(command)
        return Done()

    monkeypatch.setattr(audit.subprocess, "run", run)
    monkeypatch.setenv("AUDIT_SERVICE", "osv")
    assert audit.main(["--desc"]) == 0
    [command] = calls
    assert command[0] == "/x/pip-audit"
    audited = [command[i + 1] for i, arg in enumerate(command) if arg == "--requirement"]
    assert audited == [str(path) for path in audit.REQUIREMENTS]
    assert audited[0] == str(ROOT / "requirements.txt")
    assert {"--no-deps", "--strict", "--desc"} <= set(command)
    assert command[command.index("--vulnerability-service") + 1] == "osv"


def _installed_requirement_files() -> set[str]:
    """Every requirements file something installs: scripts/bootstrap.sh's lists (`make
    run`, `make test`, `make install`, development), the image's `pip install -r`, and the
    files those include with ``-r`` (followed to the end)."""
    import re

    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    names = {
        name
        for listed in re.findall(r"^\s*(?:\[.*\]\s*&&\s*)?files\+?=\(([^)]*)\)", bootstrap, re.M)
        for name in listed.split()
    }
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    names |= {Path(n).name for n in re.findall(r"pip install[^\n]*-r\s+(\S+)", dockerfile)}
    pending = sorted(names)
    while pending:
        text = (ROOT / pending.pop()).read_text()
        for included in re.findall(r"^\s*-r\s+(\S+)", text, re.M):
            if included not in names:
                names.add(included)
                pending.append(included)
    return names


def test_audit_covers_every_requirements_file_the_project_installs():
    """`make audit` read requirements.txt alone: requirements-local.txt (the embedded
    PostgreSQL server `make run` and `make test` install, since it left requirements.txt),
    requirements-dev.txt and requirements-openai.txt went unaudited. pip-audit reads no
    nested ``-r`` (pip-requirements-parser's default), so each file is named on its own."""
    installed = _installed_requirement_files()
    assert {"requirements.txt", "requirements-local.txt", "requirements-dev.txt"} <= installed
    in_repository = {path.name for path in ROOT.glob("requirements*.txt")}
    audited = [path.name for path in audit.REQUIREMENTS]
    assert len(audited) == len(set(audited))
    assert set(audited) == installed | in_repository
    for path in audit.REQUIREMENTS:
        assert path.parent == ROOT
        assert path.is_file()


def test_every_apps_tests_are_collected_by_the_plain_test_command() -> None:
    """``scripts/test.sh`` with no arguments runs pytest's ``testpaths``: an app whose
    ``tests/`` folder is missing from it never runs in CI (events_out's did not, once)."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())
    testpaths = set(config["tool"]["pytest"]["ini_options"]["testpaths"])
    with_tests = {path.parent.parent.name for path in root.glob("*/tests/__init__.py")}
    assert "support" in with_tests
    assert with_tests <= testpaths, with_tests - testpaths


def test_no_tracked_path_is_a_link_or_a_local_folder() -> None:
    """Nothing machine-local is committed: no symbolic link (a helper worktree's
    ``.devdata -> /work/main/.devdata`` was, and merging it replaced the ignored data
    folder with a link to itself), and nothing under ``.devdata``, ``.venv`` or
    ``staticfiles``."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(
        ["git", "ls-files", "-s"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    links = [line.split("\t", 1)[1] for line in listing if line.startswith("120000 ")]
    assert links == []
    local = [
        line.split("\t", 1)[1]
        for line in listing
        if line.split("\t", 1)[1].split("/", 1)[0] in (".devdata", ".venv", "staticfiles")
    ]
    assert local == []
