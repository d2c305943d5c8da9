"""Websocket routes of every app (wiring: the only place that names feature apps)."""

from __future__ import annotations

from django.urls import path

from channels_app.consumers import WebchatConsumer
from tickets.consumers import WorkbenchConsumer

# Both event paths filter events to the tickets the signed-in agent may see (supervisors
# see all) and replay missed ones with `?since=<event id>`.
websocket_urlpatterns = [
    path("ws/webchat/<str:token>/", WebchatConsumer.as_asgi()),
    path("ws/events/", WorkbenchConsumer.as_asgi()),
    path("ws/workbench/", WorkbenchConsumer.as_asgi()),
]
