"""The core domain: customers, their channel identities, teams, tickets and the timeline."""

from __future__ import annotations

import re
import uuid

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.core.exceptions import SuspiciousFileOperation
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils.text import get_valid_filename

from support.parsing import safe_file_name


class Channel(models.TextChoices):
    WHATSAPP = "whatsapp", "WhatsApp"
    MESSENGER = "messenger", "Messenger"
    INSTAGRAM = "instagram", "Instagram"
    TWITTER = "twitter", "X (Twitter)"
    EMAIL = "email", "Email"
    WEBCHAT = "webchat", "Web chat"
    CHATBOT = "chatbot", "Chatbot hand-off"
    PHONE = "phone", "Phone"
    API = "api", "API"


#: What a ticket a person opens by hand came by (the workbench's "New ticket", the admin's
#: add page): a call, or anything else (in person, a letter, a chat elsewhere). Replies to
#: either go by e-mail (docs/channels.md); no channel thread is opened by hand.
AGENT_OPENED_CHANNELS = (
    (Channel.PHONE.value, "Phone call"),
    (Channel.API.value, "Other (in person, a letter, elsewhere)"),
)


class VipTier(models.TextChoices):
    NONE = "none", "None"
    SILVER = "silver", "Silver"
    GOLD = "gold", "Gold"
    PLATINUM = "platinum", "Platinum"


class AccountType(models.TextChoices):
    INDIVIDUAL = "individual", "Individual"
    BUSINESS = "business", "Business"
    ENTERPRISE = "enterprise", "Enterprise"


#: ``Customer.external_id`` at most: a longer one is refused, naming it, never cut (two ids
#: that differ past the cut would be one customer).
CUSTOMER_EXTERNAL_ID_MAX_LENGTH = 255


#: A ``customer_id`` string read as this platform's id, with DRF ``IntegerField``'s rules
#: as before customer ids of the caller's own: ASCII digits (``str.isdigit`` would take "٣"
#: and "²"), and what that field read as a number too, a sign and a ".0" ("+5" was customer
#: 5, "-1" a 400): such a string must not quietly become a new customer's own id.
CUSTOMER_PK_TEXT = re.compile(r"[+-]?[0-9]+(?:\.0*)?")


#: An e-mail address's longest (RFC 5321's path less its brackets; Django's ``EmailField``
#: column). Django's validator takes up to 320 characters: inputs check this first.
EMAIL_MAX_LENGTH = 254


class Customer(models.Model):
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(
        blank=True, max_length=EMAIL_MAX_LENGTH, help_text="Primary email address."
    )
    phone = models.CharField(max_length=32, blank=True)
    vip_tier = models.CharField(max_length=16, choices=VipTier.choices, default=VipTier.NONE)
    account_type = models.CharField(
        max_length=16, choices=AccountType.choices, default=AccountType.INDIVIDUAL
    )
    external_id = models.CharField(
        max_length=CUSTOMER_EXTERNAL_ID_MAX_LENGTH,
        blank=True,
        default="",
        db_default="",  # the previous release's workers keep creating customers mid-deploy
        help_text="The customer's id in the caller's own systems (seed 004's customer_id, "
        "e.g. CUST-42): what POST /tickets finds the customer by, and what the external "
        "customer database is asked with. Unique when set; case-sensitive.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Lower("email"), condition=~Q(email=""), name="customer_email_unique_ci"
            ),
            # Also the index of the lookup by external id (a partial one: most customers
            # have none, and ``external_id = 'X'`` implies the condition).
            models.UniqueConstraint(
                fields=["external_id"],
                condition=~Q(external_id=""),
                name="customer_external_id_unique",
            ),
        ]
        indexes = [models.Index(fields=["phone"], name="customer_phone_idx")]

    def __str__(self) -> str:
        return self.name or self.email or f"Customer {self.pk}"

    @property
    def is_vip(self) -> bool:
        return self.vip_tier != VipTier.NONE


