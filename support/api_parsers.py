"""The API's request parsers (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from support.parsing import JSON_MAX_DEPTH, json_depth_within


class JsonParser(JSONParser):
    """DRF's JSON parser (the API's default) with the depth check of
    :func:`support.parsing.json_loads`:
    a too deeply nested body is a 400 ``ParseError``, not a ``RecursionError`` (500)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            value = super().parse(stream, media_type, parser_context)
        except RecursionError:
            value, deep = None, True
        else:
            deep = not json_depth_within(value, JSON_MAX_DEPTH)
        if deep:
            raise ParseError(f"JSON parse error - nested more than {JSON_MAX_DEPTH} levels deep.")
        return value
