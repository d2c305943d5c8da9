from __future__ import annotations

import pytest

from support.parsing import contains_nul, parse_id, without_nul


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("9" * 18, int("9" * 18)),
        ("9" * 19, None),  # out of a bigint's safe range
        ("", None),
        (" 42", None),
        ("-1", None),
        ("4.2", None),
        ("¹", None),  # isdigit() but int() raises
        ("٣", None),  # isdigit() and int() reads 3: not an ASCII id either
        ("１２", None),  # fullwidth digits
        (42, 42),
    ],
)
def test_parse_id_accepts_ascii_digits_only(text, expected):
    assert parse_id(text) == expected


def test_nul_helpers_look_inside_keys_lists_and_dicts():
    payload = {"a": ["ok", {"k\x00": 1}], "b": "x"}
    assert contains_nul(payload)
    assert not contains_nul({"a": ["ok", {"k": 1}], "b": 2})
    assert without_nul(payload) == {"a": ["ok", {"k\ufffd": 1}], "b": "x"}
    assert not contains_nul(without_nul(payload))


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_loads_refuses_nan_and_infinity(constant):
    """Python's json reads them; they are not JSON and jsonb cannot store them."""
    from support.parsing import UnreadableJson, json_loads

    with pytest.raises(UnreadableJson, match=f"The body is not valid JSON: {constant} is not"):
        json_loads(f'{{"a": [1, {constant}]}}')


def test_json_loads_refuses_a_number_python_will_not_read():
    """An integer of more than 4,300 digits makes ``json.loads`` raise a plain ``ValueError``
    (Python's limit on int conversion), which callers that catch ``UnreadableJson`` let
    through as a 500: it is unreadable JSON like any other, with a message saying why."""
    from support.parsing import UnreadableJson, json_loads

    with pytest.raises(UnreadableJson, match=r"The payload is not valid JSON: .*digits"):
        json_loads('{"a": ' + "9" * 5000 + "}", what="The payload")
    assert json_loads('{"a": ' + "9" * 400 + "}")["a"] == int("9" * 400)
