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
