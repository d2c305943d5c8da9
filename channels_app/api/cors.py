"""CORS of the web chat widget's endpoints: every answer, errors included.

The widget runs on customers' sites (any origin) and sends its session in a header
(``X-Webchat-Session``), never a cookie, so these paths answer any origin without
credentials. django-cors-headers serves the API with listed origins and credentials
(``CORS_URLS_REGEX`` leaves these paths out); this middleware serves the widget's.

A middleware, not a view decorator: an exception in a view becomes Django's 500 page
outside any decorator, and a guard below (``RejectNulCharactersMiddleware``'s 400) answers
before the view. Without the headers the browser hides such an answer from the widget
(``TypeError: Failed to fetch``), which then cannot tell a refusal from a network error.
Every response on these paths passes through here on its way out, so each carries them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

#: ``/api/webchat/<token>/…`` (session, poll, files, verification) and the widget's
#: HTTP send, ``/api/webhooks/webchat/<token>``. Other channels' webhooks are server to
#: server: no CORS.
WEBCHAT_PATHS = re.compile(r"^/api/(?:webchat/|webhooks/webchat/)")

HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Content-Type, X-Webchat-Session",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Max-Age": "600",
}


def webchat_cors(response: HttpResponseBase) -> HttpResponseBase:
    """Add the widget's CORS headers to ``response``."""
    for name, value in HEADERS.items():
        response[name] = value
    return response


class WebchatCorsMiddleware:
    """Answer the widget's preflights (204) and put its CORS headers on every response
    of :data:`WEBCHAT_PATHS`, whatever produced it (view, error page, another guard)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if not WEBCHAT_PATHS.match(request.path_info):
            return self.get_response(request)
        if request.method == "OPTIONS":
            return webchat_cors(HttpResponse(status=204))
        return webchat_cors(self.get_response(request))
