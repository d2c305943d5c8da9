#!/bin/sh
# Before the new version takes traffic: static files, then migrations (the same command as
# the container's `migrate`). A failing migration stops the deployment; the old version
# keeps running.
# Hooks get neither the platform's virtualenv nor the environment properties (on Amazon
# Linux 2 and 2023 only the app's processes do): both are loaded here. The EB_* variables
# exist for tests (tests/test_deploy.py); the platform sets none of them.
set -e
cd "${EB_STAGING_DIR:-/var/app/staging}"
# The platform's virtualenv.
. "${EB_VENV_ACTIVATE:-$(ls -d /var/app/venv/*/bin/activate | head -n 1)}"
# The environment properties (DB_HOST, REDIS_URL, ...): `get-config environment` prints
# them as one JSON object; each becomes an exported variable, its value quoted whatever it
# holds (quotes, spaces, newlines). A failing get-config stops the deployment. A variable
# the hook already has is kept: the environment secrets (SECRET_KEY, DB_PASSWORD, ...;
# aws:elasticbeanstalk:application:environmentsecrets) reach hooks from the platform, with
# their values, and get-config must not replace one with anything else (its ARN).
properties="$("${EB_GET_CONFIG:-/opt/elasticbeanstalk/bin/get-config}" environment)"
exports="$(printf '%s' "$properties" | python -c '
import json, os, re, shlex, sys
for name, value in json.load(sys.stdin).items():
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        print(f"skipped an environment property with an invalid name: {name!r}", file=sys.stderr)
    elif name not in os.environ:
        print(f"export {name}={shlex.quote(str(value))}")
')"
eval "$exports"
python manage.py collectstatic --no-input -v 0
# The int8 MiniLM variants, built once per deployment from the shipped model into the folder
# MINILM_CACHE_DIR names (as the image does at build time; files readable by the app's
# user), so no process builds them on its first search or routed ticket (~5 s each), and
# the router's word-piece table (support.static_table, ~15 s).
python -m support.minilm "${MINILM_CACHE_DIR:-/var/app/minilm}"
deploy/entrypoint.sh migrate
