"""What Meta's platforms (WhatsApp Cloud API, Messenger, Instagram) share:
the ``X-Hub-Signature-256`` check, the ``hub.challenge`` handshake and the Graph API."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests
from django.conf import settings
from django.utils import timezone

from channels_app.adapters.base import (
    ChannelAdapter,
    SignatureError,
    WebhookRequest,
    constant_time_equal,
    hmac_sha256,
    http_call,
    provider_message,
)
from support.errors import (
    ErrorKind,
    ExternalAuthError,
    PermanentError,
    RetryableError,
    ThrottledError,
    http_status_kind,
)
from support.outbound import retry_after_from_headers

if TYPE_CHECKING:
    from channels_app.adapters.base import OutboundRequest
    from channels_app.models import ChannelAccount

#: Meta's messaging window: a free-form message may go out only this long after the
#: customer last wrote (WhatsApp's customer-service window, ``WHATSAPP_WINDOW_HOURS``;
#: Messenger's and Instagram's standard messaging window, which ``messaging_type:
#: RESPONSE`` relies on). Outside it Meta refuses the message for good.
META_WINDOW_HOURS = 24


# --- Graph API errors --------------------------------------------------------------------
# Meta says to build error handling on the error's ``code``, not the HTTP status (Graph API
# "Handling Errors"; WhatsApp Cloud API "Error codes"): throttling and temporary failures
# often come as HTTP 400. Codes read nowhere here keep the HTTP status's classification.

#: Throttling codes and how long to wait when the answer names no time (seconds).
GRAPH_THROTTLED: dict[int, float] = {
    4: 300.0,  # application request limit reached (rolling one-hour window)
    17: 300.0,  # user request limit reached
    32: 300.0,  # Page request limit reached
    341: 300.0,  # application limit reached
    613: 300.0,  # calls to this API have exceeded the rate limit
    80001: 300.0,  # business use case limits: Pages
    80002: 300.0,  # Instagram
    80006: 300.0,  # Messenger
    80007: 300.0,  # WhatsApp Business Account rate limit
    130429: 60.0,  # Cloud API message throughput reached
    131056: 6.0,  # pair rate limit: about one message every 6 s to the same number
}
#: Temporary failures: retried with the engine's backoff.
GRAPH_TEMPORARY = frozenset(
    {
        1,  # API unknown (possibly temporary)
        2,  # API service: temporary downtime
        1200,  # Messenger: temporary send message failure
        131000,  # WhatsApp: something went wrong
        131016,  # WhatsApp: service unavailable
        133004,  # WhatsApp: server temporarily unavailable
    }
)
#: Refused because the customer last wrote outside the messaging window:
#: (code, subcode; None: any).
GRAPH_WINDOW_CLOSED = frozenset(
    {
        (131047, None),  # WhatsApp: re-engagement message (more than 24 hours)
        (10, 2018278),  # Messenger: sent outside of the allowed window
        (10, 2534022),  # Instagram: sent outside of the allowed window
    }
)
#: Refused for the account's token, permissions or setup: an administrator must act.
GRAPH_NOT_PERMITTED = frozenset(
    {
        0,  # AuthException
        3,  # WhatsApp: capability or permissions issue
        10,  # permission denied
        102,  # session (token) invalid
        190,  # access token expired or invalid
        368,  # temporarily blocked for policy violations
        131005,  # WhatsApp: access denied
        131031,  # WhatsApp: business account locked
        *range(200, 300),  # permission errors
    }
)
#: The header a throttled Graph API answer may name its wait in: per business object,
#: ``estimated_time_to_regain_access`` in minutes (Graph API "Rate Limiting").
BUSINESS_USAGE_HEADER = "X-Business-Use-Case-Usage"
_CODE_PREFIX = re.compile(r"^\(#\d+\)\s*")


@dataclass(frozen=True)
class GraphError:
    """The ``error`` object of a Graph API error answer."""

    code: int
    subcode: int | None
    words: str  # a sentence for people: provider_message, without Meta's "(#code)"
    transient: bool  # Meta's ``is_transient``


def graph_error_read(text: str) -> GraphError | None:
    """The Graph API error in an answer's body; ``None`` when it holds none with a code."""
    try:
        body: Any = json.loads(text)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    code, subcode = _int_or_none(error.get("code")), _int_or_none(error.get("error_subcode"))
    if code is None:
        return None
    words = _CODE_PREFIX.sub("", provider_message(text)).strip()
    return GraphError(code, subcode, words, error.get("is_transient") is True)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def business_usage_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds until access comes back by ``X-Business-Use-Case-Usage`` (the longest wait
    it names), or ``None``."""
    try:
        usage = json.loads(headers.get(BUSINESS_USAGE_HEADER) or "")
    except ValueError:
        return None
    minutes = [
        float(entry.get("estimated_time_to_regain_access") or 0)
        for entries in (usage.values() if isinstance(usage, dict) else ())
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
        and isinstance(entry.get("estimated_time_to_regain_access"), int | float)
    ]
    wait = max(minutes, default=0.0) * 60.0
    return wait if wait > 0 else None


def graph_url(path: str) -> str:
    base = str(getattr(settings, "META_GRAPH_API_BASE", "https://graph.facebook.com"))
    version = str(getattr(settings, "META_GRAPH_API_VERSION", "v21.0"))
    return f"{base.rstrip('/')}/{version}/{path.lstrip('/')}"


def meta_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac_sha256(secret, body).hex()


class MetaAdapter(ChannelAdapter):
    kept_headers = ("content-type", "user-agent", "x-hub-signature-256")

    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        given = request.header("x-hub-signature-256")
        if not given:
            raise SignatureError("Missing X-Hub-Signature-256 header.", status=401)
        if not account.app_secret:
            raise SignatureError("This account has no app secret configured.", status=403)
        if not constant_time_equal(given, meta_signature(account.app_secret, request.body)):
            raise SignatureError("X-Hub-Signature-256 does not match the body.", status=403)

    def handshake(self, account: ChannelAccount, query: Mapping[str, str]) -> tuple[int, str, str]:
        mode = query.get("hub.mode", "")
        token = query.get("hub.verify_token", "")
        challenge = query.get("hub.challenge", "")
        if mode != "subscribe" or not challenge:
            return 400, "Expected hub.mode=subscribe and hub.challenge.", "text/plain"
        if not account.verify_token or not constant_time_equal(token, account.verify_token):
            return 403, "hub.verify_token does not match.", "text/plain"
        return 200, challenge, "text/plain"

    #: How a refusal outside the window names it, and what it adds (what may be sent now).
    reply_window_name: str = "Meta's messaging window"
    reply_window_hint: str = ""

    def reply_window_hours(self) -> int:
        """How long after the customer's last message a free-form message may go out."""
        return META_WINDOW_HOURS

    def reply_window_open(self, last_inbound_at: datetime | None) -> bool:
        """Within ``reply_window_hours`` of the customer's last message (never: closed)."""
        return last_inbound_at is not None and (
            timezone.now() - last_inbound_at <= timedelta(hours=self.reply_window_hours())
        )

    def reply_window_check(self, outbound: OutboundRequest) -> None:
        """Refuse, before any request, a reply Meta would refuse for good because the
        customer last wrote outside the window: ``PermanentError`` with the reason in words
        and the code ``<channel>_window_closed`` (a dead letter that says why, instead of a
        Graph API error after a request)."""
        if self.reply_window_open(outbound.last_inbound_at):
            return
        raise self.reply_window_closed()

    def reply_window_closed(self, suffix: str = "") -> PermanentError:
        """The refusal of a reply outside the window, in words (also when Meta refused
        it: :meth:`graph_error`)."""
        hint = f" {self.reply_window_hint}" if self.reply_window_hint else ""
        return PermanentError(
            f"Not sent: the customer last wrote more than {self.reply_window_hours()} hours "
            f"ago, outside {self.reply_window_name}.{hint}{suffix}",
            error_code=f"{self.channel}_window_closed",
        )

    #: How the channel is named in errors ("Messenger refused …").
    label: str = "Meta"

    def graph_call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """``http_call`` to the Graph API, its error answers read by :meth:`graph_error`."""
        return http_call(method, url, error_answer=self.graph_error, **kwargs)

    def graph_error(self, response: requests.Response) -> RetryableError | PermanentError | None:
        """A Graph API error answer classified by its ``error.code`` (the module's
        tables): throttling → ``ThrottledError`` (``<channel>_rate_limited``; waiting what
        the answer's headers name, else the code's own time), temporary →
        ``RetryableError`` (``<channel>_temporary_error``), outside the messaging window →
        the refusal :meth:`reply_window_check` gives (``<channel>_window_closed``), the
        token, permissions or setup → ``ExternalAuthError`` (``<channel>_not_permitted``),
        any other code by the HTTP status (Meta's ``is_transient`` retried), the code
        ``http_<status>``. The message is Meta's sentence and the code, never the raw
        body (kept as the attempt's answer). ``None``: no Graph error in the body."""
        found = graph_error_read(response.text)
        if found is None:
            return None
        status = response.status_code
        named = f"{self.label} error {found.code}"
        if found.subcode is not None:
            named += f"/{found.subcode}"
        words = found.words.rstrip(".") if found.words else f"{self.label} gave no reason"
        error: RetryableError | PermanentError
        if {(found.code, found.subcode), (found.code, None)} & GRAPH_WINDOW_CLOSED:
            error = self.reply_window_closed(f" ({named})")
        elif found.code in GRAPH_THROTTLED:
            error = ThrottledError(
                f"{words} ({named}: a rate limit).",
                retry_after=retry_after_from_headers(response.headers)
                or business_usage_wait(response.headers)
                or GRAPH_THROTTLED[found.code],
                error_code=f"{self.channel}_rate_limited",
            )
        elif found.code in GRAPH_TEMPORARY:
            error = RetryableError(
                f"{words} ({named}: a temporary failure).",
                retry_after=retry_after_from_headers(response.headers),
                error_code=f"{self.channel}_temporary_error",
            )
        elif found.code in GRAPH_NOT_PERMITTED:
            error = ExternalAuthError(
                f"{words} ({named}: the channel account's token, permissions or setup; "
                "an administrator must fix it in Meta's settings).",
                error_code=f"{self.channel}_not_permitted",
            )
        else:
            kind = http_status_kind(status)
            if found.transient and kind in (ErrorKind.PERMANENT, ErrorKind.AUTH):
                kind = ErrorKind.RETRYABLE
            message = f"{words} ({named}, HTTP {status})."
            if kind is None:
                return None
            if kind is ErrorKind.THROTTLED:
                error = ThrottledError(
                    message, retry_after=retry_after_from_headers(response.headers)
                )
            elif kind is ErrorKind.RETRYABLE:
                error = RetryableError(
                    message, retry_after=retry_after_from_headers(response.headers)
                )
            elif kind is ErrorKind.AUTH:
                error = ExternalAuthError(message)
            else:
                error = PermanentError(message)
        error.http_status = status
        error.response_text = response.text[:2000]
        return error

    def auth_headers(self, account: ChannelAccount) -> dict[str, str]:
        return {"Authorization": f"Bearer {account.access_token}"}
