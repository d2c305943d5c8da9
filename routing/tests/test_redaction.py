from __future__ import annotations

from routing.redaction import redact, redact_obj


def test_redacts_emails_phones_cards_and_accounts(settings):
    settings.ROUTING_ACCOUNT_PATTERNS = [r"\bACC-\d{3,}\b", r"\bCUST\d{6}\b"]
    text = (
        "I'm jo@example.com, phone +1 (555) 010-9999, card 4111 1111 1111 1111, "
        "account ACC-12345 and CUST123456; order 12345 costs $20."
    )
    assert redact(text) == (
        "I'm [EMAIL], phone [PHONE], card [CARD], "
        "account [ACCOUNT] and [ACCOUNT]; order 12345 costs $20."
    )


def test_non_luhn_numbers_are_not_cards():
    assert redact("ref 1234 5678 9012 3456") == "ref 1234 5678 9012 3456"
    assert redact("ref 4111 1111 1111 1112 or 555 010 9999") == "ref 4111 1111 1111 1112 or [PHONE]"
    assert redact("nothing personal here") == "nothing personal here"


def test_redact_obj_walks_nested_values():
    assert redact_obj({"a": ["mail x@y.io"], "b": 3, "c": {"d": "+44 20 7946 0958"}}) == {
        "a": ["mail [EMAIL]"],
        "b": 3,
        "c": {"d": "[PHONE]"},
    }
