"""Which failed POSTs may have reached the other side
(``support.delivery.registry.request_possibly_sent``; review of 2026-12-07): not a
connection never made (refused, connect timeout, a TLS handshake that failed, timed out or
was reset), yes once the request was written (a TLS error, a reset or a timeout while the
answer is awaited). Real failures against a TLS server on localhost, then the fallback for
errors built by hand (test doubles), which carry no traceback to read."""

from __future__ import annotations

import pytest
import requests
import urllib3

from support.delivery.registry import request_possibly_sent
from support.delivery.tests.tls_failures import AFTER_SENDING, BEFORE_SENDING, TlsFailures


@pytest.fixture(scope="module")
def tls_failures(tmp_path_factory: pytest.TempPathFactory) -> TlsFailures:
    return TlsFailures(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("behaviour", [*BEFORE_SENDING, *AFTER_SENDING])
def test_a_real_failure_is_possibly_sent_only_once_the_request_was_written(
    behaviour: str, tls_failures: TlsFailures
) -> None:
    error = tls_failures.post(behaviour)
    sent = behaviour in AFTER_SENDING
    assert (behaviour in tls_failures.received) is sent  # the server's own word
    assert request_possibly_sent(error) is sent


def test_the_type_alone_cannot_tell_a_tls_failure_before_sending_from_one_after(
    tls_failures: TlsFailures,
) -> None:
    """Why the classification reads where the error was raised: both are
    ``requests.exceptions.SSLError`` wrapping a ``MaxRetryError``, and a handshake that
    timed out is a ``ReadTimeout`` as an answer that did not come is."""
    handshake, answer = tls_failures.post("not-tls"), tls_failures.post("bad-record")
    assert type(handshake) is type(answer) is requests.exceptions.SSLError
    assert isinstance(handshake.args[0], urllib3.exceptions.MaxRetryError)
    assert isinstance(answer.args[0], urllib3.exceptions.MaxRetryError)
    hangs, waits = tls_failures.post("handshake-hangs"), tls_failures.post("answer-hangs")
    assert type(hangs) is type(waits) is requests.exceptions.ReadTimeout
    assert (request_possibly_sent(handshake), request_possibly_sent(answer)) == (False, True)
    assert (request_possibly_sent(hangs), request_possibly_sent(waits)) == (False, True)


def _wrapped(reason: Exception) -> urllib3.exceptions.MaxRetryError:
    return urllib3.exceptions.MaxRetryError(None, "/messages", reason)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "sent"),
    [
        (requests.exceptions.ConnectTimeout("Connect timed out"), False),
        (requests.exceptions.ProxyError("Unable to connect to proxy"), False),
        (
            requests.ConnectionError(
                _wrapped(urllib3.exceptions.NewConnectionError(None, "refused"))  # type: ignore[arg-type]
            ),
            False,
        ),
        (
            requests.ConnectionError(
                _wrapped(urllib3.exceptions.NameResolutionError("x", None, OSError()))  # type: ignore[arg-type]
            ),
            False,
        ),
        (requests.exceptions.ReadTimeout("Read timed out."), True),
        (requests.exceptions.ChunkedEncodingError("Connection broken"), True),
        (
            requests.ConnectionError(
                urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError())
            ),
            True,
        ),
        # no traceback says when it failed: counted, as a TLS error after sending is
        (requests.exceptions.SSLError(_wrapped(urllib3.exceptions.SSLError("bad mac"))), True),
    ],
    ids=[
        "connect-timeout",
        "proxy",
        "refused",
        "no-such-host",
        "read-timeout",
        "chunked",
        "reset",
        "tls",
    ],
)
def test_an_error_built_by_hand_is_read_by_its_type(error: Exception, sent: bool) -> None:
    assert request_possibly_sent(error) is sent