class ChannelIdentity(models.Model):
    """How a customer is known on one channel (a WhatsApp number, a page-scoped id…)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identities")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    external_id = models.CharField(max_length=255)
    display_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "channel identities"
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "external_id"], name="channel_identity_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.external_id}"


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="teams")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


#: A tag's name at most (``Tag.name``); a longer one is refused, naming it
#: (``tickets.services.tag_names_normalise``), never cut.
TAG_NAME_MAX_CHARS = 64


class Tag(models.Model):
    name = models.CharField(max_length=TAG_NAME_MAX_CHARS, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TicketStatus(models.TextChoices):
    NEW = "new", "New"
    OPEN = "open", "Open"
    PENDING = "pending", "Pending"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    TicketStatus.NEW: frozenset({"open", "pending", "resolved", "closed"}),
    TicketStatus.OPEN: frozenset({"pending", "resolved", "closed"}),
    TicketStatus.PENDING: frozenset({"open", "resolved", "closed"}),
    TicketStatus.RESOLVED: frozenset({"open", "closed"}),
    TicketStatus.CLOSED: frozenset(),
}


class Priority(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    URGENT = "urgent", "Urgent"


PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}


class Ticket(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="tickets")
    subject = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=TicketStatus.choices, default=TicketStatus.NEW)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.NORMAL)
    # PROTECT: a ticket with no team is visible to every agent (tickets.selectors.
    # ticket_visibility_q), so deleting a team must not empty its tickets' team; its
    # tickets are moved to another team first (the inbox's "Move to team").
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="tickets"
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_tickets",
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="tickets")
    channel = models.CharField(
        max_length=16, choices=Channel.choices, default=Channel.API, help_text="Source channel."
    )
    channel_account_id = models.CharField(
        max_length=64, blank=True, help_text="Which of the channel's accounts it came through."
    )
    origin_platform_id = models.CharField(max_length=255, blank=True)
    origin_caller = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # the unique constraint below starts with it
        help_text=(
            "The API caller whose own ticket id ``origin_platform_id`` is (seed 004's "
            "POST /tickets): unique per caller, so a repeated submission finds this ticket."
        ),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        # nothing looks tickets up by it (a user's deletion scans, a rare admin act): no
        # index to build on a large table or to write on the hottest insert
        db_index=False,
        help_text=(
            "Who opened it through the API or the workbench (an API key's user, a signed-in "
            "agent); empty for a ticket a customer's message, a chatbot or a call opened."
        ),
    )
    is_bot_handoff = models.BooleanField(default=False)
    needs_review = models.BooleanField(
        default=False, help_text="Waiting for a person to check an AI decision."
    )
    correlation_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_tickets"
    )
    first_response_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    waiting_since = models.DateTimeField(
        null=True, blank=True, help_text="Oldest customer message not yet answered."
    )
    # SLA (docs/sla.md): due times in business time from the matching policy, set at
    # creation and recomputed on a priority or team change.
    sla_policy = models.ForeignKey(
        "tickets.SlaPolicy", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Indexed only where the clock runs (``ticket_first_response_due_idx``,
    # ``ticket_resolution_due_idx`` below): a plain index holds every resolved ticket ever.
    first_response_due_at = models.DateTimeField(null=True, blank=True)
    resolution_due_at = models.DateTimeField(null=True, blank=True)
    sla_paused_at = models.DateTimeField(
        null=True, blank=True, help_text="The resolution clock stopped (pending or resolved)."
    )
    sla_paused_seconds = models.PositiveIntegerField(
        default=0, help_text="Business seconds the resolution clock was stopped."
    )
    # The stops themselves (tickets.services.sla: ``{"start", "end", "first_response"}``),
    # so that each policy measures them in its own calendar; ``db_default`` so the
    # previous release's inserts work during a rolling deploy.
    sla_pauses = models.JSONField(
        default=list,
        db_default=[],
        blank=True,
        editable=False,
        help_text="When the SLA clocks were stopped (docs/sla.md).",
    )
    search_vector = SearchVectorField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "-created_at"], name="ticket_status_created_idx"),
            models.Index(fields=["customer", "-created_at"], name="ticket_customer_idx"),
            models.Index(fields=["team", "status"], name="ticket_team_status_idx"),
            models.Index(fields=["assignee", "status"], name="ticket_assignee_status_idx"),
            # The dashboard's resolved-per-day and per-agent figures over a window.
            models.Index(fields=["resolved_at"], name="ticket_resolved_at_idx"),
            # ... and tickets that ended by a close, never resolved (their end is
            # COALESCE(resolved_at, closed_at): tickets.stats.ended_in), a few.
            models.Index(
                fields=["closed_at"],
                name="ticket_closed_unresolved_idx",
                condition=Q(resolved_at__isnull=True, closed_at__isnull=False),
            ),
            GinIndex(fields=["search_vector"], name="ticket_search_idx"),
            # The SLA checker (tickets.services.sla, every minute: most overdue first) and
            # the inbox's and dashboard's breached / at-risk counts (tickets.selectors.
            # sla_due_q): only tickets whose clock runs, a few next to the resolved and
            # closed ones. The conditions are the checker's (FIRST_RESPONSE_OPEN,
            # RESOLUTION_OPEN); a merged ticket is closed, so the status excludes it.
            models.Index(
                fields=["first_response_due_at", "id"],
                name="ticket_first_response_due_idx",
                condition=Q(
                    first_response_due_at__isnull=False,
                    first_response_at__isnull=True,
                    status__in=[TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING],
                ),
            ),
            models.Index(
                fields=["resolution_due_at", "id"],
                name="ticket_resolution_due_idx",
                condition=Q(
                    resolution_due_at__isnull=False,
                    sla_paused_at__isnull=True,
                    status__in=[TicketStatus.NEW, TicketStatus.OPEN],
                ),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(merged_into=models.F("id")), name="ticket_not_merged_into_self"
            ),
            # One ticket per (caller, the caller's ticket id): concurrent submissions of
            # the same id cannot both create one (tickets.services.ticket_create).
            models.UniqueConstraint(
                fields=["origin_caller", "origin_platform_id"],
                condition=Q(origin_caller__isnull=False),
                name="ticket_origin_caller_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.subject}"

    @property
    def number(self) -> str:
        return format_ticket_number(self.pk)

    def can_transition_to(self, status: str) -> bool:
        return status == self.status or status in ALLOWED_TRANSITIONS[self.status]


def format_ticket_number(pk: int | None) -> str:
    return f"T-{pk:06d}" if pk is not None else "T-new"


class CannedResponse(models.Model):
    """A reusable reply managed by supervisors in admin.

    The body may hold placeholders such as ``{{ customer.first_name }}``,
    ``{{ ticket.number }}`` or ``{{ agent.name }}`` (see ``tickets.services``).
    """

    title = models.CharField(max_length=120)
    shortcut = models.SlugField(max_length=40, unique=True, help_text="Typed as /shortcut.")
    body = models.TextField()
    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="canned_responses",
        help_text="Empty: available to every team.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class TicketRead(models.Model):
    """When an agent last opened a ticket (drives the inbox's unread marker)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ticket_reads"
    )
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="reads")
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "ticket"], name="ticket_read_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} read {self.ticket_id} at {self.seen_at:%Y-%m-%d %H:%M}"


