"""Shared by the ticket admin's tests: a staff agent given some Django permissions (what
a supervisor might hand out) and a browser signed in as someone."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.test import Client

from support.auth.roles import AGENTS_GROUP
from tickets.models import Team


def staff_agent(django_user_model: Any, team: Team, *codenames: str) -> Any:
    """An agent of ``team``, staff, with these ``tickets`` permissions only."""
    user = django_user_model.objects.create_user(
        "staff-agent", password="pw-for-tests-1", is_staff=True
    )
    user.groups.add(Group.objects.get_or_create(name=AGENTS_GROUP)[0])
    team.members.add(user)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="tickets", codename__in=codenames)
    )
    return user


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client
