"""The API's documentation pages answer the methods they serve and 405 to the others.

``/api/docs/`` (Swagger UI) renders with DRF's ``TemplateHTMLRenderer``; DRF's OPTIONS
answer has no template, so OPTIONS was a 500 for anyone signed in (2026-12-07 probe)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(supervisor: Any) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(supervisor)
    return client


@pytest.mark.parametrize("path", ["/api/docs/", "/api/docs/?script"])
@pytest.mark.parametrize("method", ["options", "post", "put", "patch", "delete"])
def test_swagger_ui_answers_405_to_other_methods(signed_in: Client, path: str, method: str):
    response = getattr(signed_in, method)(path)
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("method", ["get", "head"])
def test_swagger_ui_still_serves_its_page_and_script(signed_in: Client, method: str):
    page = getattr(signed_in, method)("/api/docs/")
    script = getattr(signed_in, method)("/api/docs/?script")
    assert (page.status_code, script.status_code) == (200, 200)
    assert page["Content-Type"].startswith("text/html")
    assert script["Content-Type"].startswith("application/javascript")


def test_swagger_ui_still_asks_for_a_sign_in():
    client = Client(raise_request_exception=False)
    assert client.get("/api/docs/").status_code == 401
    assert client.options("/api/docs/").status_code == 401


@pytest.mark.parametrize("method", ["get", "options"])
def test_the_schema_answers_get_and_options(signed_in: Client, method: str):
    assert getattr(signed_in, method)("/api/schema/").status_code == 200


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_schema_answers_405_to_writes(signed_in: Client, method: str):
    assert getattr(signed_in, method)("/api/schema/").status_code == 405
