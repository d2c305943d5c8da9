from __future__ import annotations

import pytest

from routing import tools
from routing.tools import CustomerInfo, PastTicket, ServiceInfo


def test_classify_issue_returns_category_intent_and_probabilities(bitext_router):
    out = tools.classify_issue("I want to cancel my order 12345", bitext_router)
    assert out["category"] == "ORDER"
    assert out["intent"] == "cancel_order"
    assert 0.5 < out["confidence"] <= 1.0
    assert out["category_confidence"] >= out["confidence"]
    assert len(out["secondary"]) == 2
    assert all(s["probability"] <= out["confidence"] for s in out["secondary"])
    assert out["categories"][0]["category"] == "ORDER"


def test_extract_entities_finds_each_kind():
    text = (
        "Account ACC-12345 on service SVC123 fails with ERR-504 since 2026-03-04. "
        "Order number 778899 was charged $49.99 twice. Call me on +44 20 7946 0958 "
        "or write to jo.bloggs@example.com. Also 12 March 2026."
    )
    assert tools.extract_entities(text) == {
        "account_numbers": ["ACC-12345"],
        "service_ids": ["SVC123"],
        "order_numbers": ["778899"],
        "error_codes": ["ERR-504"],
        "phone_numbers": ["+44 20 7946 0958"],
        "emails": ["jo.bloggs@example.com"],
        "money_amounts": ["$49.99"],
        "monetary_amounts": [49.99],
        "dates": ["2026-03-04", "12 March 2026"],
    }
    assert tools.extract_entities("refund $1,234.50 and 20 EUR")["monetary_amounts"] == [
        1234.5,
        20.0,
    ]


@pytest.mark.parametrize(
    "text",
    [
        "I may order something, can you help with my account? The service is slow.",
        "Accidental access, my SVC is fine and the error is gone. See you in March.",
        "I have 2 questions about 3 orders.",
    ],
)
def test_extract_entities_has_no_false_positives_on_ordinary_words(text):
    assert all(values == [] for values in tools.extract_entities(text).values())


def test_an_order_number_has_its_digit_within_its_twenty_characters():
    assert tools.extract_entities("order ABCDEFGHIJKLMNOPQRST-1 please")["order_numbers"] == []
    assert tools.extract_entities("order ABCDEFGHIJKLMNOPQRS1 please")["order_numbers"] == [
        "ABCDEFGHIJKLMNOPQRS1"
    ]


def test_extract_entities_rejects_invalid_dates_and_short_numbers():
    out = tools.extract_entities("On 2026-13-45 I called 12345 about order #1234567")
    assert out["dates"] == []
    assert out["phone_numbers"] == []
    assert out["order_numbers"] == ["1234567"]


def test_check_vip_status():
    assert tools.check_vip_status(CustomerInfo(7, "gold", "business")) == {
        "customer_id": 7,
        "vip_tier": "gold",
        "is_vip": True,
        "account_type": "business",
        "source": "local",
    }
    assert tools.check_vip_status(CustomerInfo(8, "none", "individual"))["is_vip"] is False


SERVICES = [
    ServiceInfo(
        "SVC100",
        "Payments",
        "outage",
        ("checkout", "card payments"),
        ("PAYMENT",),
        ({"title": "Card payments failing", "known_issue": False, "since": "x"},),
    ),
    ServiceInfo(
        "SVC200",
        "Tracking",
        "operational",
        ("tracking",),
        ("DELIVERY",),
        ({"title": "Slow tracking pages", "known_issue": True, "since": "x"},),
    ),
    ServiceInfo("SVC300", "Newsletter", "operational", (), ("NEWSLETTER",), ()),
]


