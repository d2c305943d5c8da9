"""Writes of the routing app: router models, decisions, feedback, external sync, purge."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DataError, IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from routing import artifacts, classifier, providers, status_feed
from routing.classifier import TextRouter
from routing.context import customer_messages, ticket_context_load, ticket_text
from routing.models import (
    CUSTOMER_TEXT_ATTEMPT,
    FeedbackVerdict,
    Outage,
    RouterModel,
    RoutingDecision,
    RoutingFailure,
    RoutingFeedback,
    ServiceStatus,
    SyncStatus,
)
from routing.providers.base import NO_CUSTOMER_TEXT, RoutingProvider
from routing.reasons import REVIEW_NOTE
from routing.selectors import routing_verdicts_latest
from routing.ticketing import ticketing_post
from support import logging_context, retention
from support.delivery import selectors as delivery_selectors
from support.delivery.models import OPEN_STATUSES, Delivery
from support.delivery.models import Outcome as DeliveryOutcome
from support.delivery.registry import (
    Change,
    DeliveryChange,
    DeliveryError,
    Schedule,
    SendResult,
    TargetKind,
)
from support.delivery.services import delivery_enqueue
from support.errors import (
    ApplicationError,
    ExternalAuthError,
    InvalidInput,
    NotFound,
    PermanentError,
)
from support.events import event_record
from support.outbound import backoff_seconds
from support.services import audit_log_record
from tickets import services as ticket_services
from tickets.models import PRIORITY_RANK, Priority, Team, Ticket
from tickets.selectors import (
    ticket_changed_by_person,
    ticket_opened_by_system,
    ticket_submitted_id,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "bitext-default"

# --- router models ------------------------------------------------------------------------

_cache_lock = threading.Lock()
_loaded: dict[str, Any] = {"sha": None, "router": None}
_default_artifact: dict[str, tuple[bytes, dict[str, Any], TextRouter]] = {}


def router_model_save(
    *,
    router: TextRouter,
    name: str,
    training: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    activate: bool = True,
    artifact: bytes | None = None,
) -> RouterModel:
    """Store a trained router as the next version of ``name``; activating it keeps the
    previous model (inactive) for rollback."""
    data = artifact if artifact is not None else router.to_bytes()
    with transaction.atomic():
        latest = RouterModel.objects.filter(name=name).aggregate(v=Max("version"))["v"] or 0
        row = RouterModel.objects.create(
            name=name,
            version=latest + 1,
            labels=router.labels,
            label_to_category=router.label_to_category,
            features=router.features,
            metrics=metrics or {},
            training=training,
            artifact=data,
            artifact_sha256=hashlib.sha256(data).hexdigest(),
        )
        if activate:
            router_model_activate(model=row)
    return row


def router_model_artifact_check(*, model: RouterModel) -> str:
    """``"ok"`` when the stored artifact's signature verifies, else why not (nothing is
    unpickled)."""
    data = RouterModel.objects.filter(pk=model.pk).values_list("artifact", flat=True).get()
    try:
        artifacts.artifact_payload(bytes(data))
    except artifacts.ArtifactError as exc:
        return str(exc)
    return "ok"


@transaction.atomic
def router_model_artifact_resign(*, model: RouterModel) -> RouterModel:
    """Sign a stored artifact with the current key without loading it: for artifacts stored
    before signing, or signed with a rotated-out key, that an operator vouches for."""
    row = RouterModel.objects.select_for_update().get(pk=model.pk)
    data = artifacts.artifact_resign(bytes(row.artifact))
    row.artifact = data
    row.artifact_sha256 = hashlib.sha256(data).hexdigest()
    row.save(update_fields=["artifact", "artifact_sha256", "updated_at"])
    return row


@transaction.atomic
def router_model_activate(*, model: RouterModel) -> RouterModel:
    """Make ``model`` the active router (also the rollback path)."""
    RouterModel.objects.filter(is_active=True).exclude(pk=model.pk).update(is_active=False)
    RouterModel.objects.filter(pk=model.pk).update(is_active=True)
    model.is_active = True
    return model


def router_model_train(
    *,
    texts: list[str],
    labels: list[str],
    name: str,
    categories: list[str] | None = None,
    features: str = "auto",
    source: str = "",
    activate: bool = True,
    progress: Callable[[str], None] | None = None,
    out_of_scope: bool = True,
) -> tuple[RouterModel, classifier.TrainReport]:
    router, report = classifier.train(
        texts,
        labels,
        categories=categories,
        features=features,
        progress=progress,
        out_of_scope=out_of_scope,
        review_threshold=float(settings.ROUTING_REVIEW_THRESHOLD),
    )
    row = router_model_save(
        router=router,
        name=name,
        activate=activate,
        training={
            "source": source,
            "rows": report.rows,
            "labels": report.labels,
            "seconds": report.seconds,
            "features": report.features,
            "holdout_accuracy": report.holdout,
            "embedded_share": report.embedded_share,
            "out_of_scope": report.out_of_scope,
        },
    )
    return row, report


def default_router() -> tuple[bytes, dict[str, Any], TextRouter]:
    """The shipped default router, trained on the bundled Bitext training split
    (deterministic, offline, ~2 s), once per process. TF-IDF only, so it has no
    out-of-scope detector: Bitext's rows are clean one-liners, and a detector calibrated on
    them flags most real tickets, which carry names, numbers and greetings (docs/routing.md,
    "Out of scope on real tickets"); a router trained on a deployment's own tickets has one."""
    sha = classifier.file_sha256(classifier.BITEXT_TRAIN)
    with _cache_lock:
        if sha not in _default_artifact:
            texts, intents, categories = classifier.bitext_rows(classifier.BITEXT_TRAIN)
            router, report = classifier.train(
                texts, intents, categories=categories, features=classifier.FEATURES_TFIDF
            )
            training = {
                "source": "routing/data/bitext (CDLA-Sharing-1.0, (c) Bitext)",
                "data_sha256": sha,
                "rows": report.rows,
                "labels": report.labels,
                "seconds": report.seconds,
                "features": report.features,
            }
            _default_artifact[sha] = (router.to_bytes(), training, router)
        return _default_artifact[sha]


