"""Sender authentication from SendGrid Inbound Parse's ``SPF`` and ``dkim`` fields.

SendGrid checks SPF and DKIM itself and posts the results:

- ``SPF``: one word, ``pass`` / ``fail`` / ``softfail`` / ``neutral`` / ``none`` /
  ``temperror`` / ``permerror``, for the SMTP envelope sender (``envelope`` → ``from``);
- ``dkim``: ``{@example.org : pass}``, several as ``{@a.com : pass, @b.com : fail}``, or
  ``none`` when the message carries no signature.

A pass only says something about the domain that was checked, which an attacker picks
(SPF for their own envelope sender, DKIM signed with their own domain). So, as DMARC does,
a pass counts only when its domain is **aligned** with the ``From`` address's domain:
equal, or one a subdomain of the other (``mail.example.org`` / ``example.org``). Sibling
subdomains are not aligned (no public-suffix list here: the conservative side).

**Verdict.** The sender is authenticated when SPF passes for an aligned envelope domain
**or** a DKIM signature of an aligned domain passes. Everything else "fails both": a
missing field, an empty one, ``none``, ``temperror`` and any result we cannot read count
as *not a pass*. So one aligned pass is enough even when the other result is missing, and
a message with both results missing is not authenticated (fail closed: Inbound Parse
always posts both fields, so their absence means something else produced the request).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from support.parsing import json_loads

_DKIM_RESULT = re.compile(r"@([^\s:,{}@]+)\s*:\s*([A-Za-z]+)")
_SPF_RESULT = re.compile(r"^\s*([A-Za-z]+)")


@dataclass(frozen=True)
class SenderAuth:
    """What SPF and DKIM say about a message's ``From`` address."""

    authenticated: bool
    spf: str  # "pass", "fail", …, or "missing"
    dkim: str  # "pass", "fail", "none", "pass for other.test", …, or "missing"

    @property
    def summary(self) -> str:
        """One line for people, e.g. ``SPF fail, DKIM fail``."""
        return f"SPF {self.spf}, DKIM {self.dkim}"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().strip(".").lower() if "@" in address else ""


def domains_aligned(domain: str, from_domain: str) -> bool:
    a, b = domain.strip().strip(".").lower(), from_domain.strip().strip(".").lower()
    return bool(a and b) and (a == b or a.endswith("." + b) or b.endswith("." + a))


def envelope_sender(envelope: str) -> str:
    """The SMTP envelope sender of SendGrid's ``envelope`` JSON field ("" if unreadable)."""
    try:
        data = json_loads(envelope or "", what="The envelope field")
    except ValueError:
        return ""
    sender = data.get("from") if isinstance(data, dict) else None
    return sender.strip().lower() if isinstance(sender, str) else ""


def dkim_results(value: str) -> list[tuple[str, str]] | None:
    """``(domain, result)`` per signature; [] for ``none``; None when missing/unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    found = [(d.lower().strip("."), r.lower()) for d, r in _DKIM_RESULT.findall(text)]
    if found:
        return found
    return [] if text.strip("{} ").lower() == "none" else None


def spf_result(value: str) -> str | None:
    match = _SPF_RESULT.match(value or "")
    return match.group(1).lower() if match else None


def sender_auth(*, from_address: str, spf: str, dkim: str, envelope_from: str) -> SenderAuth:
    """The verdict on one message (see the module docstring for the rule)."""
    from_domain = domain_of(from_address)
    spf_value = spf_result(spf)
    spf_domain = domain_of(envelope_from)
    spf_ok = spf_value == "pass" and domains_aligned(spf_domain, from_domain)
    if spf_value is None:
        spf_text = "missing"
    elif spf_value == "pass" and not spf_ok:
        spf_text = f"pass for {spf_domain or 'an unknown envelope sender'}"
    else:
        spf_text = spf_value
    signatures = dkim_results(dkim)
    dkim_ok = any(r == "pass" and domains_aligned(d, from_domain) for d, r in signatures or [])
    if signatures is None:
        dkim_text = "missing"
    elif not signatures:
        dkim_text = "none"
    else:
        dkim_text = " / ".join(
            result if domains_aligned(domain, from_domain) else f"{result} for {domain}"
            for domain, result in signatures
        )
    return SenderAuth(authenticated=spf_ok or dkim_ok, spf=spf_text, dkim=dkim_text)
