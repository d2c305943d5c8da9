"""The project's URLs with mozilla-django-oidc's sign-in routes, as when OIDC is on."""

from django.urls import include, path

from support.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("oidc/", include("mozilla_django_oidc.urls")),
    *project_urlpatterns,
]