def router_model_ensure_default() -> RouterModel:
    """Store and activate the default router the first time one is needed and none is."""
    existing = RouterModel.objects.filter(is_active=True).first()
    if existing is not None:
        return existing
    artifact, training, router = default_router()
    try:
        return router_model_save(
            router=router, name=DEFAULT_MODEL_NAME, training=training, artifact=artifact
        )
    except IntegrityError:  # another worker saved it first
        active = RouterModel.objects.filter(is_active=True).first()
        if active is None:
            raise
        return active


def router_active() -> tuple[TextRouter, RouterModel]:
    """The active router, loaded once per process (reloaded when another is activated)."""
    row = RouterModel.objects.filter(is_active=True).defer("artifact").first()
    if row is None:
        row = router_model_ensure_default()
    with _cache_lock:
        if _loaded["sha"] != row.artifact_sha256:
            data = RouterModel.objects.filter(pk=row.pk).values_list("artifact", flat=True).get()
            _loaded["router"] = TextRouter.from_bytes(bytes(data))
            _loaded["sha"] = row.artifact_sha256
        router: TextRouter = _loaded["router"]
    return router, row


# --- decisions ------------------------------------------------------------------------------


def _team_by_slug(slug: str) -> Team | None:
    return Team.objects.filter(slug=slug).first() if slug else None


def _fit(field: str, value: str) -> str:
    """``value`` cut to ``RoutingDecision.<field>``'s length: a model's answer is not bound
    by our columns, and a decision that cannot be stored would leave the ticket unrouted
    (a cut team or category no longer matches the tools', so the decision goes to review)."""
    max_length = getattr(RoutingDecision._meta.get_field(field), "max_length", None)
    return value[:max_length] if max_length else value


def routing_decide(
    *, ticket_id: int, attempt_key: str = "initial", provider: RoutingProvider | None = None
) -> RoutingDecision:
    """Route one ticket: idempotent per (ticket, attempt key). The decision is stored; the
    ticket gets team and priority unless the decision needs review, in which case it is
    flagged ``needs_review``. A ``routing.decided`` event updates the workbench."""
    existing = RoutingDecision.objects.filter(ticket_id=ticket_id, attempt_key=attempt_key).first()
    if existing is not None:
        return existing
    ticket = Ticket.objects.select_related("customer").filter(pk=ticket_id).first()
    if ticket is None:
        raise NotFound(f"No ticket {ticket_id}.")
    # The decision's log lines (and the tasks and deliveries it causes) name the ticket.
    with logging_context.bound(ticket_id=ticket.pk, correlation_id=ticket.correlation_id):
        return _routing_decide(ticket, attempt_key=attempt_key, provider=provider)


class _NoLongerWanted(Exception):
    """Raised inside the decision's transaction when ``still_wanted`` says no (a person
    acted on the ticket while the router worked): nothing of the decision is stored."""


def _routing_decide(
    ticket: Ticket,
    *,
    attempt_key: str,
    provider: RoutingProvider | None,
    still_wanted: Callable[[Ticket], bool] | None = None,
) -> RoutingDecision:
    ticket_id = ticket.pk
    router, model_row = router_active()
    ctx = ticket_context_load(ticket, router=router, router_model_id=model_row.pk)
    started = time.perf_counter()
    result = providers.decide(ctx, provider)
    elapsed_ms = (time.perf_counter() - started) * 1000
    out = result.decision
    classification = result.trace.last("classify_issue") or {}
    priority_out = result.trace.last("calculate_priority") or {}
    needs_review = bool(result.review_reasons)
    team = _team_by_slug(out.team)
    try:
        with transaction.atomic():
            if still_wanted is not None:
                # checked again on the locked row: a person's verdict or change made while
                # the router worked (it locks the ticket too) wins over this decision
                ticket = Ticket.objects.select_for_update().get(pk=ticket_id)
                if not still_wanted(ticket):
                    raise _NoLongerWanted
            decision = RoutingDecision.objects.create(
                ticket=ticket,
                attempt_key=attempt_key,
                team=team,
                team_slug=_fit("team_slug", out.team),
                priority=out.priority,
                priority_score=float(priority_out.get("score", 0.0)),
                confidence=out.confidence,
                model_stated_confidence=result.model_stated_confidence,
                category=_fit("category", out.category),
                intent=_fit("intent", out.intent),
                classification={
                    "category": out.category,
                    "primary_category": out.category,  # seed 004's name
                    "intent": out.intent,
                    "secondary": out.secondary,
                    "classifier": classification,
                },
                entities=result.trace.last("extract_entities") or {},
                reasoning=out.reasoning,
                reasons=list(priority_out.get("reasons", [])),
                requires_manual_review=needs_review,
                review_reasons=result.review_reasons,
                # None: the router has no out-of-scope detector (no in-scope score)
                out_of_scope=(
                    bool(classification.get("out_of_scope"))
                    if classification.get("in_scope") is not None
                    else None
                ),
                processing_ms=round(elapsed_ms, 3),
                tool_calls=result.trace.calls,
                provider=result.provider,
                model_id=result.model_id or f"router-model:{model_row.name}/v{model_row.version}",
                router_model=model_row,
                fallback_from=result.fallback_from,
                fallback_reason=result.fallback_reason,
                tokens_in=result.tokens_in,
                tokens_out=result.tokens_out,
                cost_usd=result.cost_usd,
                correlation_id=ticket.correlation_id,
            )
            _apply(decision, ticket, team, needs_review)
            _customer_text_arrived_meanwhile(decision)
            # routed: an earlier failure is history (the sweep skips routed tickets anyway)
            RoutingFailure.objects.filter(ticket_id=ticket_id).delete()
    except IntegrityError:
        return RoutingDecision.objects.get(ticket_id=ticket_id, attempt_key=attempt_key)
    return decision


