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
    "embedded_rate",
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


ROWS = "my card was declined,card\nrefund please,refund\ncard refused,card\nmoney back,refund\n"


def _bad_csv(tmp_path, case):
    path = tmp_path / f"{case}.csv"
    if case == "empty":
        path.write_text("")
    elif case == "header_only":
        path.write_text("text,label\n")
    elif case == "no_labelled_row":
        path.write_text("text,label\nhello,\n,card\n")
    elif case == "latin1":
        path.write_bytes(("text,label\n" + ROWS + "caf\xe9 bill,card\n").encode("latin-1"))
    elif case == "huge_field":
        path.write_text("text,label\n" + ROWS + "x" * 200_000 + ",card\n")
    elif case == "unclosed_quote":
        path.write_text('text,label\n"my card was declined,card\n' + ROWS * 4000)
    return path


BAD_CSV_MESSAGES = {
    "empty": r"empty\.csv is empty: its first line must name the columns",
    "header_only": r"header_only\.csv has no row with both a 'text' and a 'label'",
    "no_labelled_row": r"no_labelled_row\.csv has no row with both a 'text' and a 'label'",
    "latin1": r"latin1\.csv is not UTF-8 text \(byte 0xe9 on line 6\)",
    "huge_field": r"huge_field\.csv, line 6: a field is longer than 131,072 characters",
    "unclosed_quote": r"unclosed_quote\.csv, line 2: a field is longer than 131,072 characters",
}


@pytest.mark.parametrize("command", ["train_router", "eval_router"])
@pytest.mark.parametrize("case", sorted(BAD_CSV_MESSAGES))
def test_a_bad_csv_is_a_clear_command_error(tmp_path, command, case):
    """An empty file, a header with no usable row, a file that is not UTF-8, a field over
    the csv module's limit (or an unclosed quote that makes the rest of the file one field):
    a CommandError naming the file, the line and what is wrong, never a traceback (a huge
    field was a csv.Error, a header-only file a ValueError from eval_router)."""
    path = _bad_csv(tmp_path, case)
    with pytest.raises(CommandError, match=BAD_CSV_MESSAGES[case]):
        call_command(command, data=str(path), text_column="text", label_column="label")
    assert not RouterModel.objects.exists()


CAT_ROWS = "card declined,card,CARDS\nrefund money,refund,MONEY\ntrack parcel,track,ORDERS\n" * 3


def _train_with_categories(path):
    call_command(
        "train_router",
        data=str(path),
        text_column="text",
        label_column="label",
        category_column="cat",
        features="tfidf",
    )


def test_train_router_refuses_a_row_without_its_category(tmp_path):
    """With --category-column, a row with a text and a label but no category is refused
    by its line. The columns used to be read in two passes and paired by position, so a
    category-only row and a row without a category (same counts) shifted every label onto
    the next row's category."""
    path = tmp_path / "cats.csv"
    path.write_text("text,label,cat\nsome words,,ORPHAN\n" + CAT_ROWS + "track my parcel,track,\n")
    with pytest.raises(CommandError, match=r"cats\.csv, line 12: no 'cat'"):
        _train_with_categories(path)
    assert not RouterModel.objects.exists()


def test_train_router_maps_each_label_to_its_own_rows_category(tmp_path, capsys):
    """A row with a category but no label is skipped like any unlabelled row (the two-pass
    reading refused the file: "Rows with a label and a category differ")."""
    path = tmp_path / "cats.csv"
    path.write_text("text,label,cat\nsome words,,ORPHAN\n" + CAT_ROWS)
    _train_with_categories(path)
    assert RouterModel.objects.get(is_active=True).label_to_category == {
        "card": "CARDS",
        "refund": "MONEY",
        "track": "ORDERS",
    }


def test_eval_router_shows_progress_on_long_runs(tmp_path, monkeypatch, capsys):
    """Each text is routed alone: on a large file eval_router printed nothing for minutes.
    It reports how far it is on stderr every PROGRESS_EVERY texts."""
    from routing import classifier

    monkeypatch.setattr(classifier, "PROGRESS_EVERY", 200)
    call_command(
        "eval_router", data=str(BITEXT_TEST), text_column="utterance", label_column="intent"
    )
    err = capsys.readouterr().err
    assert [line.split("] ", 1)[1] for line in err.splitlines()] == [
        f"routed {n} of 810 texts" for n in (200, 400, 600, 800, 810)
    ]


@pytest.mark.parametrize(("name", "problem"), [("x" * 101, "over 100 characters"), (" ", "empty")])
def test_train_router_refuses_a_model_name_it_cannot_store_before_training(
    tmp_path, capsys, name, problem
):
    """--name is checked first: one over the column's 100 characters was a DataError
    traceback once training had finished, and a blank one stored a model with no name."""
    path = tmp_path / "small.csv"
    path.write_text("text,label\n" + "card declined,card\nexchange rate,rate\n" * 3)
    with pytest.raises(CommandError, match=f"--name is {problem}"):
        call_command(
            "train_router",
            data=str(path),
            text_column="text",
            label_column="label",
            name=name,
            features="tfidf",
        )
    assert capsys.readouterr().err == ""  # refused before any training step
    assert not RouterModel.objects.exists()


def test_train_router_shows_progress_while_embedding(tmp_path, monkeypatch, capsys):
    """Embedding is the long part of training on many rows (each text encoded alone:
    about a minute for 15,000 rows) and printed one line before it: it now reports how
    far it is every PROGRESS_EVERY texts."""
    from routing import classifier

    monkeypatch.setattr(classifier, "ENCODE_CHUNK", 4)
    monkeypatch.setattr(classifier, "PROGRESS_EVERY", 8)
    path = tmp_path / "small.csv"
    rows = "".join(
        f"my card was declined at shop {n},card\nI want a refund for order {n},refund\n"
        for n in range(12)
    )
    path.write_text("text,label\n" + rows)
    call_command(
        "train_router",
        data=str(path),
        text_column="text",
        label_column="label",
        features="fusion",
        no_out_of_scope=True,
    )
    lines = [line.split("] ", 1)[1] for line in capsys.readouterr().err.splitlines()]
    assert [line for line in lines if line.startswith("embedded")] == [
        f"embedded {n} of 24 texts" for n in (8, 16, 24)
    ]


def test_eval_router_refuses_labels_the_model_does_not_know(tmp_path, capsys):
    """A label column the active model knows nothing of (the wrong column, another model's
    labels) printed accuracy 0.0 as if measured. None known: a CommandError naming a few of
    them and what the model has; some unknown: a warning naming them, then the figures."""
    path = tmp_path / "other.csv"
    path.write_text("text,label\nmy card was declined,card_x\nrefund please,refund_x\n")
    with pytest.raises(CommandError, match=r"None of the labels in .*other\.csv \(card_x"):
        call_command("eval_router", data=str(path), text_column="text", label_column="label")
    path.write_text("text,label\ncancel my order,cancel_order\nrefund please,refund_x\n")
    call_command("eval_router", data=str(path), text_column="text", label_column="label")
    captured = capsys.readouterr()
    assert "1 of 2 texts have a label the model does not know: refund_x" in captured.err
    assert "accuracy" in captured.out
