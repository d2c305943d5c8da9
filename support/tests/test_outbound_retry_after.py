"""How long a throttled answer asks us to wait (``support.outbound.retry_after_from_headers``):
``Retry-After`` first, else the reset of the rate limit that ran out (X's
``x-rate-limit-reset`` and 24-hour caps, SendGrid's ``X-RateLimit-Reset``: Unix seconds)."""

from __future__ import annotations

import pytest
from requests.structures import CaseInsensitiveDict

from support.outbound import retry_after_from_headers

NOW = 1_780_000_000.0


def test_retry_after_wins() -> None:
    headers = {"Retry-After": "7", "x-rate-limit-reset": str(int(NOW) + 900)}
    assert retry_after_from_headers(headers, now=NOW) == 7.0


@pytest.mark.parametrize(
    "headers",
    [
        {"x-rate-limit-limit": "15", "x-rate-limit-remaining": "0", "x-rate-limit-reset": "X"},
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "X"},  # SendGrid
        {"X-Rate-Limit-Reset": "X"},  # no remaining given: the reset still counts
    ],
)
def test_the_reset_of_a_used_up_limit_is_waited_for(headers: dict[str, str]) -> None:
    headers = {k: v.replace("X", str(int(NOW) + 900)) for k, v in headers.items()}
    assert retry_after_from_headers(CaseInsensitiveDict(headers), now=NOW) == 901.0


def test_the_longest_used_up_limit_decides_and_one_with_calls_left_does_not() -> None:
    headers = {
        "x-rate-limit-remaining": "3",
        "x-rate-limit-reset": str(int(NOW) + 60),
        "x-user-limit-24hour-remaining": "0",
        "x-user-limit-24hour-reset": str(int(NOW) + 7200),
    }
    assert retry_after_from_headers(headers, now=NOW) == 7201.0


def test_a_reset_in_the_past_is_no_wait_and_a_small_one_is_seconds() -> None:
    assert retry_after_from_headers({"x-rate-limit-reset": str(int(NOW) - 5)}, now=NOW) == 0.0
    assert retry_after_from_headers({"X-RateLimit-Reset": "30"}, now=NOW) == 30.0


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-rate-limit-reset": "soon"}, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}],
)
def test_nothing_readable_is_none(headers: dict[str, str]) -> None:
    assert retry_after_from_headers(headers, now=NOW) is None
