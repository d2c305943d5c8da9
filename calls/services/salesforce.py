"""Salesforce: the Case of an analysed call, the Task of an escalation, each a
``support.delivery`` delivery."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from calls.models import (
    Call,
    CallAnalytics,
    CategoriesBy,
    Escalation,
    PipelineStatus,
    SalesforceObject,
)
from calls.salesforce import SalesforceClient
from calls.selectors import call_redaction_names, call_url
from calls.services.pipeline import _set_status
from support.delivery.models import Delivery
from support.delivery.registry import Change, DeliveryChange, Schedule, SendResult, TargetKind
from support.delivery.selectors import deliveries_for_subject
from support.delivery.services import delivery_enqueue
from support.models import DeliveryStatus
from support.redaction import redact

logger = logging.getLogger(__name__)


def _categories_text(analytics: CallAnalytics) -> str:
    """The Case's categories line: who chose them when the keyword rules did, and "none
    found" rather than a default presented as found."""
    if not analytics.call_categories:
        return "none found"
    text = ", ".join(analytics.call_categories)
    return f"{text} (keyword rules)" if analytics.categories_by == CategoriesBy.RULES else text


def call_salesforce_case(*, call_id: int) -> Delivery | None:
    """Step 3: the Case of an analysed call (when Salesforce is configured), upserted by
    its External ID ``case:<contact>``.

    Seed 002 syncs the Case on every change of the call's record: when the fields differ
    from the call's latest Case delivery (new analytics: a new result or recording, a new
    ``CallAnalytics.version``), a new delivery upserts the same Case; the same fields
    again return that delivery and send nothing. The first delivery's key is the External
    ID itself; later ones add the analytics version and a digest of the fields
    (``case:<contact>:v<version>:<digest>``), so a run repeated at once is one delivery.
    """
    call = Call.objects.select_related("analytics").get(pk=call_id)
    analytics = getattr(call, "analytics", None)
    if analytics is None:
        return None
    if not settings.SALESFORCE_ENABLED:
        return None
    # The summary and topics may quote the transcript word for word (the local TextRank
    # summary is its own sentences, its topics its most weighted terms): redacted like text
    # for a model provider, with the caller's names, and a topic with no letter left out
    # (a number alone is no topic and may be a piece of a card or phone number: "4111").
    # The caller's phone number is not sent: the Subject names the Connect contact, the
    # Description links to the call page.
    names = call_redaction_names(call)
    summary = redact(analytics.call_summary, names=names) or "(no summary)"
    topics = [
        redact(topic, names=names)
        for topic in analytics.topics
        if any(ch.isalpha() for ch in topic)
    ]
    fields = {
        "Subject": f"Phone call {call.contact_id}"[:255],
        "Description": (
            f"{summary}\n\nCategories: {_categories_text(analytics)}\n"
            f"Topics: {', '.join(topics)}\nTranscript: {call_url(call)}"
        ),
        "Origin": "Phone",
        "Status": "New",
        # no category found: no Type (not a made-up "General enquiry")
        "Type": (analytics.call_categories or [""])[0][:40],
    }
    external_id = f"case:{call.contact_id}"
    latest = _case_deliveries(call).first()
    if latest is None:
        key = external_id
    elif latest.payload.get("fields") == fields:
        if latest.status == DeliveryStatus.SUCCEEDED:
            # Nothing new to send and the Case holds these fields: synced (else the call
            # would stay "analysed" and the pipeline sweep start it again and again).
            Call.objects.filter(pk=call.pk, pipeline_status=PipelineStatus.ANALYSED).update(
                pipeline_status=PipelineStatus.SYNCED, pipeline_error="", updated_at=timezone.now()
            )
        return latest
    else:
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
        key = f"{external_id}:v{analytics.version}:{digest[:16]}"
    return salesforce_delivery_create(
        key=key,
        sobject=SalesforceObject.CASE,
        call=call,
        payload=fields,
        external_id=external_id,
        version=analytics.version,
    )


# --- Salesforce deliveries ------------------------------------------------------------------
#
# A Case per analysed call and a Task per escalation, each a ``support.delivery`` delivery
# of kind ``salesforce``. The record is upserted by its External ID
# (``SALESFORCE_EXTERNAL_ID_FIELD``): ``case:<contact>`` / ``task:<contact>:<kind>``, the
# delivery's idempotency key unless the payload names another (a Case's later versions),
# so a retry after a timeout that did reach Salesforce updates the same record instead of
# creating another, and each version of a call's analytics updates the same Case.

