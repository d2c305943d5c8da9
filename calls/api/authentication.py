"""Amazon Data Firehose's credential for the events endpoint.

An HTTP endpoint destination sends the access key configured on the stream verbatim in
``X-Amz-Firehose-Access-Key`` (it cannot send ``Authorization: Api-Key …``). Here that key
is an API key like any other: looked up, checked (revoked, expired, inactive user),
throttled on failures and cached exactly as ``ApiKeyAuthentication`` does, since this is
that class reading another header; ``IsIntegration`` then admits integration keys only.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.request import Request

from support.auth.authentication import ApiKeyAuthentication

FIREHOSE_ACCESS_KEY = "HTTP_X_AMZ_FIREHOSE_ACCESS_KEY"
FIREHOSE_REQUEST_ID = "HTTP_X_AMZ_FIREHOSE_REQUEST_ID"


class FirehoseAccessKeyAuthentication(ApiKeyAuthentication):
    """``X-Amz-Firehose-Access-Key: <API key>``."""

    def _raw_key(self, request: Request) -> str | None:
        return request.META.get(FIREHOSE_ACCESS_KEY) or None


class FirehoseAccessKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """The OpenAPI description of ``FirehoseAccessKeyAuthentication`` (registered when this
    module is imported, by ``calls.api.views``)."""

    target_class = "calls.api.authentication.FirehoseAccessKeyAuthentication"
    name = "FirehoseAccessKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Amz-Firehose-Access-Key",
            "description": "An integration API key, as Amazon Data Firehose's HTTP endpoint "
            "destination sends its access key.",
        }
