from __future__ import annotations

from django.apps import AppConfig


class SupportConfig(AppConfig):
    name = "support"
    verbose_name = "Platform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from support.auth import schema  # noqa: F401  (registers OpenAPI extensions)
        from support.sinks import WebsocketSink, sink_register

        # The live workbench: the first sink of the outbox relay (support/sinks.py).
        sink_register(WebsocketSink())
        from support.metrics import register_builtin_sources

        register_builtin_sources()  # GET /metrics (support/metrics.py)
        from support.metrics import metric_source_register
        from support.request_metrics import http_metrics, http_window_metrics

        # Request counts and latency by route (support/request_metrics.py), and the
        # requests per minute of every web process, from Redis (the alarm evaluator's).
        metric_source_register("http", http_metrics)
        metric_source_register("http_window", http_window_metrics)
        from django.contrib.auth.signals import user_logged_out

        from support.auth.sessions import signed_out_announce

        # Every sign-out (the workbench's, the admin's, the SSO provider's: views of
        # Django and mozilla-django-oidc that no service of ours wraps) tells the user's
        # live sockets to re-check their session at once (support/auth/sessions.py).
        user_logged_out.connect(signed_out_announce, dispatch_uid="support.signed_out")
