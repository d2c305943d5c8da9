from __future__ import annotations

from django.urls import path

from tickets.context.api import views

urlpatterns = [
    path(
        "tickets/<str:ticket_id>/context",
        views.TicketContextApi.as_view(),
        name="api-ticket-context",
    ),
    path(
        "tickets/<str:ticket_id>/feedback",
        views.TicketFeedbackApi.as_view(),
        name="api-ticket-feedback",
    ),
    path(
        "customers/<str:customer_id>/context",
        views.CustomerContextApi.as_view(),
        name="api-customer-context",
    ),
]
