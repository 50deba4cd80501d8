"""`migrate backup PLAN`: one snapshot of the plan's source into every target.

How (and why):

- **Content-addressed bodies.** Each object's bytes are stored once per
  target under their SHA-256 (`bodies/ab/abcd...`). The set of bodies a
  target holds is listed once at the start, so "is this body there?" costs
  no request per object.
- **Unchanged objects are not read.** An object whose size, eTag and
  last-modified time equal what the journal (or, without a journal, the
  target's newest manifest) recorded keeps its known SHA-256; when every
  target has that body, the object costs one manifest row and no request.
- **Changed objects are read once per snapshot.** Up to
  `transfer.multipart_threshold` bytes: read into memory, hashed, written
  (Content-MD5 and x-amz-checksum-sha256 checked by the server) to every
  target missing the body. Larger: the name of the body (its SHA-256) is
  only known after a full read, so a first pass hashes the stream and a
  second pass sends `transfer.part_size` parts, each read once and uploaded
  to every target that needs it; the second pass must hash to the same value
  or the upload is aborted (the source changed while we read).
- **Manifest last.** Only once every body of the snapshot is on a target is
  its manifest written; a killed backup leaves bodies but no visible
  snapshot, and the next run finds those bodies already there.
- **Resume.** The journal (`migrate.journal.TransferJournal`, the one `run`
  uses) keeps object fingerprints -> SHA-256 and every multipart upload's id
  and finished parts; a rerun continues a large upload from its last part
  (cross-checked with ListParts). Uploads the journal does not know are
  aborted; temp files of a killed local writer are removed.
- **Targets fail alone.** A target that cannot be reached (a removed folder,
  a missing bucket, denied credentials) is reported and skipped; the others
  still get the snapshot (exit 3). Only when no target is usable does the
  backup stop with exit 4.
- **Memory** is bounded by workers x max(multipart_threshold, part_size).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import threading
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from migrate.backup.layout import Target, backup_settings, manifest_bytes, new_snapshot_id, open_target
from migrate.backup.state import BackupState
from migrate.errors import FatalError, IntegrityError, MigrateError, ObjectNotFound
from migrate.filters import object_filter
from migrate.headers import carried_headers
from migrate.journal import STATE_DONE, CompletedPart, TransferJournal
from migrate.progress import NullProgress, Progress
from migrate.records import ObjectRecord
from migrate.redact import redact
from migrate.retry import call_with_retries
from migrate.stores.base import ObjectInfo, SourceStore
from migrate.stores.s3 import UploadGone

if TYPE_CHECKING:
    from migrate.backup.prune import PruneOutcome
    from migrate.plan import Plan

log = logging.getLogger(__name__)
MAX_PARTS = 10_000
_PLAIN_MD5 = re.compile(r"[0-9a-f]{32}")


@dataclass
class TargetOutcome:
    """What one target got from one backup."""

    name: str
    ok: bool = True
    # True when the whole target was unusable (missing folder or bucket, access denied), not just some objects.
    lost: bool = False
    error: str | None = None
    bodies_written: int = 0
    bytes_written: int = 0
    snapshot_written: bool = False
    failed_objects: int = 0
    aborted_uploads: int = 0
    resumed_parts: int = 0  # multipart parts an earlier, interrupted backup had already sent
    pruned: "PruneOutcome | None" = None

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "pruned"}
        data["pruned"] = self.pruned.to_dict() if self.pruned else None
        return data


@dataclass
class BackupResult:
    snapshot_id: str
    taken_at: datetime
    objects: int = 0
    bytes: int = 0
    objects_read: int = 0  # objects whose bytes were read from the source this time
    vanished: int = 0  # listed, then deleted at the source before we read them: not in the snapshot
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    targets: list[TargetOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and all(t.ok and t.snapshot_written for t in self.targets)

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "taken_at": self.taken_at.isoformat(),
            "objects": self.objects,
            "bytes": self.bytes,
            "objects_read": self.objects_read,
            "vanished": self.vanished,
            "failures": [{"bucket": b, "key": k, "error": redact(e)} for b, k, e in self.failures],
            "targets": [t.to_dict() for t in self.targets],
            "ok": self.ok,
        }


def identity(info: ObjectInfo) -> str:
    """What says "same object as before" without reading it: size, eTag, last-modified."""
    stamp = info.last_modified.astimezone(timezone.utc).isoformat() if info.last_modified else None
    return hashlib.sha256(json.dumps([info.size, info.etag, stamp]).encode()).hexdigest()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class _LiveTarget:
    """A target during one backup: its bodies, its outcome, and whether it is still usable."""

    def __init__(self, target: Target, outcome: TargetOutcome):
        self.target = target
        self.outcome = outcome
        self.bodies: dict[str, int] = {}
        self.lock = threading.Lock()
        self.alive = True

    def has(self, sha256: str, size: int) -> bool:
        with self.lock:
            return self.bodies.get(sha256) == size

    def stored(self, sha256: str, size: int) -> None:
        with self.lock:
            self.bodies[sha256] = size
            self.outcome.bodies_written += 1
            self.outcome.bytes_written += size

    def fail(self, error: BaseException, *, whole_target: bool) -> None:
        with self.lock:
            self.outcome.ok = False
            self.outcome.error = redact(str(error).splitlines()[0] if str(error) else type(error).__name__)
            if whole_target:
                self.alive = False
                self.outcome.lost = True
            else:
                self.outcome.failed_objects += 1


class SnapshotWriter:
    """Takes one snapshot of a source into live targets. Use `take_backup`."""

    def __init__(self, *, plan: "Plan", source: SourceStore, targets: list[_LiveTarget], journal: TransferJournal, progress: Progress, workers: int):
        self.plan = plan
        self.source = source
        self.targets = targets
        self.journal = journal
        self.progress = progress
        self.workers = workers
        self.max_attempts = plan.transfer.max_attempts
        self.threshold = plan.transfer.multipart_threshold
        self.part_size = plan.transfer.part_size
        self.previous: dict[tuple[str, str], tuple[str, str]] = {}
        self.objects_read = 0
        self._lock = threading.Lock()
        self._body_locks: dict[str, threading.Lock] = {}
        self.used_uploads: set[str] = set()

    @contextmanager
    def _writing(self, sha256: str) -> Iterator[None]:
        """One writer per body at a time: two objects with the same bytes store it once."""
        with self._lock:
            lock = self._body_locks.setdefault(sha256, threading.Lock())
        with lock:
            yield

    def _retry(self, func: Any) -> Any:
        return call_with_retries(func, max_attempts=self.max_attempts)

    def live(self) -> list[_LiveTarget]:
        return [t for t in self.targets if t.alive]

    # -- what is known already ---------------------------------------------
    def load_previous(self) -> None:
        """Fingerprints -> sha256 from the newest manifest of each target (for when the journal is new)."""
        for live in self.live():
            try:
                snapshots = live.target.list_snapshots()
                if not snapshots:
                    continue
                frame = live.target.read_manifest(snapshots[-1].snapshot_id)
            except (MigrateError, OSError) as err:  # only a shortcut: without it objects are read again
                log.warning("backup target %s: cannot read its newest manifest (%s); unchanged objects are read again", live.target.name, err)
                continue
            for row in frame.iter_rows(named=True):
                info = ObjectInfo(key=row["key"], size=row["size"], etag=row["source_etag"], last_modified=row["last_modified"])
                self.previous.setdefault((row["source_bucket"], row["key"]), (identity(info), row["sha256"]))

    def known_sha(self, bucket: str, info: ObjectInfo, journal_row: Any) -> str | None:
        fingerprint = identity(info)
        if journal_row is not None and journal_row.state == STATE_DONE and journal_row.fingerprint == fingerprint and journal_row.sha256:
            return str(journal_row.sha256)
        previous = self.previous.get((bucket, info.key))
        if previous and previous[0] == fingerprint:
            return previous[1]
        return None

    # -- one object -----------------------------------------------------------
    def back_up(self, bucket: str, info: ObjectInfo, journal_row: Any) -> dict[str, Any] | None:
        """Make sure every live target has the object's body; return its manifest row (None: vanished)."""
        sha = self.known_sha(bucket, info, journal_row)
        needing = [t for t in self.live() if sha is None or not t.has(sha, info.size)]
        if sha is None or needing:
            if info.size <= self.threshold:
                sha = self._copy_small(bucket, info)
            else:
                sha = self._copy_large(bucket, info, sha)
            with self._lock:
                self.objects_read += 1
            record = ObjectRecord(source_bucket=bucket, source_key=info.key, size=info.size, dest_bucket="(backup)", dest_key=sha)
            self.journal.begin(record, identity(info))
            self.journal.done(record, sha256=sha, md5=None, dest_etag=None, dest_checksum=None, checksum_algorithm=None, deferred=True)
        return {
            "source_bucket": bucket,
            "key": info.key,
            "size": info.size,
            "sha256": sha,
            "content_type": info.content_type,
            "cache_control": info.cache_control,
            "content_disposition": info.content_disposition,
            "user_metadata": json.dumps(info.user_metadata, sort_keys=True, ensure_ascii=False),
            "source_etag": info.etag,
            "last_modified": info.last_modified,
            **carried_headers(info),
        }

    def _each_target(self, targets: list[_LiveTarget], write: Any) -> None:
        """Run `write(target)` for every target; a failure stops that target (fatal) or counts against it."""
        for live in targets:
            if not live.alive:
                continue
            try:
                write(live)
            except FatalError as err:
                log.warning("backup target %s: %s", live.target.name, err)
                live.fail(err, whole_target=True)
            except MigrateError as err:
                live.fail(err, whole_target=False)
            except OSError as err:  # a local disk that went away or filled up
                live.fail(FatalError(f"backup target {live.target.name}: {err.strerror or err}"), whole_target=True)

    def _copy_small(self, bucket: str, info: ObjectInfo) -> str:
        what = f"{bucket}/{info.key}"

        def read() -> bytes:
            _, chunks = self.source.open(bucket, info.key)
            body = b"".join(chunks)
            if len(body) != info.size:
                raise IntegrityError(f"{what}: read {len(body)} bytes, listed {info.size} (changed while backing up?)")
            # A plain-MD5 eTag (Supabase, single-part S3) checks the bytes read: a corrupt read is a failed attempt.
            if info.etag and _PLAIN_MD5.fullmatch(info.etag) and hashlib.md5(body).hexdigest() != info.etag:
                raise IntegrityError(f"{what}: bytes read do not match the source eTag")
            return body

        body = self._retry(read)
        sha = hashlib.sha256(body).hexdigest()
        md5 = hashlib.md5(body).digest()
        checksum = ("SHA256", _b64(hashlib.sha256(body).digest()))

        def write(live: _LiveTarget) -> None:
            if live.has(sha, len(body)):
                return
            target = live.target
            target.retry(lambda: target.store.put_object(
                target.bucket, target.body_key(sha), body, content_md5=md5, checksum=checksum, sha256_hex=sha, **target.write_args()
            ))
            live.stored(sha, len(body))

        with self._writing(sha):
            self._each_target(self.live(), write)
        return sha

    def _read_range(self, bucket: str, info: ObjectInfo, offset: int, length: int) -> bytes:
        def read() -> bytes:
            _, chunks = self.source.open(bucket, info.key, offset=offset, length=length)
            data = b"".join(chunks)
            if len(data) != length:
                raise IntegrityError(f"{bucket}/{info.key}: read {len(data)} bytes at {offset}, wanted {length}")
            return data

        return self._retry(read)  # type: ignore[no-any-return]

    def _copy_large(self, bucket: str, info: ObjectInfo, sha: str | None) -> str:
        part_size = max(self.part_size, math.ceil(info.size / MAX_PARTS))
        ranges = [(offset, min(part_size, info.size - offset)) for offset in range(0, info.size, part_size)]
        if sha is None:  # pass 1: the body's name
            hasher = hashlib.sha256()
            for offset, length in ranges:
                hasher.update(self._read_range(bucket, info, offset, length))
            sha = hasher.hexdigest()
        with self._writing(sha):
            self._upload_large(bucket, info, sha, ranges, part_size)
        return sha

    def _upload_large(self, bucket: str, info: ObjectInfo, sha: str, ranges: list[tuple[int, int]], part_size: int) -> None:
        """Pass 2: every part read once, sent to each target missing the body; completed only if it hashes to `sha`."""
        needing = [t for t in self.live() if not t.has(sha, info.size)]
        if not needing:
            return
        uploads: dict[int, tuple[str, dict[int, CompletedPart], ObjectRecord]] = {}

        def start(live: _LiveTarget) -> None:
            uploads[id(live)] = self._start_upload(live, sha, info.size, part_size)

        self._each_target(needing, start)
        gave_up: set[int] = set()  # targets that failed a part of this body: no more parts for them this time
        hasher = hashlib.sha256()
        for number, (offset, length) in enumerate(ranges, 1):
            active = [t for t in needing if t.alive and id(t) in uploads and id(t) not in gave_up]
            if not active:
                break
            data = self._read_range(bucket, info, offset, length)
            hasher.update(data)
            part_sha = hashlib.sha256(data).digest()
            md5 = hashlib.md5(data).digest()

            def send(live: _LiveTarget, number: int = number, data: bytes = data) -> None:
                upload_id, done, _ = uploads[id(live)]
                if number in done:
                    return
                target = live.target
                gave_up.add(id(live))  # until this part is in
                etag = target.retry(lambda: target.store.upload_part(
                    target.bucket, target.body_key(sha), upload_id, number, data,
                    content_md5=md5, checksum=("SHA256", _b64(part_sha)), sha256_hex=part_sha.hex(),
                ))
                part = CompletedPart(number, len(data), etag, _b64(part_sha), part_sha.hex())
                self.journal.part_done(upload_id, part)
                done[number] = part
                gave_up.discard(id(live))

            self._each_target(active, send)
        finished = [t for t in needing if t.alive and id(t) in uploads and len(uploads[id(t)][1]) == len(ranges)]
        if hasher.hexdigest() != sha:
            for live in needing:
                if id(live) in uploads:
                    self._abort(live.target, sha, uploads[id(live)])
            raise IntegrityError(f"{bucket}/{info.key}: the bytes changed while being backed up; the next backup takes it again")

        def complete(live: _LiveTarget) -> None:
            upload_id, done, record = uploads[id(live)]
            parts = [{"PartNumber": p.part_number, "ETag": f'"{p.etag}"', "ChecksumSHA256": p.checksum} for p in sorted(done.values(), key=lambda p: p.part_number)]
            target = live.target
            target.retry(lambda: target.store.complete_multipart_upload(target.bucket, target.body_key(sha), upload_id, parts))
            self.journal.done(record, sha256=sha, md5=None, dest_etag=None, dest_checksum=None, checksum_algorithm="SHA256")
            live.stored(sha, info.size)

        self._each_target(finished, complete)

    def _start_upload(self, live: _LiveTarget, sha: str, size: int, part_size: int) -> tuple[str, dict[int, CompletedPart], ObjectRecord]:
        """Continue this body's upload from the journal (checked with ListParts), or create one."""
        target = live.target
        record = ObjectRecord(source_bucket=f"@{target.name}", source_key=sha, size=size, dest_bucket=target.bucket, dest_key=target.body_key(sha))
        fingerprint = f"{sha}:{part_size}"
        previous = self.journal.row(record.source_bucket, sha)
        if previous is not None and previous.upload_id and previous.fingerprint == fingerprint and previous.state != STATE_DONE:
            try:
                remote = target.retry(lambda: target.store.list_parts(target.bucket, target.body_key(sha), previous.upload_id))
                done = {n: p for n, p in self.journal.parts(previous.upload_id).items() if remote.get(n, {}).get("size") == p.size}
                self.used_uploads.add(previous.upload_id)
                with live.lock:
                    live.outcome.resumed_parts += len(done)
                return previous.upload_id, done, record
            except UploadGone:
                self.journal.forget_parts(previous.upload_id)
        self.journal.begin(record, fingerprint)
        upload_id = target.retry(lambda: target.store.create_multipart_upload(
            target.bucket, target.body_key(sha), checksum_algorithm="SHA256", **target.write_args()
        ))
        self.journal.set_upload(record, upload_id, part_size)
        self.used_uploads.add(upload_id)
        return upload_id, {}, record

    def _abort(self, target: Target, sha: str, upload: tuple[str, dict[int, CompletedPart], ObjectRecord]) -> None:
        upload_id, _, record = upload
        try:
            target.store.abort_multipart_upload(target.bucket, target.body_key(sha), upload_id)
        except MigrateError as err:
            log.warning("could not abort upload %s on %s: %s", upload_id, target.name, err)
        self.journal.failed(record, "aborted: source changed", keep_upload=False)
        self.journal.forget_parts(upload_id)

    # -- housekeeping ------------------------------------------------------
    def abort_unknown_uploads(self) -> None:
        """Abort body uploads on the targets that the journal does not know (killed between create and journal)."""
        known = {row.upload_id for row in self.journal.open_uploads()}
        for live in self.live():
            target = live.target
            try:
                for key, upload_id in target.retry(lambda: target.store.list_multipart_uploads(target.bucket, f"{target.prefix}bodies/")):
                    if upload_id not in known:
                        target.store.abort_multipart_upload(target.bucket, key, upload_id)
                        live.outcome.aborted_uploads += 1
                if hasattr(target.store, "clean_temporary"):
                    target.store.clean_temporary()
            except MigrateError as err:
                log.warning("backup target %s: could not list unfinished uploads: %s", target.name, err)

    def abort_unused_uploads(self) -> None:
        """After a complete pass: journaled uploads this backup did not continue are no longer needed; abort them."""
        targets = {live.target.name: live for live in self.live()}
        for row in self.journal.open_uploads():
            live = targets.get(row.source_bucket[1:]) if row.source_bucket.startswith("@") else None
            if live is None or row.upload_id in self.used_uploads or row.state == STATE_DONE:
                continue
            try:
                live.target.store.abort_multipart_upload(row.dest_bucket, row.dest_key, row.upload_id)
                live.outcome.aborted_uploads += 1
            except MigrateError as err:
                log.warning("could not abort upload %s on %s: %s", row.upload_id, live.target.name, err)
                continue
            record = ObjectRecord(source_bucket=row.source_bucket, source_key=row.source_key, size=row.size, dest_bucket=row.dest_bucket, dest_key=row.dest_key)
            self.journal.failed(record, "aborted: no longer needed", keep_upload=False)
            self.journal.forget_parts(row.upload_id)

    # -- the whole source ---------------------------------------------------
    def source_pages(self) -> Iterator[tuple[str, list[ObjectInfo]]]:
        keep = object_filter(self.plan.filters)
        buckets = self.plan.source.bucket_names or tuple(self.source.list_buckets())
        for bucket in buckets:
            for prefix in self.plan.source.prefixes_for(bucket):
                for page in self.source.iter_objects(bucket, prefix):
                    chosen = [info for info in page if keep(info) is None]
                    if chosen:
                        yield bucket, chosen

    def run(self, result: BackupResult) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="migrate-backup") as pool:
            for bucket, page in self.source_pages():
                if not self.live():
                    break
                journal_rows = self.journal.rows([(bucket, info.key) for info in page])

                def one(info: ObjectInfo, bucket: str = bucket) -> dict[str, Any] | None:
                    try:
                        return self.back_up(bucket, info, journal_rows.get((bucket, info.key)))
                    except ObjectNotFound:
                        with self._lock:
                            result.vanished += 1
                        return None
                    except FatalError:
                        raise
                    except MigrateError as err:
                        with self._lock:
                            result.failures.append((bucket, info.key, str(err)))
                        return None
                    finally:
                        self.progress.advance(objects=1, bytes_done=info.size)

                for row in pool.map(one, page):
                    if row is not None:
                        rows.append(row)
        result.objects_read = self.objects_read
        return rows


