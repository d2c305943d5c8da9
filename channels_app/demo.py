"""The channels part of ``load_demo``: a demo mailbox, so replies on the demo's e-mail
tickets (and on API, phone and chatbot hand-off tickets, which are answered by e-mail) go
out through the real outbound path and land as files a newcomer can open.

The mailbox is an ordinary e-mail ``ChannelAccount`` whose transport is ``local_files``
(``adapters/email/local_files.py``): each reply is a delivery of the delivery engine, sent
by the e-mail adapter and recorded attempt by attempt, and written as an ``.eml`` file
under ``EMAIL_FILE_PATH`` (``.devdata/mail/`` under ``make run``) instead of being posted
to SendGrid. Nothing leaves the machine. The demo's other channels (WhatsApp, Messenger,
Instagram, X, web chat) get no account: nothing local can stand for those providers, so
their replies keep failing with "No … account is configured; not sent."

Only this step creates the mailbox (no migration does); it is skipped where an e-mail
account is already configured (a real mailbox is used as it is) and under
``ENVIRONMENT=prod``, where the transport is refused.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import transaction

from channels_app.adapters.email.outgoing import TRANSPORT_LOCAL_FILES, TRANSPORT_SETTING
from channels_app.models import ChannelAccount
from channels_app.services import channel_account_settings_update, channel_account_upsert
from tickets.demo import DEMO_TAG, SLA_DEMO_TAG
from tickets.models import Channel, Ticket

DEMO_MAILBOX_NAME = "Demo mailbox (local files)"
DEMO_MAILBOX_ADDRESS = "support@example.com"
DEMO_MAILBOX_SETTINGS = {
    TRANSPORT_SETTING: TRANSPORT_LOCAL_FILES,
    "from_email": DEMO_MAILBOX_ADDRESS,
    "from_name": "Support Desk (demo)",
}


def load_demo_channels(progress: Callable[[str], None] = print) -> None:
    """Create the demo mailbox once and attach the demo's e-mail tickets to it (those not
    attached to an account yet). Idempotent."""
    mailbox = ChannelAccount.objects.filter(channel=Channel.EMAIL, name=DEMO_MAILBOX_NAME).first()
    if mailbox is None:
        if settings.ENVIRONMENT == "prod":
            progress("channels: no demo mailbox with ENVIRONMENT=prod")
            return
        if ChannelAccount.objects.filter(channel=Channel.EMAIL, is_active=True).exists():
            progress("channels: an e-mail account is configured; no demo mailbox")
            return
        with transaction.atomic():  # never an account without its transport (SendGrid)
            mailbox = channel_account_upsert(
                channel=Channel.EMAIL, name=DEMO_MAILBOX_NAME, external_id=DEMO_MAILBOX_ADDRESS
            )
            channel_account_settings_update(mailbox, DEMO_MAILBOX_SETTINGS)
        progress(
            f"channels: {DEMO_MAILBOX_NAME}: replies by e-mail go to {settings.EMAIL_FILE_PATH}"
        )
    attached = Ticket.objects.filter(
        pk__in=Ticket.objects.filter(
            tags__name__in=[DEMO_TAG, SLA_DEMO_TAG], channel=Channel.EMAIL
        ).values("pk"),
        channel_account_id="",
    ).update(channel_account_id=str(mailbox.pk))
    if attached:
        progress(f"channels: {attached} demo e-mail tickets on {DEMO_MAILBOX_NAME}")
