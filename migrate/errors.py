"""Typed errors, grouped by what happens next.

Every error `migrate` raises on purpose is a `MigrateError`. The class says
what the caller should do with it:

- `UserInputError`: the user gave us something wrong (a plan file, an
  argument). Stop at once, print one line naming the file/line/key, no
  traceback.
- `FatalError`: the environment is wrong for everything (bad credentials,
  missing bucket, server unreachable). Stop at once with one line.
- `TransientError`: worth retrying (timeouts, resets, 5xx, throttling,
  truncated bodies). Only `migrate.retry.is_retryable` decides on retries.
- `ObjectError`: permanent, but only for one object. Recorded on that
  object's record; the run goes on.

Messages never contain secrets: build them from keys, buckets and hosts,
never from credentials or full URLs with tokens. The CLI additionally passes
every message through `migrate.redact.redact` as a last line of defence.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes of the `migrate` command, one place for all of them."""

    OK = 0
    # A bug or something we did not anticipate: the only case with a traceback.
    INTERNAL_ERROR = 1
    # Bad plan file, bad arguments, bad input data: fix the input and rerun.
    USAGE = 2
    # The stage finished but not everything is good: `run` left objects not
    # migrated, or `verify` found mismatches. Distinct from "could not audit".
    INCOMPLETE = 3
    # The environment stopped the stage: credentials, missing bucket,
    # unreachable server, a port in use. Fix the environment and rerun.
    FATAL = 4
    # Ctrl-C: work in flight was finished or left resumable.
    INTERRUPTED = 130


class MigrateError(Exception):
    """Base of every error raised on purpose. `str(err)` is the one-line message."""

    exit_status: ExitStatus = ExitStatus.INTERNAL_ERROR


class UserInputError(MigrateError):
    """Input from the user is wrong; the message says where and what to do."""

    exit_status = ExitStatus.USAGE


class PlanError(UserInputError):
    """A plan file is invalid. Names the file, the line and the key."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, key: str | None = None):
        self.path = path
        self.line = line
        self.key = key
        self.detail = message
        where = ""
        if path:
            where = path if line is None else f"{path}:{line}"
        if key:
            where = f"{where}: {key}" if where else key
        super().__init__(f"{where}: {message}" if where else message)


class FatalError(MigrateError):
    """The environment prevents the whole stage from working."""

    exit_status = ExitStatus.FATAL


class AccessDenied(FatalError):
    """Credentials are missing, wrong, or lack permission."""


class BucketNotFound(FatalError):
    """A bucket named by the plan does not exist."""


class ServiceUnavailable(FatalError):
    """A server could not be reached at all (after retries)."""


class RunLocked(FatalError):
    """Another process holds the run directory's lock (one run per run directory)."""


class StateDirectoryError(FatalError):
    """The state directory cannot be used: not a directory, read-only, full, or its files are corrupt."""


class TransientError(MigrateError):
    """A fault worth retrying: timeouts, resets, 5xx, throttling, truncated bodies.

    One that escapes a stage has used up its retries: the environment
    stopped the stage (exit 4), not a bug.
    """

    exit_status = ExitStatus.FATAL

    def __init__(self, message: str, *, throttled: bool = False, retry_after: float | None = None):
        super().__init__(message)
        # Throttling (429 / SlowDown) lowers the request rate as well as retrying.
        self.throttled = throttled
        # Seconds the server asked us to wait (HTTP Retry-After); the retry loop waits at least this long.
        self.retry_after = retry_after
        # Set by the engine when the fault is a connection failure: which endpoint did not answer.
        self.endpoint: str | None = None


class ObjectError(MigrateError):
    """A permanent failure that concerns one object only; the run goes on."""

    exit_status = ExitStatus.INCOMPLETE


class ObjectNotFound(ObjectError):
    """The object is not (or no longer) at the source."""


class IntegrityError(TransientError):
    """Bytes read do not match the declared size or checksum.

    Retryable: a source read that was cut short or corrupted in flight is a
    failed attempt, never a migrated object. If it persists across retries the
    object is recorded as failed.
    """


class Interrupted(MigrateError):
    """The user pressed Ctrl-C; work is resumable."""

    exit_status = ExitStatus.INTERRUPTED