SALESFORCE_KIND = "salesforce"


def salesforce_delivery_create(
    *,
    key: str,
    sobject: str,
    call: Call,
    payload: dict[str, Any],
    escalation: Escalation | None = None,
    external_id: str = "",
    version: int | None = None,
) -> Delivery:
    """The record's delivery (one per key; sent after commit). ``external_id``: the
    record's External ID when it is not ``key``."""
    body: dict[str, Any] = {
        "sobject": sobject,
        "fields": payload,
        "call_id": call.pk,
        "escalation_id": escalation.pk if escalation is not None else None,
    }
    if external_id and external_id != key:
        body["external_id"] = external_id
    if version is not None:
        body["version"] = version
    return delivery_enqueue(
        kind=SALESFORCE_KIND,
        idempotency_key=key,
        target_key=urlsplit(settings.SALESFORCE_LOGIN_URL).netloc,
        subject_type="call",
        subject_id=call.pk,
        payload=body,
    )


def salesforce_deliveries(call: Call) -> Any:
    """The call's Salesforce deliveries (Case, Tasks), newest first."""
    return deliveries_for_subject(
        subject_type="call", subject_ids=[call.pk], target_kind=SALESFORCE_KIND
    ).order_by("-created_at", "-id")


def _case_deliveries(call: Call) -> Any:
    """The call's Case deliveries, one per version of its fields, newest first."""
    return (
        deliveries_for_subject(
            subject_type="call", subject_ids=[call.pk], target_kind=SALESFORCE_KIND
        )
        .filter(payload__sobject=SalesforceObject.CASE)
        .order_by("-id")
    )


def _external_id(delivery: Delivery) -> str:
    return str(delivery.payload.get("external_id") or delivery.idempotency_key)


def salesforce_record_send(
    delivery: Delivery, client: SalesforceClient | None = None
) -> SendResult:
    """Upsert one record (the delivery engine calls this with no transaction open).

    A Case delivery still open when a newer version of the same Case was enqueued (its
    retries outlived it: Salesforce was down) sends the newest fields: whichever of them
    is sent last, the Case ends with the latest analytics, never older ones.
    """
    payload = delivery.payload
    external_id = _external_id(delivery)
    fields = dict(payload.get("fields") or {})
    summary: dict[str, Any] = {
        "sobject": payload["sobject"],
        "external_id_field": settings.SALESFORCE_EXTERNAL_ID_FIELD,
        "external_id": external_id,
    }
    if payload.get("sobject") == SalesforceObject.CASE:
        newer = (
            Delivery.objects.filter(
                target_kind=delivery.target_kind,
                subject_type=delivery.subject_type,
                subject_id=delivery.subject_id,
                payload__sobject=SalesforceObject.CASE,
                pk__gt=delivery.pk,
            )
            .order_by("-pk")
            .only("pk", "payload")
            .first()
        )
        if newer is not None:
            fields = dict(newer.payload.get("fields") or {})
            summary["fields_of_delivery"] = newer.pk
    record_id, http_status = (client or SalesforceClient()).upsert(
        str(payload["sobject"]), settings.SALESFORCE_EXTERNAL_ID_FIELD, external_id, fields
    )
    return SendResult(http_status=http_status, external_id=record_id, request_summary=summary)


def _salesforce_changed(delivery: Delivery, change: DeliveryChange) -> None:
    if (
        change.event == Change.SUCCEEDED
        and delivery.payload.get("sobject") == SalesforceObject.CASE
    ):
        call = Call.objects.filter(pk=delivery.payload.get("call_id")).first()
        if call is not None:
            _set_status(call, PipelineStatus.SYNCED)


def _salesforce_schedule() -> Schedule:
    return Schedule(max_attempts=int(settings.SALESFORCE_MAX_ATTEMPTS), base=5.0, cap=900.0)


def salesforce_target_kind() -> TargetKind:
    """Registered in ``CallsConfig.ready()``."""
    return TargetKind(
        name=SALESFORCE_KIND,
        label="Salesforce record",
        send=salesforce_record_send,
        schedule=_salesforce_schedule,
        on_change=_salesforce_changed,
        deduplicates=lambda delivery: True,  # upsert by External ID
    )
