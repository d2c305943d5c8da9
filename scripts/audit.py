"""`make audit`: known vulnerabilities in the pinned dependencies (pip-audit).

Audits every requirements file the project installs, each pinned, transitive packages
included: requirements.txt (the runtime: the image and Elastic Beanstalk install it alone) and
what scripts/bootstrap.sh adds for `make run` / `make test` (requirements-local.txt, the local
PostgreSQL server) and for development (requirements-dev.txt, requirements-openai.txt),
against a vulnerability database: PyPI's (the default) or OSV (``AUDIT_SERVICE=osv``). It needs
network access to that database, and to PyPI the first time, to install pip-audit into a
virtualenv of its own (``.venv-audit``: the audit tool's dependencies never mix with the
product's). Without that access it stops with exit status 2 and says so, rather than
reporting every package as "not found" (what pip-audit does when the database is a mirror
without vulnerability data, as on the development machines).

    make audit                        # or: python scripts/audit.py [extra pip-audit args]
    AUDIT_SERVICE=osv make audit
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIP_AUDIT = "pip-audit==2.10.1"
VENV = ROOT / ".venv-audit"
#: Every requirements file anything installs (tests/test_scripts.py checks this against
#: scripts/bootstrap.sh, the Dockerfile and the files in the repository). Each is passed to
#: pip-audit on its own: it reads no nested ``-r`` and reports a package once however many
#: files pin it.
REQUIREMENTS = (
    ROOT / "requirements.txt",
    ROOT / "requirements-local.txt",
    ROOT / "requirements-dev.txt",
    ROOT / "requirements-openai.txt",
)
TIMEOUT = 10.0
# A release with published advisories: its record must carry vulnerability data.
PROBE_PACKAGE, PROBE_VERSION = "django", "3.2"


def say(message: str) -> None:
    print(f"[audit] {message}", file=sys.stderr, flush=True)


def database_reachable(service: str) -> str | None:
    """None when the vulnerability database answers with vulnerability data, else why not."""
    try:
        if service == "osv":
            query: dict[str, object] = {
                "package": {"name": PROBE_PACKAGE, "ecosystem": "PyPI"},
                "version": PROBE_VERSION,
            }
            request = urllib.request.Request(
                "https://api.osv.dev/v1/query",
                data=json.dumps(query).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
                data = json.load(response)
            return None if data.get("vulns") else "OSV answered without vulnerability data"
        url = f"https://pypi.org/pypi/{PROBE_PACKAGE}/{PROBE_VERSION}/json"
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            data = json.load(response)
        if not data.get("vulnerabilities"):
            return "pypi.org answered without vulnerability data (a mirror?)"
        return None
    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts, bad JSON
        return f"{type(exc).__name__}: {exc}"


def ensure_pip_audit() -> Path:
    tool = VENV / "bin" / "pip-audit"
    if tool.exists():
        return tool
    say(f"installing {PIP_AUDIT} into {VENV.name}")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", PIP_AUDIT],
        check=True,
    )
    return tool


def main(argv: list[str]) -> int:
    service = os.environ.get("AUDIT_SERVICE", "pypi")
    if service not in ("pypi", "osv"):
        say(f"AUDIT_SERVICE must be pypi or osv, not {service!r}")
        return 2
    problem = database_reachable(service)
    if problem is not None:
        say(
            f"the vulnerability database ({service}) is not reachable from this machine: "
            f"{problem}.\n[audit] `make audit` needs network access to it (and to PyPI to "
            "install pip-audit the first time); run it where the network allows, e.g. in a "
            "deployment pipeline. Nothing was audited."
        )
        return 2
    try:
        tool = ensure_pip_audit()
    except subprocess.CalledProcessError:
        say(f"could not install {PIP_AUDIT} (network access to PyPI is needed)")
        return 2
    command = [
        str(tool),
        *(arg for path in REQUIREMENTS for arg in ("--requirement", str(path))),
        "--no-deps",  # every file pins its packages, transitive ones included
        "--disable-pip",
        "--strict",  # a package that cannot be audited fails the audit
        "--vulnerability-service",
        service,
        "--progress-spinner",
        "off",
        *argv,
    ]
    say(" ".join(command[1:]))
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