def _customer_text_arrived_meanwhile(decision: RoutingDecision) -> None:
    """A decision held for want of the customer's words (``NO_CUSTOMER_TEXT``) on a
    ticket that has them by now (a message committed while the router worked, after it
    read the ticket): route it again on them once this decision commits
    (:func:`routing_customer_text_decide`, idempotent per ticket). The ``message.created``
    subscriber (``routing.apps``) drops such a message: when it ran, no decision awaited
    the customer's words yet, and the ticket stayed in review.

    The ticket's row is locked first, as a customer message's write locks it (``tickets.
    thread_rules``): a message whose transaction took the lock first has committed and
    is found here; one that takes it after this decision commits finds the decision
    through the subscriber. Either way one of the two routes the ticket again."""
    if decision.attempt_key == CUSTOMER_TEXT_ATTEMPT:
        return
    if NO_CUSTOMER_TEXT not in decision.review_reasons:
        return
    ticket = Ticket.objects.select_for_update().get(pk=decision.ticket_id)
    message_id = customer_messages(ticket, with_words=True).values_list("pk", flat=True).first()
    if message_id is None:
        return
    from routing.tasks import routing_customer_text_decide_task  # the interface layer

    def route_again() -> None:  # a named function: on_commit logs a failure by __qualname__
        routing_customer_text_decide_task.delay(ticket.pk, message_id)

    # robust: the decision is committed; a failed publish is logged, and must not fail
    # the routing task that stored it (the ticket stays in review, as before)
    transaction.on_commit(route_again, robust=True)


#: The ticket fields a person sets when acting on the routing (``ticket_update``'s names).
ROUTING_FIELDS = ("team", "priority", "needs_review")


def routing_customer_text_refusal(*, ticket: Ticket, message_id: int) -> str | None:
    """Why the customer's message ``message_id`` does not route ``ticket`` again, in
    words, or None when it does (:func:`routing_customer_text_decide`): only the
    customer's first message with words (the one the router reads, ``routing.context.
    ticket_text``: a photo sent alone before it does not count), on a ticket the system
    opened whose latest decision went to review for want of the customer's words
    (``NO_CUSTOMER_TEXT``), while nobody acted on that routing: no verdict on any of its
    decisions (accepted, overridden), the review not ended, team, priority and review
    flag never changed by a person (``tickets.selectors.ticket_changed_by_person``)."""
    if ticket.merged_into_id is not None:
        return "the ticket was merged into another"
    if not ticket_opened_by_system(ticket=ticket):
        return "the ticket was not opened by the system"
    first = customer_messages(ticket, with_words=True).values_list("pk", flat=True).first()
    if first is None:
        return "the customer's message has no words to route on"
    if first != message_id:
        return "not the customer's first message with words"
    latest = RoutingDecision.objects.filter(ticket=ticket).order_by("-created_at", "-id").first()
    if latest is None:
        return "not routed yet (the first routing reads the customer's message)"
    if latest.attempt_key == CUSTOMER_TEXT_ATTEMPT:
        return "already routed again on the customer's words"
    if not (latest.requires_manual_review and NO_CUSTOMER_TEXT in latest.review_reasons):
        return "the latest decision was not held for want of the customer's words"
    if RoutingFeedback.objects.filter(ticket=ticket).exists():
        return "a person accepted or overrode the routing"
    if not ticket.needs_review:
        return "the review was ended"
    if ticket_changed_by_person(ticket=ticket, fields=ROUTING_FIELDS):
        return "a person changed the ticket's team, priority or review flag"
    return None


def routing_customer_text_decide(
    *, ticket_id: int, message_id: int, provider: RoutingProvider | None = None
) -> RoutingDecision | None:
    """Route a system-opened ticket again on the customer's first message (the
    ``message.created`` subscriber's task, ``routing.apps``): a decision of attempt key
    :data:`CUSTOMER_TEXT_ATTEMPT`, applied by the rules of every decision (held for
    review: not applied; else the team a ticket already has is kept and the priority is
    never lowered), and then the ticket's latest. Idempotent: the stored decision is
    returned again (duplicate events, retries). None, with the reason logged, when the
    message does not route the ticket again (:func:`routing_customer_text_refusal`),
    checked before the router runs and again, on the locked ticket, before the decision
    is stored."""
    existing = RoutingDecision.objects.filter(
        ticket_id=ticket_id, attempt_key=CUSTOMER_TEXT_ATTEMPT
    ).first()
    if existing is not None:
        return existing
    ticket = Ticket.objects.select_related("customer").filter(pk=ticket_id).first()
    if ticket is None:
        raise NotFound(f"No ticket {ticket_id}.")
    with logging_context.bound(ticket_id=ticket.pk, correlation_id=ticket.correlation_id):
        refusal = routing_customer_text_refusal(ticket=ticket, message_id=message_id)
        if refusal is None:

            def still_wanted(locked: Ticket) -> bool:
                nonlocal refusal
                refusal = routing_customer_text_refusal(ticket=locked, message_id=message_id)
                return refusal is None

            try:
                return _routing_decide(
                    ticket,
                    attempt_key=CUSTOMER_TEXT_ATTEMPT,
                    provider=provider,
                    still_wanted=still_wanted,
                )
            except _NoLongerWanted:
                pass
        logger.info(
            "Ticket %s is not routed again on message %s: %s", ticket_id, message_id, refusal
        )
    return None


