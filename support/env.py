"""The one reader of process environment variables.

Every setting comes through here so that defaults are safe locally and
``ENVIRONMENT=prod`` fails fast on anything missing. An unset ``ENVIRONMENT`` is treated
as ``prod`` (DEBUG off, required settings enforced): local development says
``ENVIRONMENT=dev`` explicitly (``make run`` does, and writes it to ``.devdata/env``).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")

_MISSING: list[str] = []
_NO_DEFAULT = object()


def environment_is_set() -> bool:
    return _raw("ENVIRONMENT") is not None


def environment() -> str:
    """dev, test or prod; unset means prod (the safe configuration)."""
    value = (_raw("ENVIRONMENT") or "prod").lower()
    if value not in {"dev", "test", "prod"}:
        raise ImproperlyConfigured(f"ENVIRONMENT must be dev, test or prod, not {value!r}")
    return value


def is_prod() -> bool:
    return environment() == "prod"


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def get_str(name: str, default: str | None = None, *, required_in_prod: bool = False) -> str:
    """A string setting. ``required_in_prod`` ones must be set when ENVIRONMENT=prod."""
    value = _raw(name)
    if value is None:
        if required_in_prod and is_prod():
            _MISSING.append(name)
            return ""
        if default is None:
            return ""
        return default
    return value


def get_bool(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), not {value!r}")


def _parse(name: str, value: str, parser: Callable[[str], T]) -> T:
    try:
        return parser(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid: {value!r} ({exc})") from exc


def get_int(name: str, default: int) -> int:
    value = _raw(name)
    return default if value is None else _parse(name, value, int)


def get_float(name: str, default: float) -> float:
    value = _raw(name)
    return default if value is None else _parse(name, value, float)


def get_list(
    name: str, default: list[str] | None = None, *, required_in_prod: bool = False
) -> list[str]:
    value = _raw(name)
    if value is None:
        if required_in_prod and is_prod():
            _MISSING.append(name)
            return []
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def get_cidr_list(name: str) -> list[str]:
    """A comma list of IP networks (``10.0.0.0/8, 2001:db8::/32``), checked at start-up."""
    import ipaddress

    values = get_list(name, [])
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {value!r} is not an IP network ({exc})") from exc
    return values


LOCAL_MESSAGE_ID_DOMAIN = "support.local"


def message_id_domain_default(site_url: str) -> str:
    """The domain our e-mail Message-IDs end in when none is set: the host of ``site_url``
    (the deployment's own name), or ``support.local`` for a local or numeric address (a
    Message-ID names a domain, and mail filters score one ending in "localhost")."""
    host = (urlsplit(site_url).hostname or "").lower().rstrip(".")
    try:
        ipaddress.ip_address(host)
        return LOCAL_MESSAGE_ID_DOMAIN
    except ValueError:
        pass
    if "." not in host or host.endswith((".localhost", ".local", ".internal")):
        return LOCAL_MESSAGE_ID_DOMAIN
    return host


def check_required() -> None:
    """Raise once, listing every required production setting that is missing."""
    if _MISSING:
        names = ", ".join(sorted(set(_MISSING)))
        if environment_is_set():
            raise ImproperlyConfigured(
                f"ENVIRONMENT=prod but these settings are missing: {names}. "
                "See .env.example and docs/settings.md."
            )
        raise ImproperlyConfigured(
            "ENVIRONMENT is not set, so the production rules apply (DEBUG off, secure "
            f"cookies, HTTPS), and these settings are missing: {names}. Set them (and "
            "ENVIRONMENT=prod), or set ENVIRONMENT=dev for local development "
            "(`make run` does). See .env.example and docs/settings.md."
        )
