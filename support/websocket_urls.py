"""Websocket routes of every app (wiring: the only place that names feature apps)."""

from __future__ import annotations

from django.urls import path

from channels_app.consumers import WebchatConsumer
from tickets.consumers import WorkbenchConsumer

# The visitor's web chat: authenticated by its signed session token (no cookie is read),
# opened from whatever site embeds the widget, so any origin may connect (as the widget's
# HTTP endpoints answer any origin).
public_websocket_urlpatterns = [
    path("ws/webchat/<str:token>/", WebchatConsumer.as_asgi()),
]
# Staff sockets, authenticated by the session cookie: only from this site's own origins
# (support.asgi), or any page an agent visits could open one with their cookie. Both event
# paths filter events to the tickets the signed-in agent may see (supervisors see all) and
# replay missed ones with `?since=<event id>`.
staff_websocket_urlpatterns = [
    path("ws/events/", WorkbenchConsumer.as_asgi()),
    path("ws/workbench/", WorkbenchConsumer.as_asgi()),
]
websocket_urlpatterns = public_websocket_urlpatterns + staff_websocket_urlpatterns
