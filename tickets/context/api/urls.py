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
    # Machine intake (integration keys): one segment after customers/, so never taken
    # for a customer id by the customers/<id>/... routes.
    path(
        "customers/orders",
        views.CustomerOrdersIntakeApi.as_view(),
        name="api-customers-orders-intake",
    ),
    path(
        "customers/interactions",
        views.CustomerInteractionsIntakeApi.as_view(),
        name="api-customers-interactions-intake",
    ),
    path(
        "customers/<str:customer_id>/context",
        views.CustomerContextApi.as_view(),
        name="api-customer-context",
    ),
]
