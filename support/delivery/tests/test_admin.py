"""The one deliveries admin: every kind in one list filtered by target kind and status,
attempts inline, re-drive of dead letters (a button on one, an action on many; supervisors
only, audited), circuits visible and closable."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from support.delivery import services as engine
from support.delivery.models import Circuit, Delivery
from support.delivery.registry import SendResult
from support.delivery.tests.conftest import KIND, ScriptedTarget, enqueue
from support.models import AuditLog

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(django_user_model: Any) -> Client:
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-1-tests")
    client = Client()
    client.force_login(user)
    client.user = user  # type: ignore[attr-defined]
    return client


def _dead(target: ScriptedTarget, key: str, **extra: Any) -> Delivery:
    target.script.append(SendResult(http_status=400, error=f"refused {key}"))
    delivery = enqueue(key, **extra)
    engine.delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "dead"
    return delivery


def test_one_list_filtered_by_target_kind_and_status(target: ScriptedTarget, root: Client) -> None:
    dead = _dead(target, "dead-1")
    done = enqueue("done-1")
    engine.delivery_attempt(delivery_id=done.pk)
    other = Delivery.objects.create(
        target_kind="other_kind", idempotency_key="x-1", status="dead", target_key="h"
    )
    page = root.get("/admin/delivery/delivery/")
    assert page.status_code == 200
    assert {row.pk for row in page.context["cl"].result_list} == {dead.pk, done.pk, other.pk}
    page = root.get(f"/admin/delivery/delivery/?target_kind={KIND}&status__exact=dead")
    assert [row.pk for row in page.context["cl"].result_list] == [dead.pk]
    page = root.get("/admin/delivery/delivery/?status__exact=dead")
    assert {row.pk for row in page.context["cl"].result_list} == {dead.pk, other.pk}


def test_a_dead_letter_page_shows_its_attempts_and_redrives_once(
    target: ScriptedTarget, root: Client, django_capture_on_commit_callbacks: Any
) -> None:
    dead = _dead(target, "dead-1")
    page = root.get(f"/admin/delivery/delivery/{dead.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "refused dead-1" in html  # the attempt inline and the last error
    assert "Re-drive this dead letter" in html
    url = f"/admin/delivery/delivery/{dead.pk}/redrive/"
    assert root.get(url).status_code == 405
    with django_capture_on_commit_callbacks(execute=True):
        response = root.post(url)
    assert response.status_code == 302
    dead.refresh_from_db()
    assert dead.status == "succeeded"
    assert target.sent == ["dead-1", "dead-1"]
    assert AuditLog.objects.get(action="delivery.redriven").actor == root.user  # type: ignore[attr-defined]
    page = root.get(f"/admin/delivery/delivery/{dead.pk}/change/")
    assert "Re-drive this dead letter" not in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        root.post(url)  # no longer dead: nothing happens
    assert len(target.sent) == 2


def test_bulk_redrive_action_redrives_dead_letters_only(
    target: ScriptedTarget, root: Client, django_capture_on_commit_callbacks: Any
) -> None:
    one, two = _dead(target, "d-1"), _dead(target, "d-2")
    done = enqueue("ok")
    engine.delivery_attempt(delivery_id=done.pk)
    with django_capture_on_commit_callbacks(execute=True):
        response = root.post(
            "/admin/delivery/delivery/",
            {"action": "redrive", "_selected_action": [one.pk, two.pk, done.pk]},
        )
    assert response.status_code == 302
    assert sorted(target.sent) == ["d-1", "d-1", "d-2", "d-2", "ok"]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}
    assert AuditLog.objects.filter(action="delivery.redriven").count() == 2


def test_staff_who_are_not_supervisors_cannot_redrive(
    target: ScriptedTarget, django_user_model: Any, django_capture_on_commit_callbacks: Any
) -> None:
    dead = _dead(target, "d-1")
    clerk = django_user_model.objects.create_user("clerk", password="pw-1-tests", is_staff=True)
    clerk.user_permissions.add(
        Permission.objects.get(codename="view_delivery"),
        Permission.objects.get(codename="change_delivery"),
    )
    client = Client()
    client.force_login(clerk)
    assert client.get("/admin/delivery/delivery/").status_code == 200
    page = client.get(f"/admin/delivery/delivery/{dead.pk}/change/")
    assert "Re-drive this dead letter" not in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/admin/delivery/delivery/{dead.pk}/redrive/")
        client.post(
            "/admin/delivery/delivery/", {"action": "redrive", "_selected_action": [dead.pk]}
        )
    dead.refresh_from_db()
    assert (dead.status, target.sent) == ("dead", ["d-1"])
    assert not AuditLog.objects.filter(action="delivery.redriven").exists()


def test_circuits_are_listed_and_closed_from_the_admin(
    target: ScriptedTarget, root: Client, settings: Any
) -> None:
    settings.DELIVERY_CIRCUIT_FAILURES = 1
    target.script = [SendResult(http_status=503, error="down for maintenance")]
    delivery = enqueue()
    engine.delivery_attempt(delivery_id=delivery.pk)
    circuit = Circuit.objects.get()
    page = root.get("/admin/delivery/circuit/?state__exact=open")
    assert [row.pk for row in page.context["cl"].result_list] == [circuit.pk]
    assert "down for maintenance" in page.content.decode()
    detail = root.get(f"/admin/delivery/delivery/{delivery.pk}/change/").content.decode()
    assert "Open (paused) until" in detail
    root.post("/admin/delivery/circuit/", {"action": "close", "_selected_action": [circuit.pk]})
    assert Circuit.objects.get().state == "closed"
    assert AuditLog.objects.filter(action="delivery.circuit_closed").count() == 1


def test_the_pages_are_supervisor_admin_pages() -> None:
    from django.contrib import admin

    from support.auth.admin import SupervisorAdmin  # tickets.admin re-exports this class

    for model in (Delivery, Circuit):
        assert isinstance(admin.site._registry[model], SupervisorAdmin)


def test_a_supervisor_without_model_permissions_sees_and_redrives(
    target: ScriptedTarget, supervisor: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The supervisor role (a group, staff, no Django model permissions) is enough."""
    assert not supervisor.is_superuser
    assert not supervisor.user_permissions.exists()
    dead = _dead(target, "d-1")
    client = Client()
    client.force_login(supervisor)
    assert "/admin/delivery/delivery/" in client.get("/admin/").content.decode()
    page = client.get("/admin/delivery/delivery/?status__exact=dead")
    assert [row.pk for row in page.context["cl"].result_list] == [dead.pk]
    assert client.get("/admin/delivery/circuit/").status_code == 200
    detail = client.get(f"/admin/delivery/delivery/{dead.pk}/change/").content.decode()
    assert "Re-drive this dead letter" in detail
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/admin/delivery/delivery/{dead.pk}/redrive/")
    dead.refresh_from_db()
    assert (dead.status, target.sent) == ("succeeded", ["d-1", "d-1"])
    assert AuditLog.objects.get(action="delivery.redriven").actor == supervisor


def test_staff_without_a_role_or_permissions_are_refused(
    target: ScriptedTarget, django_user_model: Any
) -> None:
    dead = _dead(target, "d-1")
    staff = django_user_model.objects.create_user("staffer", password="pw-1-tests", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get("/admin/delivery/delivery/").status_code == 403
    assert client.get(f"/admin/delivery/delivery/{dead.pk}/change/").status_code == 403
    assert client.get("/admin/delivery/circuit/").status_code == 403


def test_the_list_shows_a_paused_target(
    target: ScriptedTarget, root: Client, settings: Any
) -> None:
    settings.DELIVERY_CIRCUIT_FAILURES = 1
    target.script = [SendResult(http_status=503, error="down")]
    paused = enqueue("p-1", target_key="host-a")
    engine.delivery_attempt(delivery_id=paused.pk)
    fine = enqueue("f-1", target_key="host-b")
    page = root.get("/admin/delivery/delivery/")
    rows = {row.pk: row for row in page.context["cl"].result_list}
    admin_page = page.context["cl"].model_admin
    assert admin_page.target_circuit(rows[paused.pk]).startswith("paused until ")
    assert admin_page.target_circuit(rows[fine.pk]) == ""
    assert "paused until " in page.content.decode()
