#!/bin/sh
# Before the new version takes traffic: static files, then migrations (the same command as
# the container's `migrate`). A failing migration stops the deployment; the old version
# keeps running.
set -e
cd /var/app/staging
# The platform's virtualenv (hooks do not get it on PATH).
. "$(ls -d /var/app/venv/*/bin/activate | head -n 1)"
python manage.py collectstatic --no-input -v 0
deploy/entrypoint.sh migrate