class Direction(models.TextChoices):
    INBOUND = "inbound", "Inbound"
    OUTBOUND = "outbound", "Outbound"


class MessageKind(models.TextChoices):
    PUBLIC = "public", "Public"
    INTERNAL_NOTE = "internal_note", "Internal note"
    SYSTEM = "system", "System"


class DeliveryState(models.TextChoices):
    NONE = "", "Not applicable"
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    READ = "read", "Read"
    FAILED = "failed", "Failed"


DELIVERY_RANK = {"": 0, "queued": 1, "sent": 2, "delivered": 3, "read": 4}


#: The longest reply or note an agent may write (the API and the workbench composer).
MESSAGE_BODY_MAX_CHARS = 50_000

#: ``Message.metadata`` key: the ticket an entry was written on, set when a merge first
#: moves it to another ticket and kept through later merges (``tickets.services.ticket_merge``;
#: read by ``tickets.selectors.message_list_written_on`` and
#: ``message_written_on_ticket_get``). Absent: the entry's own ticket.
MESSAGE_WRITTEN_ON_KEY = "written_on_ticket_id"

#: ``Message.metadata`` key: set (true) on the system entry a ticket was opened with when
#: the customer wrote nothing (``ticket_create(system_note=...)``, e.g. an IVR failure):
#: the ticket's subject is then the system's words too, not the customer's, and routing
#: and knowledge suggestions do not read it (``tickets.selectors.ticket_opened_by_system``).
MESSAGE_OPENED_TICKET_KEY = "opened_ticket"