def _apply(decision: RoutingDecision, ticket: Ticket, team: Team | None, review: bool) -> None:
    if review:
        ticket_services.ticket_update(
            ticket=ticket,
            needs_review=True,
            # stored as written; shown in words (routing.reasons.review_note_words)
            reason=f"{REVIEW_NOTE}: {'; '.join(decision.review_reasons)}",
        )
    else:
        # A team somebody already chose is kept, and a priority is never lowered: the
        # router fills in and escalates, it does not overrule people.
        keep_team = ticket.team_id is not None
        priority = max(
            decision.priority, ticket.priority, key=lambda value: PRIORITY_RANK.get(value, 1)
        )
        ticket_services.ticket_update(
            ticket=ticket,
            team=ticket.team if keep_team else team,
            priority=priority,
            needs_review=False,
            reason=f"AI routing ({decision.provider}, confidence {decision.confidence:.2f})",
        )
        decision.applied = True
    if settings.TICKETING_SYSTEM_URL:
        decision.sync_status = SyncStatus.PENDING
        ticketing_sync_create(decision=decision)
    decision.save(update_fields=["applied", "sync_status"])
    event_record(
        "routing.decided",
        aggregate_type="ticket",
        aggregate_id=ticket.pk,
        payload=routing_event_payload(decision),
    )


def routing_event_payload(decision: RoutingDecision) -> dict[str, Any]:
    return {
        "ticket_id": decision.ticket_id,
        "decision_id": decision.pk,
        "team": decision.team_slug,
        "priority": decision.priority,
        "confidence": round(decision.confidence, 4),
        "requires_manual_review": decision.requires_manual_review,
        "provider": decision.provider,
        "fallback_from": decision.fallback_from,
    }


def _check_priority(priority: str) -> None:
    if priority not in Priority.values:
        raise InvalidInput(f"Unknown priority {priority!r}.", details={"priority": ["Invalid."]})


def _verdict_ticket_lock(decision: RoutingDecision) -> Ticket:
    """The decision's ticket, locked until the verdict's transaction ends. Taken before
    the verdict is written, so verdicts on a ticket are written one at a time, in the
    order their team and priority reach the ticket: the latest verdict (its ``pk``,
    ``created_at`` and the ticketing sync's ``updated_at``, which the accuracy figures,
    the training label and the ticketing system keep) is the one the ticket shows."""
    return Ticket.objects.select_for_update().get(pk=decision.ticket_id)


def _verdict_repeated(
    *,
    decision: RoutingDecision,
    ticket: Ticket,
    actor: Any,
    verdict: str,
    team: Team | None,
    priority: str,
    category: str,
    intent: str,
    note: str,
) -> RoutingFeedback | None:
    """The decision's latest verdict when this one only repeats it (a double-click, a
    request sent again): by the same person, with the same outcome, team, priority,
    category, intent and note, and the (locked) ticket still as that verdict left it.
    None otherwise: another person's verdict, another outcome, or the same one given
    again after the ticket was moved since, is a verdict of its own."""
    actor_id = actor.pk if getattr(actor, "is_authenticated", False) else None
    if actor_id is None:  # the system or nobody known: two calls are not one person's
        return None
    latest = (
        RoutingFeedback.objects.filter(decision=decision)
        .select_related("team", "decision")
        .order_by("-pk")  # the latest as routing_verdicts_latest reads it
        .first()
    )
    if latest is None:
        return None
    asked = (actor_id, verdict, team.pk if team else None, priority, category, intent, note)
    given = (
        latest.actor_id,
        latest.verdict,
        latest.team_id,
        latest.priority,
        latest.category,
        latest.intent,
        latest.note,
    )
    if asked != given:
        return None
    if (ticket.team_id, ticket.priority, ticket.needs_review) != (
        latest.team_id,
        latest.priority,
        False,
    ):
        return None
    logger.info(
        "Routing verdict %s on decision %s repeated by user %s: the first one kept",
        latest.pk,
        decision.pk,
        actor_id,
    )
    return latest


@transaction.atomic
def routing_decision_accept(*, decision: RoutingDecision, actor: Any) -> RoutingFeedback:
    """A person confirms the decision: team and priority go on the ticket, review ends.

    A decision that names no known team (review reason "no known team") cannot be
    accepted: that would unassign the ticket and end its review; it is overridden.

    The ticket is locked before the verdict is written (:func:`_verdict_ticket_lock`),
    and the same person's accept repeated (a double-click) answers the first verdict
    instead of writing another (:func:`_verdict_repeated`)."""
    if decision.team_id is None:
        raise InvalidInput(
            f"This decision names no known team ({decision.team_slug or 'none'}): "
            "override it with a team instead.",
            details={"team": ["The decision names no known team."]},
        )
    ticket = _verdict_ticket_lock(decision)
    repeated = _verdict_repeated(
        decision=decision,
        ticket=ticket,
        actor=actor,
        verdict=FeedbackVerdict.ACCEPTED,
        team=decision.team,
        priority=decision.priority,
        category=decision.category,
        intent=decision.intent,
        note="",
    )
    if repeated is not None:
        return repeated
    feedback = RoutingFeedback.objects.create(
        decision=decision,
        ticket=ticket,
        verdict=FeedbackVerdict.ACCEPTED,
        team=decision.team,
        priority=decision.priority,
        category=decision.category,
        intent=decision.intent,
        team_correct=True,
        priority_correct=True,
        text=ticket_text(ticket),
        actor=actor if getattr(actor, "is_authenticated", False) else None,
    )
    ticket_services.ticket_update(
        ticket=ticket,
        actor=actor,
        team=decision.team,
        priority=decision.priority,
        needs_review=False,
        reason="AI routing accepted",
    )
    RoutingDecision.objects.filter(pk=decision.pk).update(applied=True)
    ticketing_sync_verdict(feedback=feedback)
    return feedback


