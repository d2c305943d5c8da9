"""``kb_eval --queries FILE.jsonl [--source NAME] [--k 5] [--json OUT]``: retrieval quality.

Each line ``{"query": "...", "relevant": ["<document id>", ...]}`` or, for a conversation,
``{"turns": [{"speaker": "customer"|"agent", "text": "..."}, ...], "relevant": [...]}``
(document ids are the documents' external ids; a conversation's query is built as the
workbench builds it, see docs/knowledge.md). ``"relevant": []`` marks a question the
knowledge base has no answer for. Prints recall@1, recall@5, MRR@10 and p50/p95 ms per
query (over the queries with a relevant document).

``--drafts`` measures reply drafts instead (same retrieval, confidence gate and composer as
the ticket page; ``--channel`` picks the format, ``email`` by default): coverage (share of
queries with a draft) and citation precision (share of drafts whose first citation is a
relevant document), over the queries with a relevant document; when the file has
questions without one, also ``no_answer_drafted``: the share of those that still got a
draft (every one of them a wrong answer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge.evaluation import evaluate, evaluate_drafts, load_queries
from knowledge.models import KnowledgeSource
from support.errors import InvalidInput


class Command(BaseCommand):
    help = "Measure retrieval quality on labelled queries."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queries", required=True)
        parser.add_argument("--source", default="")
        parser.add_argument("--k", type=int, default=5)
        parser.add_argument("--json", default="", dest="json_out")
        parser.add_argument(
            "--mode", default="hybrid", choices=["hybrid", "vector", "text"], help="retriever"
        )
        parser.add_argument(
            "--drafts", action="store_true", help="reply drafts: coverage, citation precision"
        )
        parser.add_argument("--channel", default="email", help="draft format (with --drafts)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            queries = load_queries(Path(options["queries"]))
        except (OSError, InvalidInput) as exc:
            raise CommandError(str(exc)) from exc
        source = options["source"] or None
        if source and not KnowledgeSource.objects.filter(name=source).exists():
            raise CommandError(f"--source: no source named {source!r}")
        if options["k"] < 1:
            raise CommandError("--k must be at least 1")
        if options["drafts"]:
            self._drafts(queries, source, options)
            return
        try:
            report = evaluate(queries, source=source, k=options["k"], mode=options["mode"])
        except InvalidInput as exc:
            raise CommandError(f"{exc.message} (--drafts counts questions without one)") from exc
        self.stdout.write(
            f"n={report['n']} recall@1={report['recall_at_1']:.3f} "
            + (f"recall@{options['k']}={report['recall_at_k']:.3f} " if options["k"] != 5 else "")
            + f"recall@5={report['recall_at_5']:.3f} mrr@10={report['mrr_at_10']:.3f} "
            f"p50={report['p50_ms']:.1f}ms p95={report['p95_ms']:.1f}ms"
        )
        if options["json_out"]:
            Path(options["json_out"]).write_text(json.dumps(report, indent=2) + "\n")

    def _drafts(self, queries: list[dict[str, Any]], source: str | None, options: Any) -> None:
        report = evaluate_drafts(queries, source=source, channel=options["channel"])

        def share(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        line = (
            f"n={report['n']} drafts={report['drafts']} coverage={share(report['coverage'])} "
            f"citation_precision={share(report['citation_precision'])} "
            f"recall@1={share(report['recall_at_1'])} "
            f"p50={report['p50_ms']:.1f}ms p95={report['p95_ms']:.1f}ms "
            f"no_draft={report['no_draft_reasons']}"
        )
        if report["no_answer_n"]:
            line += (
                f" no_answer_n={report['no_answer_n']} "
                f"no_answer_drafted={share(report['no_answer_drafted'])}"
            )
        self.stdout.write(line)
        if options["json_out"]:
            Path(options["json_out"]).write_text(json.dumps(report, indent=2) + "\n")
