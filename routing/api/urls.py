from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from routing.api import views

urlpatterns: list[URLPattern | URLResolver] = [
    path(
        "tickets/<str:ticket_id>/routing", views.TicketRoutingApi.as_view(), name="ticket-routing"
    ),
    path(
        "tickets/<str:ticket_id>/routing/override",
        views.TicketRoutingOverrideApi.as_view(),
        name="ticket-routing-override",
    ),
    path(
        "tickets/<str:ticket_id>/routing/accept",
        views.TicketRoutingAcceptApi.as_view(),
        name="ticket-routing-accept",
    ),
    path("routing/accuracy", views.RoutingAccuracyApi.as_view(), name="routing-accuracy"),
]
