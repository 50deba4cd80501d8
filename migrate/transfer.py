"""The `run` stage: stream every planned object to S3, concurrently and resumably.

Design (the why):

- **Bounded memory.** Bytes go from the source response into one buffer per
  object (small objects) or per part (multipart) and straight into the PUT;
  nothing touches disk. A `ByteBudget` of `concurrency x part_size` bytes is
  reserved by the *submitting* thread, in manifest order, before each task is
  queued, so peak memory is bounded by design whatever the object sizes, and
  parts are granted memory in part order (see `_MultipartJob.hash_in_order`
  for why that order matters).
- **Checksums while streaming.** MD5 (comparable with a plain-MD5 source
  eTag and sent as Content-MD5, which every S3 implementation checks) and
  SHA-256 (sent as x-amz-checksum-sha256, per part for multipart) are
  computed as bytes pass. A read whose bytes disagree with the declared size
  or eTag is a failed attempt, never a migrated object.
- **Resume.** The journal is written before and after each object and part.
  A multipart upload found in the journal continues from its last completed
  part, cross-checked with ListParts; uploads we started and no longer need
  are aborted.
- **One retry loop.** `migrate.retry.call_with_retries` (tenacity) around
  each source read and each destination write; botocore's own retries are
  off. Throttling slows every worker down through a shared `Throttle`.
- **Faults by consequence.** `FatalError` (credentials, missing bucket)
  stops the run at once; `ObjectError` and exhausted `TransientError`s are
  recorded on the object and the run goes on.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import signal
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

from migrate.checksums import (
    CHECKSUM_SIZES,
    FULL_OBJECT_ALGORITHMS,
    MIN_PART_SIZE,
    Digests,
    MiB,
    checksums_fit,
    choose_part_size,
    combine_part_checksums,
    full_object_algorithm,
    is_plain_md5,
    multipart_etag,
)
from migrate.encryption import Encryption, EncryptionSettings
from migrate.errors import FatalError, IntegrityError, Interrupted, MigrateError, ObjectError, ObjectNotFound, TransientError, UserInputError
from migrate.journal import STATE_DONE, STATE_SKIPPED, CompletedPart, JournalRow, TransferJournal, record_fingerprint, sent_headers_json
from migrate.metadata import metadata_problems
from migrate.progress import NullProgress, Progress
from migrate.records import ObjectRecord
from migrate.ratelimit import RateLimits
from migrate.retry import OUTAGE_BUDGET, OUTAGE_WINDOW, OutageMonitor, RunStopping, Throttle, call_with_retries, is_connection_failure
from migrate.stores.base import ObjectInfo, SourceStore
from migrate.stores.s3 import ConditionalWriteFailed, S3Store, UploadGone

log = logging.getLogger(__name__)

CONFLICT_POLICIES = ("skip", "overwrite", "fail")

#: Tests only: `MIGRATE_TEST_KILL_AT=<step>` makes the process SIGKILL itself at that
#: protocol step, so a kill-loop test can hit the narrow windows (e.g. between
#: CreateMultipartUpload and the journal write) deterministically.
KILL_STEPS = ("after-create-multipart", "after-first-part", "after-complete", "after-put", "after-probe-write")


def _crash_point(step: str) -> None:
    if os.environ.get("MIGRATE_TEST_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class TransferOptions:
    """How `run` moves bytes. Filled from the plan's `transfer` and `destination` sections."""

    concurrency: int = 16
    part_size: int = 16 * MiB
    multipart_threshold: int = 64 * MiB
    max_attempts: int = 5
    # "SHA256", "CRC32", "CRC32C" or "CRC64NVME" (awscrt); None sends Content-MD5 only. Multipart
    # objects carry a full-object CRC instead of SHA-256 (see `full_object_algorithm`).
    checksum_algorithm: str | None = "SHA256"
    server_side_encryption: str | None = None
    kms_key_id: str | None = None
    # Per-rule SSE overrides (rule name -> (sse, kms key)); the two fields above are the default.
    encryption_by_rule: Mapping[str, Encryption] = field(default_factory=dict)
    on_conflict: str = "skip"
    # Whether the destination honours If-None-Match: * (then skip/fail need no
    # HEAD before each write). None: find out with one probe per run.
    conditional_writes: bool | None = None
    # In-flight object data is capped here too: concurrency x part_size, but
    # no more than this (large objects need a few parts in flight, not 16).
    max_memory: int = 96 * MiB
    # transfer.max_bandwidth (bytes/s, source reads and destination writes
    # each) and transfer.max_requests_per_second, across all workers.
    max_bandwidth: int | None = None
    max_requests_per_second: float | None = None
    # Connection failures of one object are retried for about `outage_budget`
    # seconds; an endpoint failing every request for `outage_window` seconds stops the run.
    outage_budget: float = OUTAGE_BUDGET
    outage_window: float = OUTAGE_WINDOW

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UserInputError(f"--workers / transfer.concurrency must be at least 1, got {self.concurrency}")
        if self.part_size < MIN_PART_SIZE:
            raise UserInputError(f"transfer.part_size must be at least 5 MiB (S3's minimum part size), got {self.part_size}")
        if self.on_conflict not in CONFLICT_POLICIES:
            raise UserInputError(f"destination.on_conflict must be one of {', '.join(CONFLICT_POLICIES)}")
        if self.checksum_algorithm is not None and self.checksum_algorithm not in CHECKSUM_SIZES:
            raise UserInputError(f"transfer.checksum_algorithm must be one of {', '.join(CHECKSUM_SIZES)}")

    def encryption_for(self, rule: str | None) -> Encryption:
        """(sse, kms key id) for an object matched by `rule`: the rule's, else the destination's."""
        return EncryptionSettings((self.server_side_encryption, self.kms_key_id), self.encryption_by_rule).for_rule(rule)

    @property
    def memory_budget(self) -> int:
        """Bytes of object data in flight at most: concurrency x part size, capped by max_memory.

        Never below one part (or one whole object below the threshold), so any
        object can always move.
        """
        return max(min(self.concurrency * self.part_size, self.max_memory), self.part_size, self.multipart_threshold)


