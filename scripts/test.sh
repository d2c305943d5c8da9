#!/usr/bin/env bash
# The one test command: services, then ruff, mypy, import contracts and pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k health).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev
VENV="${VENV:-.venv}"
export PATH="$PWD/$VENV/bin:$PATH"
# Browser end-to-end tests drive Debian's Chromium (a test tool's own download fails here).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[test] installing Debian's chromium for the browser tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
eval "$(python scripts/services.py start --profile test --print-env)"
export ENVIRONMENT=test DJANGO_SETTINGS_MODULE=support.settings
echo "[test] ruff"
ruff check .
ruff format --check .
echo "[test] import contracts"
lint-imports
echo "[test] mypy"
mypy .
echo "[test] cfn-lint (deploy/cloudformation)"
cfn-lint deploy/cloudformation/*.yaml
echo "[test] migrations are up to date"
python manage.py makemigrations --check --dry-run >/dev/null
echo "[test] pytest"
set +e
python -m pytest "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then echo "[test] pytest collected no tests" >&2; exit 1; fi
exit $rc