@transaction.atomic
def routing_decision_override(
    *,
    decision: RoutingDecision,
    actor: Any,
    team: Team | None,
    priority: str,
    category: str = "",
    intent: str = "",
    note: str = "",
) -> RoutingFeedback:
    """A person corrects the decision; stored as feedback (accuracy and next training).

    Ordered and deduplicated as :func:`routing_decision_accept` is: the ticket locked
    first, and the same person's same override repeated answers the first verdict."""
    _check_priority(priority)
    category, intent = category.strip(), intent.strip()
    ticket = _verdict_ticket_lock(decision)
    repeated = _verdict_repeated(
        decision=decision,
        ticket=ticket,
        actor=actor,
        verdict=FeedbackVerdict.OVERRIDDEN,
        team=team,
        priority=priority,
        category=category,
        intent=intent,
        note=note,
    )
    if repeated is not None:
        return repeated
    feedback = RoutingFeedback.objects.create(
        decision=decision,
        ticket=ticket,
        verdict=FeedbackVerdict.OVERRIDDEN,
        team=team,
        priority=priority,
        category=category,
        intent=intent,
        team_correct=(team.pk if team else None) == decision.team_id,
        priority_correct=priority == decision.priority,
        text=ticket_text(ticket),
        note=note,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
    )
    ticket_services.ticket_update(
        ticket=ticket,
        actor=actor,
        team=team,
        priority=priority,
        needs_review=False,
        reason="AI routing overridden" + (f": {note}" if note else ""),
    )
    ticketing_sync_verdict(feedback=feedback)
    return feedback


def routing_decision_purge(
    *, now: Any = None, batch: int = retention.BATCH, max_batches: int = retention.MAX_BATCHES
) -> int:
    """Delete decisions past ``expires_at`` (``ROUTING_DECISION_RETENTION_DAYS``, 90 by
    default), with their sync deliveries and their verdicts' (the payloads repeat the
    decision). Returns the decisions deleted.

    Their verdicts stay, with ``decision`` empty: they are the training labels
    (``train_router --with-feedback``), and what they hold is the label and the ticket's
    routed text, which the ticket itself keeps until its customer is erased (the erasure
    reaches the verdict through its ``ticket``); nothing of the decision's own (entities,
    reasons, tool trace) is left. Of a decision judged more than once only the latest
    verdict stays, the one training and accuracy read (``routing_verdicts_latest``): the
    earlier ones were its history, which goes with it.

    ``batch`` decisions at a time, each batch in a short transaction of its own, at most
    ``max_batches`` per run (``support.retention.delete_in_batches``): a backlog is worked
    off over the hourly runs, and the task's time limit rolls back one batch, not all of
    it. The decisions are deleted by id (``only("pk")``: their tool trace is never read)."""
    expired = RoutingDecision.objects.filter(expires_at__lt=now or timezone.now()).only("pk")
    return retention.delete_in_batches(
        expired, batch=batch, max_batches=max_batches, before_delete=_decisions_unlink
    )


def _decisions_unlink(ids: list[int]) -> None:
    """In the transaction of a batch of decisions, before they go: their sync deliveries
    and their verdicts', their verdicts but the latest of each, and the latest ones'
    ``decision`` emptied by one UPDATE (the SET_NULL, done here, finds nothing left)."""
    verdicts = RoutingFeedback.objects.filter(decision_id__in=ids)
    Delivery.objects.filter(
        target_kind=TICKETING_SYNC_KIND,
        idempotency_key__in=[
            *(ticketing_sync_key(pk) for pk in ids),
            *(ticketing_verdict_key(pk) for pk in verdicts.values_list("pk", flat=True)),
        ],
    ).delete()
    latest = routing_verdicts_latest().filter(decision_id__in=ids).values("pk")
    verdicts.exclude(pk__in=latest).delete()
    verdicts.update(decision=None)


# --- failed routing tasks (the routing sweep's memory) ---------------------------------------

#: A failure of the ticket's own: routing it again gives the same error (the database
#: refuses its data, the code calls it invalid or missing, a component refuses it for good).
ROUTING_PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    ApplicationError,
    PermanentError,
    DataError,
)
#: Permanent errors of the deployment, not of the ticket: an operator fixes them for every
#: ticket at once (a refused credential, a router artifact signed with another key), so the
#: tickets keep being swept, backing off, and route once it is fixed.
ROUTING_CONFIGURATION_ERRORS: tuple[type[BaseException], ...] = (
    ExternalAuthError,
    artifacts.ArtifactError,
)
SWEEP_BACKOFF_CAP_SECONDS = 3600.0  # at most an hour between sweeps of one ticket


def routing_failure_is_permanent(exc: BaseException) -> bool:
    """True when routing the ticket again would fail the same way (``ROUTING_PERMANENT_
    ERRORS``, configuration errors excepted); anything else is transient."""
    return isinstance(exc, ROUTING_PERMANENT_ERRORS) and not isinstance(
        exc, ROUTING_CONFIGURATION_ERRORS
    )


