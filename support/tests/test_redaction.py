"""The shared redaction service (``support.redaction``): what it replaces and what it keeps."""

from __future__ import annotations

import pytest

from support.redaction import iban_ok, name_variants, redact, redact_obj


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


def test_ibans_are_checked_with_mod_97():
    assert iban_ok("DE89 3704 0044 0532 0130 00")
    assert iban_ok("GB29NWBK60161331926819")
    assert not iban_ok("DE89 3704 0044 0532 0130 01")
    assert redact("IBAN DE89 3704 0044 0532 0130 00 please") == "IBAN [IBAN] please"
    assert redact("to GB29NWBK60161331926819.") == "to [IBAN]."
    assert redact("code DE00 ABCD EFGH IJKL MN") == "code DE00 ABCD EFGH IJKL MN"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I live at 221B Baker Street, London NW1 6XE.", "I live at [ADDRESS], London [POSTCODE]."),
        ("Ship to 12 baker st apt 4 please", "Ship to [ADDRESS] please"),
        ("1600 Pennsylvania Avenue NW, Washington, DC 20500", "[ADDRESS], Washington, [POSTCODE]"),
        (
            "Send it to 4 Elm Court, Springfield, IL 62704",
            "Send it to [ADDRESS], Springfield, [POSTCODE]",
        ),
        ("Mon adresse : 10 rue de la Paix, 75002 Paris", "Mon adresse : [ADDRESS]"),
        ("25, avenue des Champs-Élysées", "[ADDRESS]"),
        ("Vivo en Calle Mayor 5, 28013 Madrid", "Vivo en [ADDRESS]"),
        ("Via Roma, 10 - Milano", "[ADDRESS] - Milano"),
        ("Rua Augusta, nº 123", "[ADDRESS]"),
        ("Ich wohne in der Hauptstraße 5, 10115 Berlin", "Ich wohne in der [ADDRESS]"),
        ("Berliner Straße 10a", "[ADDRESS]"),
        ("Musterstr. 12", "[ADDRESS]"),
        ("Kalverstraat 92, 1012 PH Amsterdam", "[ADDRESS]"),
        ("Storgatan 3, Stockholm", "[ADDRESS], Stockholm"),
        ("Postcode K1A 0B1", "Postcode [POSTCODE]"),
        ("ZIP 94105-1234", "ZIP [POSTCODE]"),
    ],
)
def test_street_addresses_and_postcodes(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "My 2 external hard drive failed on the way home",
        "I ordered 3 items, order 12345 arrived 2024-01-05 on a 1000 MB plan",
        "Refund 49.99 EUR to the card ending 1234 within 5 days",
        "Street food is great",
    ],
)
def test_ordinary_numbers_and_words_are_kept(text):
    assert redact(text) == text


def test_the_customers_names_whole_words_any_case():
    text = "Hi, this is Zelda Quimby; ZELDA here, Quimby's parcel. Zeldas and quimbyx stay."
    assert redact(text, names=["Zelda Quimby"]) == (
        "Hi, this is [NAME]; [NAME] here, [NAME]'s parcel. Zeldas and quimbyx stay."
    )
    # Display names from channels, hyphenated parts, titles left out.
    assert name_variants(["Dr Jean-Luc Picard", "  "]) == (
        "dr jean-luc picard",
        "jean-luc",
        "picard",
        "jean",
        "luc",
    )
    assert redact("Dr Picard and Jean", names=["Dr Jean-Luc Picard"]) == "Dr [NAME] and [NAME]"
    # Without names given, a name is not guessed.
    assert redact("Hi, this is Zelda Quimby") == "Hi, this is Zelda Quimby"


def test_names_inside_emails_go_with_the_email():
    assert redact("zelda.quimby@example.org", names=["Zelda Quimby"]) == "[EMAIL]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # addresses in any script go whole (the pattern used to start after the "ø")
        ("write to søren.123@example.org", "write to [EMAIL]"),
        ("lucía.garcía@correo.es or jo@münchen.de", "[EMAIL] or [EMAIL]"),
        # a long run of address characters with no "@" after it stays as it is, and an
        # address after it is still found (the run is read once, not from every position)
        ("a-" * 5000 + " @x then jo@example.com", "a-" * 5000 + " @x then [EMAIL]"),
        ("jo@" + "a-" * 5000, "jo@" + "a-" * 5000),
    ],
)
def test_email_addresses_any_script_and_hostile_runs(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a compound street name is found from its first letter, hyphens included
        ("Karl-Marx-Straße 12, 10243 Berlin", "[ADDRESS]"),
        ("bei Müller, Musterstr. 12a", "bei Müller, [ADDRESS]"),
        ("the old straße 7 sign", "the old [ADDRESS] sign"),
        # a long run of capitals and hyphens or dots is no street and stays as it is, and an
        # address after it is still found (the run is read from its first letter only)
        ("A-" * 3000 + "1 then Hauptstraße 5", "A-" * 3000 + "1 then [ADDRESS]"),
        ("A." * 3000 + " 1 then Storgatan 3", "A." * 3000 + " 1 then [ADDRESS]"),
    ],
)
def test_germanic_street_names_and_hostile_runs(text, expected):
    assert redact(text) == expected
