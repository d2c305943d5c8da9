from __future__ import annotations

from django.urls import path

from dashboard import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("widgets/<slug:name>/", views.widget_fragment, name="dashboard-widget"),
    path("data/<slug:name>/", views.widget_data, name="dashboard-data"),
]
