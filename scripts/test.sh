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
# pytest-xdist: TEST_WORKERS processes (default: one per CPU, at most 4; 1 runs serially).
# Each worker has its own test database (pytest-django) and Redis database (tests/xdist_redis.py),
# and takes a test file whole (conftest.py). With no arguments (make test, CI) the browser and
# fault-injection tests run afterwards in one fresh process of their own: they start servers,
# Chromium and Celery workers, stop services, and wait on timings.
workers="${TEST_WORKERS:-$(nproc)}"
if [ "$workers" -gt 4 ]; then workers=4; fi
pytest_run() {
  set +e
  python -m pytest "$@"
  local rc=$?
  set -e
  if [ $rc -eq 5 ]; then echo "[test] pytest collected no tests" >&2; return 1; fi
  return $rc
}
if [ "$workers" -le 1 ]; then
  echo "[test] pytest"
  pytest_run "$@"
elif [ $# -gt 0 ]; then
  echo "[test] pytest (${workers} workers)"
  pytest_run -n "$workers" --dist loadscope "$@"
else
  echo "[test] pytest (${workers} workers): all but the browser and fault-injection tests"
  rc=0
  pytest_run -n "$workers" --dist loadscope -m "not e2e and not faults" || rc=$?
  echo "[test] pytest: the browser and fault-injection tests"
  pytest_run -m "e2e or faults" || rc=$((rc ? rc : $?))
  exit $rc
fi