@dataclass(frozen=True)
class TransferFailure:
    source_bucket: str
    source_key: str
    dest_key: str | None
    error: str


@dataclass
class TransferResult:
    """What a run did. `ok` is True only when every planned object is at the destination."""

    planned: int = 0
    already_done: int = 0
    copied: int = 0
    skipped_existing: int = 0
    bytes_copied: int = 0
    failures: list[TransferFailure] = field(default_factory=list)
    aborted_uploads: int = 0
    resumed_parts: int = 0
    interrupted: bool = False
    elapsed: float = 0.0
    throttle_events: int = 0
    # Multipart uploads that vanished at the destination (NoSuchUpload) and were started again, once each.
    restarted_uploads: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures and not self.interrupted


class ByteBudget:
    """A counting semaphore over bytes: caps object data held in memory."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._available = capacity
        self._cond = threading.Condition()
        self.peak_in_use = 0

    def acquire(self, amount: int, *, stop: threading.Event | None = None) -> int:
        amount = min(max(amount, 1), self.capacity)
        with self._cond:
            while self._available < amount:
                if stop is not None and stop.is_set():
                    raise _Cancelled()
                self._cond.wait(timeout=0.2)
            self._available -= amount
            self.peak_in_use = max(self.peak_in_use, self.capacity - self._available)
        return amount

    def release(self, amount: int) -> None:
        with self._cond:
            self._available += amount
            self._cond.notify_all()


class _Cancelled(Exception):
    """Work skipped because the run is stopping; the object stays resumable."""


class SourceChanged(ObjectError):
    """The source object is not the one the plan listed (size or eTag changed)."""


SOURCE_CHANGED = "changed at the source since the plan"
#: The CLI names the plan file in the exact command (see cli.cmd_run).
REPLAN_HINT = "re-plan it with `migrate run --replan` and the plan file"


# -- multipart bookkeeping -------------------------------------------------
class _MultipartJob:
    """One multipart object in flight: its parts, and the whole-object digests computed in part order."""

    def __init__(self, record: ObjectRecord, upload_id: str, part_size: int, completed: dict[int, CompletedPart], algorithm: str | None):
        self.record = record
        self.upload_id = upload_id
        self.part_size = part_size
        self.part_count = max(1, math.ceil(record.size / part_size))
        self.completed: dict[int, CompletedPart] = dict(completed)
        self.resumed_parts = len(completed)
        # The whole-object MD5/SHA-256 need every byte in order; after a resume
        # the parts sent earlier are not read again, so only per-part checksums
        # (checked by S3 on upload) vouch for them.
        self.whole = Digests(None, md5=is_plain_md5(record.source_etag)) if not completed else None
        self._next_to_hash = 1
        self._cond = threading.Condition()
        self.failed: MigrateError | None = None
        self.finished = False
        self.algorithm = algorithm
        # The headers CreateMultipartUpload carried (`sent_headers_json`), for the journal.
        self.sent_headers: str | None = None

    def pending_parts(self) -> list[int]:
        return [n for n in range(1, self.part_count + 1) if n not in self.completed]

    def part_range(self, part_number: int) -> tuple[int, int]:
        offset = (part_number - 1) * self.part_size
        return offset, min(self.part_size, self.record.size - offset)

    def hash_in_order(self, part_number: int, data: bytearray) -> None:
        """Feed this part into the whole-object digests once every earlier part has been.

        Deadlock-free because memory for parts is granted, and tasks queued,
        in part order: the lowest unhashed part always holds its memory and
        is running.
        """
        if self.whole is None:
            return
        with self._cond:
            while self._next_to_hash != part_number:
                if self.failed is not None:
                    raise _Cancelled()
                self._cond.wait(timeout=0.5)
            self.whole.update(data)
            self._next_to_hash += 1
            self._cond.notify_all()

    def fail(self, error: MigrateError) -> bool:
        """Mark the job failed; True for the first failure (the one to record)."""
        with self._cond:
            first = self.failed is None
            if first:
                self.failed = error
            self._cond.notify_all()
            return first

    def part_done(self, part: CompletedPart) -> bool:
        """Record a part; True when it was the last one missing."""
        with self._cond:
            self.completed[part.part_number] = part
            if len(self.completed) == self.part_count and not self.finished and self.failed is None:
                self.finished = True
                return True
            return False


# -- the engine --------------------------------------------------------------
class Transfer:
    """Moves records from a source store to an S3 destination. Use `transfer_objects`."""

    def __init__(
        self,
        *,
        source: SourceStore,
        destination: S3Store,
        journal: TransferJournal,
        options: TransferOptions,
        progress: Progress,
        stop: threading.Event,
    ):
        self.source = source
        self.destination = destination
        self.journal = journal
        self.options = options
        self.progress = progress
        self.stop = stop
        self.throttle = Throttle()
        self.limits = RateLimits(bytes_per_second=options.max_bandwidth, requests_per_second=options.max_requests_per_second)
        self.outage = OutageMonitor(window=options.outage_window)
        self.budget = ByteBudget(options.memory_budget)
        self.result = TransferResult()
        self._lock = threading.Lock()
        self._fatal: FatalError | None = None
        self._slots = threading.BoundedSemaphore(options.concurrency * 2)
        self._pool = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="migrate-transfer")
        self._futures: set[Future[None]] = set()
        self.conditional_writes = False
        # Multipart uploads carry a full-object CRC (the plan's, or CRC64NVME for SHA256).
        self.part_algorithm = full_object_algorithm(options.checksum_algorithm)
        # Objects whose upload vanished (NoSuchUpload): restarted once, from the submitting thread.
        self._restart: list[tuple[_MultipartJob, bool]] = []
        self._restarted: set[tuple[str, str]] = set()

    def _probe_conditional_writes(self, bucket: str) -> bool:
        """Does the destination refuse an If-None-Match: * write to an existing key? One probe object, deleted after.

        The probe key is journaled (committed) before it is written and
        forgotten once it is deleted, so a run killed mid-probe leaves a key
        that `remove_stray_probes` deletes at the next start: no object
        outside the plan stays at the destination.
        """
        if self.options.conditional_writes is not None:
            return self.options.conditional_writes
        if self.options.on_conflict == "overwrite":
            return False
        key = f".migrate-probe-{uuid.uuid4().hex}"
        self.journal.add_probe(bucket, key)
        if os.environ.get("MIGRATE_TEST_KILL_AT") == "after-probe-write":
            stub = ObjectRecord(source_bucket=bucket, source_key=key, size=0)
            self.destination.put_object(bucket, key, b"", content_md5=hashlib.md5(b"").digest(), **self._write_args(stub, None))
            _crash_point("after-probe-write")
        supported = self.destination.supports_conditional_writes(bucket, key)
        self._delete_probe(bucket, key)
        return supported

    def remove_stray_probes(self) -> None:
        """Delete probe objects an earlier, killed run may have left (their keys were journaled first)."""
        for bucket, key in self.journal.probes():
            self._delete_probe(bucket, key)

    def _delete_probe(self, bucket: str, key: str) -> None:
        stub = ObjectRecord(source_bucket=bucket, source_key=key, size=0)
        try:
            self._retry(lambda: self.destination.delete_object(bucket, key), stub)
        except ObjectNotFound:
            pass
        except ObjectError as err:
            log.warning("could not delete the probe object s3://%s/%s: %s", bucket, key, err)
            return
        self.journal.forget_probe(bucket, key)

    # -- bookkeeping -------------------------------------------------------
    @contextmanager
    def _talking_to(self, endpoint: str) -> Iterator[None]:
        """One request to `endpoint`: paid for under the request-rate limit; its connection failures name the endpoint."""
        self.limits.request(stop=self.stop)
        try:
            yield
        except TransientError as exc:
            if exc.endpoint is None and is_connection_failure(exc):
                exc.endpoint = endpoint
            raise
        self.outage.succeeded(endpoint)

    def _retry(self, func: Callable[[], Any], record: ObjectRecord) -> Any:
        """`func` under the one retry policy; connection failures feed the outage monitor (which may stop the run)."""

        def attempt() -> Any:
            try:
                return func()
            except TransientError as exc:
                if exc.endpoint is not None:
                    self.outage.failed(exc.endpoint)  # raises ServiceUnavailable once the endpoint is down
                raise

        return call_with_retries(
            attempt,
            max_attempts=self.options.max_attempts,
            throttle=self.throttle,
            on_retry=lambda exc, attempt_number: self._note_retry(record, exc, attempt_number),
            outage_budget=self.options.outage_budget,
            stop=self.stop,
        )

    def _note_retry(self, record: ObjectRecord, exc: BaseException, attempt: int) -> None:
        log.info("retrying %s/%s after attempt %d: %s", record.source_bucket, record.source_key, attempt, exc)
        self.journal.add_attempt(record, str(exc))

    def _record_failure(self, record: ObjectRecord, error: BaseException, *, upload_id: str | None = None) -> None:
        """Record a per-object failure (aborting its upload), or stop the run on a fatal one.

        Not a failure of the object: the run stopping (Ctrl-C, a fatal error
        elsewhere) or an endpoint outage; the object stays in progress and
        the next run resumes it.
        """
        if isinstance(error, FatalError):
            with self._lock:
                if self._fatal is None:
                    self._fatal = error
            self.stop.set()
            return
        if isinstance(error, (RunStopping, _Cancelled)):
            return
        if self.stop.is_set() and isinstance(error, TransientError) and error.endpoint is not None:
            return
        message = str(error) if isinstance(error, MigrateError) else f"unexpected {type(error).__name__}: {error}"
        if upload_id is not None:
            # The run ends with this object failed: no upload of ours stays behind (the next run starts it afresh).
            self._abort_upload(record, upload_id)
        self.journal.failed(record, message, keep_upload=False)
        with self._lock:
            self.result.failures.append(TransferFailure(record.source_bucket, record.source_key, record.dest_key, message))
        self.progress.advance(objects=1)

    def _submit(self, reserve: int, func: Callable[..., None], *args: Any) -> None:
        """Reserve memory and a queue slot (blocking, in submission order), then queue `func`."""
        granted = self.budget.acquire(reserve, stop=self.stop) if reserve else 0
        while not self._slots.acquire(timeout=0.2):
            if self.stop.is_set():
                self.budget.release(granted)
                raise _Cancelled()

        def task() -> None:
            try:
                func(*args)
            finally:
                if granted:
                    self.budget.release(granted)
                self._slots.release()

        future = self._pool.submit(task)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _write_args(self, record: ObjectRecord, source: ObjectInfo | None) -> dict[str, Any]:
        """The write's settings: the record's headers on top of the source's as read (`source_headers`)."""
        sse, kms_key_id = self.options.encryption_for(record.rule)
        return {
            **source_headers(record, source, headers_on_read=source is not None and self.source.headers_on_read),
            "storage_class": record.storage_class,
            "sse": sse,
            "kms_key_id": kms_key_id,
        }

    def _conflict_check(self, record: ObjectRecord, owned: bool) -> bool:
        """Apply the conflict policy before writing. True: go ahead (with If-None-Match when not overwriting).

        Where the destination honours conditional writes, no HEAD is needed:
        the write itself answers 412 when the key exists (see `_settle_existing`).
        """
        if owned or self.options.on_conflict == "overwrite" or self.conditional_writes:
            return True
        assert record.dest_bucket and record.dest_key
        existing = self._head_destination(record)
        if existing is None:
            return True
        self._settle_existing(record, existing)
        return False

    def _settle_existing(self, record: ObjectRecord, existing: ObjectInfo | None = None) -> None:
        """The destination already has the key and the policy forbids overwriting: done, skipped, or failed."""
        assert record.dest_bucket and record.dest_key
        if existing is None:
            existing = self._head_destination(record)
        if existing is not None and existing.size == record.size and is_plain_md5(record.source_etag) and existing.etag == record.source_etag:
            # Exactly the planned bytes are already there (e.g. written by a run
            # killed before its journal caught up): migrated, under every policy.
            self.journal.done(record, sha256=None, md5=record.source_etag, dest_etag=existing.etag, dest_checksum=None, checksum_algorithm=None, deferred=True)
        elif self.options.on_conflict == "skip":
            etag = existing.etag if existing is not None else None
            self.journal.done(record, sha256=None, md5=None, dest_etag=etag, dest_checksum=None, checksum_algorithm=None, state=STATE_SKIPPED, deferred=True)
        else:
            raise ConditionalWriteFailed(
                f"s3://{record.dest_bucket}/{record.dest_key}: already exists and destination.on_conflict is 'fail'; "
                "remove it, or set on_conflict to skip or overwrite"
            )
        with self._lock:
            self.result.skipped_existing += 1
        self.progress.advance(objects=1, bytes_done=record.size)

    def _head_source(self, record: ObjectRecord) -> ObjectInfo:
        """HEAD the source object (its headers, for a write that starts before its bytes are read)."""

        def head() -> ObjectInfo | None:
            with self._talking_to(self.source.endpoint):
                return self.source.head(record.source_bucket, record.source_key)

        info: ObjectInfo | None = self._retry(head, record)
        what = f"{record.source_bucket}/{record.source_key}"
        if info is None:
            raise SourceChanged(f"{what}: {SOURCE_CHANGED} (gone); {REPLAN_HINT}")
        self._check_source(record, info.size, info.etag, iter(()))
        return info

    def _head_destination(self, record: ObjectRecord) -> ObjectInfo | None:
        assert record.dest_bucket and record.dest_key

        def head() -> ObjectInfo | None:
            with self._talking_to(self.destination.endpoint):
                return self.destination.head(record.dest_bucket, record.dest_key)  # type: ignore[arg-type]

        return self._retry(head, record)  # type: ignore[no-any-return]

    def _check_source(self, record: ObjectRecord, size: int, etag: str | None, chunks: Iterator[bytes]) -> None:
        """Refuse a source object that is not the planned one; the response is closed so its connection goes back."""
        what = f"{record.source_bucket}/{record.source_key}"
        changed = None
        if size >= 0 and size != record.size:
            changed = f"size {size}, planned {record.size}"
        elif record.source_etag and etag and etag != record.source_etag:
            changed = "eTag differs"
        if changed is not None:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            raise SourceChanged(f"{what}: {SOURCE_CHANGED} ({changed}); {REPLAN_HINT}")

    # -- small objects -----------------------------------------------------
    def copy_whole(self, record: ObjectRecord, owned: bool) -> None:
        if self.stop.is_set():
            return
        try:
            if not self._conflict_check(record, owned):
                return
            conditional = not owned and self.options.on_conflict != "overwrite"
            outcome = self._retry(lambda: self._copy_whole_attempt(record, conditional), record)
        except ConditionalWriteFailed:
            try:
                self._settle_existing(record)
            except BaseException as err:  # noqa: BLE001 - recorded on the object
                self._record_failure(record, err)
            return
        except _Cancelled:
            return
        except BaseException as err:  # noqa: BLE001 - recorded on the object
            self._record_failure(record, err)
            return
        _crash_point("after-put")
        sha256, md5, etag, checksum, sent = outcome
        self.journal.done(
            record,
            sha256=sha256,
            md5=md5,
            dest_etag=etag,
            dest_checksum=checksum[1] if checksum else None,
            checksum_algorithm=checksum[0] if checksum else None,
            deferred=True,
            sent_headers=sent,
        )
        with self._lock:
            self.result.copied += 1
            self.result.bytes_copied += record.size
        self.progress.advance(objects=1, bytes_done=record.size)

    def _read_source(self, record: ObjectRecord, body: bytearray, digests: Digests, *, offset: int = 0, length: int | None = None) -> ObjectInfo:
        """Read the object (or a range) into `body`, hashing as it arrives, under the rate limits."""
        what = f"{record.source_bucket}/{record.source_key}"
        with self._talking_to(self.source.endpoint):
            info, chunks = self.source.open(record.source_bucket, record.source_key, offset=offset, length=length)
            # A range's length is not the object's size: ranges compare the eTag only.
            self._check_source(record, info.size if length is None else record.size, info.etag, chunks)
            view = memoryview(body) if length is not None else None
            received = 0
            for chunk in chunks:
                self.limits.read(len(chunk), stop=self.stop)
                if view is not None:
                    if received + len(chunk) > len(body):
                        raise IntegrityError(f"{what}: range at {offset} returned more than {len(body)} bytes")
                    view[received : received + len(chunk)] = chunk
                else:
                    body += chunk
                received += len(chunk)
                digests.update(chunk)
        if length is not None and received != length:
            raise IntegrityError(f"{what}: range at {offset} returned {received} of {length} bytes")
        return info

    def _copy_whole_attempt(self, record: ObjectRecord, conditional: bool) -> tuple[str, str, str, tuple[str, str] | None, str]:
        digests = Digests(self.options.checksum_algorithm)
        body = bytearray()
        info = self._read_source(record, body, digests)
        what = f"{record.source_bucket}/{record.source_key}"
        if len(body) != record.size:
            raise IntegrityError(f"{what}: read {len(body)} bytes, the source declares {record.size}")
        md5_hex = digests.md5.hexdigest()
        if is_plain_md5(record.source_etag) and md5_hex != record.source_etag:
            raise IntegrityError(f"{what}: bytes read do not match the source eTag (MD5 {md5_hex}, eTag {record.source_etag})")
        checksum = digests.s3_checksum()
        assert record.dest_bucket and record.dest_key
        write_args = self._write_args(record, info)
        with self._talking_to(self.destination.endpoint):
            etag = self.destination.put_object(
                record.dest_bucket,
                record.dest_key,
                body if body else b"",  # type: ignore[arg-type]
                content_md5=digests.md5.digest(),
                checksum=checksum,
                if_none_match=conditional,
                sha256_hex=digests.sha256.hexdigest(),
                **write_args,
            )
        return digests.sha256.hexdigest(), md5_hex, etag, checksum, _sent(write_args)

    # -- multipart ---------------------------------------------------------
    def start_multipart(self, record: ObjectRecord, owned: bool, previous: JournalRow | None) -> None:
        """Create or resume the upload (in the submitting thread), then queue its parts in order."""
        assert record.dest_bucket and record.dest_key
        part_size = choose_part_size(record.size, self.options.part_size)
        completed: dict[int, CompletedPart] = {}
        upload_id: str | None = None
        source_info: ObjectInfo | None = None
        try:
            if self.source.headers_on_read:
                # One HEAD per large object: its headers go on CreateMultipartUpload, before any part is read.
                source_info = self._head_source(record)
            sent = _sent(self._write_args(record, source_info))
            if previous is not None and previous.upload_id and previous.part_size:
                upload_id, part_size, completed = self._resume(record, previous)
                if upload_id is None and self._is_our_completed_upload(record, previous):
                    return
            if upload_id is None:
                if not self._conflict_check(record, owned):
                    return
                upload_id = self._create_upload(record, source_info)
                self.journal.set_upload(record, upload_id, part_size)
        except BaseException as err:  # noqa: BLE001
            self._record_failure(record, err, upload_id=upload_id)
            return
        assert upload_id is not None
        job = _MultipartJob(record, upload_id, part_size, completed, self.part_algorithm)
        job.sent_headers = sent
        with self._lock:
            self.result.resumed_parts += job.resumed_parts
        if completed:
            self.progress.advance(bytes_done=sum(p.size for p in completed.values()))
        pending = job.pending_parts()
        if not pending:
            job.finished = True
            self._submit(0, self._complete, job, owned)
            return
        for part_number in pending:
            if job.failed is not None:
                return
            _, length = job.part_range(part_number)
            self._submit(length, self._copy_part, job, part_number, owned)

    def _create_upload(self, record: ObjectRecord, source_info: ObjectInfo | None) -> str:
        """CreateMultipartUpload, journaled as an intent first; a retried create leaves no second upload behind."""
        assert record.dest_bucket and record.dest_key
        self.journal.intend_upload(record)
        attempts = 0

        def create() -> str:
            nonlocal attempts
            attempts += 1
            with self._talking_to(self.destination.endpoint):
                return self.destination.create_multipart_upload(
                    record.dest_bucket,  # type: ignore[arg-type]
                    record.dest_key,  # type: ignore[arg-type]
                    checksum_algorithm=self.part_algorithm,
                    full_object=self.part_algorithm in FULL_OBJECT_ALGORITHMS,
                    **self._write_args(record, source_info),
                )

        upload_id: str = self._retry(create, record)
        _crash_point("after-create-multipart")
        if attempts > 1:
            # An earlier attempt may have created an upload whose answer was lost.
            self._abort_strays(record.dest_bucket, record.dest_key, keep=upload_id, record=record)
        return upload_id

    def _abort_strays(self, bucket: str, key: str, *, keep: str | None, record: ObjectRecord) -> None:
        """Abort every in-progress upload under exactly `key` except `keep` (ours and current)."""
        def listing() -> list[tuple[str, str]]:
            with self._talking_to(self.destination.endpoint):
                return self.destination.list_multipart_uploads(bucket, key)

        uploads = self._retry(listing, record)
        for upload_key, upload_id in uploads:
            if upload_key == key and upload_id != keep:
                self._abort_upload(record, upload_id, bucket=bucket, key=key)

    def sweep_upload_intents(self) -> None:
        """At start: uploads created by a run killed before it journaled their UploadId are found and aborted."""
        for row in self.journal.intended_uploads():
            stub = ObjectRecord(source_bucket=row.source_bucket, source_key=row.source_key, size=row.size)
            try:
                self._abort_strays(row.dest_bucket, row.dest_key, keep=row.upload_id, record=stub)
            except (ObjectError, TransientError) as err:
                log.warning("could not list the multipart uploads of %s: %s", row.dest_key, err)
                continue
            self.journal.clear_intent(row.source_bucket, row.source_key)

    def _resume(self, record: ObjectRecord, previous: JournalRow) -> tuple[str | None, int, dict[int, CompletedPart]]:
        """Parts both the journal and ListParts agree on; (None, ...) when the upload is gone."""
        assert previous.upload_id and previous.part_size and record.dest_bucket and record.dest_key
        def listing() -> dict[int, dict[str, Any]]:
            with self._talking_to(self.destination.endpoint):
                return self.destination.list_parts(record.dest_bucket, record.dest_key, previous.upload_id)  # type: ignore[arg-type]

        try:
            remote = self._retry(listing, record)
        except (UploadGone, ObjectNotFound):
            # ObjectNotFound too: S3 answers a vanished upload with 404 NoSuchUpload.
            return None, choose_part_size(record.size, self.options.part_size), {}
        local = self.journal.parts(previous.upload_id)
        if not checksums_fit(self.part_algorithm, [part.checksum for part in local.values()]):
            # Started by a version that sent another part checksum (SHA-256 composite): S3 would
            # refuse the rest of the parts, so that upload is dropped and the object starts afresh.
            self._abort_upload(record, previous.upload_id)
            return None, choose_part_size(record.size, self.options.part_size), {}
        agreed = {
            number: part
            for number, part in local.items()
            if number in remote and remote[number]["etag"] == part.etag and remote[number]["size"] == part.size
        }
        log.info("resuming %s/%s: %d of its parts already uploaded", record.source_bucket, record.source_key, len(agreed))
        return previous.upload_id, previous.part_size, agreed

    def _is_our_completed_upload(self, record: ObjectRecord, previous: JournalRow) -> bool:
        """The journaled upload is gone: did it complete (a kill after CompleteMultipartUpload, before the journal saw it)?

        The destination object is ours when its size is the planned size and
        its ETag (MD5 of the part MD5s, "-N") or full-object CRC is the one
        the journaled parts make: exactly the bytes this run sent. Then it is
        migrated under every conflict policy, `fail` included.
        """
        assert previous.upload_id and record.dest_bucket and record.dest_key
        parts = [part for _, part in sorted(self.journal.parts(previous.upload_id).items())]
        self.journal.forget_parts(previous.upload_id)
        self.journal.set_upload(record, None, None)
        part_count = max(1, math.ceil(record.size / previous.part_size)) if previous.part_size else 0
        if not parts or len(parts) != part_count or [p.part_number for p in parts] != list(range(1, part_count + 1)):
            return False
        existing = self._head_destination(record)
        if existing is None or existing.size != record.size:
            return False
        expected_etag = multipart_etag([p.etag for p in parts])
        # The full-object CRC the journaled parts make (what _complete sent and S3 stored).
        algorithm = self.part_algorithm
        expected_crc = None
        if algorithm in FULL_OBJECT_ALGORITHMS and checksums_fit(algorithm, [p.checksum for p in parts]):
            expected_crc = combine_part_checksums(algorithm, [(p.checksum, p.size) for p in parts])  # type: ignore[arg-type, misc]
        stored_crc = existing.checksums.get((algorithm or "").lower()) if existing.checksums else None
        if existing.etag != expected_etag and not (expected_crc and stored_crc == expected_crc):
            return False
        log.info("%s/%s: completed by an earlier run (its journal had not caught up)", record.source_bucket, record.source_key)
        self.journal.done(
            record, sha256=None, md5=None, dest_etag=existing.etag, dest_checksum=expected_crc, checksum_algorithm=algorithm if expected_crc else None
        )
        with self._lock:
            self.result.skipped_existing += 1
        self.progress.advance(objects=1, bytes_done=record.size)
        return True

    def _copy_part(self, job: _MultipartJob, part_number: int, owned: bool) -> None:
        record = job.record
        if job.failed is not None or self.stop.is_set():
            job.fail(_CancelledError())
            return
        offset, length = job.part_range(part_number)
        try:
            body, digests = self._retry(lambda: self._read_part(record, offset, length), record)
            job.hash_in_order(part_number, body)
            checksum = digests.s3_checksum()

            def upload() -> str:
                with self._talking_to(self.destination.endpoint):
                    return self.destination.upload_part(
                        record.dest_bucket,  # type: ignore[arg-type]
                        record.dest_key,  # type: ignore[arg-type]
                        job.upload_id,
                        part_number,
                        body,  # type: ignore[arg-type]
                        content_md5=digests.md5.digest() if digests.md5 else None,
                        checksum=checksum,
                        sha256_hex=digests.sha256.hexdigest(),
                    )

            etag = self._retry(upload, record)
            part = CompletedPart(part_number, length, etag, checksum[1] if checksum else None, digests.sha256.hexdigest())
            self.journal.part_done(job.upload_id, part)
            _crash_point("after-first-part")
            self.progress.advance(bytes_done=length)
        except (_Cancelled, RunStopping):
            job.fail(_CancelledError())
            return
        except UploadGone as err:
            if job.fail(err):
                self._upload_gone(job, owned, err)
            return
        except BaseException as err:  # noqa: BLE001 - recorded on the object
            if job.fail(err if isinstance(err, MigrateError) else ObjectError(f"unexpected {type(err).__name__}: {err}")):
                self._record_failure(record, err, upload_id=job.upload_id)
            return
        if job.part_done(part):
            self._complete(job, owned)

    def _read_part(self, record: ObjectRecord, offset: int, length: int) -> tuple[bytearray, Digests]:
        digests = Digests(self.part_algorithm, md5=self.part_algorithm is None)
        # One buffer of the right size: no regrowth copies while the part arrives.
        body = bytearray(length)
        self._read_source(record, body, digests, offset=offset, length=length)
        return body, digests

    def _complete(self, job: _MultipartJob, owned: bool) -> None:
        record = job.record
        what = f"{record.source_bucket}/{record.source_key}"
        try:
            md5_hex = job.whole.md5.hexdigest() if job.whole and job.whole.md5 else None
            if md5_hex and is_plain_md5(record.source_etag) and md5_hex != record.source_etag:
                # Never complete an upload whose bytes disagree with the source.
                raise IntegrityError(f"{what}: bytes read do not match the source eTag (MD5 {md5_hex}); rerun `migrate run` to copy it again")
            parts = sorted(job.completed.values(), key=lambda p: p.part_number)
            algorithm = self.part_algorithm
            payload = []
            for part in parts:
                entry: dict[str, Any] = {"PartNumber": part.part_number, "ETag": f'"{part.etag}"'}
                if algorithm and part.checksum:
                    entry[f"Checksum{algorithm}"] = part.checksum
                payload.append(entry)
            # The whole object's CRC, combined from the part CRCs (no re-read, also after a resume):
            # S3 checks it on completion and stores it, so fast verify compares the object as a whole.
            full: tuple[str, str] | None = None
            if algorithm in FULL_OBJECT_ALGORITHMS and all(p.checksum for p in parts):
                full = (algorithm, combine_part_checksums(algorithm, [(p.checksum, p.size) for p in parts]))  # type: ignore[misc]
            conditional = not owned and self.options.on_conflict != "overwrite"

            def complete() -> str:
                with self._talking_to(self.destination.endpoint):
                    return self.destination.complete_multipart_upload(
                        record.dest_bucket,  # type: ignore[arg-type]
                        record.dest_key,  # type: ignore[arg-type]
                        job.upload_id,
                        payload,
                        if_none_match=conditional,
                        full_object_checksum=full,
                        expected_size=record.size,
                    )

            etag = self._retry(complete, record)
            _crash_point("after-complete")
        except UploadGone as err:
            self._upload_gone(job, owned, err)
            return
        except ConditionalWriteFailed:
            self._abort(job)
            try:
                self._settle_existing(record)
            except BaseException as err:  # noqa: BLE001 - recorded on the object
                self._record_failure(record, err)
            return
        except BaseException as err:  # noqa: BLE001
            self._record_failure(record, err, upload_id=job.upload_id)
            return
        self.journal.done(
            record,
            sha256=job.whole.sha256.hexdigest() if job.whole else None,
            md5=md5_hex,
            dest_etag=etag,
            dest_checksum=full[1] if full else None,
            checksum_algorithm=algorithm,
            sent_headers=job.sent_headers,
        )
        with self._lock:
            self.result.copied += 1
            self.result.bytes_copied += record.size
        self.progress.advance(objects=1)

    def _upload_gone(self, job: _MultipartJob, owned: bool, error: UploadGone) -> None:
        """The destination lost the upload (NoSuchUpload): start the object again once, else record the failure."""
        record = job.record
        self.journal.forget_parts(job.upload_id)
        self.journal.set_upload(record, None, None)
        with self._lock:
            first = (record.source_bucket, record.source_key) not in self._restarted
            if first:
                self._restarted.add((record.source_bucket, record.source_key))
                self._restart.append((job, owned))
        if first:
            log.info("the multipart upload of %s vanished at the destination; starting it again", record.dest_key)
        else:
            self._record_failure(record, error)

    def _restart_vanished(self) -> None:
        """Start again, from this (submitting) thread, the uploads that vanished; each object once."""
        while not self.stop.is_set():
            with self._lock:
                pending, self._restart = self._restart, []
            if not pending:
                return
            for job, owned in pending:
                with self._lock:
                    self.result.restarted_uploads += 1
                # The lost upload's parts were counted as progress; they are sent again.
                self.progress.advance(bytes_done=-sum(part.size for part in job.completed.values()))
                self.start_multipart(job.record, owned, None)
            self._drain(shutdown=False)

    def _abort(self, job: _MultipartJob) -> None:
        self._abort_upload(job.record, job.upload_id)

    def _abort_upload(self, record: ObjectRecord, upload_id: str, *, bucket: str | None = None, key: str | None = None) -> None:
        """Abort one upload (retried); forget it in the journal only once the destination confirmed."""
        bucket, key = bucket or record.dest_bucket, key or record.dest_key
        assert bucket and key

        def abort() -> None:
            with self._talking_to(self.destination.endpoint):
                self.destination.abort_multipart_upload(bucket, key, upload_id)  # type: ignore[arg-type]

        try:
            self._retry(abort, record)
        except (MigrateError, RunStopping) as err:
            log.warning("could not abort the multipart upload of %s: %s", key, err)
            return
        self.journal.forget_parts(upload_id)
        row = self.journal.row(record.source_bucket, record.source_key)
        if row is not None and row.upload_id == upload_id:
            self.journal.set_upload(record, None, None)
        with self._lock:
            self.result.aborted_uploads += 1

    def abort_orphans(self, rows: Iterable[JournalRow]) -> None:
        """Abort uploads we started for objects this run no longer copies."""
        for row in rows:
            if not row.upload_id:
                continue
            stub = ObjectRecord(source_bucket=row.source_bucket, source_key=row.source_key, size=row.size)
            self._abort_upload(stub, row.upload_id, bucket=row.dest_bucket, key=row.dest_key)

    # -- driving -----------------------------------------------------------
    def run(self, records: Iterable[ObjectRecord]) -> TransferResult:
        started = time.monotonic()
        try:
            self.remove_stray_probes()
            self.sweep_upload_intents()
        except FatalError:
            raise
        open_uploads = {(row.source_bucket, row.source_key): row for row in self.journal.open_uploads()}
        probed: set[str] = set()
        try:
            for batch in _batches(records, 400):
                if self.stop.is_set():
                    break
                for bucket in {r.dest_bucket for r in batch if r.dest_bucket} - probed:
                    probed.add(bucket)
                    self.conditional_writes = self._probe_conditional_writes(bucket)
                rows = self.journal.rows([(r.source_bucket, r.source_key) for r in batch])
                decided = [self._decide(record, rows.get((record.source_bucket, record.source_key)), open_uploads) for record in batch]
                work = [item for item in decided if item is not None]
                # One transaction marks the whole batch in progress before any of it is queued.
                self.journal.begin_many([(item.record, item.fingerprint) for item in work])
                for item in work:
                    if self.stop.is_set():
                        break
                    self._dispatch(item)
        except _Cancelled:
            pass
        except KeyboardInterrupt:
            self.stop.set()
            self.result.interrupted = True
        finally:
            self._drain(shutdown=False)
            try:
                self._restart_vanished()
            except _Cancelled:
                pass
            finally:
                self._drain()
                self.journal.flush()
        if not self.stop.is_set():
            self.abort_orphans(open_uploads.values())
        self.result.elapsed = time.monotonic() - started
        self.result.throttle_events = self.throttle.throttle_events
        if self._fatal is not None:
            raise self._fatal
        return self.result

    def _decide(self, record: ObjectRecord, previous: JournalRow | None, open_uploads: dict[tuple[str, str], JournalRow]) -> "_Work | None":
        """What to do with one record: None when an earlier run already migrated it as it is now."""
        self.result.planned += 1
        sse, kms_key_id = self.options.encryption_for(record.rule)
        fingerprint = record_fingerprint(record, sse=sse, kms_key_id=kms_key_id)
        if previous is not None and previous.state in (STATE_DONE, STATE_SKIPPED) and previous.fingerprint == fingerprint:
            self.result.already_done += 1
            self.progress.advance(objects=1, bytes_done=record.size)
            return None
        # We own the destination key when an earlier run of ours wrote it there:
        # then the conflict policy does not stop us updating it.
        owned = (
            previous is not None
            and previous.state == STATE_DONE
            and previous.dest_bucket == record.dest_bucket
            and previous.dest_key == record.dest_key
        )
        resumable = previous if previous is not None and previous.fingerprint == fingerprint and previous.upload_id else None
        stale = open_uploads.pop((record.source_bucket, record.source_key), None)
        if stale is not None and resumable is None:
            self.abort_orphans([stale])
        return _Work(record, fingerprint, owned, resumable)

    def _dispatch(self, work: "_Work") -> None:
        if work.record.size >= self.options.multipart_threshold:
            self.start_multipart(work.record, work.owned, work.resumable)
        else:
            self._submit(work.record.size, self.copy_whole, work.record, work.owned)

    def _drain(self, *, shutdown: bool = True) -> None:
        """Wait for queued work (then close the pool); on a second Ctrl-C stop waiting (the journal stays consistent)."""
        try:
            while True:
                with self._lock:
                    pending = list(self._futures)
                if not pending:
                    break
                for future in pending:
                    while not future.done():
                        time.sleep(0.05)
        except KeyboardInterrupt:
            self.stop.set()
            self.result.interrupted = True
            self._pool.shutdown(wait=False, cancel_futures=True)
            return
        if shutdown:
            self._pool.shutdown(wait=True)


