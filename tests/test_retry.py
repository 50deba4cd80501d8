"""The one retry policy: what is retried, and how long it waits."""

from __future__ import annotations

from email.utils import formatdate
import time

import pytest

from migrate.errors import ObjectError, TransientError
from migrate.retry import MAX_RETRY_AFTER, call_with_retries, parse_retry_after


def test_parse_retry_after_seconds_date_and_garbage() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("100000") == MAX_RETRY_AFTER
    # A date 30 s ahead (whole seconds) is a wait of at most 30 s, and still ahead
    # however loaded the machine is: no tight lower bound to flake on.
    in_thirty = parse_retry_after(formatdate(time.time() + 30, usegmt=True))
    assert in_thirty is not None and 0.0 < in_thirty <= 30.0


def test_retry_waits_at_least_retry_after() -> None:
    calls: list[float] = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise TransientError("429", throttled=True, retry_after=0.6)
        return "ok"

    assert call_with_retries(flaky, max_attempts=3, max_wait=0.01) == "ok"
    assert len(calls) == 2
    # The backoff alone is capped at 0.01 s here; only Retry-After explains the gap.
    assert calls[1] - calls[0] >= 0.6


def test_permanent_errors_are_not_retried() -> None:
    calls = 0

    def broken() -> None:
        nonlocal calls
        calls += 1
        raise ObjectError("gone")

    with pytest.raises(ObjectError):
        call_with_retries(broken, max_attempts=5)
    assert calls == 1