def routing_failure_record(
    *, ticket_id: int, exc: BaseException, now: Any = None
) -> RoutingFailure | None:
    """Record that the ticket's routing task failed with ``exc`` (after its own retries).
    A permanent failure is recorded once: the sweep leaves the ticket alone from then on
    (and a later failure does not change the record). A transient one counts an attempt
    and sets when the sweep may try again: ``ROUTING_SWEEP_SECONDS`` x 2^(attempts - 1),
    jittered, at most ``SWEEP_BACKOFF_CAP_SECONDS``. None when the ticket is gone, or
    routed: an error raised after the decision committed (a callback after the commit)
    is no routing failure, and its record would never go (the decision's transaction
    removes failures, and the sweep skips routed tickets), counted in
    ``support_routing_failed_tickets`` and listed in the admin for ever. The ticket's row
    is locked first, as the decision's transaction locks it (``ticket_update``) before it
    removes failures: a decision committing meanwhile is found here, or removes this."""
    permanent = routing_failure_is_permanent(exc)
    now = now or timezone.now()
    with transaction.atomic():
        if not Ticket.objects.select_for_update().filter(pk=ticket_id).exists():
            return None
        if RoutingDecision.objects.filter(ticket_id=ticket_id).exists():
            logger.warning(
                "Routing ticket %s raised after its decision was stored; not recorded as a "
                "routing failure: %s: %s",
                ticket_id,
                type(exc).__name__,
                exc,
            )
            return None
        failure, _ = RoutingFailure.objects.select_for_update().get_or_create(ticket_id=ticket_id)
        if failure.permanent:
            return failure
        failure.attempts += 1
        failure.permanent = permanent
        failure.error = f"{type(exc).__name__}: {exc}"[:2000]
        failure.next_attempt_at = (
            None
            if permanent
            else now
            + timedelta(
                seconds=backoff_seconds(
                    failure.attempts,
                    base=float(settings.ROUTING_SWEEP_SECONDS),
                    cap=SWEEP_BACKOFF_CAP_SECONDS,
                )
            )
        )
        failure.save()
    if permanent:
        logger.error(
            "Routing ticket %s failed for good; the sweep leaves it (admin: routing failures): %s",
            ticket_id,
            failure.error,
        )
    else:
        logger.warning(
            "Routing ticket %s failed (%s times); the sweep tries again from %s: %s",
            ticket_id,
            failure.attempts,
            failure.next_attempt_at,
            failure.error,
        )
    return failure


def routing_failure_redrive(*, failures: Iterable[RoutingFailure], actor: Any) -> int:
    """A supervisor routes the tickets again (the admin action, after a fix): their
    records go and each ticket's routing task is enqueued after commit; the audit log says
    who, and what the failure was. Returns the tickets sent (a record another request
    removed meanwhile is not sent twice)."""
    from routing.tasks import route_ticket_task  # the interface layer, only at call time

    sent = 0
    with transaction.atomic():
        for failure in failures:
            if not RoutingFailure.objects.filter(pk=failure.pk).delete()[0]:
                continue
            sent += 1
            audit_log_record(
                actor=actor,
                action="routing_failure.redrive",
                object_type="tickets.Ticket",
                object_id=failure.ticket_id,
                details={
                    "permanent": failure.permanent,
                    "attempts": failure.attempts,
                    "error": failure.error[:500],
                },
            )
            transaction.on_commit(partial(route_ticket_task.delay, failure.ticket_id))
    return sent


# --- external ticketing sync ----------------------------------------------------------------
#
# Each applied decision is a ``support.delivery`` delivery of kind ``ticketing_sync``
# (idempotency key ``routing-decision-<id>``, sent as the ``Idempotency-Key`` header;
# target: the ticketing system's host). Seed 004's schedule, from its ``MAX_RETRIES`` and
# ``RETRY_DELAY_BASE`` (settings ``TICKETING_SYNC_MAX_RETRIES``, default 5, and
# ``TICKETING_SYNC_RETRY_DELAY_BASE``, default 1 s): retry n waits base x 2^(n-1), capped at
# 16 x base (1, 2, 4, 8, 16 s), then a dead letter. ``RoutingDecision.sync_status`` follows.
#
# A person's verdict changes the decision as seed 004's stream sees it (its Lambda is
# triggered by every change of a routing decision), so it is synced too: the decision's
# payload with the team and priority the person chose, ``requires_manual_review`` false and
# ``review`` ({verdict, reviewed_at}), under its own key ``routing-verdict-<feedback id>``.
#
# ``applied`` says whether the payload's team and priority are on the ticket: a decision
# held for review is synced too (its sync status, seed 004's ``requires_manual_review``),
# with ``applied`` false: its assignment is a proposal, not to be applied by the receiver.
# Without it the ticketing system kept the model's team after an agent corrected it.

TICKETING_SYNC_KIND = "ticketing_sync"
SYNC_DELAY_CAP_FACTOR = 16  # seed 004: min(2 ** attempt, 16) seconds at a 1 s base


def ticketing_sync_retry_delays() -> tuple[float, ...]:
    """Seconds before each retry of a ticketing sync, from the settings."""
    retries = max(0, int(settings.TICKETING_SYNC_MAX_RETRIES))
    base = max(0.0, float(settings.TICKETING_SYNC_RETRY_DELAY_BASE))
    return tuple(min(base * 2**n, base * SYNC_DELAY_CAP_FACTOR) for n in range(retries))


def ticketing_sync_payload(decision: RoutingDecision) -> dict[str, Any]:
    ticket = decision.ticket
    return {
        # seed 004's ``ticket_id``: the ticketing system's own id (the API caller's, as
        # ``GET /tickets/{id}`` answers it), else the internal id as a string; the internal
        # id is ``id``. Before, ``ticket_id`` was the internal id, which names another
        # ticket (or none) in the ticketing system.
        "ticket_id": ticket_submitted_id(ticket),
        # whose own id ``ticket_id`` is (the API key's user; null for the internal id): a
        # caller's id is unique per caller only, so two callers' ``TKT-1001`` are told
        # apart (as in the ``TicketReceived`` event, ``events_out.selectors``)
        "submitted_by": (
            ticket.origin_caller.get_username() if ticket.origin_caller is not None else None
        ),
        "id": ticket.pk,
        "ticket_number": ticket.number,
        # an API caller's own ticket id only, never a channel's sender id (address, phone)
        "external_ref": ticket.origin_platform_id if ticket.origin_caller_id else "",
        # whether this team and priority were set on the ticket: false for a decision held
        # for review, whose assignment and priority are the router's proposal until a
        # person's verdict (synced with ``applied`` true) decides
        "applied": decision.applied,
        "assignment": {
            "team": decision.team_slug,
            "team_name": decision.team.name if decision.team else "",
        },
        "priority": decision.priority,
        "routing": {
            "decision_id": decision.pk,
            # the classifier's calibrated figure; an LLM's own one apart, labelled as such
            "confidence": round(decision.confidence, 4),
            "model_stated_confidence": (
                round(decision.model_stated_confidence, 4)
                if decision.model_stated_confidence is not None
                else None
            ),
            "category": decision.category,
            "intent": decision.intent,
            "requires_manual_review": decision.requires_manual_review,
            "provider": decision.provider,
            "model_id": decision.model_id,
            "reasoning": decision.reasoning,
            "correlation_id": str(decision.correlation_id),
            "created_at": decision.created_at.isoformat(),
        },
        # when this state of the routing was reached: a receiver keeps the latest (a
        # decision's sync retried or re-driven after a person's verdict must not undo it)
        "updated_at": decision.created_at.isoformat(),
    }


