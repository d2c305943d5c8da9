"""Input validation and output shapes; no business logic here."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from tickets.attachments import attachment_url
from tickets.models import (
    CUSTOMER_EXTERNAL_ID_MAX_LENGTH,
    EMAIL_MAX_LENGTH,
    MESSAGE_BODY_MAX_CHARS,
    TAG_NAME_MAX_CHARS,
    AccountType,
    Attachment,
    Channel,
    DownloadStatus,
    Message,
    MessageKind,
    Priority,
    Ticket,
    TicketStatus,
    VipTier,
    format_ticket_number,
)
from tickets.selectors import ticket_last_agent_reply
from tickets.services import customer_external_id_problem, customer_id_is_external


@extend_schema_field({"type": "string", "maxLength": TAG_NAME_MAX_CHARS})
class TagNameField(serializers.CharField):
    """A tag's name. Its length is checked by the services (``tags: '…' is 70 characters
    long; a tag has at most 64 characters.``, ``tickets.services.tag_names_normalise``),
    the one check for every way tags come in; DRF's own would answer a bare "no more than
    64 characters" under the item's index."""


def _tag_list() -> serializers.ListField:
    return serializers.ListField(
        child=TagNameField(),
        required=False,
        max_length=20,
        help_text=f"Tag names, at most {TAG_NAME_MAX_CHARS} characters each (stored trimmed "
        "and in lower case); a longer one is refused naming it, never cut.",
    )


def customer_external_id_parse(data: str) -> str:
    """The caller's own customer id, stripped; a ValidationError says what is wrong."""
    value = data.strip()
    problem = customer_external_id_problem(value)
    if problem is not None:
        raise serializers.ValidationError(
            f"{problem} customer_id is this platform's customer id (digits) or your own "
            f"(printable, at most {CUSTOMER_EXTERNAL_ID_MAX_LENGTH} characters)."
        )
    return value


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1},
            {"type": "string", "minLength": 1, "maxLength": CUSTOMER_EXTERNAL_ID_MAX_LENGTH},
        ]
    }
)
class CustomerIdField(serializers.IntegerField):
    """``customer_id``: this platform's customer id (a JSON integer or a string of digits,
    ``IntegerField``'s rules and errors as before), or any other string: the caller's own
    customer id (``Customer.external_id``, returned as a ``str``; the customer is found or
    created by it)."""

    def to_internal_value(self, data: Any) -> int | str:  # type: ignore[override]
        if customer_id_is_external(data):
            return customer_external_id_parse(data)
        return super().to_internal_value(data)  # type: ignore[no-any-return]

    def run_validators(self, value: Any) -> None:
        if isinstance(value, str):  # the caller's own id: checked as parsed; no min_value
            return
        super().run_validators(value)


def customer_ref_split(attrs: dict[str, Any]) -> dict[str, Any]:
    """``customer_id`` as validated by a ``CustomerIdField``: a ``str`` (the caller's own
    id) moves to ``customer_external_id``, an ``int`` stays."""
    if isinstance(attrs.get("customer_id"), str):
        attrs["customer_external_id"] = attrs.pop("customer_id")
    return attrs


class CustomerInputSerializer(serializers.Serializer):
    # the column's length (Django's validator takes up to 320: a longer one was a 500)
    email = serializers.EmailField(required=False, allow_blank=True, max_length=EMAIL_MAX_LENGTH)
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    phone = serializers.CharField(required=False, allow_blank=True, max_length=32)


