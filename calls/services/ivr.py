"""IVR journeys and their escalations (a phone ticket, an event, a Salesforce Task)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction

from calls import ivr
from calls.models import (
    Call,
    Escalation,
    IVRJourney,
    SalesforceObject,
)
from calls.selectors import call_url, customer_for_phone, queue_team
from calls.services.salesforce import salesforce_delivery_create
from support.events import event_record
from tickets.models import Channel, Customer
from tickets.services import customer_get_or_create, ticket_create

logger = logging.getLogger(__name__)


# --- IVR journeys and escalations ------------------------------------------------------------


def call_journey_assess(*, call: Call) -> IVRJourney:
    verdict = ivr.assess(
        call.raw,
        call.attributes,
        reached_agent=call.connected_to_agent_at is not None or bool(call.agent_username),
        queued=bool(call.queue_name),
        disconnect_reason=call.disconnect_reason,
        max_retries=settings.CALLS_IVR_MAX_RETRIES,
    )
    journey, _ = IVRJourney.objects.update_or_create(
        call=call,
        defaults={
            "steps": verdict.steps,
            "outcome": verdict.outcome,
            "failure_kind": verdict.failure_kind,
            "failure_reason": verdict.failure_reason,
        },
    )
    if verdict.failed:
        escalation_create(call=call, kind=verdict.failure_kind, reason=verdict.failure_reason)
    return journey


def _caller(call: Call) -> Customer:
    if call.customer is not None:
        return call.customer
    customer = customer_for_phone(call.customer_phone)
    if customer is None:
        label = call.customer_phone or "unknown number"
        customer, _ = customer_get_or_create(name=f"Caller {label}", phone=call.customer_phone)
    call.customer = customer
    call.save(update_fields=["customer", "updated_at"])
    return customer


def escalation_create(*, call: Call, kind: str, reason: str) -> Escalation:
    """One escalation per (call, failure kind): a phone ticket, an event, a Salesforce Task."""
    try:
        with transaction.atomic():
            escalation = Escalation.objects.create(call=call, kind=kind, reason=reason)
    except IntegrityError:
        return Escalation.objects.get(call=call, kind=kind)
    body = (
        f"IVR failure ({kind}) on call {call.contact_id}.\n{reason}\n"
        f"Caller: {call.customer_phone or 'unknown'} (caller ID, not verified: confirm who "
        f"is calling before discussing the account). Call page: {call_url(call)}"
    )
    ticket = ticket_create(
        customer=_caller(call),
        subject=f"IVR failure: {kind.replace('_', ' ')} ({call.customer_phone or call.contact_id})",
        # the explanation is the system's, not the caller's words: a system entry, which
        # the customer context does not score as the caller's mood
        system_note=body,
        channel=Channel.PHONE,
        tags=["ivr-failure", kind],
        origin_platform_id=call.contact_id,
        # the agents who see the call see its escalation; a call of no single team's queue
        # (most IVR failures: the caller never reached a queue) is every agent's to pick up
        team=queue_team(call.queue_name),
    )
    escalation.ticket = ticket
    escalation.save(update_fields=["ticket", "updated_at"])
    event_record(
        "call.escalated",
        aggregate_type="call",
        aggregate_id=call.pk,
        payload={
            "call_id": call.contact_id,
            "hash": call.hash,
            "kind": kind,
            "reason": reason,
            "ticket_id": ticket.pk,
        },
    )
    if settings.SALESFORCE_ENABLED:
        salesforce_delivery_create(
            key=f"task:{call.contact_id}:{kind}",
            sobject=SalesforceObject.TASK,
            call=call,
            escalation=escalation,
            payload={
                "Subject": f"IVR failure: {kind.replace('_', ' ')}"[:255],
                "Description": body,
                "Priority": "High",
                "Status": "Not Started",
                "CallObject": call.contact_id,
                "CallType": "Inbound",
            },
        )
    return escalation
