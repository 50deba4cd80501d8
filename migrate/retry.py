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

import errno
import random
import threading
import time
from typing import Callable, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential
from tenacity.wait import wait_base

from migrate.errors import ServiceUnavailable, TransientError

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


def is_connection_failure(exc: BaseException) -> bool:
    """True when the fault is "the endpoint did not answer at all" (refused, reset, aborted, unreachable).

    Stores raise `TransientError ... from` the library error, and the libraries
    (urllib3/botocore, httpcore/httpx, http.client) chain the socket error, so
    walking the cause/context chain finds the OS-level `ConnectionError`
    without this layer importing any client library.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError):  # refused, reset, aborted, broken pipe
            return True
        if isinstance(current, OSError) and current.errno in _UNREACHABLE_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EHOSTUNREACH, errno.ENETUNREACH}

#: Per object, connection failures are retried (beyond max_attempts) for about this long:
#: a restarting server or a short network outage is ridden out.
OUTAGE_BUDGET = 60.0
#: An endpoint that has answered nothing but connection failures, on every
#: worker, for this long is down: the run stops (exit 4) instead of failing objects.
OUTAGE_WINDOW = 30.0


class OutageMonitor:
    """Tells a short outage from an endpoint that is down, across all workers.

    Each connection failure names its endpoint; any success clears that
    endpoint. When an endpoint has had only failures for `window` seconds,
    `failed` raises `ServiceUnavailable` (a `FatalError`): the run stops at
    once, and the objects in flight stay resumable instead of being marked failed.
    """

    def __init__(self, *, window: float = OUTAGE_WINDOW, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._failing_since: dict[str, float] = {}

    def failed(self, endpoint: str) -> None:
        now = self._clock()
        with self._lock:
            since = self._failing_since.setdefault(endpoint, now)
        if now - since >= self.window:
            raise ServiceUnavailable(
                f"{endpoint}: not answering (connection refused or reset on every request for {now - since:.0f}s); "
                "nothing was marked failed: once it is back, rerun the same command to continue"
            )

    def succeeded(self, endpoint: str) -> None:
        if self._failing_since:
            with self._lock:
                self._failing_since.pop(endpoint, None)


class RunStopping(Exception):
    """Raised instead of another attempt when the run is stopping; the object stays resumable."""


def call_with_retries(
    func: Callable[[], T],
    *,
    max_attempts: int,
    throttle: Throttle | None = None,
    on_retry: Callable[[BaseException, int], None] | None = None,
    max_wait: float = 20.0,
    outage_budget: float = 0.0,
    stop: threading.Event | None = None,
) -> T:
    """Call `func` until it succeeds, retrying `is_retryable` errors with jittered backoff.

    `on_retry(exc, attempt)` is told about each failed attempt that will be
    retried (the journal counts attempts with it). With `outage_budget`,
    connection failures (`is_connection_failure`) are retried past
    `max_attempts` until that many seconds have passed since the first
    attempt. With `stop`, a backoff sleep ends early when the event is set
    and `RunStopping` is raised instead of another attempt.
    """
    started = time.monotonic()
    # The first attempt runs outside tenacity: almost every call succeeds at once, and setting up a
    # `Retrying` (its state objects and threading.local) cost ten times what the rest of a small
    # object's bookkeeping does. A retryable failure is replayed to tenacity as its attempt 1, so
    # backoff, `on_retry` and stopping are what they were; any other failure is raised as tenacity would.
    if throttle is not None:
        throttle.wait()
    try:
        result = func()
    except BaseException as exc:  # noqa: BLE001 - re-raised below, or replayed to the retry loop
        if not is_retryable(exc):
            raise
        replay = [exc]
    else:
        if throttle is not None:
            throttle.on_success()
        return result

    def should_stop(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if state.attempt_number < max(1, max_attempts):
            return False
        if outage_budget and exc is not None and is_connection_failure(exc):
            return time.monotonic() - started >= outage_budget
        return True

    def sleep(seconds: float) -> None:
        if stop is None:
            time.sleep(seconds)
        elif stop.wait(seconds):
            raise RunStopping()

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            if throttle is not None and getattr(exc, "throttled", False):
                throttle.on_throttled()
            if on_retry is not None:
                on_retry(exc, state.attempt_number)

    retrying = Retrying(
        retry=retry_if_exception(is_retryable),
        stop=should_stop,
        wait=_WaitHonouringRetryAfter(wait_random_exponential(multiplier=0.2, max=max_wait)),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                if replay:
                    raise replay.pop()
                if throttle is not None:
                    throttle.wait()
                result = func()
                if throttle is not None:
                    throttle.on_success()
    finally:
        # Free tenacity's per-call threading.local by reference count, here: left in a cycle (Retrying ->
        # local -> iter_state -> bound methods, or an exception's traceback), the cyclic GC frees it later,
        # and CPython 3.11 deadlocks when that happens inside sys._current_frames(), which Dask's worker
        # profiler calls every few ms (python/cpython#106883, fixed in 3.11.9). Seen: a Dask worker, every thread in take_gil.
        vars(retrying).pop("_local", None)
    return result  # type: ignore[possibly-undefined]
