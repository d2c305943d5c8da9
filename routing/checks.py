"""System checks of the routing app (``manage.py check``; ``migrate`` runs them too, so a
bad setting fails the release's migrate task before any process starts with it).
Registered in ``RoutingConfig.ready()``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from support.safe_urls import ALLOWED_SCHEMES, MAX_LENGTH, is_http_url

TICKETING_URL_HINT = (
    "Set TICKETING_SYSTEM_URL to the absolute http(s) address routing decisions are POSTed "
    "to (e.g. https://tickets.example.com/api/routing), or leave it empty to switch the "
    "ticketing sync off."
)


def _ticketing_url_problem(url: str) -> str:
    """Why ``url`` is not a URL the sync can POST to, for the message."""
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return "it contains spaces or control characters"
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        return f"it cannot be parsed ({exc})"
    if not url.lower().startswith(tuple(f"{scheme}://" for scheme in ALLOWED_SCHEMES)):
        if "://" in url:
            return f"its scheme is {parts.scheme!r}, not http or https"
        return "it has no scheme: it must start with http:// or https://"
    if not parts.hostname:
        return "it names no host"
    return f"it is over {MAX_LENGTH:,} characters"


def check_ticketing_system_url(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``TICKETING_SYSTEM_URL`` is empty (the sync is off) or an absolute http(s) URL with a
    host and no spaces (``support.safe_urls.is_http_url``). Before this check a malformed
    one surfaced only at the first sync, as a dead letter per decision."""
    url = settings.TICKETING_SYSTEM_URL
    if not url or is_http_url(url):
        return []
    return [
        Error(
            f"TICKETING_SYSTEM_URL {url!r} is not a URL the ticketing sync can POST to: "
            f"{_ticketing_url_problem(url)}.",
            hint=TICKETING_URL_HINT,
            id="routing.E001",
        )
    ]


def check_routing_sources(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The status poll's and the customer database's settings (docs/routing.md): a
    ``ROUTING_STATUS_FORMAT`` the poll does not speak (``routing.E002``), a
    ``ROUTING_STATUS_URL`` or ``ROUTING_CUSTOMER_DB_URL`` that is not empty or an absolute
    http(s) URL (``routing.E003``), a ``ROUTING_CUSTOMER_DB_VIP_TIER`` that is not a VIP
    tier (``routing.E004``). Before these checks each surfaced only as failed polls or
    lookups (recorded, then every minute or every ticket the same)."""
    from routing.status_feed import STATUS_FORMATS, status_format
    from tickets.models import VipTier

    errors: list[CheckMessage] = []
    fmt = status_format()
    if fmt not in STATUS_FORMATS:
        errors.append(
            Error(
                f"ROUTING_STATUS_FORMAT {settings.ROUTING_STATUS_FORMAT!r} is not one of "
                f"{', '.join(STATUS_FORMATS)}.",
                hint='services: GET ROUTING_STATUS_URL answering {"services": [...]}; seed: '
                "seed 004's POST <ROUTING_STATUS_URL>/status/batch.",
                id="routing.E002",
            )
        )
    for name in ("ROUTING_STATUS_URL", "ROUTING_CUSTOMER_DB_URL"):
        url = str(getattr(settings, name))
        if url and not is_http_url(url):
            errors.append(
                Error(
                    f"{name} {url!r} is not an absolute http(s) URL: "
                    f"{_ticketing_url_problem(url)}.",
                    hint=f"Set {name} to an absolute http(s) address, or leave it empty to "
                    "switch it off.",
                    id="routing.E003",
                )
            )
    tiers = [t for t in VipTier.values if t != VipTier.NONE]
    if settings.ROUTING_CUSTOMER_DB_VIP_TIER not in tiers:
        errors.append(
            Error(
                f"ROUTING_CUSTOMER_DB_VIP_TIER {settings.ROUTING_CUSTOMER_DB_VIP_TIER!r} is "
                f"not one of {', '.join(tiers)}.",
                hint="The tier given to a customer the customer database calls VIP without "
                "naming a tier.",
                id="routing.E004",
            )
        )
    return errors


#: A Bedrock cross-region inference profile's prefix and the regions it can be called
#: from (a profile is usable only "from any Region that is included in it").
_PROFILE_AREAS = {"us.": ("us-",), "eu.": ("eu-",), "apac.": ("ap-",)}


def check_bedrock_model_region(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """With Bedrock in use (``AI_PROVIDER`` or ``CALLS_AI_PROVIDER``), a model id that is a
    cross-region inference profile of another area than ``ROUTING_BEDROCK_REGION`` (the
    defaults are ``us.`` profiles; a stack in eu-central-1 cannot call them): every model
    call would fail, routing falling back to the local router and call summaries and
    drafts failing (``routing.W001``; review 2026-12-07). Ids without such a prefix, or
    ``global.`` ones, are not judged."""
    providers = {settings.AI_PROVIDER, settings.CALLS_AI_PROVIDER or settings.AI_PROVIDER}
    if "bedrock" not in providers:
        return []
    region = str(settings.ROUTING_BEDROCK_REGION or "")
    if region.startswith("us-gov-"):
        region = ""  # GovCloud has profiles of its own ("us-gov."): not judged here
    warnings: list[CheckMessage] = []
    for name in ("ROUTING_BEDROCK_MODEL_ID", "ROUTING_BEDROCK_SUMMARY_MODEL_ID"):
        model = str(getattr(settings, name))
        for prefix, regions in _PROFILE_AREAS.items():
            if region and model.startswith(prefix) and not region.startswith(regions):
                warnings.append(
                    Warning(
                        f"{name} {model!r} is a {prefix.rstrip('.')!r} cross-region "
                        f"inference profile, which cannot be called from {region} "
                        "(ROUTING_BEDROCK_REGION): every model call would fail.",
                        hint=f"Set {name} to the profile of {region}'s area (e.g. "
                        "'eu.anthropic…' in eu-*, 'apac.anthropic…' in ap-*), a 'global.' "
                        "profile, or a model id without a prefix; or ROUTING_BEDROCK_REGION "
                        "to a region of the profile's area.",
                        id="routing.W001",
                    )
                )
    return warnings
