"""URL wiring: the only module here that names the feature apps."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.templatetags.static import static
from django.urls import URLPattern, URLResolver, include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from seed_api import urls as seed_api_urls
from support.health import health, health_live, health_ready
from support.metrics import metrics_view
from tickets.attachments import attachment_download
from tickets.views import SignInView, SignOutView


class ApiDocsView(SpectacularSwaggerSplitView):
    """Swagger UI's page and start-up script: GET (and HEAD) only. The view renders with
    DRF's ``TemplateHTMLRenderer``, and its other methods (DRF's OPTIONS metadata) answer
    data with no template: OPTIONS was a 500 for anyone signed in. Now 405, as POST was."""

    http_method_names = ["get", "head"]


api_patterns: list[URLPattern | URLResolver] = [
    # Seed 001's paths first: /api/tickets/create and PUT /api/tickets/{id} would otherwise
    # be taken by /api/tickets/{id} (seed_api; SEED_CONTRACTS_ENABLED).
    path("", include(seed_api_urls.api_patterns)),
    path("", include("tickets.api.urls")),
    path("", include("channels_app.api.urls")),
    path("", include("routing.api.urls")),
    path("", include("knowledge.api.urls")),
    path("", include("calls.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file (?script): no inline script.
    path("docs/", ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
]


class FaviconView(RedirectView):
    """Browsers ask for /favicon.ico on pages with no icon link (the JSON and CSV views):
    the site's icon, not a 404 in every log."""

    http_method_names = ["get", "head"]

    def get_redirect_url(self, *args: object, **kwargs: object) -> str:
        return static("img/favicon.svg")


urlpatterns: list[URLPattern | URLResolver] = [
    path("favicon.ico", FaviconView.as_view(), name="favicon"),
    path("health", health, name="health"),
    path("health/live", health_live, name="health-live"),
    path("health/ready", health_ready, name="health-ready"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path(
        "attachments/<int:attachment_id>",
        attachment_download,
        name="attachment-download",
    ),
    path("accounts/login/", SignInView.as_view(), name="login"),
    path("accounts/logout/", SignOutView.as_view(), name="logout"),
    path("api/", include(api_patterns)),
    path("calls/", include("calls.urls")),
    path("alerts/", include("alerts.urls")),
    path("dashboard/", include("dashboard.urls")),
    path("", include("tickets.urls")),
    # Seeds 000, 003 and 004 at the root, after the workbench (its POST /tickets/bulk
    # would otherwise be taken by the seed's /tickets/{id}).
    path("", include(seed_api_urls.root_patterns)),
]

if settings.OIDC_ENABLED:
    urlpatterns.append(path("oidc/", include("mozilla_django_oidc.urls")))
