"""One retry policy, in one place.

Stores translate every backend failure into our typed errors
(`migrate.errors`), so a single predicate, `is_retryable`, decides what is
retried. botocore's own retries are switched off in `stores/s3.py`
(total_max_attempts=1) so attempts do not multiply: tenacity here is the only
retry loop.

Throttling (HTTP 429, S3 SlowDown) also lowers the request rate for every
worker through a shared `Throttle`, instead of each worker hammering on.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential
from tenacity.wait import wait_base

from migrate.errors import TransientError

T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool:
    """True for faults worth another attempt: our TransientError family only."""
    return isinstance(exc, TransientError)


class Throttle:
    """A shared pause that grows when the server says "slow down" and decays on success.

    Every request calls `wait()` first. After a throttling answer the pause
    doubles (up to `max_delay`); each success shrinks it, so the rate climbs
    back once the server copes again (additive-increase, multiplicative-decrease
    in spirit).
    """

    def __init__(self, *, initial_delay: float = 0.05, max_delay: float = 5.0):
        self._lock = threading.Lock()
        self._delay = 0.0
        self._initial = initial_delay
        self._max = max_delay
        self.throttle_events = 0

    @property
    def delay(self) -> float:
        return self._delay

    def wait(self) -> None:
        delay = self._delay
        if delay > 0:
            time.sleep(delay * (0.5 + random.random() / 2))

    def on_throttled(self) -> None:
        with self._lock:
            self.throttle_events += 1
            self._delay = min(self._max, max(self._initial, self._delay * 2))

    def on_success(self) -> None:
        if self._delay:
            with self._lock:
                self._delay = self._delay * 0.9 if self._delay > self._initial / 4 else 0.0


#: The longest Retry-After we honour; a server asking for more is waited on this long per attempt.
MAX_RETRY_AFTER = 60.0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP `Retry-After` header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, min(MAX_RETRY_AFTER, float(value)))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, min(MAX_RETRY_AFTER, when.timestamp() - time.time()))


class _WaitHonouringRetryAfter(wait_base):
    """Jittered exponential backoff, but never shorter than the server's Retry-After."""

    def __init__(self, backoff: wait_base):
        self._backoff = backoff

    def __call__(self, retry_state: RetryCallState) -> float:
        delay = self._backoff(retry_state)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        asked = getattr(exc, "retry_after", None)
        return max(delay, asked) if asked else delay


def call_with_retries(
    func: Callable[[], T],
    *,
    max_attempts: int,
    throttle: Throttle | None = None,
    on_retry: Callable[[BaseException, int], None] | None = None,
    max_wait: float = 20.0,
) -> T:
    """Call `func` until it succeeds, retrying `is_retryable` errors with jittered backoff.

    `on_retry(exc, attempt)` is told about each failed attempt that will be
    retried (the journal counts attempts with it).
    """

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            if throttle is not None and getattr(exc, "throttled", False):
                throttle.on_throttled()
            if on_retry is not None:
                on_retry(exc, state.attempt_number)

    retrying = Retrying(
        retry=retry_if_exception(is_retryable),
        stop=stop_after_attempt(max(1, max_attempts)),
        wait=_WaitHonouringRetryAfter(wait_random_exponential(multiplier=0.2, max=max_wait)),
        before_sleep=before_sleep,
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            if throttle is not None:
                throttle.wait()
            result = func()
            if throttle is not None:
                throttle.on_success()
    return result  # type: ignore[possibly-undefined]
