from __future__ import annotations

from unittest import mock

import pytest

from calls.models import Call, SalesforceDelivery
from support.models import DeliveryStatus

pytestmark = pytest.mark.django_db


def test_admin_redrives_dead_letters_only(
    client, django_user_model, django_capture_on_commit_callbacks
):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
    client.force_login(admin)
    call = Call.objects.create(contact_id="c-1")
    dead = SalesforceDelivery.objects.create(
        key="case:c-1", sobject="Case", call=call, status=DeliveryStatus.DEAD
    )
    done = SalesforceDelivery.objects.create(
        key="case:c-2", sobject="Case", call=call, status=DeliveryStatus.SUCCEEDED
    )
    with (
        mock.patch("calls.tasks.salesforce_delivery_send_task.delay") as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client.post(
            "/admin/calls/salesforcedelivery/",
            {"action": "redrive", "_selected_action": [dead.pk, done.pk]},
        )
    assert response.status_code == 302
    send.assert_called_once_with(dead.pk)
    dead.refresh_from_db()
    done.refresh_from_db()
    assert (dead.status, done.status) == (DeliveryStatus.PENDING, DeliveryStatus.SUCCEEDED)


def test_admin_pages_render(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
    client.force_login(admin)
    for model in (
        "call",
        "callevent",
        "salesforcedelivery",
        "alertrule",
        "alert",
        "agentstatespan",
    ):
        assert client.get(f"/admin/calls/{model}/").status_code == 200
