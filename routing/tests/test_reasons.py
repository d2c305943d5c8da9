from __future__ import annotations

import pytest

from routing.reasons import REVIEW_NOTE, review_note_words, review_reason_words


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("no known team for category ORDER", "no known team for category “Order”"),
        (
            "model says CANCELLATION_FEE, classifier says ORDER",
            "model says “Cancellation fee”, classifier says “Order”",
        ),
        (
            "ambiguous between ORDER (0.41) and REFUND (0.38)",
            "ambiguous between “Order” (0.41) and “Refund” (0.38)",
        ),
        (
            "model says get_refund, classifier says REFUND",
            "model says “Get refund”, classifier says “Refund”",
        ),
        # no label in these (a category not given is "?"): as stored
        ("no known team for category ?", "no known team for category ?"),
        ("confidence 0.42 is below 0.60", "confidence 0.42 is below 0.60"),
        (
            "the model skipped required tools: classify_issue, route_to_team",
            "the model skipped required tools: classify_issue, route_to_team",
        ),
        (
            "unlike any trained intent (in-scope score 0.02)",
            "unlike any trained intent (in-scope score 0.02)",
        ),
        ("the model asked for a review", "the model asked for a review"),
        ("", ""),
    ],
)
def test_a_review_reason_names_the_data_sets_labels_in_words(stored, shown):
    """Review reasons quoted the data set's labels as they are ("no known team for category
    ORDER", "model says X, classifier says Y"); people read them in words, the stored text
    (and the API) unchanged."""
    assert review_reason_words(stored) == shown
    assert review_reason_words(shown) == shown  # shown twice: the same


def test_the_timeline_note_of_a_review_names_the_labels_in_words():
    """The timeline entry a decision sent to review writes (``routing.services._apply``
    through ``ticket_update``), as stored before and after this change."""
    stored = (
        f"Needs review: no → yes ({REVIEW_NOTE}: confidence 0.42 is below 0.60; "
        "no known team for category ORDER; model says CANCELLATION_FEE, classifier says ORDER)"
    )
    assert review_note_words(stored) == (
        f"Needs review: no → yes ({REVIEW_NOTE}: confidence 0.42 is below 0.60; "
        "no known team for category “Order”; "
        "model says “Cancellation fee”, classifier says “Order”)"
    )
    # any other entry, and one that only looks like it, as stored
    for text in (
        "Status: New → Open",
        "Team: — → Billing (AI routing (local, confidence 0.91))",
        "Note: model says ORDER, classifier says REFUND",
    ):
        assert review_note_words(text) == text


@pytest.mark.django_db
def test_a_reason_naming_two_teams_shows_their_names():
    """ "model chose billing, rules say orders" named the teams by their slugs on the routing
    panel; people know them by name. A slug no team has any more reads as a label does; the
    priority reason is words already and stays as stored."""
    from tickets.models import Team

    Team.objects.create(name="Billing", slug="billing")
    Team.objects.create(name="Orders & returns", slug="orders")
    shown = review_reason_words("model chose billing, rules say orders")
    assert shown == "model chose “Billing”, rules say “Orders & returns”"
    assert review_reason_words(shown) == shown
    assert review_reason_words("model chose gone_team, rules say orders") == (
        "model chose “Gone team”, rules say “Orders & returns”"
    )
    for stored in (
        "model chose priority urgent, rules say normal",
        "model chose , rules say orders",
    ):
        assert review_reason_words(stored) == stored
    note = f"Needs review: no → yes ({REVIEW_NOTE}: model chose billing, rules say orders)"
    assert review_note_words(note) == (
        f"Needs review: no → yes ({REVIEW_NOTE}: model chose “Billing”, rules say "
        "“Orders & returns”)"
    )
