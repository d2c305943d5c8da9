"""A NUL character in the URL path (``/tickets/%00``): URL patterns capture it as a
``<str:…>`` and the view looks it up in PostgreSQL, which cannot hold NUL (a DataError,
500). ``RejectNulCharactersMiddleware`` refuses it as it refuses one in the query string."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from support.middleware import NUL_PATH_MESSAGE

pytestmark = pytest.mark.django_db


@pytest.fixture
def web() -> Client:
    return Client(raise_request_exception=False)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/webhooks/whatsapp/%00"),
        ("post", "/api/webhooks/webchat/%00"),
        ("post", "/api/webchat/%00/session"),
        ("get", "/api/webchat/ab%00cd/messages"),
    ],
)
def test_api_paths_with_nul_are_a_json_400(web: Client, method: str, path: str) -> None:
    response = web.generic(method.upper(), path, "{}", content_type="application/json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("malformed_request", NUL_PATH_MESSAGE)


@pytest.mark.parametrize("path", ["/tickets/%00/", "/tickets/%00"])
def test_pages_with_nul_in_the_path_are_a_400(web: Client, admin_user: Any, path: str) -> None:
    web.force_login(admin_user)
    response = web.get(path, follow=True)
    assert response.status_code == 400, response.content[:300]
    assert response.content.decode() == NUL_PATH_MESSAGE


def test_a_nul_free_path_still_reaches_its_view(web: Client) -> None:
    assert web.post("/api/webchat/nope/session", data="{}", content_type="x").status_code != 400
