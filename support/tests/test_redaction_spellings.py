"""Customer names and personal data as people actually write them: without the accents
the customer record has (or with accents it has not), with a curly apostrophe, joined by
underscores in file names and handles, an "@" in full width; and a US social security
number is not a date."""

from __future__ import annotations

import pytest

from support.redaction import DATE_SHAPE_RE, phone_ok, redact


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("Séan O'Brien", "Hi, Sean O’Brien, charged twice", "Hi, [NAME], charged twice"),
        ("Sean O'Brien", "Hi, this is Séan O’Brien", "Hi, this is [NAME]"),
        ("José García", "Hola, soy Jose Garcia", "Hola, soy [NAME]"),
        ("Jose Garcia", "JOSÉ GARCÍA aquí", "[NAME] aquí"),
        ("Zoë Quimby", "Zoe here", "[NAME] here"),
        ("Müller", "Mueller, Muller, Müller", "[NAME], [NAME], [NAME]"),
        ("Sean O'Brien", "see Sean_OBrien_passport.pdf", "see [NAME]_[NAME]_passport.pdf"),
        ("Sean O'Brien", "DM me @sean_obrien88", "DM me @[NAME]_[NAME]88"),
        ("Anna Schmidt", "ＡＮＮＡ here", "[NAME] here"),  # full-width letters
    ],
)
def test_names_are_found_in_the_spellings_people_use(name, text, expected):
    assert redact(text, names=[name]) == expected


def test_what_is_not_the_name_is_kept():
    # letters around a name are another word; a digit before it too
    assert redact("Seanna, Brienne and 2sean", names=["Sean O'Brien"]) == (
        "Seanna, Brienne and 2sean"
    )
    assert redact("Ng here, not Ngozi", names=["Ng"]) == "[NAME] here, not Ngozi"
    # the accents and apostrophes of the rest of the text are kept as written
    assert redact("Café Zoë’s, Zoe", names=["Zoë"]) == "Café [NAME]’s, [NAME]"


def test_a_full_width_at_sign_makes_an_email_address():
    assert redact("mail me john.smith＠gmail.com") == "mail me [EMAIL]"
    assert redact("mail me john.smith﹫gmail．com") == "mail me [EMAIL]"


def test_a_social_security_number_is_not_a_date():
    assert redact("my SSN is 123-45-6789") == "my SSN is [PHONE]"
    assert phone_ok("123-45-6789")
    for date in ("1985-04-12", "12/05/2024", "31.12.1999", "4/7/85", "2024-1-5"):
        assert DATE_SHAPE_RE.match(date), date
    for not_date in ("123-45-6789", "1985-13-12", "32/05/2024", "2024-04/12", "12-45-2024"):
        assert not DATE_SHAPE_RE.match(not_date), not_date
    assert redact("born 1985-04-12, order 2024-01-15") == "born 1985-04-12, order 2024-01-15"
