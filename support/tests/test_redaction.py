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


NBSP, NNBSP = "\u00a0", "\u202f"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # card numbers as HTML e-mails, forms and people write them (Luhn still checked)
        (f"card 4111{NBSP}1111{NBSP}1111{NBSP}1111 please", "card [CARD] please"),
        (f"card 4111{NNBSP}1111{NNBSP}1111{NNBSP}1111.", "card [CARD]."),
        ("card 4111.1111.1111.1111 please", "card [CARD] please"),
        ("card 4111  1111  1111  1111 please", "card [CARD] please"),
        ("card 4111\u200b1111\u200b1111\u200b1111", "card [CARD]"),
        ("amex 3782-822463-10005", "amex [CARD]"),
        # a number written just before or after the card is not taken for part of it
        ("ref 12 4111 1111 1111 1111", "ref 12 [CARD]"),
        ("card no 1 5500.0000.0000.0004 exp 12", "card no 1 [CARD] exp 12"),
        # IBANs with non-breaking spaces, hyphens, dots (mod-97 still checked)
        (f"pay DE89{NBSP}3704{NBSP}0044{NBSP}0532{NBSP}0130{NBSP}00 thanks", "pay [IBAN] thanks"),
        ("pay DE89-3704-0044-0532-0130-00 thanks", "pay [IBAN] thanks"),
        ("pay GB29.NWBK.6016.1331.9268.19 thanks", "pay [IBAN] thanks"),
        ("pay DE89  3704  0044  0532  0130  00", "pay [IBAN]"),
        # the other rules see a non-breaking space as a space
        (
            f"I live at 221B{NBSP}Baker Street, London NW1{NBSP}6XE.",
            "I live at [ADDRESS], London [POSTCODE].",
        ),
    ],
)
def test_cards_and_ibans_with_any_separator(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # the checks still keep ordinary numbers
        "ref 4111.1111.1111.1112 and 4111-1111-1111-1112",
        "prices 12.50 13.75 14.25 15.00 and 10.40",
        "from 2024.01.05 to 2024.02.07, v1.2.3.4",
        "code DE00-ABCD-EFGH-IJKL-MN",
        "order 1234  5678  9012  3456",
        # a list of 3-digit figures holds no card, whatever run of them passes Luhn
        "RSS samples 218 413 441 465 476 477 477 477 484 486 486 MB",
    ],
)
def test_wider_separators_keep_ordinary_numbers(text):
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # e-mail addresses spelled out, as call transcripts (and some people) write them
        ("email me at zq1815 at example dot org", "email me at [EMAIL]"),
        ("it's zq1815 at example dot org.", "it's [EMAIL]."),
        ("zq1815(at)example(dot)org", "[EMAIL]"),
        ("zq1815 [at] example [dot] co [dot] uk, thanks", "[EMAIL], thanks"),
        ("Zelda Dot Quimby AT Example DOT Com", "[EMAIL]"),
        ("reach me at jo dot smith at example dot com", "reach me at [EMAIL]"),
        ("my address is zq1815 at example.org", "my address is [EMAIL]"),
        ("jo @ example dot com or jo@example dot com", "[EMAIL] or [EMAIL]"),
        # lower-case UK postcodes
        ("I live at sw1a 1aa, London", "I live at [POSTCODE], London"),
        ("postcode nw1 6xe", "postcode [POSTCODE]"),
        ("it's e1 6an", "it's [POSTCODE]"),
        ("Ec1a 1bb please", "[POSTCODE] please"),
    ],
)
def test_spoken_emails_and_lower_case_postcodes(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "meet at the station dot com",
        "I bought it at amazon.com last week",
        "log in at example dot com and visit our website at example dot com",
        "see you at 5.30 pm, we arrived at Heathrow. Then at 10.15 at the office",
        "I'm at home. Call me at noon.",
        "my ps5 1tb and the i5 8gb laptop, 2nd and 3rd floor, the m25 2nd exit",
        "look at this.It broke at 3.45",
        "paid £20 at tesco.com, 19.99 at example.com",
    ],
)
def test_ordinary_sentences_with_at_and_short_codes_are_kept(text):
    assert redact(text) == text


def test_names_match_whatever_their_unicode_form():
    decomposed = "Zoe\u0308 Ma\u0301rquez"  # "Zoë Márquez" with combining marks
    assert redact(f"Hi, {decomposed} here", names=["Zoë Márquez"]) == "Hi, [NAME] here"
    assert redact("Hi, Zoë here", names=[decomposed]) == "Hi, [NAME] here"
    assert redact("ZOË MÁRQUEZ", names=["zoë márquez"]) == "[NAME]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # long runs that start the new patterns and complete none stay as they are, and an
        # address after them is still found (each run is read from its start only)
        ("ab dot " * 3000 + "then zq1815 at example dot org", "ab dot " * 3000 + "then [EMAIL]"),
        ("x at " + "ab dot " * 3000 + "9", "x at " + "ab dot " * 3000 + "9"),
        ("it at " * 3000 + "jo(at)example(dot)org", "it at " * 3000 + "[EMAIL]"),
        ("1. " * 3000 + "4111.1111.1111.1111", "1. " * 3000 + "[CARD]"),
        (f"1{NBSP}" * 3000 + "x", "1 " * 3000 + "x"),
        ("ab1 " * 3000 + "nw1 6xe", "ab1 " * 3000 + "[POSTCODE]"),
    ],
)
def test_spelled_out_emails_and_separators_on_hostile_runs(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # as call transcripts write numbers read out digit by digit
        (
            "my card is four one one one one one one one one one one one one one one one",
            "my card is [CARD]",
        ),
        ("Four one one one, one one one one, one one one one, one one one one.", "[CARD]."),
        (
            "five five five five-five five five five-five five five five-four four four four",
            "[CARD]",
        ),
        (
            "call me on oh two oh, seven nine four six, double oh one two please",
            "call me on [PHONE] please",
        ),
        ("it's seven seven oh oh nine triple zero one two", "it's [PHONE]"),
        ("the number is 0 7 7 oh oh nine zero zero zero one", "the number is [PHONE]"),
    ],
)
def test_numbers_read_out_word_by_word(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "it costs one two three dollars",
        "I need one or two or three of them, maybe four five six seven eight nine",
        "one two three four five six seven eight",
        "Four one one one one one one one one one one one one one one two",  # not a card
        "one of the two, one by one, nine to five, oh no, the one-two-three punch",
        "someone two three four five six seven eight nine",
    ],
)
def test_words_that_are_not_a_read_out_number_are_kept(text):
    assert redact(text) == text


def test_read_out_numbers_on_hostile_runs():
    run = "one one x " * 20000
    assert redact(run + "oh two oh seven nine four six oh oh one two") == run + "[PHONE]"
    assert redact("one " * 20000) == "one " * 20000  # 20,000 digits: neither card nor phone


def test_no_group_is_repeated_possessively_anywhere() -> None:
    """``(?:…)*+`` / ``(?:…)++`` matched wrongly before Python 3.11.5 when the group
    backtracks inside (CPython gh-106052): on Debian 12's python3.11 (3.11.2) the spoken
    e-mail pattern found no address at all. An atomic group around a greedy repeat,
    ``(?>(?:…)*)``, means the same and works on every 3.11."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    possessive_group = re.compile(r"\)(?:[*+?]|\{\d*,?\d*\})\+")
    found = [
        f"{path.relative_to(root)}:{number}"
        for path in root.rglob("*.py")
        if not {".venv", "tests", "node_modules"} & set(path.relative_to(root).parts)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if possessive_group.search(line)
    ]
    assert found == []
