#!/bin/sh
# Container entry point (also Elastic Beanstalk's Procfile): one process by name, with the
# same command `make run` uses (the table is scripts/processes.py):
#   web | realtime | worker | beat | kb-sqs | calls-sqs | bda-results | migrate
# Anything else runs as given, e.g. `python manage.py createsuperuser` in a one-off task.
set -e
exec python "$(dirname "$0")/../scripts/processes.py" "$@"
