"""The API's request parsers (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``)."""

from __future__ import annotations

import codecs
import io
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from support.parsing import (
    JSON_MAX_DEPTH,
    json_depth_within,
    json_numbers_finite,
    may_hold_lone_surrogates,
    without_lone_surrogates,
)


class JsonParser(JSONParser):
    """DRF's JSON parser (the API's default) with the checks of
    :func:`support.parsing.json_loads`: a too deeply nested body is a 400 ``ParseError``,
    not a ``RecursionError`` (500); so is a number past a float's range (``1e400``, read
    as ``inf``); a lone surrogate (``"\\ud800"``, which PostgreSQL cannot store: a 500
    where it was saved) becomes U+FFFD."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read()  # what ``json.load`` does first anyway
        try:
            value = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:
            value, deep = None, True
        else:
            deep = not json_depth_within(value, JSON_MAX_DEPTH)
        if deep:
            raise ParseError(f"JSON parse error - nested more than {JSON_MAX_DEPTH} levels deep.")
        if not json_numbers_finite(value):
            # 1e400 is read as inf, which PostgreSQL's jsonb refuses (a 500 where it was saved)
            raise ParseError("JSON parse error - a number is out of range (larger than 1e308).")
        if _utf8(parser_context) and not may_hold_lone_surrogates(raw):
            return value
        return without_lone_surrogates(value)


def _utf8(parser_context: Any) -> bool:
    """Whether the body was read as UTF-8 (the test on its bytes holds only then); the
    charset was checked by DRF's parse, as it read the body."""
    encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False