@dataclass(frozen=True)
class _Work:
    record: ObjectRecord
    fingerprint: str
    owned: bool
    resumable: JournalRow | None


class _CancelledError(MigrateError):
    """Placeholder failure for a job whose run is stopping (never recorded)."""


def source_headers(record: ObjectRecord, source: ObjectInfo | None, *, headers_on_read: bool) -> dict[str, Any]:
    """Content-Type, Cache-Control, Content-Disposition and user metadata to write for `record`.

    The record's values (the plan's rules on top of what the inventory saw)
    win. Where the source's read answers the object's headers
    (`SourceStore.headers_on_read`: S3, whose plan sends no HEAD and leaves
    these manifest columns null), the source's headers as read fill in the
    rest and the rules' user metadata goes on top of the source's, exactly
    as the plan would have merged them. Content-Type falls back to the
    source's, then to S3's default. User metadata S3 cannot carry fails the
    object (`plan` cannot see it without a HEAD).
    """
    content_type = record.content_type or (source.content_type if source is not None else None) or "application/octet-stream"
    cache_control, disposition, metadata = record.cache_control, record.content_disposition, record.user_metadata
    if headers_on_read and source is not None:
        cache_control = cache_control or source.cache_control
        disposition = disposition or source.content_disposition
        if source.user_metadata:
            metadata = {**source.user_metadata, **metadata}
            problems = metadata_problems(metadata)
            if problems:
                raise ObjectError(
                    f"{record.source_bucket}/{record.source_key}: user metadata S3 cannot carry ({'; '.join(problems)}); exclude the object in the plan"
                )
    return {"content_type": content_type, "cache_control": cache_control, "content_disposition": disposition, "metadata": metadata}


