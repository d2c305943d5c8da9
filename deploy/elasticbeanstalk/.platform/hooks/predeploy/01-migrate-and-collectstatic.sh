#!/bin/sh
# Before the new version takes traffic: static files, then migrations (the same command as
# the container's `migrate`). A failing migration stops the deployment; the old version
# keeps running.
set -e
cd /var/app/staging
# The platform's virtualenv (hooks do not get it on PATH).
. "$(ls -d /var/app/venv/*/bin/activate | head -n 1)"
python manage.py collectstatic --no-input -v 0
# The int8 MiniLM variants, built once per deployment from the shipped model into the folder
# MINILM_CACHE_DIR names (as the image does at build time; files readable by the app's
# user), so no process builds them on its first search or routed ticket (~5 s each).
python -m support.minilm "${MINILM_CACHE_DIR:-/var/app/minilm}"
deploy/entrypoint.sh migrate
