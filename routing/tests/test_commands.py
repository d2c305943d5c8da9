from __future__ import annotations

import csv
import json

import pytest
from django.core.management import CommandError, call_command

from routing.classifier import BITEXT_TEST
from routing.models import RouterModel

pytestmark = pytest.mark.django_db
KEYS = {
    "accuracy",
    "macro_f1",
    "accuracy_at_80",
    "accuracy_at_90",
    "review_rate",
    "review_low_confidence_rate",
    "review_out_of_scope_rate",
    "accuracy_routed",
    "cpu_ms",
    "p50_ms",
    "p99_ms",
    "n",
}


def test_eval_router_on_bitext_test_split(tmp_path, capsys):
    out = tmp_path / "intent.json"
    call_command(
        "eval_router",
        data=str(BITEXT_TEST),
        text_column="utterance",
        label_column="intent",
        json=str(out),
    )
    figures = json.loads(out.read_text())
    assert set(figures) == KEYS
    assert figures["n"] == 810
    assert figures["accuracy"] >= 0.99
    assert figures["accuracy_at_90"] >= figures["accuracy"]
    cat = tmp_path / "category.json"
    call_command(
        "eval_router",
        data=str(BITEXT_TEST),
        text_column="utterance",
        label_column="category",
        json=str(cat),
    )
    assert json.loads(cat.read_text())["accuracy"] >= 0.99
    assert "macro_f1" in capsys.readouterr().out


def test_train_router_on_any_csv(tmp_path, capsys):
    path = tmp_path / "small.csv"
    rows = [
        ("my card was declined", "card_declined"),
        ("card got declined at shop", "card_declined"),
        ("card refused again", "card_declined"),
        ("what's the exchange rate", "exchange_rate"),
        ("exchange rate for euros", "exchange_rate"),
        ("rate to convert dollars", "exchange_rate"),
    ]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows * 3)
    call_command(
        "train_router",
        data=str(path),
        text_column="text",
        label_column="label",
        name="bank",
        features="tfidf",
    )
    summary = json.loads(capsys.readouterr().out)
    assert (summary["model"], summary["version"], summary["labels"], summary["rows"]) == (
        "bank",
        1,
        2,
        18,
    )
    active = RouterModel.objects.get(is_active=True)
    assert active.labels == ["card_declined", "exchange_rate"]
    out = tmp_path / "eval.json"
    call_command(
        "eval_router", data=str(path), text_column="text", label_column="label", json=str(out)
    )
    assert json.loads(out.read_text())["accuracy"] == 1.0


def test_eval_router_reports_the_out_of_scope_review_rate(tmp_path, capsys):
    """With --out-of-scope, texts that belong to no label are routed too and the share sent
    to review is reported (the shipped TF-IDF default has no detector: only its low
    confidence sends them)."""
    outside = tmp_path / "oos.csv"
    with open(outside, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["utterance"])
        writer.writerows([["what is the capital of Australia"], ["recipe for lasagna"], [""]])
    out = tmp_path / "eval.json"
    call_command(
        "eval_router",
        data=str(BITEXT_TEST),
        text_column="utterance",
        label_column="intent",
        out_of_scope=str(outside),
        json=str(out),
        threshold=0.99,
    )
    figures = json.loads(out.read_text())
    assert figures["oos_n"] == 2
    assert figures["oos_review_rate"] == 1.0
    assert "oos_review_rate" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no_such"):
        call_command(
            "eval_router",
            data=str(BITEXT_TEST),
            text_column="utterance",
            label_column="intent",
            out_of_scope=str(outside),
            oos_text_column="no_such",
        )


def test_train_router_names_a_missing_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\nhello,a\n")
    with pytest.raises(CommandError, match="Column 'intent' is not in"):
        call_command("train_router", data=str(path), text_column="text", label_column="intent")


def test_train_router_refuses_a_single_label_clearly(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("text,label\nhello there,a\nhi,a\n")
    with pytest.raises(CommandError, match="at least two labels"):
        call_command("train_router", data=str(path), text_column="text", label_column="label")
    assert not RouterModel.objects.exists()


@pytest.mark.parametrize("features", ["auto", "fusion"])
def test_train_router_trains_on_two_rows_per_label(tmp_path, capsys, features):
    # Too few rows to hold any out: it still trains (uncalibrated) and says so.
    path = tmp_path / "tiny.csv"
    path.write_text(
        "text,label\nmy card was declined,card\nrefund please,refund\n"
        "card refused at the shop,card\nI want my money back,refund\n"
    )
    call_command(
        "train_router", data=str(path), text_column="text", label_column="label", features=features
    )
    captured = capsys.readouterr()
    assert "too few rows per label" in captured.err
    summary = json.loads(captured.out)
    assert summary["features"] == ("tfidf" if features == "auto" else "fusion")
    assert summary["holdout_accuracy"] == {}
    router = RouterModel.objects.get(is_active=True)
    assert router.labels == ["card", "refund"]


def test_train_router_with_feedback_adds_override_rows(tmp_path, capsys, routing_on, teams, agent):
    from routing import services
    from tickets import services as ticket_services
    from tickets.models import Customer

    customer = Customer.objects.create(name="C", email="c@example.com")
    ticket = ticket_services.ticket_create(customer=customer, subject="x", body="my card is stuck")
    decision = services.routing_decide(ticket_id=ticket.pk)
    services.routing_decision_override(
        decision=decision,
        actor=agent,
        team=teams["billing"],
        priority="high",
        intent="card_declined",
    )
    path = tmp_path / "small.csv"
    path.write_text(
        "text,label\n" + "card declined,card_declined\nexchange rate,exchange_rate\n" * 3
    )
    call_command(
        "train_router",
        data=str(path),
        text_column="text",
        label_column="label",
        name="fb",
        features="tfidf",
        with_feedback=True,
    )
    summary = json.loads(capsys.readouterr().out)
    assert (summary["rows"], summary["feedback_rows"]) == (7, 1)