class TicketCreateInputSerializer(serializers.Serializer):
    subject = serializers.CharField(max_length=255)
    description = serializers.CharField(
        required=False, allow_blank=True, help_text="The customer's first message."
    )
    customer_id = CustomerIdField(
        required=False,
        min_value=1,
        help_text="This platform's customer id (an integer, or a string of digits), or any "
        "other string: your own customer id (`Customer.external_id`, e.g. `CUST-42`; "
        "stripped, printable, at most 255 characters), the customer found by it or created "
        "with it (named after it, no email).",
    )
    customer = CustomerInputSerializer(required=False)
    channel = serializers.ChoiceField(choices=Channel.choices, default=Channel.API)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    team_id = serializers.IntegerField(required=False, min_value=1)
    tags = _tag_list()
    origin_platform_id = serializers.CharField(required=False, allow_blank=True, max_length=255)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        customer = attrs.get("customer") or {}
        if not attrs.get("customer_id") and not customer.get("email"):
            raise serializers.ValidationError(
                {"customer": ["Give customer_id, or customer.email for a new or known customer."]}
            )
        return customer_ref_split(attrs)


class TicketUpdateInputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=TicketStatus.choices, required=False)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    team_id = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    assignee_id = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    assigned_agent_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="Seed 001's name for `assignee_id` (the same rule); give one of the two.",
    )
    subject = serializers.CharField(required=False, max_length=255)
    tags = _tag_list()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "assigned_agent_id" in attrs:
            alias = attrs.pop("assigned_agent_id")
            if "assignee_id" in attrs and attrs["assignee_id"] != alias:
                raise serializers.ValidationError(
                    {
                        "assigned_agent_id": [
                            "Differs from assignee_id: give one of the two (the same field)."
                        ]
                    }
                )
            attrs["assignee_id"] = alias
        if not attrs:
            raise serializers.ValidationError(
                {"non_field_errors": ["Nothing to change: give at least one field."]}
            )
        return attrs


#: What an agent may add: a reply or a note (also the schema's ``MessageCreateKindEnum``,
#: shared by the JSON and the multipart form: ``SPECTACULAR_SETTINGS``).
MESSAGE_CREATE_KINDS = [MessageKind.PUBLIC, MessageKind.INTERNAL_NOTE]


class MessageCreateInputSerializer(serializers.Serializer):
    body = serializers.CharField(
        max_length=MESSAGE_BODY_MAX_CHARS,
        required=False,
        allow_blank=True,
        default="",
        help_text="The text; may be empty when files are attached (multipart).",
    )
    kind = serializers.ChoiceField(choices=MESSAGE_CREATE_KINDS, default=MessageKind.PUBLIC)


class MessageCreateMultipartSerializer(MessageCreateInputSerializer):
    """The multipart form of a message (its schema only: the files are read by
    ``tickets.services.message_files_read``)."""

    files = serializers.ListField(
        child=serializers.FileField(),
        required=False,
        help_text="Files to attach (repeat the field): at most 10, "
        "TICKET_REPLY_FILES_MAX_BYTES together (20 MB by default), and for a public reply "
        "what the ticket's channel takes (docs/channels.md).",
    )


@extend_schema_serializer(component_name="CustomerOutput")  # its name before seed 001's fields
class TicketCustomerOutputSerializer(serializers.Serializer):
    """A ticket's customer with seed 001's ``internal_id`` and ``channel_identity``; read
    from the ticket (``source="*"``) because the identity is the one on its channel."""

    id = serializers.IntegerField(source="customer.id", read_only=True)
    name = serializers.CharField(source="customer.name", max_length=200)
    email = serializers.EmailField(
        source="customer.email", allow_blank=True, help_text="Primary email address."
    )
    phone = serializers.CharField(source="customer.phone", max_length=32)
    vip_tier = serializers.ChoiceField(source="customer.vip_tier", choices=VipTier.choices)
    account_type = serializers.ChoiceField(
        source="customer.account_type", choices=AccountType.choices
    )
    created_at = serializers.DateTimeField(source="customer.created_at", read_only=True)
    external_id = serializers.CharField(
        source="customer.external_id",
        read_only=True,
        help_text="The customer's id in your own systems (`POST /tickets`' `customer_id` "
        "when it was not this platform's); empty when it has none.",
    )
    internal_id = serializers.SerializerMethodField(
        help_text="Seed 001's name for the customer's id (a string, as in its table)."
    )
    channel_identity = serializers.SerializerMethodField(
        help_text="How the customer is known on the ticket's channel (a WhatsApp number, a "
        "page-scoped id…): the first identity there, or null when it has none."
    )

    def get_internal_id(self, obj: Ticket) -> str:
        return str(obj.customer_id)

    def get_channel_identity(self, obj: Ticket) -> str | None:
        # .all() so that a list's prefetch_related("customer__identities") serves it.
        identities = [i for i in obj.customer.identities.all() if i.channel == obj.channel]
        return min(identities, key=lambda i: i.pk).external_id if identities else None


class AttachmentOutputSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    download_status = serializers.ChoiceField(
        choices=DownloadStatus.choices,
        read_only=True,
        help_text="`stored`: the file is ours (`url`); `pending`: a channel's file still "
        "being downloaded; `failed`: it will not come (`download_error` says why).",
    )
    download_error = serializers.CharField(
        read_only=True, help_text="Why the download failed, in words; empty otherwise."
    )

    class Meta:
        model = Attachment
        fields = [
            "id",
            "filename",
            "content_type",
            "size",
            "kind",
            "url",
            "download_status",
            "download_error",
        ]

    def get_url(self, obj: Attachment) -> str:
        return attachment_url(obj)


class MessageOutputSerializer(serializers.ModelSerializer):
    author = serializers.SerializerMethodField()
    attachments = AttachmentOutputSerializer(many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "direction",
            "kind",
            "author",
            "body_text",
            "body_html",
            "channel",
            "channel_message_id",
            "delivery_status",
            "sent_at",
            "delivered_at",
            "read_at",
            "failed_at",
            "delivery_error",
            "attachments",
            "created_at",
        ]

    def get_author(self, obj: Message) -> dict[str, Any] | None:
        if obj.author_user_id:
            user = obj.author_user
            return {
                "type": "user",
                "id": obj.author_user_id,
                "name": user.get_full_name() or user.get_username() if user else "",
            }
        if obj.author_customer_id:
            return {
                "type": "customer",
                "id": obj.author_customer_id,
                "name": obj.author_customer.name if obj.author_customer else "",
            }
        return None


class MergedIntoOutputSerializer(serializers.Serializer):
    """The ticket a merged ticket went to; both null when the caller may not see that
    ticket (the ticket page's "merged into a ticket you cannot see")."""

    id = serializers.IntegerField(allow_null=True)
    number = serializers.CharField(allow_null=True)


class TicketOutputSerializer(serializers.ModelSerializer):
    """A ticket. ``context["visible_ticket_ids"]`` names the merge targets the caller may
    see (``ticket_output_context`` in the views); any other target is not named."""

    number = serializers.CharField(read_only=True)
    customer = TicketCustomerOutputSerializer(source="*", read_only=True)
    team = serializers.SerializerMethodField()
    assignee = serializers.SerializerMethodField()
    assigned_agent_id = serializers.IntegerField(
        source="assignee_id",
        read_only=True,
        allow_null=True,
        help_text="Seed 001's name for the assignee's id (`assignee.id`).",
    )
    tags = serializers.SerializerMethodField()
    merged_into = serializers.SerializerMethodField(
        help_text="Null unless the ticket was merged into another; then that ticket, or "
        "`{id: null, number: null}` when the caller may not see it."
    )

    class Meta:
        model = Ticket
        fields = [
            "id",
            "number",
            "subject",
            "status",
            "priority",
            "channel",
            "customer",
            "team",
            "assignee",
            "assigned_agent_id",
            "tags",
            "origin_platform_id",
            "is_bot_handoff",
            "needs_review",
            "correlation_id",
            "merged_into",
            "first_response_at",
            "first_response_due_at",
            "resolved_at",
            "resolution_due_at",
            "closed_at",
            "last_message_at",
            "created_at",
            "updated_at",
        ]

    def get_team(self, obj: Ticket) -> dict[str, Any] | None:
        return {"id": obj.team.pk, "name": obj.team.name} if obj.team else None

    def get_assignee(self, obj: Ticket) -> dict[str, Any] | None:
        if obj.assignee is None:
            return None
        return {"id": obj.assignee.pk, "username": obj.assignee.get_username()}

    def get_tags(self, obj: Ticket) -> list[str]:
        return sorted(tag.name for tag in obj.tags.all())

    @extend_schema_field(MergedIntoOutputSerializer(allow_null=True))
    def get_merged_into(self, obj: Ticket) -> dict[str, Any] | None:
        if obj.merged_into_id is None:
            return None
        if obj.merged_into_id not in self.context.get("visible_ticket_ids", ()):
            # merged, into a ticket this caller may not see: said, not named
            return {"id": None, "number": None}
        return {"id": obj.merged_into_id, "number": format_ticket_number(obj.merged_into_id)}


