"""Multipart copies for the `run` stage: the upload's bookkeeping, the byte budget, and the engine's multipart steps.

Why it looks like this: parts are granted memory (`ByteBudget`) and queued in
part order by the submitting thread, so the whole-object digests can be fed
in order (`_MultipartJob.hash_in_order`) without deadlock; the journal holds
every upload id and part, so a killed run resumes from its last part
(cross-checked with ListParts), and an upload we no longer need is aborted.
`MultipartTransfers` is a mixin of `migrate.transfer.Transfer`.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from migrate.checksums import (
    FULL_OBJECT_ALGORITHMS,
    Digests,
    checksums_fit,
    choose_part_size,
    combine_part_checksums,
    is_plain_md5,
    multipart_etag,
)
from migrate.errors import IntegrityError, MigrateError, ObjectError, ObjectNotFound, TransientError
from migrate.headers import CARRIED_HEADERS
from migrate.journal import CompletedPart, JournalRow, TransferJournal, sent_headers_json
from migrate.progress import Progress
from migrate.records import ObjectRecord
from migrate.retry import RunStopping
from migrate.stores.base import ObjectInfo, SourceStore
from migrate.stores.s3 import ConditionalWriteFailed, S3Store, UploadGone

if TYPE_CHECKING:
    from migrate.transfer import TransferOptions, TransferResult

log = logging.getLogger("migrate.transfer")

#: Tests only: `MIGRATE_TEST_KILL_AT=<step>` makes the process SIGKILL itself at that
#: protocol step, so a kill-loop test can hit the narrow windows (e.g. between
#: CreateMultipartUpload and the journal write) deterministically.
KILL_STEPS = ("after-create-multipart", "after-first-part", "after-complete", "after-put", "after-probe-write")


#: Whole-object digests are fed a part in slices this big (well within a CPU's L2 cache).
_HASH_SLICE = 256 * 1024


def _crash_point(step: str) -> None:
    if os.environ.get("MIGRATE_TEST_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


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


class PartBuffers:
    """Part buffers reused from part to part, holding at most `capacity` bytes (the byte budget) in all.

    Why: a fresh 16 MiB bytearray per part is either a fresh mmap (zeroed and
    page-faulted in by the kernel: CPU for every byte) or, once glibc's
    dynamic mmap threshold has grown past the part size, a chunk of one of
    the up to 8 x cores malloc arenas, which stays resident after it is
    freed: peak RSS grew past the budget by fragmentation. Parts of one size
    come back from here already mapped. A buffer is lent for one part (read,
    hash, upload) and given back, retries included.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._free: list[bytearray] = []
        # The buffers counted in `held` (by id), lent or free; a buffer made beyond the capacity is not.
        self._counted: set[int] = set()
        self._lent = 0
        self._lock = threading.Lock()
        #: Bytes of every buffer this pool keeps or has lent: never above `capacity`.
        self.held = 0
        self.peak_held = 0
        self.allocations = 0

    def take(self, size: int) -> bytearray:
        """A buffer of at least `size` bytes: a free one when one fits, else a new one of exactly `size`."""
        with self._lock:
            fitting = [buf for buf in self._free if len(buf) >= size]
            self._lent += 1
            if fitting:
                buf = min(fitting, key=len)
                self._free.remove(buf)
                return buf
            # Make room: free buffers (too small for this part) are dropped first.
            while self._free and self.held + size > self.capacity:
                self._drop(self._free.pop())
            self.allocations += 1
        # Outside the lock: zero-filling a part takes a while.
        buf = bytearray(size)
        with self._lock:
            if self.held + size <= self.capacity:
                self.held += size
                self.peak_held = max(self.peak_held, self.held)
                self._counted.add(id(buf))
        return buf

    def give_back(self, buf: bytearray) -> None:
        """Return a buffer from `take`: kept for the next part if it is counted, else left to the allocator.

        When no part is in flight any more, the free buffers go too: idle part
        buffers must not sit beside the whole objects the byte budget then grants.
        """
        with self._lock:
            self._lent -= 1
            if id(buf) in self._counted:
                self._free.append(buf)
            if not self._lent:
                while self._free:
                    self._drop(self._free.pop())

    def _drop(self, buf: bytearray) -> None:
        self._counted.discard(id(buf))
        self.held -= len(buf)


class _Cancelled(Exception):
    """Work skipped because the run is stopping; the object stays resumable."""


class _CancelledError(MigrateError):
    """Placeholder failure for a job whose run is stopping (never recorded)."""


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

    def hash_in_order(self, part_number: int, data: memoryview) -> None:
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
            # Slice by slice: the MD5 pass leaves each slice in the CPU cache for the SHA-256 pass.
            for start in range(0, len(data), _HASH_SLICE):
                self.whole.update(data[start : start + _HASH_SLICE])
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


class EngineState:
    """What the engine's mixins (`MultipartTransfers`, `ConflictPolicy`) use of `Transfer`, which sets it in `__init__`."""

    buffers: PartBuffers
    source: SourceStore
    destination: S3Store
    journal: TransferJournal
    options: "TransferOptions"
    progress: Progress
    stop: threading.Event
    result: "TransferResult"
    _lock: threading.Lock


class MultipartTransfers(EngineState):
    """The engine's multipart steps: create or resume an upload, copy its parts, complete or abort it."""

    part_algorithm: str | None
    _restart: list[tuple[_MultipartJob, bool]]
    _restarted: set[tuple[str, str]]

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
        buffer = self.buffers.take(length)
        try:
            body = memoryview(buffer)[:length]
            digests = self._retry(lambda: self._read_part(record, body, offset), record)
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
            # After the upload, not before: a part read ahead of an earlier one is sent at once
            # instead of waiting (holding its buffer) for the earlier part's turn to be hashed.
            job.hash_in_order(part_number, body)
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
        finally:
            self.buffers.give_back(buffer)
        if job.part_done(part):
            self._complete(job, owned)

    def _read_part(self, record: ObjectRecord, body: memoryview, offset: int) -> Digests:
        """Read one part into `body` (a pooled buffer, exactly the part's length), hashing as it arrives."""
        digests = Digests(self.part_algorithm, md5=self.part_algorithm is None)
        self._read_source(record, body, digests, offset=offset, length=len(body))
        return digests

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


def _sent(write_args: Mapping[str, Any]) -> str:
    """The journal's record of the headers a write carried."""
    return sent_headers_json(
        content_type=write_args["content_type"],
        cache_control=write_args["cache_control"],
        content_disposition=write_args["content_disposition"],
        user_metadata=write_args["metadata"],
        carried={name: write_args.get(name) for name in CARRIED_HEADERS},
    )
