"""The `verify` stage: a post-migration integrity audit, one report row per object.

Follows the manifest's source -> destination key mapping (renamed keys are
the normal case, unlike `rclone check`) and classifies every record whose
action is `copy` or `skip-existing`:

- `match`, `missing`, `size-differs`, `checksum-differs`, `metadata-differs`
  (Content-Type, Cache-Control, Content-Disposition, user metadata, storage
  class or SSE not as the record and options planned), `error` (could not
  be checked; the detail says why);
- plus `unexpected`: objects under `VerifyOptions.expect_prefixes` at the
  destination that no manifest record (of any action) maps to.

`skip-existing` records were not copied by `run`: the plan found the object
already at the destination. They are verified for existence, size and
content (the destination must still hold those bytes) but not for
metadata, which `migrate` never wrote. Records S3 cannot hold as they are
(`invalid-key`, `invalid-metadata`) get a `not-migrated` row (the audit is
INCOMPLETE until the plan excludes them). Records with other actions
(`excluded`, `collision`) are not verified; they are counted in
`VerificationReport.not_verified`.

Two modes:

- **fast**: one HEAD (ChecksumMode=ENABLED) per object. Content is compared
  through what S3 stored against what `run` recorded in the journal while it
  streamed the source (see `compare_recorded_checksum` for the order of
  preference). Without a usable journal row (an independent audit, objects
  copied by another tool) the destination ETag is compared with the source
  eTag when both are plain MD5s; otherwise the row is `match` on size alone,
  `checksum_basis` is `none` and the detail says so. A checksum match is
  never claimed that was not made.
- **deep**: trusts nothing recorded. Reads the destination and the source
  again, hashing each stream chunk by chunk (SHA-256), so memory is bounded
  by `concurrency` x one read chunk whatever the object sizes.

Both run on a bounded thread pool (`concurrency` workers, at most twice that
queued) and call the stores through `migrate.retry.call_with_retries`. A
per-object failure becomes an `error` row and the audit goes on; a
`FatalError` (bad credentials, missing bucket, unreachable server) stops the
audit and is raised: "could not audit" is never reported as "objects
differ".

Memory: the report rows (one per verified record) and, when unexpected
objects are looked for, the set of destination keys under those prefixes
that the manifest maps to.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence

import polars as pl

from migrate.encryption import EncryptionSettings
from migrate.errors import FatalError, Interrupted, MigrateError, ObjectNotFound, ServiceUnavailable, TransientError, UserInputError
from migrate.journal import STATE_DONE, STATE_FAILED, STATE_IN_PROGRESS, STATE_SKIPPED, JournalRow, TransferJournal, record_fingerprint
from migrate.progress import NullProgress, Progress
from migrate.records import Action, ManifestRecords, ObjectRecord
from migrate.report import (
    NOT_MIGRATED,
    CATALOG_DIFFERS,
    CATALOG_ONLY,
    CHECKSUM_DIFFERS,
    ERROR,
    MATCH,
    METADATA_DIFFERS,
    MISSING,
    REPORT_SCHEMA,
    SIZE_DIFFERS,
    STORAGE_ONLY,
    UNEXPECTED,
    VerificationReport,
    empty_report,
)
from migrate.ratelimit import UNLIMITED, RateLimits
from migrate.retry import Throttle, call_with_retries
from migrate.stores.base import ObjectInfo, SourceStore
from migrate.stores.s3 import S3Store
from migrate.checksums import is_plain_md5
from migrate.metadata import comparable_metadata

log = logging.getLogger(__name__)

#: Manifest actions whose objects must be at the destination.
VERIFIED_ACTIONS: tuple[str, ...] = (Action.COPY.value, Action.SKIP_EXISTING.value)
#: Planned objects S3 cannot hold as they are: reported `not-migrated` until the plan excludes them.
UNWRITABLE_ACTIONS: tuple[str, ...] = (Action.INVALID_KEY.value, Action.INVALID_METADATA.value)
UNWRITABLE_FIX = "not migrated: exclude it with filters.exclude (or a rule with exclude: true), or fix it at the source, then plan again"
MODES = ("quick", "fast", "deep")

_JOURNAL_BATCH = 400
# Rows are folded into a polars frame every this many, so a long audit keeps
# compact columns rather than millions of dicts.
if TYPE_CHECKING:
    from migrate.plan import Plan

_ROWS_PER_CHUNK = 20_000


@dataclass(frozen=True)
class VerifyOptions:
    """How `verify` checks. `expect_prefixes`: (dest_bucket, prefix) pairs scanned for unexpected objects."""

    mode: Literal["quick", "fast", "deep"] = "fast"
    concurrency: int = 16
    sample: int | None = None
    seed: int = 0
    max_attempts: int = 5
    server_side_encryption: str | None = None
    kms_key_id: str | None = None
    # Per-rule SSE overrides (rule name -> (sse, kms key)), as `run` applied them.
    encryption_by_rule: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)
    expect_prefixes: tuple[tuple[str, str], ...] = ()
    # The plan's transfer.max_bandwidth / max_requests_per_second hold for verify's reads too.
    max_bandwidth: int | None = None
    max_requests_per_second: float | None = None
    # False: only look for unexpected objects (a cluster driver, whose workers check the records).
    check_objects: bool = True

    def encryption_for(self, rule: str | None) -> tuple[str | None, str | None]:
        return EncryptionSettings((self.server_side_encryption, self.kms_key_id), self.encryption_by_rule).for_rule(rule)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserInputError(f"verify mode must be quick, fast or deep, got {self.mode!r}")
        if self.concurrency < 1:
            raise UserInputError("verify concurrency must be at least 1")
        if self.sample is not None and self.sample < 1:
            raise UserInputError(f"--sample must be at least 1, got {self.sample}")
        if self.max_attempts < 1:
            raise UserInputError("verify max_attempts must be at least 1")


@dataclass(frozen=True)
class VerifyStats:
    """What the audit saw besides its rows: the report's sampling facts."""

    population: int  # records with a verified action
    checked: int  # records checked (the sample, or all of them)
    not_verified: int  # records with another action


