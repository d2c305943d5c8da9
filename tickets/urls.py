from __future__ import annotations

from django.urls import include, path

from tickets import views

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("", include("tickets.context.urls")),
]
