"""Salesforce: token refresh once, request limits back off, 5xx retry, 4xx dead letters."""

from __future__ import annotations

import pytest
import responses

from calls import services
from calls.models import Call, SalesforceAttempt, SalesforceDelivery
from calls.tests.conftest import SF_LOGIN, SF_SOBJECTS, SF_TOKEN_BODY
from support.models import DeliveryStatus

pytestmark = pytest.mark.django_db
# Marks removed when the outbound kinds run on support/delivery (issue #14 item 1).
SALESFORCE_IN_TRANSACTION = pytest.mark.network_in_transaction_allowed(
    reason="Salesforce delivery moves to support/delivery (issue #14 item 1): today "
    "salesforce_delivery_send calls out under select_for_update",
    only=("salesforce.com",),
)
CASE_URL = f"{SF_SOBJECTS}/Case/"
CREATED = {"id": "5003000000D8cuIAAR", "errors": [], "success": True}


@pytest.fixture
def delivery(salesforce):
    call = Call.objects.create(contact_id="c-1")
    return SalesforceDelivery.objects.create(
        key="case:c-1",
        sobject="Case",
        call=call,
        payload={"Subject": "Phone call", "Origin": "Phone"},
    )


def attempts(d):
    return list(
        SalesforceAttempt.objects.filter(delivery=d).values_list(
            "outcome", "http_status", "error_code"
        )
    )


@SALESFORCE_IN_TRANSACTION
@responses.activate
def test_invalid_session_refreshes_once(delivery):
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.post(
        CASE_URL,
        status=401,
        json=[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
    )
    responses.post(CASE_URL, status=201, json=CREATED)
    assert services.salesforce_delivery_send(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.salesforce_id, delivery.attempts) == (
        DeliveryStatus.SUCCEEDED,
        CREATED["id"],
        1,
    )
    assert [c.request.url for c in responses.calls] == [SF_LOGIN, CASE_URL, SF_LOGIN, CASE_URL]
    assert attempts(delivery) == [("success", 201, "")]


@SALESFORCE_IN_TRANSACTION
@responses.activate
def test_invalid_session_twice_is_retryable(delivery):
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.post(
        CASE_URL,
        status=401,
        json=[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
    )
    delay = services.salesforce_delivery_send(delivery_id=delivery.pk)
    assert delay is not None
    assert len(responses.calls) == 4  # one refresh only
    assert attempts(delivery) == [("retryable", 401, "INVALID_SESSION_ID")]


@SALESFORCE_IN_TRANSACTION
@responses.activate
def test_request_limit_backs_off(delivery):
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.post(
        CASE_URL,
        status=403,
        json=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
    )
    delay = services.salesforce_delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delay is not None
    assert delay >= 60
    assert delivery.status == DeliveryStatus.RETRYING
    assert delivery.next_attempt_at is not None
    assert attempts(delivery) == [("retryable", 403, "REQUEST_LIMIT_EXCEEDED")]


@SALESFORCE_IN_TRANSACTION
@responses.activate
def test_5xx_retries_then_dead_after_max_attempts(delivery, settings):
    settings.SALESFORCE_MAX_ATTEMPTS = 2
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.post(
        CASE_URL,
        status=503,
        json=[{"message": "Server unavailable", "errorCode": "SERVER_UNAVAILABLE"}],
    )
    assert services.salesforce_delivery_send(delivery_id=delivery.pk) is not None
    assert services.salesforce_delivery_send(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DEAD, 2)
    assert attempts(delivery) == [("retryable", 503, "SERVER_UNAVAILABLE")] * 2


@SALESFORCE_IN_TRANSACTION
@responses.activate
def test_other_4xx_is_a_dead_letter_and_can_be_redriven(
    delivery, django_capture_on_commit_callbacks
):
    responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.post(
        CASE_URL,
        status=400,
        json=[
            {
                "message": "Required fields are missing: [Status]",
                "errorCode": "REQUIRED_FIELD_MISSING",
                "fields": ["Status"],
            }
        ],
    )
    assert services.salesforce_delivery_send(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DEAD
    assert (
        delivery.last_error
        == "Salesforce 400 REQUIRED_FIELD_MISSING: Required fields are missing: [Status]"
    )
    responses.replace(responses.POST, CASE_URL, status=201, json=CREATED)
    with django_capture_on_commit_callbacks(execute=True):
        services.salesforce_delivery_redrive(delivery=delivery)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert attempts(delivery) == [
        ("permanent", 400, "REQUIRED_FIELD_MISSING"),
        ("success", 201, ""),
    ]


@SALESFORCE_IN_TRANSACTION
@responses.activate
def test_oauth_failure_is_permanent(delivery):
    responses.post(
        SF_LOGIN,
        status=400,
        json={"error": "invalid_client", "error_description": "invalid client credentials"},
    )
    assert services.salesforce_delivery_send(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DEAD
    assert attempts(delivery) == [("permanent", 400, "invalid_client")]


@SALESFORCE_IN_TRANSACTION
@responses.activate
def test_jwt_bearer_flow(delivery, settings, tmp_path):
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "sf.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings.SALESFORCE_AUTH_FLOW = "jwt"
    settings.SALESFORCE_PRIVATE_KEY_FILE = str(path)
    settings.SALESFORCE_USERNAME = "integration@example.com"
    token = responses.post(SF_LOGIN, json=SF_TOKEN_BODY)
    responses.post(CASE_URL, status=201, json=CREATED)
    services.salesforce_delivery_send(delivery_id=delivery.pk)
    from urllib.parse import parse_qs

    form = parse_qs(token.calls[0].request.body)
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    claims = jwt.decode(
        form["assertion"][0],
        key.public_key(),
        algorithms=["RS256"],
        audience="https://login.salesforce.com",
    )
    assert (claims["iss"], claims["sub"]) == ("3MVG9example", "integration@example.com")
