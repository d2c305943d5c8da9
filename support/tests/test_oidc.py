from __future__ import annotations

import pytest
from django.test import override_settings

from support.auth.oidc import GroupMappingOIDCBackend, roles_from_claims
from support.auth.roles import is_agent, is_supervisor


def test_cognito_groups_claim_maps_to_roles():
    assert roles_from_claims({"cognito:groups": ["Agents"]}) == {"Agents"}
    assert roles_from_claims({"cognito:groups": ["Supervisors", "Other"]}) == {"Supervisors"}
    assert roles_from_claims({"cognito:groups": "Agents,Supervisors"}) == {"Agents", "Supervisors"}
    assert roles_from_claims({}) == set()


@override_settings(OIDC_GROUPS_CLAIM="groups", OIDC_SUPERVISOR_GROUPS=["helpdesk-leads"])
def test_claim_name_and_group_names_are_configurable():
    assert roles_from_claims({"groups": ["helpdesk-leads"]}) == {"Supervisors"}
    assert roles_from_claims({"cognito:groups": ["Supervisors"]}) == set()


@pytest.mark.django_db
@override_settings(
    OIDC_OP_TOKEN_ENDPOINT="https://idp.invalid/token",
    OIDC_OP_USER_ENDPOINT="https://idp.invalid/userinfo",
    OIDC_RP_CLIENT_ID="client",
    OIDC_RP_CLIENT_SECRET="secret",
    OIDC_RP_SIGN_ALGO="HS256",
)
def test_backend_creates_user_and_syncs_groups_on_each_login():
    backend = GroupMappingOIDCBackend()
    claims = {
        "email": "kim@example.com",
        "given_name": "Kim",
        "family_name": "Lee",
        "cognito:groups": ["Supervisors"],
    }
    user = backend.create_user(claims)
    assert (user.first_name, user.last_name, user.is_staff) == ("Kim", "Lee", True)
    assert is_supervisor(user)
    user = backend.update_user(user, {**claims, "cognito:groups": ["Agents"]})
    user._support_group_names = None
    assert is_agent(user)
    assert not is_supervisor(user)
    assert user.is_staff is False
