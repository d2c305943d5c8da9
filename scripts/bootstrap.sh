#!/usr/bin/env bash
# Create the virtualenv and install the pinned requirements (skipped when unchanged).
# Usage: scripts/bootstrap.sh [dev]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "[bootstrap] ERROR: Python 3.11 or newer is needed (found $("$PY" --version))." >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating virtualenv in $VENV"
  "$PY" -m venv "$VENV"
fi
# requirements-local.txt: the local PostgreSQL server (scripts/services.py), which `make run`
# starts as well as `make test`; never in the image (requirements.txt only).
files=(requirements.txt requirements-local.txt)
[ "${1:-}" = "dev" ] && files+=(requirements-dev.txt requirements-openai.txt)
stamp="$VENV/.requirements-$(cat "${files[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "[bootstrap] installing ${files[*]} (first time takes a few minutes) …"
  "$VENV/bin/pip" install --disable-pip-version-check -q --upgrade pip
  args=()
  for f in "${files[@]}"; do args+=(-r "$f"); done
  "$VENV/bin/pip" install --disable-pip-version-check --progress-bar on "${args[@]}"
  rm -f "$VENV"/.requirements-*
  touch "$stamp"
else
  echo "[bootstrap] requirements up to date"
fi