def take_backup(
    plan: "Plan",
    *,
    state_dir: str | Path | None = None,
    workers: int | None = None,
    prune: bool = True,
    source: SourceStore | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> BackupResult:
    """One snapshot of the plan's source into every `backup.targets` entry; then prune (unless `prune=False`).

    Holds the plan's backup lock throughout (`RunLocked`, exit 4, if another
    backup or prune runs). Raises `FatalError` when no target is usable or
    the source cannot be read; a single lost target is reported in the result.
    """
    from migrate.backup.prune import prune_target
    from migrate.retention import RetentionPolicy
    from migrate.stores.factory import open_source

    settings = backup_settings(plan)
    state = BackupState.for_plan(plan.name, state_dir=state_dir)
    taken_at = now or datetime.now(timezone.utc)
    result = BackupResult(snapshot_id=new_snapshot_id(taken_at), taken_at=taken_at)
    with state.lock():
        targets = [_LiveTarget(open_target(t, max_attempts=plan.transfer.max_attempts), TargetOutcome(t.name)) for t in settings.targets]
        result.targets = [t.outcome for t in targets]
        for live in targets:
            try:
                live.target.check()
                live.bodies = live.target.list_bodies()
            except (FatalError, OSError) as err:
                live.fail(err, whole_target=True)
        if not any(t.alive for t in targets):
            raise FatalError(f"no backup target is usable ({'; '.join(t.outcome.error or '' for t in targets)}); fix them and rerun")
        owns_source = source is None
        source = source or open_source(plan, concurrency=workers or plan.transfer.concurrency)
        try:
            with TransferJournal(state.journal) as journal:
                writer = SnapshotWriter(
                    plan=plan, source=source, targets=targets, journal=journal, progress=progress or NullProgress(),
                    workers=workers or min(plan.transfer.concurrency, 4),
                )
                writer.abort_unknown_uploads()
                writer.load_previous()
                rows = writer.run(result)
                if not result.failures:
                    writer.abort_unused_uploads()
        finally:
            if owns_source:
                source.close()
        for row in rows:
            row["snapshot_id"], row["snapshot_time"] = result.snapshot_id, taken_at
        result.objects = len(rows)
        result.bytes = sum(int(row["size"]) for row in rows)
        data = manifest_bytes(rows)
        for live in targets:
            # Manifest last, and only where every body made it: a snapshot is visible only when complete.
            if not live.alive or live.outcome.failed_objects or result.failures:
                continue
            try:
                live.target.write_manifest(result.snapshot_id, data)
                live.outcome.snapshot_written = True
            except (MigrateError, OSError) as err:
                live.fail(err, whole_target=True)
        if prune:
            policy = RetentionPolicy(keep=settings.keep, keep_daily=settings.keep_daily, keep_weekly=settings.keep_weekly)
            for live in targets:
                if live.outcome.snapshot_written:
                    try:
                        live.outcome.pruned = prune_target(live.target, policy)
                    except (MigrateError, OSError) as err:
                        live.fail(err, whole_target=False)
        for live in targets:
            live.target.close()
    return result


__all__ = ["BackupResult", "TargetOutcome", "take_backup", "identity"]
