"""Lone UTF-16 surrogates (JSON ``"\\ud800"``): valid JSON that Python decodes to a string
PostgreSQL cannot store (psycopg raises UnicodeEncodeError for text, DataError for
jsonb). Where JSON from outside is read (``json_loads``, the API's parser) each becomes
U+FFFD, as a NUL does in ``without_nul``; a surrogate pair stays the character it spells."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rest_framework.exceptions import ParseError

from support.api_parsers import JsonParser
from support.parsing import json_loads, without_lone_surrogates, without_nul

LONE = [
    (b'"\\ud800"', "\ufffd"),
    (b'"\\uDFFF"', "\ufffd"),
    (b'"a\\udc00b\\ud83d"', "a\ufffdb\ufffd"),
    (b'{"\\ud800k": ["\\uDBFFx", {"y": "\\udc80"}]}', {"\ufffdk": ["\ufffdx", {"y": "\ufffd"}]}),
]


@pytest.mark.parametrize(("raw", "expected"), LONE)
def test_json_loads_replaces_lone_surrogates(raw: bytes, expected: Any) -> None:
    assert json_loads(raw) == expected
    assert json_loads(raw.decode()) == expected


def test_json_loads_keeps_surrogate_pairs_and_plain_text() -> None:
    assert json_loads(b'["\\ud83d\\ude00", "\\u00e9", "\\\\ud800"]') == ["😀", "é", "\\ud800"]


@pytest.mark.parametrize(("raw", "expected"), LONE)
def test_api_parser_replaces_lone_surrogates(raw: bytes, expected: Any) -> None:
    assert JsonParser().parse(io.BytesIO(raw), "application/json", {}) == expected


def test_api_parser_still_refuses_what_it_refused() -> None:
    for raw in (b"[" * 5000, b"NaN", b'"\\ud800', b"\xed\xa0\x80"):
        with pytest.raises(ParseError):
            JsonParser().parse(io.BytesIO(raw), "application/json", {})


def test_api_parser_with_another_charset() -> None:
    raw = '{"a": "\\ud800"}'.encode("utf-16")
    parsed = JsonParser().parse(io.BytesIO(raw), "application/json", {"encoding": "utf-16"})
    assert parsed == {"a": "\ufffd"}


def test_without_nul_also_replaces_lone_surrogates() -> None:
    value = {"k\ud800": ["a\x00", ("t",), "\udfff😀"], "n": 1}
    assert without_nul(value) == {"k\ufffd": ["a\ufffd", ("t",), "\ufffd😀"], "n": 1}
    assert without_lone_surrogates(["\ud800", 3]) == ["\ufffd", 3]
