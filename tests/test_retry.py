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


def test_no_threading_local_is_left_for_the_cyclic_garbage_collector() -> None:
    """Each call's tenacity state dies by reference count: a threading.local freed by the cyclic GC can
    deadlock CPython 3.11 inside sys._current_frames() (Dask's worker profiler calls it all the time)."""
    import gc
    import threading

    def locals_alive() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, threading.local))

    attempts = {"n": 0}

    def flaky() -> str:
        attempts["n"] += 1
        if attempts["n"] % 2:
            raise TransientError("once", retry_after=0.0)
        return "ok"

    def broken() -> None:
        raise ObjectError("gone")

    gc.collect()
    gc.disable()
    try:
        before = locals_alive()
        for _ in range(50):
            assert call_with_retries(flaky, max_attempts=3, max_wait=0.0) == "ok"
            with pytest.raises(ObjectError):
                call_with_retries(broken, max_attempts=3)
        assert locals_alive() - before < 5
    finally:
        gc.enable()


def test_a_first_attempt_that_succeeds_sets_up_no_retry_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Most calls succeed at once; they must not pay for tenacity's per-call state (the run stage makes one per object)."""
    import migrate.retry as retry

    class NoRetrying:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("a Retrying was built for a call that succeeded at once")

    monkeypatch.setattr(retry, "Retrying", NoRetrying)
    assert call_with_retries(lambda: "ok", max_attempts=5) == "ok"
    with pytest.raises(ObjectError):  # not retryable: raised at once, as tenacity would
        call_with_retries(lambda: (_ for _ in ()).throw(ObjectError("gone")), max_attempts=5)


def test_a_failed_first_attempt_is_attempt_one_of_the_retry_loop() -> None:
    """The first attempt runs before tenacity; its failure still counts as attempt 1 (on_retry, max_attempts)."""
    told: list[tuple[str, int]] = []
    calls: list[int] = []

    def always_failing() -> None:
        calls.append(1)
        raise TransientError(f"reset {len(calls)}")

    with pytest.raises(TransientError, match="reset 3"):
        call_with_retries(always_failing, max_attempts=3, max_wait=0.01, on_retry=lambda exc, attempt: told.append((str(exc), attempt)))
    assert len(calls) == 3
    assert told == [("reset 1", 1), ("reset 2", 2)]