class TicketDetailOutputSerializer(TicketOutputSerializer):
    messages = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField(
        help_text="Who opened it through the API (the API key's user); null for a ticket a "
        "customer's message, a chatbot hand-off or a call opened."
    )

    class Meta(TicketOutputSerializer.Meta):
        fields = [*TicketOutputSerializer.Meta.fields, "created_by", "messages"]

    def get_created_by(self, obj: Ticket) -> str | None:
        return obj.created_by.get_username() if obj.created_by is not None else None

    def get_messages(self, obj: Ticket) -> list[dict[str, Any]]:
        messages = self.context.get("messages", [])
        return list(MessageOutputSerializer(messages, many=True).data)


class TicketCreatedOutputSerializer(serializers.ModelSerializer):
    number = serializers.CharField(read_only=True)

    class Meta:
        model = Ticket
        fields = ["id", "number", "correlation_id", "status", "priority", "created_at"]


class ReplyFileOutputSerializer(serializers.Serializer):
    """A file of the last agent reply, as the hand-off bot's callback lists it."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    content_type = serializers.CharField()
    size = serializers.IntegerField(help_text="Bytes.")
    url = serializers.URLField(help_text="Fetch with a plain GET until `expires_at`.")
    expires_at = serializers.DateTimeField()


class LastAgentReplyOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    body_text = serializers.CharField()
    created_at = serializers.DateTimeField()
    files = ReplyFileOutputSerializer(
        many=True,
        required=False,
        help_text="Only on the hand-off bot's signed poll: the reply's files, each with a "
        "fresh five-minute URL on every poll (docs/channels.md#chatbot-hand-off).",
    )


class TicketStatusOutputSerializer(serializers.ModelSerializer):
    """``context["reply_files"]``: how the caller's credential lists a reply's files
    (``StatusGrant.reply_files``); absent, no files are listed."""

    number = serializers.CharField(read_only=True)
    last_agent_reply = serializers.SerializerMethodField(
        help_text="The last public reply an agent wrote on this ticket (still this ticket's "
        "after a merge moved it away; another ticket's merged in is not), or null."
    )

    class Meta:
        model = Ticket
        fields = ["id", "number", "status", "priority", "updated_at", "last_agent_reply"]

    @extend_schema_field(LastAgentReplyOutputSerializer(allow_null=True))
    def get_last_agent_reply(self, obj: Ticket) -> dict[str, Any] | None:
        message = ticket_last_agent_reply(ticket=obj)
        if message is None:
            return None
        reply: dict[str, Any] = {
            "id": message.pk,
            "body_text": message.body_text,
            "created_at": message.created_at,
        }
        reply_files = self.context.get("reply_files")
        if reply_files is not None:
            reply["files"] = reply_files(message)
        return reply


class TicketMergeInputSerializer(serializers.Serializer):
    into = serializers.CharField(max_length=20, help_text="Target ticket: 123 or T-000123.")
    confirm_customer_merge = serializers.BooleanField(
        default=False,
        help_text="Required (unless a supervisor) when the two tickets belong to different "
        "customers: the source customer's channel identities then move to the target's.",
    )
