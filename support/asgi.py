"""ASGI entry point: HTTP through Django, websockets through Channels."""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from support.auth.sessions import session_auth_stack  # noqa: E402
from support.request_metrics import WebsocketMetrics  # noqa: E402
from support.websocket_urls import (  # noqa: E402
    public_websocket_urlpatterns,
    staff_websocket_urlpatterns,
)


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


class _WebsocketsByAuthentication:
    """Token-authenticated sockets (the web chat widget, embedded on other sites) from any
    origin; cookie-authenticated ones (the workbench) only from ``ALLOWED_HOSTS`` origins
    with the session and user loaded. Every socket was behind the origin check, so a widget
    embedded on a shop's own site could only poll.

    The user comes from the session as the open socket re-checks it
    (``support.auth.sessions``: ``SECRET_KEY_FALLBACKS`` honoured, the session never
    written); channels' ``AuthMiddlewareStack`` ignored the fallback keys and flushed a
    session it did not verify, so a page reconnecting after a key rotation deleted the
    browser's session."""

    def __init__(self) -> None:
        self.public = URLRouter(public_websocket_urlpatterns)
        self.staff = AllowedHostsOriginValidator(
            session_auth_stack(URLRouter(staff_websocket_urlpatterns))
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = str(scope.get("path", "")).lstrip("/")
        public = any(route.pattern.match(path) for route in public_websocket_urlpatterns)
        await (self.public if public else self.staff)(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": _with_body_limit(_with_webhook_fast_path(_http_app())),
        "websocket": WebsocketMetrics(_WebsocketsByAuthentication()),
    }
)
