"""Every link the site's pages offer a user leads to a page that user may open: the
navigation and the pages decide who sees a supervisor's link by the rule the linked view
applies (the Supervisors group or a superuser; the admin by Django's own ``is_staff``), so
nobody is shown a link that answers 403, and a supervisor is shown every one."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Group

from support.auth.roles import AGENTS_GROUP, SUPERVISORS_GROUP

pytestmark = pytest.mark.django_db

PAGES = ("/", "/calls/", "/alerts/", "/dashboard/")
# Links a page offers, site-relative; sign-out is a form, the API schema pages are DRF's.
_HREF = re.compile(r'href="(/[^"#?]*)')
SUPERVISOR_LINKS = {"/dashboard/", "/calls/board/", "/alerts/"}


def _links(client: Any) -> dict[str, set[str]]:
    """The site-relative links of every page the signed-in user can open."""
    found: dict[str, set[str]] = {}
    for page in PAGES:
        response = client.get(page)
        if response.status_code == 200:
            found[page] = set(_HREF.findall(response.content.decode()))
    return found


@pytest.mark.parametrize(
    ("group", "staff", "supervisor_links", "admin_link"),
    [
        (AGENTS_GROUP, False, False, False),
        # staff (the admin's rule) without the Supervisors group: the admin, not the
        # supervisors' pages
        (AGENTS_GROUP, True, False, True),
        # the Supervisors group without staff (a local account set up by hand)
        (SUPERVISORS_GROUP, False, True, False),
        (SUPERVISORS_GROUP, True, True, True),
    ],
)
def test_links_match_what_the_user_may_open(
    client, django_user_model, group, staff, supervisor_links, admin_link
):
    user = django_user_model.objects.create_user(
        username="someone", password="pw-for-tests-1", is_staff=staff
    )
    user.groups.add(Group.objects.get_or_create(name=group)[0])
    client.force_login(user)
    pages = _links(client)
    assert "/" in pages
    assert "/calls/" in pages
    offered = set().union(*pages.values())
    for link in sorted(offered):
        if link.startswith(("/static/", "/api/", "/ws/")):
            continue
        status = client.get(link).status_code
        assert status != 403, f"{link} (offered on {sorted(p for p in pages if link in pages[p])})"
    assert (offered >= SUPERVISOR_LINKS) is supervisor_links
    assert not (SUPERVISOR_LINKS & offered) or supervisor_links
    assert ("/admin/" in offered) is admin_link


def test_favicon_ico_is_the_site_icon(client):
    """Browsers ask for /favicon.ico on the JSON and CSV views (no icon link there)."""
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"].endswith(".svg")
    assert "img/favicon" in response["Location"]
    assert client.post("/favicon.ico").status_code == 405