def test_check_service_status_matches_by_id_keyword_and_category():
    by_id = tools.check_service_status("it fails", ["SVC100"], "ACCOUNT", SERVICES)
    assert [s["service_id"] for s in by_id["services"]] == ["SVC100"]
    assert by_id["services"][0]["matched_by"] == "service id"
    assert by_id["outage_match"] is True
    by_keyword = tools.check_service_status("the tracking page hangs", [], "ORDER", SERVICES)
    assert [(s["service_id"], s["matched_by"]) for s in by_keyword["services"]] == [
        ("SVC200", "keyword")
    ]
    assert (by_keyword["outage_match"], by_keyword["known_issue"]) == (False, True)
    none = tools.check_service_status("hello", [], "ACCOUNT", SERVICES)
    assert none == {
        "services": [],
        "outage_match": False,
        "known_issue": False,
        "active_outages": [],
        "known_issues": [],
        "service_health": "Healthy",
    }
    # Seed 004's names beside ours.
    assert by_id["service_health"] == "Outage"
    assert by_id["active_outages"] == [
        {
            "service_id": "SVC100",
            "title": "Card payments failing",
            "known_issue": False,
            "since": "x",
        }
    ]
    assert by_keyword["service_health"] == "Degraded"
    assert by_keyword["active_outages"] == []
    assert [o["title"] for o in by_keyword["known_issues"]] == ["Slow tracking pages"]


def test_calculate_priority_weights_and_reasons():
    calm = tools.calculate_priority(
        text="How do I change my delivery address?",
        vip_tier="none",
        account_type="individual",
        outage_match=False,
    )
    assert calm["priority"] == "normal"
    assert calm["score"] == 20.0
    hot = tools.calculate_priority(
        text="URGENT: checkout is down and I was charged twice, this is terrible!",
        vip_tier="platinum",
        account_type="enterprise",
        outage_match=True,
        waiting_minutes=120,
        recent_tickets=2,
    )
    assert hot["priority"] == "urgent"
    assert hot["score"] == 100.0
    joined = " | ".join(hot["reasons"])
    for part in (
        "+30 platinum VIP",
        "+10 enterprise account",
        "+25 active outage",
        "urgency words",
        "negative sentiment",
        "+4 waiting 2.0 h",
        "+10 2 recent",
    ):
        assert part in joined
    low = tools.calculate_priority(
        text="I love your newsletter",
        vip_tier="none",
        account_type="individual",
        outage_match=False,
        category="NEWSLETTER",
    )
    assert (low["priority"], low["score"]) == ("low", 10.0)


def test_route_to_team_uses_map_and_vip_billing_rule():
    names = {"billing": "Billing", "priority-billing": "Priority Billing", "orders": "Orders"}
    mapping = {"PAYMENT": "billing", "ORDER": "orders"}
    plain = tools.route_to_team(
        category="PAYMENT",
        vip_tier="none",
        team_map=mapping,
        vip_billing_team="priority-billing",
        team_names=names,
    )
    assert plain == {"team": "billing", "team_name": "Billing", "rule": "map: PAYMENT → billing"}
    vip = tools.route_to_team(
        category="PAYMENT",
        vip_tier="gold",
        team_map=mapping,
        vip_billing_team="priority-billing",
        team_names=names,
    )
    assert vip["team"] == "priority-billing"
    vip_order = tools.route_to_team(
        category="ORDER",
        vip_tier="gold",
        team_map=mapping,
        vip_billing_team="priority-billing",
        team_names=names,
    )
    assert vip_order["team"] == "orders"
    unknown = tools.route_to_team(
        category="FOO",
        vip_tier="none",
        team_map=mapping,
        vip_billing_team="priority-billing",
        team_names=names,
    )
    assert unknown == {"team": "", "team_name": "", "rule": "no team mapped for FOO"}


def test_get_historical_context():
    history = [
        PastTicket("T-000001", "Refund?", "open", "normal", "REFUND", False, 1.0),
        PastTicket("T-000002", "Refund again", "resolved", "urgent", "REFUND", True, 3.0),
        PastTicket("T-000003", "Login", "closed", "normal", "ACCOUNT", False, 30.0, True),
    ]
    out = tools.get_historical_context(history)
    assert out["tickets_last_7_days"] == 2
    assert out["open_tickets"] == 1
    assert out["common_issues"] == ["REFUND", "ACCOUNT"]
    assert out["past_escalations"] == 1
    # seed 004's: whether an earlier routing was held for a person (not urgency)
    assert out["escalation_history"] is True
    assert tools.get_historical_context(history[:2])["escalation_history"] is False
    assert [t["number"] for t in out["recent_tickets"]] == ["T-000001", "T-000002", "T-000003"]
    assert tools.get_historical_context([])["tickets_last_7_days"] == 0
