from __future__ import annotations

from django.urls import path

from tickets.context import views

urlpatterns = [
    path("feedback/<str:token>", views.feedback_page, name="context-feedback"),
]
