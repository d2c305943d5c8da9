from __future__ import annotations

from django.urls import path

from calls import views

app_name = "calls"
urlpatterns = [
    path("", views.call_list, name="list"),
    path("board/", views.agent_board, name="board"),
    path(
        "board/alerts/<int:agent_alert_id>/acknowledge",
        views.board_alert_acknowledge,
        name="board-alert-acknowledge",
    ),
    path("<str:hash>/", views.call_detail, name="detail"),
]
