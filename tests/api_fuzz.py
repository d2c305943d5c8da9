"""Property-based fuzzing of the REST API from its OpenAPI schema (schemathesis).

Every operation of ``/api/schema/`` is called in-process (WSGI, no socket) with data
generated from the schema, valid (positive) and invalid (negative), with the API key of an
agent of the ticket's team and with a supervisor's key. The rule is simple: no answer is a
5xx. Path parameters, ids in bodies and filters are replaced, half of the time, by ids that
exist (the world of ``tests.authz_world``), so the fuzzer gets past "not found" and into
the code behind.

Each case runs in a savepoint that is rolled back: nothing one case writes is seen by the
next (the fuzzer may create tickets, merge them, upload documents), and a failed query does
not poison the run. Used by ``tests/test_api_fuzz.py`` (bounded, in ``make test``) and
``bench/fuzz_api.py`` (longer, prints figures).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.authz_world import World

SCHEMA_PATH = "/api/schema/"
MAX_FAILURES_KEPT = 20


@dataclass
class Failure:
    label: str
    status: int
    reproduce: str


@dataclass
class FuzzStats:
    operations: int = 0
    cases: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    failures: list[Failure] = field(default_factory=list)
    server_errors: int = 0
    not_generated: list[str] = field(default_factory=list)
    unsent: Counter[str] = field(default_factory=Counter)

    def merge(self, other: FuzzStats) -> None:
        self.operations = max(self.operations, other.operations)
        self.cases += other.cases
        self.seconds += other.seconds
        self.statuses.update(other.statuses)
        for label, counts in other.by_operation.items():
            self.by_operation[label].update(counts)
        self.failures.extend(other.failures[: MAX_FAILURES_KEPT - len(self.failures)])
        self.server_errors += other.server_errors
        self.not_generated.extend(other.not_generated)
        self.unsent.update(other.unsent)

    def only_404(self) -> list[str]:
        """Operations that never got past "not found" (the fuzzer did not reach them)."""
        return sorted(label for label, c in self.by_operation.items() if set(c) == {404})

    def mostly_rejected(self, share: float = 0.9) -> list[str]:
        """Operations that answered 400/422 to most cases (the schema is too loose)."""
        out = []
        for label, counts in self.by_operation.items():
            total = sum(counts.values())
            if total and (counts[400] + counts[422]) / total >= share:
                out.append(label)
        return sorted(out)

    def report(self) -> str:
        histogram = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        lines = [
            f"operations: {self.operations}",
            f"cases: {self.cases}",
            f"seconds: {self.seconds:.1f}",
            f"status codes: {histogram}",
            f"5xx: {self.server_errors}",
            f"only 404: {', '.join(self.only_404()) or 'none'}",
            f"mostly 400: {', '.join(self.mostly_rejected()) or 'none'}",
        ]
        if self.unsent:
            unsent = ", ".join(f"{label} ×{n}" for label, n in sorted(self.unsent.items()))
            lines.append(f"not sent (the test client could not build them): {unsent}")
        for failure in self.failures:
            lines.append(f"  {failure.status} {failure.label}\n    {failure.reproduce}")
        return "\n".join(lines)


@contextmanager
def in_process_requests() -> Iterator[Any]:
    """A WSGI handler whose requests share this thread's database connection (and so the
    caller's open transaction): Django closes "old" connections around each request, which
    would end that transaction, so that is switched off here as Django's test client does."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def load_schema(app: Any, key: str) -> Any:
    """The schema as the API serves it to an agent (``GET /api/schema/``, JSON)."""
    import schemathesis

    # Security parameters are ours to send (the keys below); random ones would only ever
    # test "invalid key".
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
    return schemathesis.openapi.from_wsgi(
        SCHEMA_PATH, app, config=config, headers={"Accept": "application/json", "X-API-Key": key}
    )


