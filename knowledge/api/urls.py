from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from knowledge.api import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("kb/sync", views.KbSyncApi.as_view(), name="api-kb-sync"),
    path("kb/jobs/<str:job_id>", views.KbJobApi.as_view(), name="api-kb-job"),
    path("kb/documents", views.KbDocumentUploadApi.as_view(), name="api-kb-documents"),
    path("kb/search", views.KbSearchApi.as_view(), name="api-kb-search"),
    path("kb/events", views.KbEventsApi.as_view(), name="api-kb-events"),
    path("kb/feedback", views.KbFeedbackApi.as_view(), name="api-kb-feedback"),
    path(
        "tickets/<str:ticket_id>/suggestions",
        views.TicketSuggestionsApi.as_view(),
        name="api-ticket-suggestions",
    ),
    path(
        "tickets/<str:ticket_id>/suggestions/<str:chunk_id>/feedback",
        views.SuggestionFeedbackApi.as_view(),
        name="api-ticket-suggestion-feedback",
    ),
    path(
        "tickets/<str:ticket_id>/drafts",
        views.TicketDraftCreateApi.as_view(),
        name="api-ticket-drafts",
    ),
    path(
        "tickets/<str:ticket_id>/drafts/<str:draft_id>/discard",
        views.TicketDraftDiscardApi.as_view(),
        name="api-ticket-draft-discard",
    ),
]