def _sent(write_args: Mapping[str, Any]) -> str:
    """The journal's record of the headers a write carried."""
    return sent_headers_json(
        content_type=write_args["content_type"],
        cache_control=write_args["cache_control"],
        content_disposition=write_args["content_disposition"],
        user_metadata=write_args["metadata"],
    )


def _batches(records: Iterable[ObjectRecord], size: int) -> Iterator[list[ObjectRecord]]:
    batch: list[ObjectRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def transfer_objects(
    records: Iterable[ObjectRecord],
    *,
    source: SourceStore,
    destination: S3Store,
    journal: TransferJournal,
    options: TransferOptions,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> TransferResult:
    """Copy every record (action `copy`) that the journal does not already show as done.

    Raises `FatalError` when the environment stops everything; per-object
    failures are in `result.failures`. Ctrl-C sets `result.interrupted`;
    everything finished is journaled and the rest resumes on the next call.
    """
    engine = Transfer(
        source=source,
        destination=destination,
        journal=journal,
        options=options,
        progress=progress or NullProgress(),
        stop=stop or threading.Event(),
    )
    result = engine.run(records)
    if result.interrupted:
        log.info("interrupted; finished work is journaled")
    return result


__all__ = [
    "TransferOptions",
    "TransferResult",
    "TransferFailure",
    "transfer_objects",
    "Interrupted",
    "TransientError",
]
