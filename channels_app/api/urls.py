from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from channels_app.api import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("webhooks/chatbot", views.ChatbotHandoffApi.as_view(), name="api-chatbot-handoff"),
    path(
        "webhooks/chatbot/files/<int:attachment_id>",
        views.chatbot_file,
        name="api-chatbot-file",
    ),
    path("webhooks/<str:channel>/<str:token>", views.webhook, name="api-channel-webhook"),
    path("webchat/<str:token>/session", views.webchat_session, name="api-webchat-session"),
    path("webchat/<str:token>/messages", views.webchat_messages, name="api-webchat-messages"),
    path("webchat/<str:token>/verify", views.webchat_verify, name="api-webchat-verify"),
    path("webchat/<str:token>/files", views.webchat_upload, name="api-webchat-upload"),
    path(
        "webchat/<str:token>/files/<int:attachment_id>",
        views.webchat_file,
        name="api-webchat-file",
    ),
    path(
        "webchat/<str:token>/verify/confirm",
        views.webchat_verify_confirm,
        name="api-webchat-verify-confirm",
    ),
]
