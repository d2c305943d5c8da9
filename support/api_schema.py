"""Shared pieces of the OpenAPI description (drf-spectacular): typed path parameters.

URL converters stay ``<str:...>`` so that a malformed id answers the API's own 404 error
shape; the schema states what a valid value looks like (a pattern and an example), which is
what clients and the fuzzer (``tests/api_fuzz.py``) read.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter

# Database ids: ASCII digits only (Unicode digits such as "¹" pass str.isdigit()), and
# at most 18 of them (a PostgreSQL bigint holds 19).
ID_PATTERN = r"^[0-9]{1,18}$"


def path_parameter(
    name: str, *, description: str, pattern: str = ID_PATTERN, examples: dict[str, str]
) -> OpenApiParameter:
    """A required path parameter with its pattern and named examples."""
    return OpenApiParameter(
        name,
        str,
        OpenApiParameter.PATH,
        required=True,
        description=description,
        pattern=pattern,
        examples=[OpenApiExample(label, value=value) for label, value in examples.items()],
    )


#: The ``Idempotency-Key`` header of the API's creates (``support.idempotency``).
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Your key for this request (1-255 printable ASCII characters, a UUID say). Sent "
        "again with the same request within 24 hours (`IDEMPOTENCY_KEY_RETENTION_HOURS`), "
        "it creates nothing more and answers with what the first request created "
        "(header `Idempotent-Replayed: true`); with another request, 422; when what it "
        "created is no longer visible to you, 409. Per user (all of an API key user's "
        "keys share them)."
    ),
    pattern=r"^[\x20-\x7e]{1,255}$",
)