class Message(models.Model):
    """One entry of a ticket's timeline."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=16, choices=Direction.choices)
    kind = models.CharField(max_length=16, choices=MessageKind.choices, default=MessageKind.PUBLIC)
    author_customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="ticket_messages",
    )
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    channel_message_id = models.CharField(max_length=255, null=True, blank=True)
    delivery_status = models.CharField(
        max_length=16, choices=DeliveryState.choices, default=DeliveryState.NONE, blank=True
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    delivery_error = models.TextField(blank=True)
    delivery_error_code = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["ticket", "created_at"], name="message_ticket_idx"),
            # the few replies waiting for their delivery (the channels' reply sweep)
            models.Index(
                fields=["created_at"],
                condition=Q(direction="outbound", kind="public", delivery_status="queued"),
                name="message_reply_queued_idx",
            ),
            # the few replies whose sending failed, by when (the dashboard's health widget)
            models.Index(
                fields=["failed_at"],
                condition=Q(direction="outbound", kind="public", delivery_status="failed"),
                name="message_reply_failed_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "channel_message_id"],
                condition=Q(channel_message_id__isnull=False),
                name="message_channel_id_unique",
            ),
            models.CheckConstraint(
                condition=Q(kind="public") | Q(direction="outbound"),
                name="message_notes_are_outbound",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.kind} on {self.ticket_id}"


class AttachmentKind(models.TextChoices):
    IMAGE = "image", "Image"
    AUDIO = "audio", "Audio"
    VIDEO = "video", "Video"
    DOCUMENT = "document", "Document"
    STICKER = "sticker", "Sticker"
    OTHER = "other", "Other"


def attachment_path(instance: Attachment, filename: str) -> str:
    """Where a file is stored: its own folder, and a name safe for any storage whatever
    the sender called it (``support.parsing.safe_file_name``; Django's storage refuses
    ``..`` and names it cannot derive a file name from)."""
    name = safe_file_name(filename)
    try:
        name = get_valid_filename(name)
    except SuspiciousFileOperation:  # nothing of it is a letter, digit, "-", "_" or "."
        name = "attachment"
    return f"attachments/{instance.message.ticket_id}/{uuid.uuid4().hex}/{name}"


class DownloadStatus(models.TextChoices):
    """Where an attachment's file is: ``stored`` (ours, or nothing to fetch), ``pending``
    (a reference a channel gave, its download queued or to be re-queued by the media
    sweep), ``failed`` (it will not come: ``download_error`` says why)."""

    PENDING = "pending", "Downloading"
    STORED = "stored", "Stored"
    FAILED = "failed", "Could not be downloaded"


#: ``Attachment.download_error`` of a channel's file that came with no address at all.
NOTHING_TO_FETCH = "the channel gave no address to download it from"
#: The longest ``Attachment.download_error`` (words: never a URL with its signature).
DOWNLOAD_ERROR_MAX_CHARS = 500


class Attachment(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to=attachment_path, max_length=500, blank=True)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=127, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    kind = models.CharField(
        max_length=16, choices=AttachmentKind.choices, default=AttachmentKind.OTHER
    )
    external_url = models.URLField(max_length=1000, blank=True)
    external_media_id = models.CharField(max_length=255, blank=True)
    # A channel's file is recorded by reference and fetched after commit
    # (channels_app.services.media): the default is what a file stored at once is, so
    # adding the column cost nothing on a large table.
    download_status = models.CharField(
        max_length=8, choices=DownloadStatus.choices, default=DownloadStatus.STORED
    )
    download_error = models.CharField(max_length=DOWNLOAD_ERROR_MAX_CHARS, blank=True)
    # When a download was last started or queued by the media sweep: the sweep leaves a
    # pending attachment alone for a while after it (a download in progress or queued).
    download_attempted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # the few downloads still to come (the media sweep)
            models.Index(
                fields=["created_at"],
                condition=Q(download_status="pending"),
                name="attachment_pending_idx",
            ),
            # the few that could not be downloaded (the dashboard, support_media_downloads)
            models.Index(
                fields=["created_at"],
                condition=Q(download_status="failed"),
                name="attachment_failed_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.filename


from tickets.context.models import *  # noqa: E402, F403 - customer context models (same app)
from tickets.sla_models import *  # noqa: E402, F403 - SLA policies and events (same app)