# -- pure comparisons -----------------------------------------------------------
@dataclass(frozen=True)
class ChecksumComparison:
    """The outcome of comparing one recorded checksum with what the destination holds."""

    outcome: Literal["match", "differs", "none"]
    basis: str  # one of migrate.report.CHECKSUM_BASES
    expected: str | None = None
    actual: str | None = None
    note: str = ""


def _is_composite(checksum: str) -> bool:
    # S3 composite (multipart) checksums end in "-<part count>"; base64 never contains "-".
    return "-" in checksum


def _etag_is_md5(info: ObjectInfo) -> bool:
    # With SSE-KMS (and SSE-C) S3's ETag is not the MD5 of the bytes.
    return is_plain_md5(info.etag) and not (info.server_side_encryption or "").startswith("aws:kms")


def _compare(basis: str, expected: str, actual: str) -> ChecksumComparison:
    return ChecksumComparison("match" if expected == actual else "differs", basis, expected, actual)


def compare_recorded_checksum(*, dest: ObjectInfo, journal_row: JournalRow | None, source_etag: str | None) -> ChecksumComparison:
    """Fast mode's content check: the strongest comparison the available facts allow.

    `journal_row` must be usable (state done, fingerprint of the current
    record), else None. In order of preference:

    1. destination's stored SHA-256 (single part) vs the SHA-256 `run` computed
       from the source bytes while streaming (`journal-sha256`);
    2. destination's stored checksum vs the one `run` sent, the composite
       "b64-N" for multipart (`journal-checksum`);
    3. destination ETag, when a plain MD5, vs the MD5 `run` computed (`journal-md5`);
    4. destination ETag vs the ETag it answered when `run` wrote it (`journal-etag`);
    5. without a journal row: destination ETag vs source eTag, both plain MD5s (`source-etag`);
    6. nothing comparable: outcome `none`, the note says why.
    """
    if journal_row is not None:
        stored_sha = dest.checksums.get("sha256")
        if stored_sha and not _is_composite(stored_sha) and journal_row.sha256:
            try:
                actual_hex = base64.b64decode(stored_sha, validate=True).hex()
            except ValueError:
                actual_hex = f"(not base64: {stored_sha})"
            return _compare("journal-sha256", f"sha256:{journal_row.sha256}", f"sha256:{actual_hex}")
        algorithm = (journal_row.checksum_algorithm or "").lower()
        stored = dest.checksums.get(algorithm) if algorithm else None
        if journal_row.dest_checksum and stored:
            label = f"{algorithm}-composite" if _is_composite(stored) or _is_composite(journal_row.dest_checksum) else algorithm
            return _compare("journal-checksum", f"{label}:{journal_row.dest_checksum}", f"{label}:{stored}")
        if journal_row.md5 and _etag_is_md5(dest):
            return _compare("journal-md5", f"md5:{journal_row.md5}", f"md5:{dest.etag}")
        if journal_row.dest_etag and dest.etag:
            return _compare("journal-etag", f"etag:{journal_row.dest_etag}", f"etag:{dest.etag}")
    if is_plain_md5(source_etag) and _etag_is_md5(dest):
        return _compare("source-etag", f"md5:{source_etag}", f"md5:{dest.etag}")
    reasons = []
    if journal_row is None:
        reasons.append("no usable journal row")
    else:
        reasons.append("the journal recorded no comparable digest")
    if not is_plain_md5(source_etag):
        reasons.append("the source eTag is not a plain MD5" if source_etag else "the source eTag is unknown")
    if not _etag_is_md5(dest):
        reasons.append("the destination ETag is not a plain MD5 (multipart or SSE-KMS)")
    return ChecksumComparison("none", "none", note="no checksum could be compared (" + ", ".join(reasons) + ")")


