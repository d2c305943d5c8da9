"""Websocket routes of every app (wiring: the only place that names feature apps)."""

from __future__ import annotations

from django.urls import path

from support.consumers import EventStreamConsumer
from tickets.consumers import WorkbenchConsumer

websocket_urlpatterns = [
    path("ws/events/", EventStreamConsumer.as_asgi()),
    path("ws/workbench/", WorkbenchConsumer.as_asgi()),
]
