"""The seeds' paths (docs/api.md#seed-contracts). ``root_patterns`` are mounted at ``/``
(seeds 000, 003 and 004 documented paths without a prefix), ``api_patterns`` under
``/api/`` before the product's own, so that seed 001's ``/api/tickets/create`` and ``PUT
/api/tickets/{id}`` are not taken by ``/api/tickets/{id}``."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path, re_path
from drf_spectacular.utils import extend_schema, extend_schema_view

from knowledge.api.views import KbSyncApi
from seed_api import views
from tickets.api.views import TicketMessageCreateApi


@extend_schema_view(post=extend_schema(operation_id="seed_kb_sync"))
class SeedKbSyncApi(views.SeedContractMixin, KbSyncApi):
    """Seed 000's ``POST /kb/sync``."""


@extend_schema_view(post=extend_schema(operation_id="seed_tickets_message_create"))
class SeedTicketMessageApi(views.SeedContractMixin, TicketMessageCreateApi):
    """Seed 001's ``POST /api/tickets/{id}/message``."""


root_patterns: list[URLPattern | URLResolver] = [
    # seeds 000 and 004
    path("tickets", views.SeedTicketIngestApi.as_view(), name="seed-tickets"),
    path("tickets/<str:ticket_id>", views.SeedRoutingDecisionApi.as_view(), name="seed-ticket"),
    path(
        "tickets/<str:ticket_id>/context",
        views.SeedTicketContextApi.as_view(),
        name="seed-ticket-context",
    ),
    path(
        "tickets/<str:ticket_id>/feedback",
        views.SeedTicketFeedbackApi.as_view(),
        name="seed-ticket-feedback",
    ),
    path("kb/sync", SeedKbSyncApi.as_view(), name="seed-kb-sync"),
    # seed 003
    path("analytics", views.SeedAnalyticsListApi.as_view(), name="seed-analytics-list"),
    path(
        "analytics/<str:hash>",
        views.SeedAnalyticsDetailApi.as_view(),
        name="seed-analytics-detail",
    ),
]

api_patterns: list[URLPattern | URLResolver] = [
    # seed 001
    path("tickets/create", views.SeedTicketCreateApi.as_view(), name="seed-api-tickets-create"),
    path("tickets/<str:ticket_id>", views.SeedTicketDetailApi.as_view(), name="seed-api-ticket"),
    path(
        "tickets/<str:ticket_id>/message",
        SeedTicketMessageApi.as_view(),
        name="seed-api-ticket-message",
    ),
    re_path(
        r"^webhooks/(?P<seed_channel>facebook|whatsapp|twitter)$",
        views.seed_webhook,
        name="seed-api-webhook",
    ),
]
