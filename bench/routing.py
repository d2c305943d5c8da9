# mypy: ignore-errors
"""Routing benchmark: accuracy, latency and the estimated Bedrock cost per ticket.

    .venv/bin/python bench/routing.py [--n 500]
    .venv/bin/python bench/routing.py --train TRAIN.csv --test TEST.csv \
        [--text-column text] [--label-column category]

No database or network: it uses the shipped default model (trained on the bundled Bitext
split), builds ticket contexts in memory and, for the cost, runs the real Strands agent loop
over a scripted model that measures the size of every request (tokens ≈ characters / 4).
With --train/--test it first trains a router on any labelled CSV the way `train_router`
does (features "auto") and prints its training time and test figures (generalisation).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
os.environ.setdefault("ENVIRONMENT", "dev")  # local defaults (unset would mean prod)

import django

django.setup()

from django.conf import settings  # noqa: E402

from routing import classifier, providers  # noqa: E402
from routing.context import DEFAULT_CATEGORY_TEAMS  # noqa: E402
from routing.providers.agent import AgentProvider  # noqa: E402
from routing.providers.base import cost_usd  # noqa: E402
from routing.providers.local import LocalProvider  # noqa: E402
from routing.services import default_router  # noqa: E402
from routing.tools import CustomerInfo, PastTicket, ServiceInfo, TicketContext  # noqa: E402

LLM_CHATBOT = Path(
    os.environ.get(
        "BITEXT_LLM_CSV",
        "/work/shared/data/bitext-llm-chatbot/Bitext_Sample_Customer_Support_Training_Dataset.csv",
    )
)
TEAM_NAMES = {s: s.title() for s in {*DEFAULT_CATEGORY_TEAMS.values(), "priority-billing"}}
CHARS_PER_TOKEN = 4.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def context(router: classifier.TextRouter, text: str, i: int) -> TicketContext:
    return TicketContext(
        ticket_id=i,
        number=f"T-{i:06d}",
        text=text,
        customer=CustomerInfo(i, ["none", "silver", "gold"][i % 3], "individual"),
        waiting_minutes=float(i % 90),
        history=[PastTicket("T-000001", "Earlier", "resolved", "normal", "ORDER", False, 3.0)],
        services=[
            ServiceInfo("SVC100", "Payments", "degraded", ("payment", "card"), ("PAYMENT",), ())
        ],
        team_map=dict(DEFAULT_CATEGORY_TEAMS),
        team_names=TEAM_NAMES,
        vip_billing_team="priority-billing",
        router=router,
    )


def bedrock_cost(
    router: classifier.TextRouter, texts: list[str], parallel: bool
) -> dict[str, float]:
    from routing.tests.conftest import ScriptedModel

    model_id = settings.ROUTING_BEDROCK_MODEL_ID
    totals_in: list[float] = []
    totals_out: list[float] = []
    for i, text in enumerate(texts):
        ctx = context(router, text, i)
        local = LocalProvider().decide(ctx)
        cls = local.trace.last("classify_issue") or {}
        turns = [
            ("tool", "classify_issue", {}),
            ("tool", "extract_entities", {}),
            ("tool", "check_vip_status", {}),
            ("tool", "get_historical_context", {}),
            ("tool", "check_service_status", {"service_ids": [], "category": cls["category"]}),
            ("tool", "calculate_priority", {"category": cls["category"], "outage_match": False}),
            ("tool", "route_to_team", {"category": cls["category"]}),
            ("tool", "RoutingDecisionOutput", local.decision.model_dump()),
        ]
        if parallel:  # the prompt asks for independent tools in one turn
            turns = [
                ("tools", [t[1:] for t in turns[:4]]),
                ("tools", [t[1:] for t in turns[4:7]]),
                turns[7],
            ]
        model = ScriptedModel(turns, usage=(0, 0))
        sizes: list[int] = []
        real_stream = model.stream

        async def stream(  # type: ignore[no-untyped-def]
            messages,
            tool_specs=None,
            system_prompt=None,
            sizes=sizes,
            real_stream=real_stream,
            **kw,
        ):
            sizes.append(
                len(json.dumps(messages, default=str))
                + len(json.dumps(tool_specs or [], default=str))
                + len(system_prompt or "")
            )
            async for event in real_stream(messages, tool_specs, system_prompt, **kw):
                yield event

        model.stream = stream  # type: ignore[method-assign]
        AgentProvider(model_factory=lambda m=model: m).decide(ctx)
        totals_in.append(sum(sizes) / CHARS_PER_TOKEN)
        out_chars = len(json.dumps(turns, default=str)) + 40 * 8
        totals_out.append(out_chars / CHARS_PER_TOKEN)
    tin, tout = statistics.mean(totals_in), statistics.mean(totals_out)
    return {
        "model_id": model_id,
        "model_calls_per_ticket": 3 if parallel else 8,
        "tokens_in": round(tin),
        "tokens_out": round(tout),
        "usd_per_ticket": float(cost_usd(model_id, int(tin), int(tout))),
    }


def generalisation(train_csv: str, test_csv: str, text_column: str, label_column: str) -> None:
    texts, labels = classifier.read_csv(train_csv, text_column, label_column)
    router, report = classifier.train(texts, labels, progress=print)
    print(
        f"trained on {report.rows} rows, {report.labels} labels in {report.seconds} s: "
        f"{report.features}, held out {report.holdout}, embedded share {report.embedded_share}"
    )
    test_texts, test_labels = classifier.read_csv(test_csv, text_column, label_column)
    figures = classifier.evaluate(
        router, test_texts, test_labels, threshold=settings.ROUTING_REVIEW_THRESHOLD
    )
    print(f"{Path(test_csv).name}:", json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500, help="tickets for latency and cost")
    parser.add_argument("--cost-n", type=int, default=20)
    parser.add_argument("--train", help="labelled CSV to train a router on (generalisation)")
    parser.add_argument("--test", help="labelled CSV to evaluate that router on")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="category")
    args = parser.parse_args()
    if args.train and args.test:
        generalisation(args.train, args.test, args.text_column, args.label_column)
    t0 = time.perf_counter()
    _, training, router = default_router()
    print(
        f"default model: {training['features']}, {training['rows']} rows, "
        f"{training['labels']} labels, trained in {time.perf_counter() - t0:.1f} s"
    )
    threshold = settings.ROUTING_REVIEW_THRESHOLD
    texts, intents, cats = classifier.bitext_rows(classifier.BITEXT_TEST)
    for name, gold in (("intent", intents), ("category", cats)):
        print(f"Bitext test {name}:", classifier.evaluate(router, texts, gold, threshold=threshold))
    if LLM_CHATBOT.exists():
        with open(LLM_CHATBOT, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        ctexts = [r["instruction"] for r in rows]
        for name, key in (("intent", "intent"), ("category", "category")):
            figures = classifier.evaluate(
                router, ctexts, [r[key] for r in rows], threshold=threshold
            )
            print(f"cross-data set (bitext-llm-chatbot, {len(rows)} rows) {name}:", figures)

    sample = (texts * (args.n // len(texts) + 1))[: args.n]
    provider = LocalProvider()
    timings = []
    for i, text in enumerate(sample):
        ctx = context(router, text, i)
        started = time.perf_counter()
        providers.decide(ctx, provider)
        timings.append((time.perf_counter() - started) * 1000)
    print(
        f"local routing, all seven tools, {len(sample)} tickets: "
        f"p50 {pct(timings, 50):.2f} ms, p99 {pct(timings, 99):.2f} ms"
    )
    for parallel in (True, False):
        label = "parallel tool calls" if parallel else "one tool per call"
        print(
            f"Bedrock estimate ({label}, tokens = chars/4):",
            bedrock_cost(router, sample[: args.cost_n], parallel),
        )


if __name__ == "__main__":
    main()
