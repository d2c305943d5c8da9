from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from calls.api import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("calls/events", views.CallEventsIntakeApi.as_view(), name="calls-events"),
    path("calls/sns", views.SnsIntakeApi.as_view(), name="calls-sns"),
    path("analytics", views.AnalyticsListApi.as_view(), name="analytics-list"),
    path("analytics/<str:hash>", views.AnalyticsDetailApi.as_view(), name="analytics-detail"),
]
