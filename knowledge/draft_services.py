"""Reply drafts on tickets: create one, record what became of it (services write).

- :func:`reply_draft_create`: retrieval for the ticket's conversation, the confidence
  gate, composition (``knowledge.drafts``) and one ``ReplyDraft`` row when a draft is
  offered; the agent's earlier pending drafts on the ticket become ``discarded``.
- :func:`reply_draft_discard`: the agent threw it away (the panel's Discard button).
- :func:`reply_draft_settle`: a public reply by that agent was added to the ticket
  (``message.created``, subscribed in ``KnowledgeConfig.ready``): the pending draft is
  ``accepted`` when the reply is the draft as offered (whitespace aside), ``edited`` when
  it is recognisably the draft changed (word-sequence similarity at least
  ``EDITED_MIN_SIMILARITY``), and ``discarded`` when the agent wrote something else.
  Deciding from the reply actually stored, not from what the browser says, keeps the
  metric honest whatever client sent the reply.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from knowledge import drafts
from knowledge.models import Document, ReplyDraft
from knowledge.selectors import kb_search_conversation, ticket_conversation
from support.errors import InvalidInput, NotFound

EDITED_MIN_SIMILARITY = 0.4


@dataclass
class DraftOffer:
    """What the agent gets: a draft row, or the reason there is none."""

    draft: ReplyDraft | None
    gate: drafts.Gate
    # Links or e-mail addresses a model wrote that no cited article holds, taken out of the
    # text (``[link removed]`` marks each): the panel tells the agent to check the draft.
    links_removed: int = 0


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def draft_similarity(draft_text: str, sent_text: str) -> float:
    """How much of the draft the sent reply kept: 0 (nothing) to 1 (the same words)."""
    a, b = _normalise(draft_text).lower().split(), _normalise(sent_text).lower().split()
    if not a or not b:
        return 0.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _agent_name(user: Any) -> str:
    return (getattr(user, "first_name", "") or "").strip()


def reply_draft_create(*, ticket: Any, user: Any) -> DraftOffer:
    """A draft for the ticket's conversation, or none when no article fits well enough."""
    from knowledge.backends import get_backend
    from knowledge.embeddings import get_embedder

    turns = ticket_conversation(ticket)
    if not any(t.speaker == drafts.CUSTOMER and t.text for t in turns):
        return DraftOffer(None, drafts.Gate(False, 0.0, 0.0, "no_question"))
    results = kb_search_conversation(turns, k=drafts.CANDIDATES, customer_id=ticket.customer_id)
    # Names a provider must not see: for the model, or a Titan embedder scoring sentences.
    provider = drafts.get_drafter()
    names: tuple[str, ...] = ()
    if provider.name != "local" or get_backend().sends_text or get_embedder().sends_text:
        from tickets.context.privacy import customer_redaction_names

        names = tuple(customer_redaction_names(ticket.customer_id))
    draft = drafts.draft_compose(
        turns,
        results,
        channel=ticket.channel,
        customer_name=ticket.customer.name if ticket.customer_id else "",
        agent_name=_agent_name(user),
        redact_names=names,
        drafter=provider,
    )
    if not draft.offered:
        return DraftOffer(None, draft.gate)
    with transaction.atomic():
        ReplyDraft.objects.filter(
            ticket=ticket, user=user, outcome=ReplyDraft.Outcome.PENDING
        ).update(
            outcome=ReplyDraft.Outcome.DISCARDED,
            outcome_at=timezone.now(),
            updated_at=timezone.now(),
        )
        row = ReplyDraft.objects.create(
            ticket=ticket,
            user=user,
            channel=ticket.channel,
            provider=draft.provider,
            model_id=draft.model_id,
            fallback_reason=draft.fallback_reason,
            text=draft.text,
            citations=[c.as_dict() for c in draft.citations],
            score=draft.gate.score,
            margin=draft.gate.margin,
        )
        ids = [c.document_id for c in draft.citations if isinstance(c.document_id, int)]
        if ids:
            row.documents.set(Document.objects.filter(pk__in=ids))
    return DraftOffer(row, draft.gate, links_removed=len(draft.removed_links))


def reply_draft_get(*, ticket: Any, draft_id: str, user: Any) -> ReplyDraft:
    """The draft on this ticket, if it is the user's own (supervisors: anyone's)."""
    from support.auth.roles import is_supervisor
    from support.parsing import parse_id

    pk = parse_id(draft_id)
    draft = ReplyDraft.objects.filter(pk=pk, ticket=ticket).first() if pk is not None else None
    if draft is None or (draft.user_id != user.pk and not is_supervisor(user)):
        raise NotFound(f"No draft {draft_id!r} on this ticket.")
    return draft


def reply_draft_discard(*, draft: ReplyDraft) -> ReplyDraft:
    """The agent discarded the draft (idempotent; a draft already sent cannot be)."""
    if draft.outcome == ReplyDraft.Outcome.DISCARDED:
        return draft
    if draft.outcome != ReplyDraft.Outcome.PENDING:
        raise InvalidInput(
            f"This draft was already {draft.get_outcome_display().lower()}.",
            details={"outcome": ["Already recorded."]},
        )
    draft.outcome = ReplyDraft.Outcome.DISCARDED
    draft.outcome_at = timezone.now()
    draft.save(update_fields=["outcome", "outcome_at", "updated_at"])
    return draft


def reply_draft_settle(*, message_id: int) -> ReplyDraft | None:
    """Settle the author's pending draft on the message's ticket from the reply sent."""
    from tickets.models import Message

    message = (
        Message.objects.filter(pk=message_id)
        .only("id", "ticket_id", "author_user_id", "kind", "direction", "body_text", "created_at")
        .first()
    )
    if (
        message is None
        or message.author_user_id is None
        or message.kind != "public"
        or message.direction != "outbound"
    ):
        return None
    with transaction.atomic():
        draft = (
            ReplyDraft.objects.select_for_update()
            .filter(
                ticket_id=message.ticket_id,
                user_id=message.author_user_id,
                outcome=ReplyDraft.Outcome.PENDING,
                created_at__lte=message.created_at,
            )
            .order_by("-created_at")
            .first()
        )
        if draft is None:  # none pending, or settled already (events come at least once)
            return None
        similarity = draft_similarity(draft.text, message.body_text)
        if _normalise(draft.text) == _normalise(message.body_text):
            outcome = ReplyDraft.Outcome.ACCEPTED
        elif similarity >= EDITED_MIN_SIMILARITY:
            outcome = ReplyDraft.Outcome.EDITED
        else:
            outcome = ReplyDraft.Outcome.DISCARDED
        draft.outcome = outcome
        draft.outcome_at = timezone.now()
        draft.sent_message_id = message.pk
        draft.similarity = round(similarity, 4)
        draft.save(
            update_fields=["outcome", "outcome_at", "sent_message", "similarity", "updated_at"]
        )
    return draft


def on_message_created(event: Any) -> None:
    """``message.created`` subscriber: an agent's public reply may settle a draft."""
    payload = event.payload or {}
    if payload.get("direction") == "outbound" and payload.get("kind") == "public":
        reply_draft_settle(message_id=int(payload["message_id"]))
