"""Recorded webhook fixtures: load one and sign it for a given account.

A fixture is ``adapters/<channel>/fixtures/<name>.json`` (or ``.txt`` for multipart):
``{"headers": {...}, "body": "<exact body text>"}``. The body is byte-exact as the
provider sent it; signatures in fixtures are recomputed here with the account's secret
because the provider's real secret is unknown.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from django.core import signing

from channels_app.adapters.meta.common import meta_signature
from channels_app.adapters.twitter.adapter import x_signature
from channels_app.adapters.webchat.adapter import SESSION_HEADER, SESSION_SALT
from channels_app.models import ChannelAccount

ADAPTERS_DIR = Path(__file__).resolve().parent / "adapters"


@dataclass(frozen=True)
class Fixture:
    headers: dict[str, str]
    body: bytes
    session: dict[str, str] | None = None


def fixture_path(channel: str, name: str) -> Path:
    folder = ADAPTERS_DIR / channel / "fixtures"
    for candidate in (folder / name, folder / f"{name}.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"No fixture {name!r} in {folder}")


def fixture_load(channel: str, name: str) -> Fixture:
    data = json.loads(fixture_path(channel, name).read_text(encoding="utf-8"))
    body = data["body"]
    raw = base64.b64decode(data["body_base64"]) if "body_base64" in data else body.encode()
    return Fixture(headers=dict(data.get("headers", {})), body=raw, session=data.get("session"))


def fixture_names(channel: str) -> list[str]:
    return sorted(p.stem for p in (ADAPTERS_DIR / channel / "fixtures").glob("*.json"))


def signed_headers(account: ChannelAccount, fixture: Fixture) -> dict[str, str]:
    """The fixture's headers with the signature recomputed for ``account``."""
    headers = {k: v for k, v in fixture.headers.items()}
    lowered = {k.lower() for k in headers}
    if account.channel in ("whatsapp", "messenger", "instagram"):
        headers = {k: v for k, v in headers.items() if k.lower() != "x-hub-signature-256"}
        headers["X-Hub-Signature-256"] = meta_signature(account.app_secret, fixture.body)
    elif account.channel == "twitter":
        headers = {k: v for k, v in headers.items() if k.lower() != "x-twitter-webhooks-signature"}
        headers["X-Twitter-Webhooks-Signature"] = x_signature(account.consumer_secret, fixture.body)
    elif account.channel == "webchat":
        claims = {"a": account.pk, **(fixture.session or {"v": "v_fixture"})}
        headers = {k: v for k, v in headers.items() if k.lower() != SESSION_HEADER}
        headers["X-Webchat-Session"] = signing.dumps(claims, salt=SESSION_SALT)
    elif account.channel == "email" and "authorization" not in lowered:
        token = base64.b64encode(f"sendgrid:{account.inbound_token}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers
