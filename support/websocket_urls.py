"""Websocket routes of every app (wiring: the only place that names feature apps)."""

from __future__ import annotations

from django.urls import path

from channels_app.consumers import WebchatConsumer
from support.consumers import EventStreamConsumer

websocket_urlpatterns = [
    path("ws/events/", EventStreamConsumer.as_asgi()),
    path("ws/webchat/<str:token>/", WebchatConsumer.as_asgi()),
]