DECISION_KEY_PREFIX = "routing-decision-"
VERDICT_KEY_PREFIX = "routing-verdict-"


def ticketing_sync_key(decision_id: int) -> str:
    return f"{DECISION_KEY_PREFIX}{decision_id}"


def _ticketing_enqueue(key: str, ticket_id: int, payload: dict[str, Any]) -> Delivery:
    return delivery_enqueue(
        kind=TICKETING_SYNC_KIND,
        idempotency_key=key,
        target_key=urlsplit(settings.TICKETING_SYSTEM_URL).netloc,
        subject_type="ticket",
        subject_id=ticket_id,
        payload=payload,
    )


def ticketing_sync_create(*, decision: RoutingDecision) -> Delivery:
    """The decision's sync delivery (one per decision); sent after commit."""
    return _ticketing_enqueue(
        ticketing_sync_key(decision.pk), decision.ticket_id, ticketing_sync_payload(decision)
    )


def ticketing_verdict_key(feedback_id: int) -> str:
    return f"{VERDICT_KEY_PREFIX}{feedback_id}"


def ticketing_sync_verdict(*, feedback: RoutingFeedback) -> Delivery | None:
    """Sync a person's accept or override (after commit); None when no system is set
    (or the decision was purged since: the payload is the decision's)."""
    decision = feedback.decision
    if not settings.TICKETING_SYSTEM_URL or decision is None:
        return None
    payload = ticketing_sync_payload(decision)
    payload["assignment"] = {
        "team": feedback.team.slug if feedback.team else "",
        "team_name": feedback.team.name if feedback.team else "",
    }
    payload["priority"] = feedback.priority
    payload["applied"] = True  # the person's team and priority are on the ticket
    payload["routing"]["requires_manual_review"] = False
    payload["review"] = {
        "verdict": feedback.verdict,
        "feedback_id": feedback.pk,
        "reviewed_at": feedback.created_at.isoformat(),
    }
    payload["updated_at"] = feedback.created_at.isoformat()
    RoutingDecision.objects.filter(pk=decision.pk).update(sync_status=SyncStatus.PENDING)
    return _ticketing_enqueue(ticketing_verdict_key(feedback.pk), decision.ticket_id, payload)


def ticketing_sync_delivery(decision: RoutingDecision) -> Delivery | None:
    return delivery_selectors.delivery_get(
        target_kind=TICKETING_SYNC_KIND, idempotency_key=ticketing_sync_key(decision.pk)
    )


def ticketing_sync_body(payload: dict[str, Any]) -> dict[str, Any]:
    """The body sent for a stored sync payload. A payload queued before ``ticket_id``
    became the ticketing system's own id (no ``id`` key: its ``ticket_id`` is the internal
    id) is brought to the current shape when it is sent, so a retry or re-drive of it does
    not name the wrong ticket: ``external_ref`` (the caller's id, or "") was the one rule
    ``ticket_submitted_id`` follows.

    A payload queued before ``submitted_by`` gets it as null only where its ``ticket_id``
    is the internal id (no ``external_ref``), which no caller submitted. Where it is a
    caller's id the caller is not in the payload, and null would say there is none, so the
    key stays absent (unknown)."""
    body = dict(payload)
    if "id" not in body:
        internal = body.get("ticket_id")
        body["ticket_id"] = body.get("external_ref") or str(internal)
        body["id"] = internal
    if "submitted_by" not in body and not body.get("external_ref"):
        body["submitted_by"] = None
    return body


def _ticketing_sync_send(delivery: Delivery) -> SendResult:
    # deliveries store their payload and resend it as stored: upgrade an old one's shape
    body = ticketing_sync_body(delivery.payload)
    return ticketing_post(body=body, idempotency_key=delivery.idempotency_key)


def _ticketing_sync_changed(delivery: Delivery, change: DeliveryChange) -> None:
    status = {
        Change.SUCCEEDED: SyncStatus.SUCCESS,
        Change.DEAD: SyncStatus.FAILED,
        Change.RETRYING: SyncStatus.PENDING,
        Change.REDRIVEN: SyncStatus.PENDING,
    }[change.event]
    key = delivery.idempotency_key
    decision_id: int | None
    if key.startswith(VERDICT_KEY_PREFIX):  # a person's verdict on the decision
        decision_id = (
            RoutingFeedback.objects.filter(pk=int(key.removeprefix(VERDICT_KEY_PREFIX)))
            .values_list("decision_id", flat=True)
            .first()
        )
    else:
        decision_id = int(key.removeprefix(DECISION_KEY_PREFIX))
    if decision_id is not None:  # a verdict (or its decision) purged: nothing to mark
        RoutingDecision.objects.filter(pk=decision_id).update(sync_status=status)


def _ticketing_sync_schedule() -> Schedule:
    """Read when each delivery is scheduled, so a settings change applies to the next."""
    delays = ticketing_sync_retry_delays()
    return Schedule(max_attempts=len(delays) + 1, delays=delays, jitter=False)


