"""Amazon SNS HTTPS endpoint support: message signature verification (versions 1 and 2)
and subscription confirmation.

The signing certificate is fetched only from an ``https://sns.<region>.amazonaws.com``
host (the check AWS documents), cached, and must verify the signature over the
canonical string of the message's fields. A message whose ``Timestamp`` is more than
``SNS_MAX_AGE_SECONDS`` (an hour) old is refused: a signature never expires, so an old
message seen anywhere could otherwise be replayed (``support.sns``). The fetch and the
confirmation GET go through :class:`SnsHttp`, a tiny adapter tests replace.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import urlparse

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.core.cache import cache

from support.logging_context import outbound_headers
from support.outbound import body_read_bounded
from support.parsing import without_query_strings
from support.sns import StaleMessage, sns_timestamp_check

SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)


class SnsVerificationError(Exception):
    pass


class SnsHttp:
    """Outbound HTTP for SNS (certificate fetch, subscription confirmation)."""

    timeout = 5.0
    #: A signing certificate (PEM) or a confirmation's XML answer is a few KB.
    max_bytes = 64 * 1024

    def get(self, url: str) -> bytes:
        """The answer, read whole within the timeout and up to ``max_bytes``
        (``support.outbound.body_read_bounded``; past them ``AnswerTooLarge``, a
        ``requests.RequestException`` like every other failure here)."""
        response = requests.get(url, headers=outbound_headers(), timeout=self.timeout, stream=True)
        if not response.ok:
            response.close()
            response.raise_for_status()
        return body_read_bounded(response, max_bytes=self.max_bytes, seconds=self.timeout)


http: SnsHttp = SnsHttp()


def check_sns_url(url: str, what: str) -> None:
    """An https URL on an SNS host, in a form every URL parser reads alike: no
    credentials, no backslash, no white space or control characters (``urlparse`` reads
    ``https://evil\\@sns.…/`` as the SNS host, ``requests`` as ``evil``; the URL is signed
    by SNS, so this is defence in depth)."""
    try:
        parsed = urlparse(url)
        allowed = (
            parsed.scheme == "https"
            and bool(SNS_HOST.match(parsed.hostname or ""))
            and parsed.username is None
            and "\\" not in url
            and url.isprintable()
            and not any(c.isspace() for c in url)
        )
    except ValueError:  # e.g. an unclosed "[" (urlparse raises): not a URL at all
        allowed = False
    if not allowed:
        raise SnsVerificationError(f"{what} must be an https URL on an SNS amazonaws.com host.")


def string_to_sign(message: dict[str, Any]) -> bytes:
    kind = message.get("Type")
    names = NOTIFICATION_FIELDS if kind == "Notification" else CONFIRMATION_FIELDS
    parts = []
    for name in names:
        if name in message and message[name] is not None:
            parts.append(f"{name}\n{message[name]}\n")
        elif name != "Subject":
            raise SnsVerificationError(f"SNS message field {name} is missing.")
    return "".join(parts).encode()


def _topic_region(message: dict[str, Any]) -> str:
    """The region of the message's ``TopicArn`` (``arn:<partition>:sns:<region>:…``)."""
    parts = str(message.get("TopicArn", "")).split(":")
    return parts[3] if len(parts) >= 6 and parts[2] == "sns" else ""


def check_certificate_url(url: str, *, region: str) -> None:
    """A signing certificate is a ``.pem`` file on the SNS host of the topic's own region,
    with no port, credentials or query: anyone who knows an accepted topic can post a
    fresh, unsigned message, and each new URL is fetched once (then cached an hour)."""
    check_sns_url(url, "SigningCertURL")
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        port = -1
    host = (parsed.hostname or "").removesuffix(".cn")
    if (
        not region
        or host != f"sns.{region}.amazonaws.com"
        or port is not None
        or parsed.username is not None
        or parsed.query
        or parsed.fragment
        or not parsed.path.endswith(".pem")
    ):
        raise SnsVerificationError(
            "SigningCertURL must be a .pem file on the SNS host of the topic's region."
        )


def _certificate(url: str) -> x509.Certificate:
    key = f"calls:sns-cert:{url}"
    pem = cache.get(key)
    if pem is None:
        try:
            pem = http.get(url)
        except requests.RequestException as exc:
            raise SnsVerificationError(f"Cannot fetch the signing certificate: {exc}") from exc
        cache.set(key, pem, timeout=3600)
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise SnsVerificationError("The signing certificate is not a PEM certificate.") from exc


def verify(message: dict[str, Any]) -> None:
    """Raise :class:`SnsVerificationError` unless the message is signed by SNS and recent."""
    try:
        sns_timestamp_check(message)  # first: a stale message costs no certificate fetch
    except StaleMessage as exc:
        raise SnsVerificationError(str(exc)) from exc
    version = str(message.get("SignatureVersion", ""))
    if version not in ("1", "2"):
        raise SnsVerificationError(f"Unsupported SignatureVersion {version!r}.")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except binascii.Error as exc:
        raise SnsVerificationError("Signature is not base64.") from exc
    cert_url = str(message.get("SigningCertURL", ""))
    check_certificate_url(cert_url, region=_topic_region(message))
    cert = _certificate(cert_url)
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SnsVerificationError("The signing certificate has no RSA key.")
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS v1
    try:
        public_key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature as exc:
        raise SnsVerificationError("The SNS signature does not verify.") from exc


def confirm_subscription(message: dict[str, Any]) -> None:
    url = str(message.get("SubscribeURL", ""))
    check_sns_url(url, "SubscribeURL")
    try:
        http.get(url)
    except requests.RequestException as exc:
        # the URL's Token confirms (or undoes) the subscription: not into the stored error
        raise SnsVerificationError(
            f"Subscription confirmation failed: {without_query_strings(str(exc))}"
        ) from exc
