"""Realistic SendGrid Inbound Parse posts (``multipart/form-data``, the fields SendGrid
sends, ``headers`` as the sender's mail carried them) for the e-mail intake tests."""

from __future__ import annotations

import json
from typing import Any

from channels_app.fixtures import Fixture, signed_headers
from channels_app.models import ChannelAccount
from channels_app.tests.conftest import post_raw

BOUNDARY = "xYzZY"
INBOUND_ADDRESS = "support@inbound.acme.test"
JANE = "Jane Doe <jane.doe@example.org>"
UTF8_CHARSETS = json.dumps(
    {"to": "UTF-8", "html": "UTF-8", "subject": "UTF-8", "from": "UTF-8", "text": "UTF-8"}
)


def form(fields: dict[str, str | bytes]) -> bytes:
    out = b""
    for name, value in fields.items():
        raw = value.encode() if isinstance(value, str) else value
        out += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + raw
            + b"\r\n"
        )
    return out + f"--{BOUNDARY}--\r\n".encode()


def inbound_mail(
    *,
    frm: str = JANE,
    subject: str = "Order 1234 arrived broken",
    text: str | bytes = "The mug is broken.",
    msgid: str = "<first@mail.example.org>",
    extra_headers: str = "",
    envelope_from: str | None = None,
    charsets: str = UTF8_CHARSETS,
    html: str | None = None,
) -> bytes:
    """One mail as Inbound Parse posts it; SPF and DKIM pass for the From domain."""
    addr = frm.split("<")[-1].rstrip(">").strip()
    domain = addr.split("@")[-1]
    headers = (
        f"From: {frm}\nTo: {INBOUND_ADDRESS}\nSubject: {subject}\nMessage-ID: {msgid}\n"
        f"Date: Wed, 27 Jul 2016 14:53:05 -0600\nMIME-Version: 1.0\n{extra_headers}"
    )
    fields: dict[str, str | bytes] = {
        "headers": headers,
        "from": frm,
        "to": INBOUND_ADDRESS,
        "subject": subject,
        "text": text,
        "SPF": "pass",
        "dkim": f"{{@{domain} : pass}}",
        "envelope": json.dumps(
            {"to": [INBOUND_ADDRESS], "from": addr if envelope_from is None else envelope_from}
        ),
        "charsets": charsets,
    }
    if html is not None:
        fields["html"] = html
    return form(fields)


def post_mail(client: Any, capture: Any, account: ChannelAccount, body: bytes) -> None:
    """Post to the account's webhook and run what is committed (the drain, its tasks)."""
    fixture = Fixture(
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        body=body,
        session=None,
    )
    with capture(execute=True):
        response = post_raw(client, account, body, signed_headers(account, fixture))
    assert response.status_code == 200, response.content
