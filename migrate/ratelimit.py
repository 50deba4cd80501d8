"""Shared rate limits: bytes per second and requests per second, across all workers.

Like rclone's `--bwlimit` / `--tpslimit`: one token bucket per limit, shared by
every worker of a stage, so the limit holds for the run as a whole whatever
`concurrency` is. Bandwidth is charged as bytes arrive from the source:
every byte written to the destination was read first (bodies are held in
memory, never re-read), so the writes can never outrun the limit either,
and a copy streams at the limit rather than at half of it (a second
bucket on the writes only adds pipeline latency: measured 0.61 of the
limit with it, see bench/limits.py). Requests are charged once per HTTP
request, to either side.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up. `take(n)` blocks until n tokens are paid.

    A take larger than the burst is allowed: it drives the balance negative
    and later takers wait it off, so the long-run rate never exceeds `rate`.
    """

    def __init__(self, rate: float, *, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self._clock = clock
        self._tokens = 0.0  # start empty: the first second is limited too
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self, amount: float, *, stop: threading.Event | None = None) -> None:
        if amount <= 0:
            return
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= amount
            debt = -self._tokens
        if debt > 0:
            wait = debt / self.rate
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)


class RateLimits:
    """The run's limits; a missing limit costs nothing."""

    def __init__(self, *, bytes_per_second: float | None = None, requests_per_second: float | None = None):
        self.bytes_per_second = bytes_per_second
        self.requests_per_second = requests_per_second
        self._reads = self._bytes_bucket(bytes_per_second)
        self.requests = TokenBucket(requests_per_second, burst=1.0) if requests_per_second else None

    @staticmethod
    def _bytes_bucket(rate: float | None) -> TokenBucket | None:
        # A burst of one second (at least 64 KiB): smooth, and a short run is limited from its first byte.
        return TokenBucket(rate, burst=max(rate, 64 * 1024)) if rate else None

    @property
    def active(self) -> bool:
        return self._reads is not None or self.requests is not None

    def request(self, *, stop: threading.Event | None = None) -> None:
        """Pay for one HTTP request."""
        if self.requests is not None:
            self.requests.take(1, stop=stop)

    def read(self, size: int, *, stop: threading.Event | None = None) -> None:
        """Pay for `size` bytes read from the source."""
        if self._reads is not None:
            self._reads.take(size, stop=stop)


UNLIMITED = RateLimits()
