from __future__ import annotations

from django.urls import include, path

from tickets import views

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("start/", views.landing, name="landing"),
    path("", include("tickets.context.urls")),
    path("tickets/bulk", views.inbox_bulk, name="inbox-bulk"),
    path("tickets/new", views.ticket_new, name="ticket-new"),
    path("tickets/<str:ref>/", views.ticket_detail, name="ticket"),
    path("tickets/<str:ref>/live", views.ticket_timeline, name="ticket-live"),
    path("tickets/<str:ref>/messages", views.ticket_message, name="ticket-message"),
    path("tickets/<str:ref>/update", views.ticket_update, name="ticket-update"),
    path("tickets/<str:ref>/merge", views.ticket_merge, name="ticket-merge"),
    path(
        "tickets/<str:ref>/canned/<int:canned_id>",
        views.canned_render,
        name="ticket-canned",
    ),
    path("customers/", views.customer_list, name="customers"),
    path("customers/<str:customer_id>/", views.customer_detail, name="customer"),
    path("customers/<str:customer_id>/contact", views.customer_contact, name="customer-contact"),
]
