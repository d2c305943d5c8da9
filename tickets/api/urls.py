from __future__ import annotations

from django.urls import include, path

from tickets.api import views

urlpatterns = [
    path("tickets", views.TicketListCreateApi.as_view(), name="api-tickets"),
    path("tickets/<str:ticket_id>", views.TicketDetailApi.as_view(), name="api-ticket"),
    path(
        "tickets/<str:ticket_id>/messages",
        views.TicketMessageCreateApi.as_view(),
        name="api-ticket-messages",
    ),
    path(
        "tickets/<str:ticket_id>/merge",
        views.TicketMergeApi.as_view(),
        name="api-ticket-merge",
    ),
    path(
        "tickets/<str:ticket_id>/status",
        views.TicketStatusApi.as_view(),
        name="api-ticket-status",
    ),
    path("", include("tickets.context.api.urls")),
]
