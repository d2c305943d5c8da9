"""The admin answers a hostile query string or selection with a 4xx or its "invalid
filter" redirect, never a 500 (support.auth.admin: ``admin_input_checked``).

Each case below was a 500 for a supervisor or a superuser in the 2026-12-07 admin probe:
a regular-expression lookup PostgreSQL cannot compile, an action's selection holding
something that is no id, a date part out of ``datetime``'s range (a list filter or the
date hierarchy), and an add page pre-filled with text its widgets cannot show."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.test import Client, RequestFactory
from django.urls import reverse

pytestmark = pytest.mark.django_db

REGISTRY = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label_lower)
MODEL_IDS = [model._meta.label_lower for model, _ in REGISTRY]
SELECTION_REFUSED = (  # support.auth.admin.SELECTION_REFUSED
    "The selection was not a list of this page's row ids: nothing was changed. Select "
    "the rows in the list and run the action again."
)
HOSTILE_IDS = ["abc", "¹", "1.5", "-1", "9" * 25, ""]


@pytest.fixture
def superuser(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-1")


@pytest.fixture
def clients(superuser: Any, supervisor: Any) -> dict[str, Client]:
    made = {}
    for who, user in (("superuser", superuser), ("supervisor", supervisor)):
        made[who] = Client(raise_request_exception=False)
        made[who].force_login(user)
    return made


@pytest.fixture
def ticket(customer: Any) -> Any:
    from tickets.services import ticket_create

    return ticket_create(customer=customer, subject="Hostile input", body="Hello")


def _changelist(model: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


# --- regular-expression lookups: refused (400) on every list ----------------------------


@pytest.mark.parametrize(("model", "model_admin"), REGISTRY, ids=MODEL_IDS)
def test_every_list_refuses_a_regular_expression_lookup(clients, model, model_admin):
    url = _changelist(model)
    for query in ("id__regex=[", "id__iregex=[", "pk__regex=.*"):
        assert clients["superuser"].get(f"{url}?{query}").status_code == 400, query


@pytest.mark.parametrize(
    ("who", "url"),
    [
        ("supervisor", "/admin/tickets/ticket/?id__regex=["),
        ("supervisor", "/admin/tickets/ticket/?subject__iregex=(a"),
        ("supervisor", "/admin/tickets/ticket/?customer__email__regex=["),
        ("supervisor", "/admin/axes/accessattempt/?username__regex=["),
        ("superuser", "/admin/auth/user/?username__regex=["),
    ],
)
def test_regular_expression_lookups_answer_400(clients, who, url):
    assert clients[who].get(url).status_code == 400


# --- a date part out of range: the list's "invalid filter" redirect ----------------------

BIG = "9" * 25
ORDERS = "/admin/tickets/order/"  # date hierarchy: placed_at
ATTEMPTS = "/admin/axes/accessattempt/"  # date hierarchy: attempt_time


def _day(field: str, *parts: str) -> str:
    """The date hierarchy's query: ``year``, then ``month``, then ``day``."""
    names = ("year", "month", "day")[: len(parts)]
    return "&".join(f"{field}__{n}={v}" for n, v in zip(names, parts, strict=True))


INVALID_DATES = [
    ("supervisor", "/admin/tickets/ticket/", "created_at__year=-1"),
    ("supervisor", "/admin/tickets/ticket/", f"created_at__year={BIG}"),
    ("supervisor", "/admin/tickets/ticket/", "created_at__year=0"),
    ("supervisor", "/admin/tickets/ticket/", "created_at__year=%C2%B9"),
    ("supervisor", "/admin/tickets/ticket/", "created_at__year__gte=-1"),
    ("supervisor", "/admin/tickets/ticket/", "created_at__iso_year=9999"),
    ("supervisor", "/admin/tickets/ticket/", "customer__created_at__year=-1"),
    ("supervisor", "/admin/support/outboxevent/", "delivered_at__year=-1"),
    ("supervisor", "/admin/support/outboxevent/", f"delivered_at__year={BIG}"),
    ("supervisor", "/admin/support/outboxevent/", "failed_at__year=-1"),
    ("supervisor", "/admin/support/outboxevent/", f"failed_at__year={BIG}"),
    ("superuser", "/admin/support/apikey/", "revoked_at__year=-1"),
    ("superuser", "/admin/support/apikey/", f"revoked_at__year={BIG}"),
    # the date hierarchy adds a day, a month or a year to the date it reads
    ("superuser", ORDERS, _day("placed_at", "9999", "12", "31")),
    ("superuser", ORDERS, _day("placed_at", "9999", "12")),
    ("superuser", ORDERS, _day("placed_at", "9999")),
    ("superuser", ORDERS, _day("placed_at", "2026", BIG)),
    ("superuser", ORDERS, _day("placed_at", "2026", "1", BIG)),
    ("superuser", ORDERS, _day("placed_at", "-1")),
    ("supervisor", ATTEMPTS, _day("attempt_time", BIG)),
    ("supervisor", ATTEMPTS, _day("attempt_time", "9999", "12", "31")),
]


