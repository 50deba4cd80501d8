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
- **Where things are.** This module: `transfer_objects`, the options and
  result, and the engine (`Transfer`: driving, small objects, bookkeeping).
  `migrate.transfer_multipart`: the byte budget, the multipart upload's
  bookkeeping and the engine's multipart steps. `migrate.transfer_conflicts`:
  the conflict policy and the conditional-write probe.
- **Faults by consequence.** `FatalError` (credentials, missing bucket)
  stops the run at once; `ObjectError` and exhausted `TransientError`s are
  recorded on the object and the run goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

from migrate.checksums import (
    CHECKSUM_SIZES,
    MIN_PART_SIZE,
    Digests,
    MiB,
    full_object_algorithm,
    is_plain_md5,
)
from migrate.encryption import Encryption, EncryptionSettings
from migrate.errors import FatalError, IntegrityError, Interrupted, MigrateError, ObjectError, TransientError, UserInputError
from migrate.journal import STATE_DONE, STATE_SKIPPED, JournalRow, TransferJournal, record_fingerprint
from migrate.plan.endpoints import Destination
from migrate.plan.model import TransferSettings
from migrate.headers import source_headers
from migrate.progress import NullProgress, Progress
from migrate.records import ObjectRecord
from migrate.ratelimit import RateLimits
from migrate.retry import OUTAGE_BUDGET, OUTAGE_WINDOW, OutageMonitor, RunStopping, Throttle, call_with_retries, is_connection_failure
from migrate.stores.base import ObjectInfo, SourceStore
from migrate.stores.s3 import ConditionalWriteFailed, S3Store
from migrate.transfer_conflicts import CONFLICT_POLICIES, ConflictPolicy
from migrate.transfer_multipart import ByteBudget, MultipartTransfers, PartBuffers, _Cancelled, _crash_point, _MultipartJob, _sent

log = logging.getLogger(__name__)


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


_PLAN_TRANSFER = TransferSettings()


@dataclass(frozen=True)
class TransferOptions:
    """How `run` moves bytes. Filled from the plan's `transfer` and `destination` sections."""

    # Defaults are the plan's (declared once, in migrate.plan.model): options built in code move bytes as a plan without `transfer:` does.
    concurrency: int = _PLAN_TRANSFER.concurrency
    part_size: int = _PLAN_TRANSFER.part_size
    multipart_threshold: int = _PLAN_TRANSFER.multipart_threshold
    max_attempts: int = _PLAN_TRANSFER.max_attempts
    # "SHA256", "CRC32", "CRC32C" or "CRC64NVME" (awscrt); None sends Content-MD5 only. Multipart
    # objects carry a full-object CRC instead of SHA-256 (see `full_object_algorithm`).
    checksum_algorithm: str | None = _PLAN_TRANSFER.checksum_algorithm
    server_side_encryption: str | None = None
    kms_key_id: str | None = None
    # Per-rule SSE overrides (rule name -> (sse, kms key)); the two fields above are the default.
    encryption_by_rule: Mapping[str, Encryption] = field(default_factory=dict)
    on_conflict: str = Destination.model_fields["on_conflict"].default
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


class SourceChanged(ObjectError):
    """The source object is not the one the plan listed (size or eTag changed)."""


SOURCE_CHANGED = "changed at the source since the plan"
#: The CLI names the plan file in the exact command (see cli.cmd_run).
REPLAN_HINT = "re-plan it with `migrate run --replan` and the plan file"


# -- the engine --------------------------------------------------------------
class Transfer(ConflictPolicy, MultipartTransfers):
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
        self.buffers = PartBuffers(options.memory_budget)
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

    def _read_source(
        self, record: ObjectRecord, body: bytearray | memoryview, digests: Digests, *, offset: int = 0, length: int | None = None
    ) -> ObjectInfo:
        """Read the object (or a range) into `body`, hashing as it arrives, under the rate limits.

        A range (`length` given) fills `body`, exactly that long, in place
        (`SourceStore.open_into`: received straight into it where the store
        can); a whole object is appended to the bytearray.
        """
        what = f"{record.source_bucket}/{record.source_key}"
        received = 0
        with self._talking_to(self.source.endpoint):
            if length is not None:
                assert isinstance(body, memoryview) and len(body) == length
                info, pieces = self.source.open_into(record.source_bucket, record.source_key, body, offset=offset)
                # A range's length is not the object's size: ranges compare the eTag only.
                self._check_source(record, record.size, info.etag, pieces)
                with _closed_after(pieces):
                    for piece in pieces:
                        self.limits.read(len(piece), stop=self.stop)
                        digests.update(piece)
                        received += len(piece)
                if received != length:
                    raise IntegrityError(f"{what}: range at {offset} returned {received} of {length} bytes")
                return info
            assert isinstance(body, bytearray)
            info, chunks = self.source.open(record.source_bucket, record.source_key)
            self._check_source(record, info.size, info.etag, chunks)
            with _closed_after(chunks):
                for chunk in chunks:
                    self.limits.read(len(chunk), stop=self.stop)
                    body += chunk
                    digests.update(chunk)
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


@contextmanager
def _closed_after(body: Iterator[Any]) -> Iterator[None]:
    """Close a source body however its reading ends (a stop, a hash or length refusal): its connection goes back or is dropped now, not at GC."""
    try:
        yield
    finally:
        getattr(body, "close", lambda: None)()


def _batches(records: Iterable[ObjectRecord], size: int) -> Iterator[list[ObjectRecord]]:
    batch: list[ObjectRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


__all__ = [
    "TransferOptions",
    "TransferResult",
    "TransferFailure",
    "transfer_objects",
    "Interrupted",
    "TransientError",
]
