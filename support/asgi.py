"""ASGI entry point: HTTP through Django, websockets through Channels."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from support.request_metrics import WebsocketMetrics  # noqa: E402
from support.websocket_urls import websocket_urlpatterns  # noqa: E402


def _http_app() -> object:
    """Django's sync views run in a fixed pool of threads (a2wsgi) instead of Django's ASGI
    handler, which starts a new thread for every request; ``DJANGO_HTTP_INTERFACE=asgi``
    switches back."""
    if os.environ.get("DJANGO_HTTP_INTERFACE", "wsgi") == "asgi":
        return django_asgi_app
    from a2wsgi import WSGIMiddleware
    from django.core.wsgi import get_wsgi_application

    threads = int(os.environ.get("WSGI_THREADS", "16"))
    return WSGIMiddleware(get_wsgi_application(), workers=threads)  # type: ignore[arg-type]


def _with_webhook_fast_path(app: object) -> object:
    """Channel webhook POSTs skip Django's request handling (``WEBHOOK_FAST_PATH``)."""
    from django.conf import settings

    if not settings.WEBHOOK_FAST_PATH:
        return app
    from channels_app.api.fastpath import WebhookFastPath

    return WebhookFastPath(app, threads=int(settings.WEBHOOK_FAST_PATH_THREADS))  # type: ignore[arg-type]


def _with_body_limit(app: object) -> object:
    """Bodies over ``REQUEST_MAX_BYTES`` answer 413 before anything reads them."""
    from django.conf import settings

    from support.body_limit import RequestBodyLimit

    return RequestBodyLimit(app, int(settings.REQUEST_MAX_BYTES))  # type: ignore[arg-type]


application = ProtocolTypeRouter(
    {
        "http": _with_body_limit(_with_webhook_fast_path(_http_app())),
        "websocket": WebsocketMetrics(
            AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)
