from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_admin_pages_render(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
    client.force_login(admin)
    for model in (
        "call",
        "callevent",
        "alertrule",
        "alert",
        "agentstatespan",
    ):
        assert client.get(f"/admin/calls/{model}/").status_code == 200