def _norm(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def compare_metadata(
    record: ObjectRecord,
    dest: ObjectInfo,
    *,
    expected_content_type: str | None,
    server_side_encryption: str | None = None,
    kms_key_id: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(expected, actual) for each metadata field the destination does not carry as planned; ({}, {}) when all agree.

    `expected_content_type` None skips the Content-Type check (fast mode
    cannot know what `run` used when the record has none: the source's at
    copy time). S3 lowercases user metadata keys, and omits the storage
    class for STANDARD; both are normalised. SSE is checked only when the
    options ask for it (a bucket default is not a deviation).
    """
    expected: dict[str, Any] = {}
    actual: dict[str, Any] = {}

    def check(name: str, want: Any, got: Any) -> None:
        if want != got:
            expected[name], actual[name] = want, got

    if expected_content_type is not None:
        check("content_type", _norm(expected_content_type), _norm(dest.content_type))
    check("cache_control", _norm(record.cache_control), _norm(dest.cache_control))
    check("content_disposition", _norm(record.content_disposition), _norm(dest.content_disposition))
    check(
        "user_metadata",
        # Both decoded by the one mapping (migrate/metadata.py): JSON types and unicode compare as themselves.
        comparable_metadata(record.user_metadata),
        comparable_metadata(dest.user_metadata),
    )
    check("storage_class", (record.storage_class or "STANDARD").upper(), (dest.storage_class or "STANDARD").upper())
    if server_side_encryption:
        check("server_side_encryption", server_side_encryption, dest.server_side_encryption)
        if server_side_encryption == "aws:kms" and kms_key_id and not kms_key_id.startswith("alias/"):
            # S3 answers the key ARN; the plan may name the bare key id. An alias cannot be resolved from a HEAD.
            got = dest.sse_kms_key_id or ""
            if not (got == kms_key_id or got.endswith("/" + kms_key_id)):
                expected["sse_kms_key_id"], actual["sse_kms_key_id"] = kms_key_id, dest.sse_kms_key_id
    return expected, actual


def _describe_metadata(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> str:
    return "metadata not as planned: " + "; ".join(f"{name} is {actual[name]!r}, planned {expected[name]!r}" for name in expected)


def _journal_usable(record: ObjectRecord, row: JournalRow | None, options: VerifyOptions) -> tuple[JournalRow | None, str]:
    """The journal row when its digests describe this record's copy, and a note on why not otherwise."""
    if row is None:
        return None, ""
    if row.state == STATE_DONE:
        sse, kms_key_id = options.encryption_for(record.rule)
        fingerprint = record_fingerprint(record, sse=sse, kms_key_id=kms_key_id)
        if row.fingerprint == fingerprint:
            return row, ""
        return None, "the journal row is from an earlier plan of this object"
    if row.state == STATE_SKIPPED:
        return None, "`run` skipped it: the destination already had this key (on_conflict: skip)"
    if row.state == STATE_FAILED:
        return None, f"`run` recorded a failure: {row.error or 'unknown'}"
    if row.state == STATE_IN_PROGRESS:
        return None, "`run` did not finish this object"
    return None, f"journal state {row.state!r}"


# -- the audit --------------------------------------------------------------------
class _Stopped(Exception):
    """The audit is stopping (fatal error or Ctrl-C): do no more work."""


class _RowSink:
    """Thread-safe collection of report rows, folded into frames as it grows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._frames: list[pl.DataFrame] = []
        self._schema = {"_seq": pl.Int64(), **REPORT_SCHEMA}

    def add(self, seq: int, row: dict[str, Any]) -> None:
        with self._lock:
            self._rows.append({"_seq": seq, **row})
            if len(self._rows) >= _ROWS_PER_CHUNK:
                self._fold()

    def _fold(self) -> None:
        if self._rows:
            self._frames.append(pl.DataFrame(self._rows, schema=self._schema))
            self._rows = []

    def frame(self) -> pl.DataFrame:
        with self._lock:
            self._fold()
            frames = self._frames or [pl.DataFrame(schema=self._schema)]
            return pl.concat(frames, how="vertical")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _record_row(record: ObjectRecord, mode: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source_bucket": record.source_bucket,
        "source_key": record.source_key,
        "dest_bucket": record.dest_bucket,
        "dest_key": record.dest_key,
        "rule": record.rule,
        "action": record.action,
        "size": record.size,
        "source_etag": record.source_etag,
        "checked_mode": mode,
        "checked_at": _now(),
    }
    row.update(values)
    return row


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _hash_stream(
    store: SourceStore, bucket: str, key: str, *, stop: threading.Event | None = None, limits: RateLimits = UNLIMITED
) -> tuple[ObjectInfo, int, str]:
    """(response info, bytes read, SHA-256 hex) of one full read; one chunk in memory at a time."""
    info, chunks = store.open(bucket, key)
    digest = hashlib.sha256()
    length = 0
    for chunk in chunks:
        if stop is not None and stop.is_set():
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # releases the connection (the generator's finally)
            raise _Stopped()
        limits.read(len(chunk), stop=stop)
        digest.update(chunk)
        length += len(chunk)
    return info, length, digest.hexdigest()


class _Audit:
    """One verification over a stream of records. Use `verify_records` / `verify_migration`."""

    def __init__(
        self,
        *,
        source: SourceStore,
        destination: S3Store,
        journal: TransferJournal | None,
        options: VerifyOptions,
        progress: Progress,
    ):
        self.source = source
        self.destination = destination
        self.journal = journal
        self.options = options
        self.progress = progress
        self.throttle = Throttle()
        self.limits = RateLimits(bytes_per_second=options.max_bandwidth, requests_per_second=options.max_requests_per_second)
        self.stop = threading.Event()
        self.sink = _RowSink()
        self._lock = threading.Lock()
        self._fatal: BaseException | None = None
        self._slots = threading.BoundedSemaphore(options.concurrency * 2)
        self._checked_buckets: set[tuple[str, str]] = set()
        self._prefixes: dict[str, list[str]] = {}
        for bucket, prefix in options.expect_prefixes:
            self._prefixes.setdefault(bucket, []).append(prefix)
        self._expected_keys: set[tuple[str, str]] = set()
        # quick mode: the destination listing under `expect_prefixes`, (bucket, key) -> (size, etag, storage class).
        self._listing: dict[tuple[str, str], tuple[int, str | None, str | None]] | None = None
        self._listed: dict[str, list[str]] = {}

    # -- driving ---------------------------------------------------------
    def run(self, records: Iterable[ObjectRecord]) -> tuple[pl.DataFrame, VerifyStats]:
        population = not_verified = checked = 0
        pool = ThreadPoolExecutor(max_workers=self.options.concurrency, thread_name_prefix="migrate-verify")
        # Deep mode's source reads: one per check in flight at most, so a check never waits for a free reader.
        self._source_reads = ThreadPoolExecutor(max_workers=self.options.concurrency, thread_name_prefix="migrate-verify-source")
        try:
            if self.options.mode == "quick":
                self._list_destination()
            if self.options.sample is not None:
                sample, population, not_verified = self._reservoir(records)
                self.progress.start(objects=len(sample), total_bytes=sum(r.size for _, r in sample), description="verify")
                checked = self._submit_all(pool, iter(sample))
            else:
                if isinstance(records, ManifestRecords):
                    objects, total_bytes = records.totals(VERIFIED_ACTIONS)
                    self.progress.start(objects=objects, total_bytes=total_bytes, description="verify")
                elif isinstance(records, Sequence):
                    eligible = [r for r in records if r.action in VERIFIED_ACTIONS]
                    self.progress.start(objects=len(eligible), total_bytes=sum(r.size for r in eligible), description="verify")
                else:
                    self.progress.start(objects=0, total_bytes=0, description="verify")
                counter = {"population": 0, "not_verified": 0}
                checked = self._submit_all(pool, self._eligible(records, counter))
                population, not_verified = counter["population"], counter["not_verified"]
            for bucket, prefixes in self._prefixes.items():
                for prefix in self._distinct_prefixes(prefixes):
                    self._submit(pool, self._scan_unexpected, bucket, prefix)
        except _Stopped:
            pass
        except KeyboardInterrupt:
            self.stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            self._source_reads.shutdown(wait=False, cancel_futures=True)
            raise Interrupted("verify interrupted; nothing was changed: rerun `migrate verify`") from None
        finally:
            self._drain(pool)
            self.progress.close()
        if self._fatal is not None:
            raise self._fatal
        collected = self.sink.frame()
        records_part = collected.filter(pl.col("status") != UNEXPECTED).sort("_seq")
        unexpected = collected.filter(pl.col("status") == UNEXPECTED).unique(["dest_bucket", "dest_key"]).sort(["dest_bucket", "dest_key"])
        frame = pl.concat([records_part, unexpected]).drop("_seq")
        return frame, VerifyStats(population=population, checked=checked, not_verified=not_verified)

    def _note_mapping(self, record: ObjectRecord) -> None:
        # Every record that maps a key (whatever its action) makes that key expected.
        if record.dest_bucket in self._prefixes and record.dest_key is not None:
            if any(record.dest_key.startswith(p) for p in self._prefixes[record.dest_bucket]):
                self._expected_keys.add((record.dest_bucket, record.dest_key))

    def _eligible(self, records: Iterable[ObjectRecord], counter: dict[str, int]) -> Iterator[tuple[int, ObjectRecord]]:
        for seq, record in enumerate(records):
            self._note_mapping(record)
            if record.action in VERIFIED_ACTIONS and self.options.check_objects:
                counter["population"] += 1
                yield seq, record
            elif record.action in UNWRITABLE_ACTIONS:
                # Planned, but S3 cannot hold it as it is: not migrated, and the audit says so.
                counter["population"] += 1
                self.sink.add(seq, _record_row(record, self.options.mode, status=NOT_MIGRATED, detail=f"{record.reason}; {UNWRITABLE_FIX}"))
            else:
                counter["not_verified"] += 1

    def _reservoir(self, records: Iterable[ObjectRecord]) -> tuple[list[tuple[int, ObjectRecord]], int, int]:
        """A seeded uniform sample (Algorithm R) of the eligible records, in manifest order.

        Same manifest, same seed: same sample.
        """
        size = self.options.sample or 0
        rng = random.Random(self.options.seed)
        sample: list[tuple[int, ObjectRecord]] = []
        counter = {"population": 0, "not_verified": 0}
        for index, (seq, record) in enumerate(self._eligible(records, counter)):
            if index < size:
                sample.append((seq, record))
            else:
                slot = rng.randrange(index + 1)
                if slot < size:
                    sample[slot] = (seq, record)
        sample.sort(key=lambda item: item[0])
        return sample, counter["population"], counter["not_verified"]

    @staticmethod
    def _distinct_prefixes(prefixes: list[str]) -> list[str]:
        # "a/" covers "a/b/": list each part of a bucket once.
        ordered = sorted(set(prefixes))
        return [p for i, p in enumerate(ordered) if not any(p.startswith(q) for q in ordered[:i])]

    def _submit_all(self, pool: ThreadPoolExecutor, items: Iterator[tuple[int, ObjectRecord]]) -> int:
        submitted = 0
        for batch in _batches(items, _JOURNAL_BATCH):
            if self.stop.is_set():
                raise _Stopped()
            rows: dict[tuple[str, str], JournalRow] = {}
            if self.journal is not None and self.options.mode in ("quick", "fast"):
                rows = self.journal.rows([(r.source_bucket, r.source_key) for _, r in batch])
            for seq, record in batch:
                self._check_buckets(record)
                journal_row = rows.get((record.source_bucket, record.source_key))
                proven = self._prove_from_listing(record, journal_row) if self._listing is not None else None
                if proven is not None:
                    self.sink.add(seq, proven)
                    self.progress.advance(objects=1, bytes_done=record.size)
                else:
                    self._submit(pool, self._check, seq, record, journal_row)
                submitted += 1
        return submitted

    def _check_buckets(self, record: ObjectRecord, *, cached: bool = True) -> None:
        """Fail the whole audit early, with one line, when a bucket is missing or unreachable."""
        wanted = []
        if record.dest_bucket:
            wanted.append(("dest", record.dest_bucket))
        if self.options.mode == "deep":
            wanted.append(("source", record.source_bucket))
        for side, bucket in wanted:
            if cached and (side, bucket) in self._checked_buckets:
                continue
            store = self.destination if side == "dest" else self.source
            check = getattr(store, "check_bucket", None)
            if check is not None:
                try:
                    check(bucket)
                except FatalError as err:
                    self._fail(err)
                    raise _Stopped() from None
                except TransientError as err:
                    self._fail(ServiceUnavailable(f"{side} bucket {bucket!r}: unreachable ({err}); check the endpoint and rerun `migrate verify`"))
                    raise _Stopped() from None
            if cached:  # only the submitting thread fills the cache
                self._checked_buckets.add((side, bucket))

    def _still_reachable(self, record: ObjectRecord) -> bool:
        """After an object exhausted its retries: is it that object, or the whole server?

        Asks the bucket again. When that fails too the audit stops with a
        FatalError, so an outage is never reported as objects that differ.
        """
        try:
            self._check_buckets(record, cached=False)
        except _Stopped:
            return False
        return True

    def _submit(self, pool: ThreadPoolExecutor, func: Callable[..., None], *args: Any) -> None:
        while not self._slots.acquire(timeout=0.2):
            if self.stop.is_set():
                raise _Stopped()

        def task() -> None:
            try:
                if not self.stop.is_set():
                    func(*args)
            finally:
                self._slots.release()

        pool.submit(task)

    def _drain(self, pool: ThreadPoolExecutor) -> None:
        pool.shutdown(wait=True)
        self._source_reads.shutdown(wait=True)

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self._fatal is None:
                self._fatal = error
        self.stop.set()

    def _retry(self, func: Callable[[], Any]) -> Any:
        def attempt() -> Any:
            self.limits.request(stop=self.stop)
            return func()

        return call_with_retries(attempt, max_attempts=self.options.max_attempts, throttle=self.throttle)

    # -- quick mode: what the listing proves -------------------------------
    def _list_destination(self) -> None:
        """List every distinct `expect_prefixes` part once (ListObjectsV2, 1,000 keys a page) for `_prove_from_listing`.

        A listing that fails for a non-fatal reason leaves that part unlisted:
        its records are checked by HEAD and the unexpected scan reports the error.
        """
        listing: dict[tuple[str, str], tuple[int, str | None, str | None]] = {}
        for bucket, prefixes in self._prefixes.items():
            for prefix in self._distinct_prefixes(prefixes):

                def pages(bucket: str = bucket, prefix: str = prefix) -> dict[tuple[str, str], tuple[int, str | None, str | None]]:
                    found: dict[tuple[str, str], tuple[int, str | None, str | None]] = {}
                    for page in self.destination.iter_objects(bucket, prefix):
                        if self.stop.is_set():
                            raise _Stopped()
                        for info in page:
                            found[(bucket, info.key)] = (info.size, info.etag, info.storage_class)
                    return found

                try:
                    listing.update(self._retry(pages))
                except FatalError as err:
                    self._fail(err)
                    raise _Stopped() from None
                except MigrateError as err:
                    log.warning("quick verify: could not list s3://%s/%s (%s); those objects get a HEAD each", bucket, prefix, err)
                    continue
                self._listed.setdefault(bucket, []).append(prefix)
        self._listing = listing

    def _prove_from_listing(self, record: ObjectRecord, journal_row: JournalRow | None) -> dict[str, Any] | None:
        """A `match` row when the listing and the journal prove the object; None when it needs a HEAD.

        Proven means: the key is listed with the planned size and storage
        class, and its ETag equals the MD5 `run` computed from the source bytes
        (single part, `listing-md5`) or the ETag the destination answered when
        `run` wrote it (`listing-etag`, multipart), with a journal row done for
        this very record (its fingerprint covers the planned headers and SSE,
        so `run` sent exactly those). `skip-existing` records need no journal:
        the listed ETag must equal the source eTag, both plain MD5s. Anything
        else (not listed, other size, other ETag, no usable journal row, a
        prefix not listed) returns None: the caller HEADs it like fast mode.
        """
        assert self._listing is not None
        if not record.dest_bucket or not record.dest_key:
            return None
        if not any(record.dest_key.startswith(p) for p in self._listed.get(record.dest_bucket, ())):
            return None
        entry = self._listing.get((record.dest_bucket, record.dest_key))
        if entry is None:
            return None  # a HEAD confirms it is missing (and says so in the same words as fast mode)
        size, etag, storage_class = entry
        if size != record.size or not etag or (storage_class or "STANDARD").upper() != (record.storage_class or "STANDARD").upper():
            return None
        found = {"dest_size": size, "dest_etag": etag}
        if record.action == Action.SKIP_EXISTING.value:
            if is_plain_md5(record.source_etag) and etag == record.source_etag:
                checksums = {"expected_checksum": f"md5:{record.source_etag}", "actual_checksum": f"md5:{etag}", "checksum_basis": "listing-source-etag"}
                return _record_row(record, "quick", status=MATCH, detail="skip-existing: found at the destination when planned, not written by `run`", **found, **checksums)
            return None
        usable, _ = _journal_usable(record, journal_row, self.options) if self.journal is not None else (None, "")
        if usable is None:
            return None
        if usable.md5 and is_plain_md5(etag) and etag == usable.md5:
            checksums = {"expected_checksum": f"md5:{usable.md5}", "actual_checksum": f"md5:{etag}", "checksum_basis": "listing-md5"}
        elif usable.dest_etag and etag == usable.dest_etag:
            checksums = {"expected_checksum": f"etag:{usable.dest_etag}", "actual_checksum": f"etag:{etag}", "checksum_basis": "listing-etag"}
        else:
            return None
        return _record_row(record, "quick", status=MATCH, detail="", **found, **checksums)

    # -- one object --------------------------------------------------------
    def _check(self, seq: int, record: ObjectRecord, journal_row: JournalRow | None) -> None:
        mode = self.options.mode
        try:
            if not record.dest_bucket or not record.dest_key:
                row = _record_row(record, mode, status=ERROR, detail="the manifest record has no destination key; run `migrate plan` again")
            elif mode == "deep":
                row = self._check_deep(record)
            elif mode == "quick":
                row = self._check_fast(record, journal_row)  # the listing could not prove it: one HEAD, checked_mode `fast`
            else:
                row = self._check_fast(record, journal_row)
        except _Stopped:
            return
        except FatalError as err:
            self._fail(err)
            return
        except MigrateError as err:
            if isinstance(err, TransientError) and not self._still_reachable(record):
                return
            row = _record_row(record, mode, status=ERROR, detail=f"could not check: {err}")
        except Exception as err:  # noqa: BLE001 - recorded on the object, like run does
            log.exception("verifying %s/%s", record.source_bucket, record.source_key)
            row = _record_row(record, mode, status=ERROR, detail=f"could not check: unexpected {type(err).__name__}: {err}")
        self.sink.add(seq, row)
        self.progress.advance(objects=1, bytes_done=record.size)

    def _check_fast(self, record: ObjectRecord, journal_row: JournalRow | None) -> dict[str, Any]:
        assert record.dest_bucket and record.dest_key
        usable, journal_note = _journal_usable(record, journal_row, self.options) if self.journal is not None else (None, "")
        if self.journal is not None and journal_row is None and record.action == Action.COPY.value:
            journal_note = "no journal row: not copied by this plan's `run`"
        dest: ObjectInfo | None = self._retry(lambda: self.destination.head(record.dest_bucket, record.dest_key))  # type: ignore[arg-type]
        if dest is None:
            return _record_row(record, "fast", status=MISSING, detail=_join("not at the destination", journal_note))
        found = {"dest_size": dest.size, "dest_etag": dest.etag}
        copied = record.action == Action.COPY.value
        expected_meta, actual_meta = (
            compare_metadata(
                record,
                dest,
                expected_content_type=record.content_type,
                server_side_encryption=self.options.encryption_for(record.rule)[0],
                kms_key_id=self.options.encryption_for(record.rule)[1],
            )
            if copied
            else ({}, {})
        )
        meta = _metadata_columns(expected_meta, actual_meta)
        skip_note = "" if copied else "skip-existing: found at the destination when planned, not written by `run`"
        if dest.size != record.size:
            return _record_row(
                record,
                "fast",
                status=SIZE_DIFFERS,
                detail=_join(f"the destination has {dest.size:,} bytes, planned {record.size:,}", skip_note, journal_note),
                **found,
                **meta,
            )
        comparison = compare_recorded_checksum(dest=dest, journal_row=usable, source_etag=record.source_etag)
        checksums = {"expected_checksum": comparison.expected, "actual_checksum": comparison.actual, "checksum_basis": comparison.basis}
        if comparison.outcome == "differs":
            status, detail = CHECKSUM_DIFFERS, f"same size, but {comparison.basis} differs: the bytes are not the ones copied"
        elif expected_meta:
            status, detail = METADATA_DIFFERS, _describe_metadata(expected_meta, actual_meta)
        elif comparison.outcome == "none":
            status, detail = MATCH, f"size matches; {comparison.note}; run --mode deep to compare bytes"
        else:
            status, detail = MATCH, ""
        if status == CHECKSUM_DIFFERS and expected_meta:
            detail = _join(detail, _describe_metadata(expected_meta, actual_meta))
        return _record_row(record, "fast", status=status, detail=_join(detail, skip_note, journal_note), **found, **checksums, **meta)

    def _check_deep(self, record: ObjectRecord) -> dict[str, Any]:
        assert record.dest_bucket and record.dest_key
        # Both sides are read at once (the source on a helper thread): an object costs the slower read, not the sum.
        # hashlib releases the GIL while it hashes a chunk, so the two digests run in parallel too.
        source_read = self._source_reads.submit(
            self._retry, lambda: _hash_stream(self.source, record.source_bucket, record.source_key, stop=self.stop, limits=self.limits)
        )
        try:
            dest, dest_length, dest_sha = self._retry(lambda: _hash_stream(self.destination, record.dest_bucket, record.dest_key, stop=self.stop, limits=self.limits))  # type: ignore[arg-type]
        except ObjectNotFound:
            source_read.cancel()  # nothing to compare with; a read already going finishes unused
            return _record_row(record, "deep", status=MISSING, detail="not at the destination")
        except BaseException:
            source_read.cancel()
            raise
        found = {"dest_size": dest_length, "dest_etag": dest.etag}
        try:
            source, source_length, source_sha = source_read.result()
        except ObjectNotFound as err:
            return _record_row(
                record, "deep", status=ERROR, detail=f"could not check: the source object is gone ({err}), nothing to compare with", **found
            )
        checksums = {"expected_checksum": f"sha256:{source_sha}", "actual_checksum": f"sha256:{dest_sha}", "checksum_basis": "deep-read"}
        copied = record.action == Action.COPY.value
        expected_meta, actual_meta = (
            compare_metadata(
                record,
                dest,
                # What `run` sends: the record's type, else the source's, else the S3 default.
                expected_content_type=record.content_type or source.content_type or "application/octet-stream",
                server_side_encryption=self.options.encryption_for(record.rule)[0],
                kms_key_id=self.options.encryption_for(record.rule)[1],
            )
            if copied
            else ({}, {})
        )
        meta = _metadata_columns(expected_meta, actual_meta)
        notes = [] if copied else ["skip-existing: found at the destination when planned, not written by `run`"]
        if source_length != record.size:
            notes.append(f"the source now has {source_length:,} bytes, the plan listed {record.size:,} (changed since the plan)")
        if dest_length != source_length:
            status, detail = SIZE_DIFFERS, f"the destination has {dest_length:,} bytes, the source {source_length:,}"
        elif dest_sha != source_sha:
            status, detail = CHECKSUM_DIFFERS, "same size, but the SHA-256 of the bytes differs from the source's"
        elif expected_meta:
            status, detail = METADATA_DIFFERS, _describe_metadata(expected_meta, actual_meta)
        else:
            status, detail = MATCH, ""
        if status in (SIZE_DIFFERS, CHECKSUM_DIFFERS) and expected_meta:
            notes.append(_describe_metadata(expected_meta, actual_meta))
        return _record_row(record, "deep", status=status, detail=_join(detail, *notes), **found, **checksums, **meta)

    # -- unexpected objects ------------------------------------------------
    def _scan_unexpected(self, bucket: str, prefix: str) -> None:
        """List `bucket/prefix` and report every object no record maps to."""

        if self._listing is not None and prefix in self._listed.get(bucket, ()):
            # quick mode listed this prefix already: no second listing.
            for (listed_bucket, key), (size, etag, _) in self._listing.items():  # sorted with the other unexpected rows
                if listed_bucket == bucket and key.startswith(prefix) and (bucket, key) not in self._expected_keys:
                    self._add_unexpected(bucket, prefix, ObjectInfo(key=key, size=size, etag=etag))
            return

        def listing() -> list[ObjectInfo]:
            strays: list[ObjectInfo] = []
            for page in self.destination.iter_objects(bucket, prefix):
                if self.stop.is_set():
                    raise _Stopped()
                strays.extend(info for info in page if (bucket, info.key) not in self._expected_keys)
            return strays

        try:
            strays = self._retry(listing)
        except _Stopped:
            return
        except FatalError as err:
            self._fail(err)
            return
        except MigrateError as err:
            self.sink.add(
                -1,
                {
                    "dest_bucket": bucket,
                    "dest_key": prefix,
                    "status": ERROR,
                    "detail": f"could not list s3://{bucket}/{prefix} to look for unexpected objects: {err}",
                    "checked_mode": "listing",
                    "checked_at": _now(),
                },
            )
            return
        for info in strays:
            self._add_unexpected(bucket, prefix, info)

    def _add_unexpected(self, bucket: str, prefix: str, info: ObjectInfo) -> None:
        self.sink.add(
            0,
            {
                "dest_bucket": bucket,
                "dest_key": info.key,
                "status": UNEXPECTED,
                "detail": f"under the planned prefix {prefix!r} but no manifest record maps to it",
                "dest_size": info.size,
                "dest_etag": info.etag,
                "checked_mode": "listing",
                "checked_at": _now(),
            },
        )


def _metadata_columns(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> dict[str, str | None]:
    if not expected:
        return {"expected_metadata": None, "actual_metadata": None}
    return {
        "expected_metadata": json.dumps(expected, sort_keys=True, ensure_ascii=False),
        "actual_metadata": json.dumps(actual, sort_keys=True, ensure_ascii=False),
    }


def _batches(items: Iterator[tuple[int, ObjectRecord]], size: int) -> Iterator[list[tuple[int, ObjectRecord]]]:
    batch: list[tuple[int, ObjectRecord]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# -- entry points -------------------------------------------------------------------
def verify_records(
    records: Iterable[ObjectRecord],
    *,
    source: SourceStore,
    destination: S3Store,
    journal: TransferJournal | None,
    options: VerifyOptions,
    progress: Progress | None = None,
) -> pl.DataFrame:
    """Verify every `copy`/`skip-existing` record (or a seeded sample); return REPORT_SCHEMA rows.

    Rows come in manifest order, then `unexpected` rows sorted by key.
    Raises `FatalError` when the audit itself cannot work (credentials,
    missing bucket, unreachable server) and `Interrupted` on Ctrl-C.
    Pass a list (or any Sequence) for progress totals.
    """
    frame, _ = _Audit(source=source, destination=destination, journal=journal, options=options, progress=progress or NullProgress()).run(records)
    return frame


def verify_migration(
    records: Iterable[ObjectRecord],
    *,
    plan_name: str,
    source: SourceStore,
    destination: S3Store,
    journal: TransferJournal | None,
    options: VerifyOptions,
    progress: Progress | None = None,
    catalog_rows: pl.DataFrame | None = None,
    executor: Any = None,
) -> VerificationReport:
    """`verify_records` plus the report metadata (times, sampling facts); `catalog_rows` from `catalog_cross_check` are appended."""
    started = _now()
    if executor is not None:
        # A cluster (migrate.cluster.DaskExecutor) checks the records on its workers; same rows, same order.
        records = list(records)
        frame = executor.verify(records, journal=journal, options=options, progress=progress)
        population = sum(1 for r in records if r.action in VERIFIED_ACTIONS)
        stats = VerifyStats(population=population, checked=population, not_verified=len(records) - population)
    else:
        audit = _Audit(source=source, destination=destination, journal=journal, options=options, progress=progress or NullProgress())
        frame, stats = audit.run(records)
    if catalog_rows is not None and catalog_rows.height:
        frame = pl.concat([frame, catalog_rows.select(list(REPORT_SCHEMA))])
    return VerificationReport(
        frame=frame,
        plan_name=plan_name,
        mode=options.mode,
        started_at=started,
        finished_at=_now(),
        population=stats.population,
        sample_size=options.sample,
        seed=options.seed if options.sample is not None else None,
        not_verified=stats.not_verified,
    )


# -- Supabase catalog cross-check -------------------------------------------------------
_INVENTORY_SCHEMA = {"bucket": pl.Utf8(), "key": pl.Utf8(), "size": pl.Int64(), "etag": pl.Utf8()}


def inventory_frame(inventory: Any, *, bucket: str | None = None) -> pl.DataFrame:
    """Normalise an inventory to a frame (bucket, key, size, etag), one row per object.

    Accepts:
    - a polars frame with `key` or `source_key`, `size`, optionally `etag`
      or `source_etag`, and `bucket` or `source_bucket` (else `bucket=`);
    - a mapping {key or (bucket, key): ObjectInfo | (size, etag) | size | None};
      None means "looked for, not there" (a HEAD that found nothing) and is dropped;
    - an iterable of ObjectInfo, of pages (lists) of them as
      `SourceStore.iter_objects` yields, or of (bucket, key, size[, etag]) tuples.
    ObjectInfo and bare keys carry no bucket: pass `bucket=`.
    """
    if isinstance(inventory, pl.DataFrame):
        return _frame_inventory(inventory, bucket=bucket)
    rows: list[tuple[str | None, str, int | None, str | None]] = []
    if isinstance(inventory, Mapping):
        for name, value in inventory.items():
            if value is None:
                continue
            item_bucket, key = name if isinstance(name, tuple) else (bucket, name)
            size, etag = _size_etag(value)
            rows.append((item_bucket, key, size, etag))
    else:
        for item in _flatten(inventory):
            if isinstance(item, ObjectInfo):
                rows.append((bucket, item.key, item.size, item.etag))
            elif isinstance(item, tuple) and len(item) in (3, 4):
                rows.append((item[0], item[1], item[2], item[3] if len(item) == 4 else None))
            else:
                raise TypeError(f"inventory item {item!r}: expected ObjectInfo or (bucket, key, size[, etag])")
    frame = pl.DataFrame(rows, schema=_INVENTORY_SCHEMA, orient="row")
    return _require_bucket(frame)


def _flatten(items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        if isinstance(item, list):
            yield from item
        else:
            yield item


def _size_etag(value: Any) -> tuple[int | None, str | None]:
    if isinstance(value, ObjectInfo):
        return value.size, value.etag
    if isinstance(value, tuple):
        return value[0], value[1] if len(value) > 1 else None
    if isinstance(value, int):
        return value, None
    raise TypeError(f"inventory value {value!r}: expected ObjectInfo, (size, etag), size or None")


def _frame_inventory(frame: pl.DataFrame, *, bucket: str | None) -> pl.DataFrame:
    def pick(*names: str) -> str | None:
        return next((n for n in names if n in frame.columns), None)

    key, size = pick("key", "source_key"), pick("size")
    if key is None or size is None:
        raise TypeError(f"inventory frame needs `key` (or `source_key`) and `size` columns, has {frame.columns}")
    bucket_col, etag_col = pick("bucket", "source_bucket"), pick("etag", "source_etag")
    out = frame.select(
        (pl.col(bucket_col) if bucket_col else pl.lit(bucket)).cast(pl.Utf8).alias("bucket"),
        pl.col(key).cast(pl.Utf8).alias("key"),
        pl.col(size).cast(pl.Int64).alias("size"),
        (pl.col(etag_col) if etag_col else pl.lit(None)).cast(pl.Utf8).alias("etag"),
    )
    return _require_bucket(out)


def _require_bucket(frame: pl.DataFrame) -> pl.DataFrame:
    if frame.height and frame["bucket"].null_count():
        raise TypeError("inventory entries without a bucket: pass bucket= or give (bucket, key) pairs")
    return frame


def catalog_cross_check(catalog: Any, storage: Any, *, bucket: str | None = None) -> pl.DataFrame:
    """Compare the Supabase catalog (`storage.objects`) with the source storage itself; REPORT_SCHEMA rows.

    Pure: give it two inventories in any form `inventory_frame` accepts,
    e.g. `CatalogStore.iter_objects(b)` pages for the catalog and
    `SupabaseStore.iter_objects(b)` pages (or a {key: head-or-None} mapping
    of HEAD results) for the storage, with `bucket=b`.

    - `catalog-only`: in the catalog, not in the storage (bytes lost before the migration);
    - `storage-only`: in the storage, not in the catalog;
    - `catalog-differs`: in both, but the sizes, or both eTags, disagree.

    These rows describe the source as it was; the report keeps them in a
    section of their own and they never change the verdict.
    """
    keys = ["bucket", "key"]
    cat = inventory_frame(catalog, bucket=bucket).unique(keys, keep="first")
    sto = inventory_frame(storage, bucket=bucket).unique(keys, keep="first")
    now = _now()

    def rows(frame: pl.DataFrame, status: str, detail: pl.Expr, **extra: pl.Expr) -> pl.DataFrame:
        values: dict[str, pl.Expr] = {
            "source_bucket": pl.col("bucket"),
            "source_key": pl.col("key"),
            "size": pl.col("size"),
            "source_etag": pl.col("etag"),
            "status": pl.lit(status),
            "detail": detail,
            "checked_mode": pl.lit("catalog"),
            "checked_at": pl.lit(now),
            **extra,
        }
        return frame.select(
            [(values[name] if name in values else pl.lit(None)).cast(dtype).alias(name) for name, dtype in REPORT_SCHEMA.items()]
        )

    only_catalog = rows(
        cat.join(sto, on=keys, how="anti"),
        CATALOG_ONLY,
        pl.lit("listed in the Supabase catalog but not found in the source storage: its bytes were lost before the migration"),
    )
    only_storage = rows(
        sto.join(cat, on=keys, how="anti"),
        STORAGE_ONLY,
        pl.lit("found in the source storage but not listed in the Supabase catalog: Supabase does not know this object"),
    )
    both = cat.join(sto, on=keys, how="inner", suffix="_storage")
    etags_differ = pl.col("etag").is_not_null() & pl.col("etag_storage").is_not_null() & (pl.col("etag") != pl.col("etag_storage"))
    differs = both.filter((pl.col("size") != pl.col("size_storage")) | etags_differ)
    disagreement = rows(
        differs,
        CATALOG_DIFFERS,
        pl.format(
            "the catalog lists {} bytes (eTag {}), the storage has {} bytes (eTag {})",
            pl.col("size"),
            pl.col("etag").fill_null("unknown"),
            pl.col("size_storage"),
            pl.col("etag_storage").fill_null("unknown"),
        ),
        expected_checksum=pl.concat_str(pl.lit("etag:"), pl.col("etag")),
        actual_checksum=pl.concat_str(pl.lit("etag:"), pl.col("etag_storage")),
    )
    result = pl.concat([only_catalog, only_storage, disagreement]).sort(["source_bucket", "source_key", "status"])
    return result if result.height else empty_report()


__all__ = [
    "VerifyOptions",
    "VerifyStats",
    "VERIFIED_ACTIONS",
    "ChecksumComparison",
    "compare_recorded_checksum",
    "compare_metadata",
    "verify_records",
    "verify_migration",
    "inventory_frame",
    "catalog_cross_check",
    "catalog_rows_for_plan",
]


def catalog_rows_for_plan(manifest: pl.DataFrame, source: SourceStore, options: VerifyOptions) -> pl.DataFrame | None:
    """Rows without bytes at a Supabase source (the bytes audit, sampled like the audit itself); None for other sources.

    Comparing the catalog with the REST listing proves nothing (both read
    `storage.objects`); reading the first byte reaches the storage backend.
    """
    from migrate.source_audit import audit_source_bytes, manifest_objects

    if not hasattr(source, "has_bytes"):
        return None
    listed = manifest.filter(pl.col("action").is_in(list(VERIFIED_ACTIONS)))
    audit = audit_source_bytes(manifest_objects(listed), source, sample=options.sample, concurrency=options.concurrency, seed=options.seed)  # type: ignore[arg-type]
    return audit.frame()
