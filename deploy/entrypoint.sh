#!/bin/sh
# Container entry point: web | worker | beat | migrate | <any command>.
set -e
case "$1" in
  web)
    # --no-proxy-headers: uvicorn must not replace the client address with X-Forwarded-For
    # (with --forwarded-allow-ips='*' any client could pick its own). The application
    # reads that header itself and believes only TRUSTED_PROXY_HOPS / TRUSTED_PROXY_CIDRS;
    # the scheme comes from X-Forwarded-Proto through SECURE_PROXY_SSL_HEADER.
    exec uvicorn support.asgi:application --host 0.0.0.0 --port "${PORT:-8000}" \
      --workers "${WEB_CONCURRENCY:-2}" --no-proxy-headers --no-access-log ;;
  worker)
    # CELERY_QUEUES: "realtime" (webhook intake, event relay, replies) and "celery" (routing,
    # sentiment, knowledge base, calls). One worker takes both unless split across services.
    exec celery -A support worker -l INFO -c "${CELERY_CONCURRENCY:-2}" \
      -Q "${CELERY_QUEUES:-realtime,celery}" ;;
  beat)
    exec celery -A support beat -l INFO -s /tmp/celerybeat-schedule ;;
  migrate)
    exec python manage.py migrate --no-input ;;
  *)
    exec "$@" ;;
esac
