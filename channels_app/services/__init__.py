"""Intake and delivery: every write of the channels app goes through these functions.

Inbound: ``inbound_receive`` verifies, checks and records a delivery (the webhook view
answers at once); ``inbound_event_process`` (a task) normalises it and threads it into
tickets through ``tickets.services``. Outbound: ``outbound_delivery_create`` hands a public
reply to the delivery engine (``support.delivery``), which sends it with
``outbound_reply_send``.

One module per concern; this package re-exports the public names that other modules,
tasks and the admin use (``channels_app.services.X`` keeps working). Patch a name in a
test where it is defined and looked up (e.g. ``channels_app.services.drain``), not here.

- ``accounts``: channel accounts and their secrets.
- ``intake``: verify, record, acknowledge a webhook delivery.
- ``drain``: process recorded deliveries (one by one or an account's backlog), failures,
  retries, re-drives, status updates and the sweep.
- ``bulk``: the drain's set-based path for runs of plain messages.
- ``matching``: which customer a sender is; the per-conversation lock.
- ``ingest``: threading one message into a ticket; echoes.
- ``email_auth`` / ``email_threading``: e-mail sender authentication and threading
  (issue #13).
- ``media``: attachments fetched by reference.
- ``webchat_uploads`` / ``staged_uploads``: files web chat visitors send, stored before the
  202; when their staged copies are deleted (after the drain, with their event, hourly).
- ``handoff``: chatbot hand-off.
- ``outbound``: public replies through the delivery engine.
- ``reply_limits``: what one reply may carry on its channel (text length, files).
"""

from __future__ import annotations

from channels_app.services.accounts import (
    SECRET_FIELDS,
    channel_account_settings_update,
    channel_account_upsert,
)
from channels_app.services.drain import (
    DONE_STATUSES,
    DRAIN_BATCH,
    DRAIN_FLAG,
    DRAINER_LEASE,
    DRAINER_RECHECK_FLAG,
    STATUS_RETRIES,
    DrainResult,
    ProcessOutcome,
    inbound_drain_flag_clear,
    inbound_drain_wake,
    inbound_drainer,
    inbound_event_close,
    inbound_event_fail,
    inbound_event_process,
    inbound_event_release,
    inbound_event_reprocess,
    inbound_event_sweep,
    inbound_events_drain,
    inbound_retry_delay,
    inbound_retry_enqueue,
)
from channels_app.services.email_auth import SUSPICIOUS_TAG, EmailQuarantined
from channels_app.services.handoff import chatbot_handoff
from channels_app.services.intake import inbound_receive, webhook_request_build
from channels_app.services.media import (
    attachment_download,
    attachment_download_give_up,
    attachment_downloads_sweep,
)
from channels_app.services.outbound import (
    CHANNEL_REPLY_KIND,
    channel_reply_target_kind,
    outbound_delivery_create,
    outbound_replies_sweep,
    outbound_reply_changed,
    outbound_reply_send,
    outbound_wanted,
)

__all__ = [
    "CHANNEL_REPLY_KIND",
    "DONE_STATUSES",
    "DRAINER_LEASE",
    "DRAINER_RECHECK_FLAG",
    "DRAIN_BATCH",
    "DRAIN_FLAG",
    "SECRET_FIELDS",
    "STATUS_RETRIES",
    "SUSPICIOUS_TAG",
    "DrainResult",
    "EmailQuarantined",
    "ProcessOutcome",
    "attachment_download",
    "attachment_download_give_up",
    "attachment_downloads_sweep",
    "channel_account_settings_update",
    "channel_account_upsert",
    "channel_reply_target_kind",
    "chatbot_handoff",
    "inbound_drain_flag_clear",
    "inbound_drain_wake",
    "inbound_drainer",
    "inbound_event_close",
    "inbound_event_fail",
    "inbound_event_process",
    "inbound_event_release",
    "inbound_event_reprocess",
    "inbound_event_sweep",
    "inbound_events_drain",
    "inbound_receive",
    "inbound_retry_delay",
    "inbound_retry_enqueue",
    "outbound_delivery_create",
    "outbound_replies_sweep",
    "outbound_reply_changed",
    "outbound_reply_send",
    "outbound_wanted",
    "webhook_request_build",
]