def existing_values(world: World) -> dict[str, list[Any]]:
    """Real values for parameters and body fields, by name."""
    ticket, second = world.ticket, world.second_ticket
    return {
        "ticket_id": [str(ticket.pk), ticket.number, str(second.pk)],
        "into": [str(second.pk), second.number],
        "customer_id": [world.customer.pk],
        "customer": [str(world.customer.pk)],
        "team_id": [world.team.pk, world.other_team.pk],
        "team": [world.team.slug, str(world.team.pk)],
        "assignee_id": [world.users["agent_in"].pk],
        "assignee": [str(world.users["agent_in"].pk), "none"],
        "decision_id": [world.decision.pk],
        "job_id": [str(world.job.pk)],
        "chunk_id": [str(world.chunk.pk), "faq-1"],
        "draft_id": [str(world.draft.pk)],
        "hash": [world.call.hash],
        "callId": [world.call.contact_id],
        "source": ["matrix-faq"],
    }


def _with_real_ids(case: Any, values: dict[str, list[Any]], draw: Callable[[Any], Any]) -> None:
    from hypothesis import strategies as st

    def swap(container: Any) -> None:
        if not isinstance(container, dict):
            return
        for name in list(container):
            if name in values and draw(st.booleans()):
                container[name] = draw(st.sampled_from(values[name]))

    swap(case.path_parameters)
    swap(case.query)
    swap(case.body)
    body = case.body
    if (
        case.operation.label == "POST /api/tickets"
        and isinstance(body, dict)
        and not body.get("customer")
        and "customer_id" not in body
        and draw(st.booleans())
    ):
        # One of customer_id / customer.email is required, which the schema cannot say.
        body["customer_id"] = draw(st.sampled_from(values["customer_id"]))


def fuzz(
    *,
    world: World,
    app: Any,
    schema: Any,
    keys: dict[str, str],
    max_examples: int,
    derandomize: bool = True,
    seed: int | None = None,
    modes: tuple[str, ...] = ("positive", "negative"),
    only: Callable[[str], bool] | None = None,
) -> FuzzStats:
    """Run every operation with each key; returns the figures (never raises on a 5xx)."""
    stats = FuzzStats()
    values = existing_values(world)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if only is None or only(op.label)]
    stats.operations = len(operations)
    started = time.perf_counter()
    for key_name, raw_key in keys.items():
        for operation in operations:
            for mode in modes:
                _fuzz_operation(
                    stats,
                    operation,
                    mode=mode,
                    app=app,
                    key_name=key_name,
                    headers={"X-API-Key": raw_key},
                    values=values,
                    max_examples=max_examples,
                    derandomize=derandomize,
                    seed=seed,
                )
    stats.seconds = time.perf_counter() - started
    return stats


def _fuzz_operation(
    stats: FuzzStats,
    operation: Any,
    *,
    mode: str,
    app: Any,
    key_name: str,
    headers: dict[str, str],
    values: dict[str, list[Any]],
    max_examples: int,
    derandomize: bool,
    seed: int | None,
) -> None:
    import hypothesis
    from django.db import transaction
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation import GenerationMode

    strategy = operation.as_strategy(generation_mode=GenerationMode(mode))
    examples = operation.get_strategies_from_examples() if mode == "positive" else []
    if examples:
        strategy = st.one_of(strategy, *examples)

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
        report_multiple_bugs=False,
    )
    @given(case=strategy, data=st.data())
    def run(case: Any, data: Any) -> None:
        _with_real_ids(case, values, data.draw)
        try:
            with transaction.atomic():
                response = case.call(app=app, headers=headers)
                transaction.set_rollback(True)
        except Exception as exc:
            # Django answers every exception in the app with a 500 response, so this is the
            # test client failing to build the request (e.g. werkzeug and a multipart body
            # that is not an object, from negative generation): the app never saw it.
            stats.unsent[f"{operation.label}: {type(exc).__name__}"] += 1
            return
        status = response.status_code
        stats.cases += 1
        stats.statuses[status] += 1
        stats.by_operation[operation.label][status] += 1
        if status >= 500:
            stats.server_errors += 1
            if len(stats.failures) < MAX_FAILURES_KEPT:
                label = f"{operation.label} ({key_name}, {mode})"
                stats.failures.append(Failure(label, status, case.as_curl_command(headers=headers)))

    if seed is not None:
        run = hypothesis.seed(seed)(run)
    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid (an operation without parameters or body): fine.
        stats.not_generated.append(f"{operation.label} ({mode})")