@pytest.mark.parametrize(("who", "path", "query"), INVALID_DATES)
def test_a_date_part_out_of_range_is_an_invalid_filter(clients, who, path, query):
    response = clients[who].get(f"{path}?{query}")
    assert (response.status_code, response["Location"]) == (302, f"{path}?e=1")


@pytest.mark.parametrize(
    ("who", "path", "query"),
    [
        ("supervisor", "/admin/tickets/ticket/", "created_at__year=2026"),
        ("supervisor", "/admin/tickets/ticket/", "created_at__year__gte=2020&created_at__month=12"),
        ("supervisor", "/admin/tickets/ticket/", "created_at__day=31"),
        ("superuser", ORDERS, _day("placed_at", "2026")),
        ("superuser", ORDERS, _day("placed_at", "2024", "2", "29")),
        ("superuser", ORDERS, _day("placed_at", "9998", "12", "31")),
        ("superuser", ORDERS, _day("placed_at", "2")),
        ("supervisor", ATTEMPTS, _day("attempt_time", "2026", "12")),
    ],
)
def test_date_parts_in_range_still_filter(clients, who, path, query):
    assert clients[who].get(f"{path}?{query}").status_code == 200


# --- an action's selection that is no list of ids: nothing runs --------------------------


def _first_action(model_admin: Any, user: Any) -> str | None:
    request = RequestFactory().get("/admin/")
    request.user = user
    return next(iter(model_admin.get_actions(request)), None)


@pytest.mark.parametrize(("model", "model_admin"), REGISTRY, ids=MODEL_IDS)
def test_every_list_refuses_a_selection_that_is_no_list_of_ids(
    clients, superuser, model, model_admin
):
    action = _first_action(model_admin, superuser)
    if action is None:
        pytest.skip("no action on this page")
    url = _changelist(model)
    response = clients["superuser"].post(
        url, {"action": action, ACTION_CHECKBOX_NAME: ["abc"], "index": "0"}
    )
    assert (response.status_code, response["Location"]) == (302, url)
    assert [str(m) for m in get_messages(response.wsgi_request)] == [SELECTION_REFUSED]


@pytest.mark.parametrize("selected", [[value] for value in HOSTILE_IDS] + [["TICKET", "abc"]])
@pytest.mark.parametrize(
    ("who", "path", "action"),
    [
        ("supervisor", "/admin/tickets/ticket/", "set_priority_urgent"),
        ("supervisor", "/admin/tickets/ticket/", "unassign"),
        ("superuser", "/admin/tickets/ticket/", "delete_selected"),
        ("supervisor", "/admin/support/outboxevent/", "redrive"),
        ("supervisor", "/admin/axes/accessattempt/", "unlock_usernames"),
        ("supervisor", "/admin/axes/accessattempt/", "unlock_ip_addresses"),
        ("supervisor", "/admin/routing/routingfailure/", "route_again"),
        ("supervisor", "/admin/calls/call/", "rerun_pipeline"),
        ("supervisor", "/admin/channels_app/inboundevent/", "reprocess"),
        ("supervisor", "/admin/knowledge/ingestionjob/", "upload_again"),
    ],
)
def test_actions_refuse_a_selection_that_is_no_list_of_ids(
    clients, ticket, who, path, action, selected
):
    before = (ticket.priority, ticket.assignee_id)
    selected = [str(ticket.pk) if value == "TICKET" else value for value in selected]
    for sent, data in enumerate(
        (
            {"action": action, ACTION_CHECKBOX_NAME: selected, "index": "0"},
            {"action": action, ACTION_CHECKBOX_NAME: selected, "post": "yes"},  # confirmed
        ),
        start=1,
    ):
        response = clients[who].post(path, data)
        assert (response.status_code, response["Location"]) == (302, path)
        # (the redirect is not followed: the messages add up)
        shown = [str(m) for m in get_messages(response.wsgi_request)]
        assert shown == [SELECTION_REFUSED] * sent
    ticket.refresh_from_db()
    assert (ticket.priority, ticket.assignee_id) == before