def ticketing_sync_target_kind() -> TargetKind:
    """Registered in ``RoutingConfig.ready()``."""
    return TargetKind(
        name=TICKETING_SYNC_KIND,
        label="Ticketing system sync",
        send=_ticketing_sync_send,
        schedule=_ticketing_sync_schedule,
        on_change=_ticketing_sync_changed,
        deduplicates=lambda delivery: True,  # the Idempotency-Key header
    )


# --- external status endpoint ---------------------------------------------------------------

STATUS_POLL_KIND = "routing_status_poll"
STATUS_POLL_SECONDS = 60.0  # the beat schedule's (support/settings.py "routing-status-poll")
STATUS_POLL_PURGE_BATCH = 1000


def service_status_poll() -> Delivery | None:
    """Ask the status endpoint once for this minute: a delivery of kind
    ``routing_status_poll`` (idempotent per minute; the engine makes the request, records
    every attempt, retries within the minute and pauses a failing endpoint). None when
    ``ROUTING_STATUS_URL`` is empty, or in the seed format when no service is known yet
    (nothing to ask about). Poll records older than ``ROUTING_STATUS_RECORD_DAYS`` are
    deleted here, a batch at a time."""
    if not settings.ROUTING_STATUS_URL:
        return None
    now = timezone.now()
    _status_records_purge(now)
    if status_feed.status_format() == status_feed.FORMAT_SEED and not (
        ServiceStatus.objects.exists()
    ):
        logger.info("Status endpoint (seed format): no service is known yet, nothing to ask")
        return None
    slot = int(now.timestamp() // STATUS_POLL_SECONDS)
    return delivery_enqueue(
        kind=STATUS_POLL_KIND,
        idempotency_key=f"status-poll-{slot}",
        target_key=urlsplit(settings.ROUTING_STATUS_URL).netloc,
        expires_at=now + timedelta(seconds=STATUS_POLL_SECONDS),
    )


def _status_records_purge(now: datetime) -> int:
    old = Delivery.objects.filter(
        target_kind=STATUS_POLL_KIND,
        created_at__lt=now - timedelta(days=settings.ROUTING_STATUS_RECORD_DAYS),
    ).exclude(status__in=OPEN_STATUSES)
    ids = list(old.values_list("pk", flat=True)[:STATUS_POLL_PURGE_BATCH])
    return Delivery.objects.filter(pk__in=ids).delete()[0] if ids else 0


def service_status_apply(report: status_feed.StatusReport) -> int:
    """Write what the endpoint said onto ServiceStatus / Outage; returns the services
    updated. Each service's open outages with an endpoint id that the answer no longer
    lists are resolved; outages declared by hand (no ``external_id``) are left alone. In
    the seed format a service is only updated (its name stays), never created."""
    now = timezone.now()
    count = 0
    for item in report.services:
        with transaction.atomic():
            if item.name:
                svc, _ = ServiceStatus.objects.update_or_create(
                    service_id=item.service_id,
                    defaults={"name": item.name, "state": item.state},
                )
            else:
                found = ServiceStatus.objects.filter(service_id=item.service_id).first()
                if found is None:  # deleted in the admin since the request
                    continue
                svc = found
                if svc.state != item.state:
                    svc.state = item.state
                    svc.save(update_fields=["state", "updated_at"])
            seen = []
            for outage in item.outages:
                seen.append(outage.external_id)
                Outage.objects.update_or_create(
                    service=svc,
                    external_id=outage.external_id,
                    defaults={
                        "title": outage.title,
                        "is_known_issue": outage.known_issue,
                        "resolved_at": None,
                    },
                )
            Outage.objects.filter(service=svc, resolved_at__isnull=True).exclude(
                external_id=""
            ).exclude(external_id__in=seen).update(resolved_at=now)
        count += 1
    return count


def _status_poll_send(delivery: Delivery) -> SendResult:
    """The engine's send of a poll: the request (``routing.status_feed``), then the answer
    written. The attempt's response summary says what was read and what was skipped."""
    if not settings.ROUTING_STATUS_URL:
        raise DeliveryError(
            "ROUTING_STATUS_URL is not set any more: nothing to poll.",
            outcome=DeliveryOutcome.PERMANENT,
            error_code="not_configured",
        )
    service_ids = list(ServiceStatus.objects.values_list("service_id", flat=True))
    answer = status_feed.status_fetch(service_ids=service_ids)
    if not 200 <= answer.http_status < 300:
        return SendResult(
            http_status=answer.http_status,
            request_summary=answer.request_summary,
            response_summary=answer.response_text,
            error=answer.response_text[:1000],
        )
    report = answer.report
    updated = service_status_apply(report)
    lines = [f"{updated} service(s) updated"]
    if report.overall_health:
        lines.append(f"overall_health: {report.overall_health}")
    if report.skipped:
        lines.append(f"{len(report.skipped)} part(s) skipped:")
        lines += report.skipped[: status_feed.SKIPPED_MAX]
    return SendResult(
        http_status=answer.http_status,
        request_summary=answer.request_summary,
        response_summary="\n".join(lines),
        data={"updated": updated, "skipped": len(report.skipped)},
    )


def _status_poll_schedule() -> Schedule:
    """Two retries within the minute (the next poll asks again anyway)."""
    return Schedule(max_attempts=3, delays=(5.0, 15.0), jitter=False)


def status_poll_target_kind() -> TargetKind:
    """Registered in ``RoutingConfig.ready()``."""
    return TargetKind(
        name=STATUS_POLL_KIND,
        label="Service status poll",
        send=_status_poll_send,
        schedule=_status_poll_schedule,
        deduplicates=lambda delivery: True,  # a read: asking twice changes nothing
    )