def test_an_action_on_real_ids_still_runs(clients, ticket):
    response = clients["supervisor"].post(
        "/admin/tickets/ticket/",
        {"action": "set_priority_urgent", ACTION_CHECKBOX_NAME: [str(ticket.pk)], "index": "0"},
    )
    assert response.status_code == 302
    ticket.refresh_from_db()
    assert ticket.priority == "urgent"


# --- an add page pre-filled from its query string: what cannot be read is left out ----

HOSTILE_VALUES = ["abc", "-1", "9" * 25, "2026-13-45", "a,b", "%ED%A0%80", "%C2%B9"]
PREFILLED = [
    ("supervisor", "routing.outage"),
    ("supervisor", "tickets.ticket"),
    ("superuser", "tickets.ticket"),
    ("superuser", "support.apikey"),
    ("superuser", "support.oidcidentity"),
    ("superuser", "tickets.order"),
    ("superuser", "channels_app.channelaccount"),
]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
@pytest.mark.parametrize(("who", "label"), PREFILLED)
def test_an_add_page_prefilled_with_values_its_fields_cannot_read(clients, who, label, value):
    """Every editable field of the model given the same value, as the probe sent it."""
    model = next(m for m in admin.site._registry if m._meta.label_lower == label)
    names = [f.name for f in model._meta.get_fields() if getattr(f, "editable", False)]
    add = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")
    response = clients[who].get(add + "?" + "&".join(f"{name}={value}" for name in names))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("who", "url", "left_out"),
    [
        ("supervisor", "/admin/routing/outage/add/?started_at=abc", "started_at"),
        ("supervisor", "/admin/routing/outage/add/?started_at=2026-02-30", "started_at"),
        (
            "supervisor",
            "/admin/routing/outage/add/?started_at=0001-01-01T00:00:00%2B01:00",
            "started_at",
        ),
        ("superuser", "/admin/support/apikey/add/?expires_at=abc", "expires_at"),
        ("superuser", "/admin/support/apikey/add/?user=abc", "user"),
        ("superuser", "/admin/support/oidcidentity/add/?user=abc", "user"),
        ("superuser", "/admin/support/oidcidentity/add/?user=%C2%B9", "user"),
        ("supervisor", "/admin/tickets/ticket/add/?tags=a,b", "tags"),
        ("supervisor", "/admin/tickets/ticket/add/?customer=1.5", "customer"),
        ("superuser", "/admin/tickets/order/add/?placed_at=abc", "placed_at"),
    ],
)
def test_a_value_its_field_cannot_read_is_left_out(clients, who, url, left_out):
    response = clients[who].get(url)
    assert response.status_code == 200
    assert left_out not in response.context["adminform"].form.initial


def test_values_its_fields_read_are_still_prefilled(clients, supervisor, customer):
    response = clients["superuser"].get(
        "/admin/routing/outage/add/?title=Mail%20down&started_at=2026-01-02%2003:04"
    )
    assert response.status_code == 200
    initial = response.context["adminform"].form.initial
    assert (initial["title"], initial["started_at"]) == ("Mail down", datetime(2026, 1, 2, 3, 4))
    assert 'value="2026-01-02"' in response.content.decode()
    response = clients["superuser"].get(
        f"/admin/support/oidcidentity/add/?user={supervisor.pk}&issuer={quote('https://idp')}"
    )
    initial = response.context["adminform"].form.initial
    assert (initial["user"], initial["issuer"]) == (supervisor.pk, "https://idp")
    assert f'<option value="{supervisor.pk}" selected>' in response.content.decode()
