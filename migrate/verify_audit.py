"""The audit engine behind `migrate.verify`: a bounded pool of checks over a stream of records.

Reads top-down: `Audit.run` drives everything (sampling, the quick-mode
listing, submitting checks, the unexpected-object scan), then one object's
checks (quick, fast, deep), then the helpers. What is compared lives in
`migrate.verify_checks`; this module talks to the stores.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Callable, Iterable, Iterator, Sequence

import polars as pl

from migrate.checksums import is_plain_md5
from migrate.errors import FatalError, Interrupted, MigrateError, ObjectNotFound, ServiceUnavailable, TransientError
from migrate.headers import carried_headers
from migrate.journal import JournalRow, TransferJournal
from migrate.progress import Progress
from migrate.ratelimit import UNLIMITED, RateLimits
from migrate.records import BLOCKING_ACTIONS, Action, ManifestRecords, ObjectRecord
from migrate.report_schema import CHECKSUM_DIFFERS, ERROR, MATCH, METADATA_DIFFERS, MISSING, NOT_MIGRATED, SIZE_DIFFERS, UNEXPECTED
from migrate.report_spool import KeySpool, RowSpool
from migrate.retry import Throttle, call_with_retries
from migrate.sampling import reservoir
from migrate.stores.base import ObjectInfo, SourceStore
from migrate.stores.s3 import S3Store
from migrate.verify_checks import (
    BLOCKED_FIX,
    VERIFIED_ACTIONS,
    VerifyOptions,
    VerifyStats,
    compare_metadata,
    compare_recorded_checksum,
    describe_metadata,
    expected_headers,
    headers_from_source,
    journaled_carried,
    join_notes,
    journal_usable,
    metadata_columns,
    now_utc,
    record_row,
)

log = logging.getLogger(__name__)

_JOURNAL_BATCH = 400
# Quick mode looks keys up in the spooled listing this many records at a time (one scan of the listing each).
_LISTING_WINDOW = 20_000


# -- the audit --------------------------------------------------------------------
class Audit:
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
        # Rows, the listing and the expected keys live on disk (report_spool): memory does not grow with the objects.
        self.sink = RowSpool()
        self._lock = threading.Lock()
        self._fatal: BaseException | None = None
        self._slots = threading.BoundedSemaphore(options.concurrency * 2)
        self._checked_buckets: set[tuple[str, str]] = set()
        self._prefixes: dict[str, list[str]] = {}
        for bucket, prefix in options.expect_prefixes:
            self._prefixes.setdefault(bucket, []).append(prefix)
        self._expected_keys = KeySpool(self.sink.directory)
        # quick mode: the destination listing under `expect_prefixes` (bucket, key, size, etag, storage class).
        self._listing: KeySpool | None = None
        self._listed: dict[str, list[str]] = {}

    # -- driving ---------------------------------------------------------
    def run(self, records: Iterable[ObjectRecord]) -> tuple[pl.LazyFrame, VerifyStats]:
        """Check every record; return the rows (a scan of files in `self.sink.directory`, which the caller keeps) and the counts."""
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
                if isinstance(records, ManifestRecords) or hasattr(records, "totals"):  # also `verify.ManifestScan`
                    objects, total_bytes = records.totals(VERIFIED_ACTIONS)  # type: ignore[union-attr]
                    self.progress.start(objects=objects, total_bytes=total_bytes, description="verify")
                elif isinstance(records, Sequence):
                    eligible = [r for r in records if r.action in VERIFIED_ACTIONS]
                    self.progress.start(objects=len(eligible), total_bytes=sum(r.size for r in eligible), description="verify")
                else:
                    self.progress.start(objects=0, total_bytes=0, description="verify")
                counter = {"population": 0, "not_verified": 0}
                checked = self._submit_all(pool, self._eligible(records, counter))
                population, not_verified = counter["population"], counter["not_verified"]
            self._expected_keys.flush()
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
        # Record rows in manifest order, then `unexpected` rows by key (each once).
        return self.sink.ordered(), VerifyStats(population=population, checked=checked, not_verified=not_verified)

    def _note_mapping(self, record: ObjectRecord) -> None:
        # Every record that maps a key (whatever its action) makes that key expected.
        if record.dest_bucket in self._prefixes and record.dest_key is not None:
            if any(record.dest_key.startswith(p) for p in self._prefixes[record.dest_bucket]):
                self._expected_keys.append(record.dest_bucket, record.dest_key)

    def _eligible(self, records: Iterable[ObjectRecord], counter: dict[str, int]) -> Iterator[tuple[int, ObjectRecord]]:
        for seq, record in enumerate(records):
            self._note_mapping(record)
            if record.action in VERIFIED_ACTIONS and self.options.check_objects:
                counter["population"] += 1
                yield seq, record
            elif record.action in BLOCKING_ACTIONS:
                # Planned, but it cannot be migrated as it is: not migrated, and the audit says so.
                counter["population"] += 1
                self.sink.add(seq, record_row(record, self.options.mode, status=NOT_MIGRATED, detail=f"{record.reason}; {BLOCKED_FIX}"))
            else:
                counter["not_verified"] += 1

    def _reservoir(self, records: Iterable[ObjectRecord]) -> tuple[list[tuple[int, ObjectRecord]], int, int]:
        """A seeded uniform sample of the eligible records, in manifest order (`migrate.sampling.reservoir`)."""
        counter = {"population": 0, "not_verified": 0}
        sample = reservoir(self._eligible(records, counter), self.options.sample or 0, seed=self.options.seed)
        return sample, counter["population"], counter["not_verified"]

    @staticmethod
    def _distinct_prefixes(prefixes: list[str]) -> list[str]:
        # "a/" covers "a/b/": list each part of a bucket once.
        ordered = sorted(set(prefixes))
        return [p for i, p in enumerate(ordered) if not any(p.startswith(q) for q in ordered[:i])]

    def _submit_all(self, pool: ThreadPoolExecutor, items: Iterator[tuple[int, ObjectRecord]]) -> int:
        submitted = 0
        for window in _batches(items, _LISTING_WINDOW if self._listing is not None else _JOURNAL_BATCH):
            listed = self._listing.lookup((r.dest_bucket, r.dest_key) for _, r in window if r.dest_bucket and r.dest_key) if self._listing is not None else {}
            for start in range(0, len(window), _JOURNAL_BATCH):
                batch = window[start : start + _JOURNAL_BATCH]
                if self.stop.is_set():
                    raise _Stopped()
                rows: dict[tuple[str, str], JournalRow] = {}
                if self.journal is not None:  # deep too: the headers `run` sent (see `expected_headers`)
                    rows = self.journal.rows([(r.source_bucket, r.source_key) for _, r in batch])
                for seq, record in batch:
                    self._check_buckets(record)
                    journal_row = rows.get((record.source_bucket, record.source_key))
                    proven = self._prove_from_listing(record, journal_row, listed) if self._listing is not None else None
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
        listing = KeySpool(self.sink.directory)
        for bucket, prefixes in self._prefixes.items():
            for prefix in self._distinct_prefixes(prefixes):

                def pages(bucket: str = bucket, prefix: str = prefix) -> KeySpool:
                    found = KeySpool(self.sink.directory)  # a fresh one per attempt: a retry lists the part again
                    for page in self.destination.iter_objects(bucket, prefix):
                        if self.stop.is_set():
                            raise _Stopped()
                        for info in page:
                            found.append(bucket, info.key, info.size, info.etag, info.storage_class)
                    return found

                try:
                    listing.extend(self._retry(pages))
                except FatalError as err:
                    self._fail(err)
                    raise _Stopped() from None
                except MigrateError as err:
                    log.warning("quick verify: could not list s3://%s/%s (%s); those objects get a HEAD each", bucket, prefix, err)
                    continue
                self._listed.setdefault(bucket, []).append(prefix)
        self._listing = listing

    def _prove_from_listing(
        self, record: ObjectRecord, journal_row: JournalRow | None, listed: dict[tuple[str, str], tuple[int, str | None, str | None]]
    ) -> dict[str, Any] | None:
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
        `listed` is the listing's entries for the records of this window.
        """
        assert self._listing is not None
        if not record.dest_bucket or not record.dest_key:
            return None
        if not any(record.dest_key.startswith(p) for p in self._listed.get(record.dest_bucket, ())):
            return None
        entry = listed.get((record.dest_bucket, record.dest_key))
        if entry is None:
            return None  # a HEAD confirms it is missing (and says so in the same words as fast mode)
        size, etag, storage_class = entry
        if size != record.size or not etag or (storage_class or "STANDARD").upper() != (record.storage_class or "STANDARD").upper():
            return None
        found = {"dest_size": size, "dest_etag": etag}
        if record.action == Action.SKIP_EXISTING.value:
            if is_plain_md5(record.source_etag) and etag == record.source_etag:
                checksums = {"expected_checksum": f"md5:{record.source_etag}", "actual_checksum": f"md5:{etag}", "checksum_basis": "listing-source-etag"}
                return record_row(record, "quick", status=MATCH, detail="skip-existing: found at the destination when planned, not written by `run`", **found, **checksums)
            return None
        usable, _ = journal_usable(record, journal_row, self.options) if self.journal is not None else (None, "")
        if usable is None:
            return None
        if usable.md5 and is_plain_md5(etag) and etag == usable.md5:
            checksums = {"expected_checksum": f"md5:{usable.md5}", "actual_checksum": f"md5:{etag}", "checksum_basis": "listing-md5"}
        elif usable.dest_etag and etag == usable.dest_etag:
            checksums = {"expected_checksum": f"etag:{usable.dest_etag}", "actual_checksum": f"etag:{etag}", "checksum_basis": "listing-etag"}
        else:
            return None
        return record_row(record, "quick", status=MATCH, detail="", **found, **checksums)

    # -- one object --------------------------------------------------------
    def _check(self, seq: int, record: ObjectRecord, journal_row: JournalRow | None) -> None:
        mode = self.options.mode
        try:
            if not record.dest_bucket or not record.dest_key:
                row = record_row(record, mode, status=ERROR, detail="the manifest record has no destination key; run `migrate plan` again")
            elif mode == "deep":
                row = self._check_deep(record, journal_row)
            else:  # fast, or quick for what the listing could not prove: one HEAD, checked_mode `fast`
                row = self._check_fast(record, journal_row)
        except _Stopped:
            return
        except FatalError as err:
            self._fail(err)
            return
        except MigrateError as err:
            if isinstance(err, TransientError) and not self._still_reachable(record):
                return
            row = record_row(record, mode, status=ERROR, detail=f"could not check: {err}")
        except Exception as err:  # noqa: BLE001 - recorded on the object, like run does
            log.exception("verifying %s/%s", record.source_bucket, record.source_key)
            row = record_row(record, mode, status=ERROR, detail=f"could not check: unexpected {type(err).__name__}: {err}")
        self.sink.add(seq, row)
        self.progress.advance(objects=1, bytes_done=record.size)

    def _check_fast(self, record: ObjectRecord, journal_row: JournalRow | None) -> dict[str, Any]:
        assert record.dest_bucket and record.dest_key
        usable, journal_note = journal_usable(record, journal_row, self.options) if self.journal is not None else (None, "")
        if self.journal is not None and journal_row is None and record.action == Action.COPY.value:
            journal_note = "no journal row: not copied by this plan's `run`"
        dest: ObjectInfo | None = self._retry(lambda: self.destination.head(record.dest_bucket, record.dest_key))  # type: ignore[arg-type]
        if dest is None:
            return record_row(record, "fast", status=MISSING, detail=join_notes("not at the destination", journal_note))
        found = {"dest_size": dest.size, "dest_etag": dest.etag}
        copied = record.action == Action.COPY.value
        planned, headers_note, carried = expected_headers(record, usable), "", journaled_carried(usable)
        if copied and self._headers_from_get(record, usable):
            planned, headers_note, carried = self._headers_from_source_head(record, dest)
        expected_meta, actual_meta = self._compare_headers(planned, dest, content_type=planned.content_type, carried=carried) if copied else ({}, {})
        meta = metadata_columns(expected_meta, actual_meta)
        skip_note = "" if copied else "skip-existing: found at the destination when planned, not written by `run`"
        journal_note = join_notes(journal_note, headers_note)
        if dest.size != record.size:
            return record_row(
                record,
                "fast",
                status=SIZE_DIFFERS,
                detail=join_notes(f"the destination has {dest.size:,} bytes, planned {record.size:,}", skip_note, journal_note),
                **found,
                **meta,
            )
        comparison = compare_recorded_checksum(dest=dest, journal_row=usable, source_etag=record.source_etag)
        checksums = {"expected_checksum": comparison.expected, "actual_checksum": comparison.actual, "checksum_basis": comparison.basis}
        if comparison.outcome == "differs":
            status, detail = CHECKSUM_DIFFERS, f"same size, but {comparison.basis} differs: the bytes are not the ones copied"
        elif expected_meta:
            status, detail = METADATA_DIFFERS, describe_metadata(expected_meta, actual_meta)
        elif comparison.outcome == "none":
            status, detail = MATCH, f"size matches; {comparison.note}; run --mode deep to compare bytes"
        else:
            status, detail = MATCH, ""
        if status == CHECKSUM_DIFFERS and expected_meta:
            detail = join_notes(detail, describe_metadata(expected_meta, actual_meta))
        return record_row(record, "fast", status=status, detail=join_notes(detail, skip_note, journal_note), **found, **checksums, **meta)

    def _check_deep(self, record: ObjectRecord, journal_row: JournalRow | None = None) -> dict[str, Any]:
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
            return record_row(record, "deep", status=MISSING, detail="not at the destination")
        except BaseException:
            source_read.cancel()
            raise
        found = {"dest_size": dest_length, "dest_etag": dest.etag}
        try:
            source, source_length, source_sha = source_read.result()
        except ObjectNotFound as err:
            return record_row(
                record, "deep", status=ERROR, detail=f"could not check: the source object is gone ({err}), nothing to compare with", **found
            )
        checksums = {"expected_checksum": f"sha256:{source_sha}", "actual_checksum": f"sha256:{dest_sha}", "checksum_basis": "deep-read"}
        copied = record.action == Action.COPY.value
        usable = journal_usable(record, journal_row, self.options)[0]
        planned, carried = expected_headers(record, usable), journaled_carried(usable)
        notes = [] if copied else ["skip-existing: found at the destination when planned, not written by `run`"]
        if copied and self._headers_from_get(record, usable):
            planned, carried = headers_from_source(record, source), carried_headers(source)  # the read answered the source's headers
            notes.append(_HEADERS_FROM_SOURCE.format(how="as read"))
        # What `run` sends: the record's type, else the source's, else the S3 default.
        content_type = planned.content_type or source.content_type or "application/octet-stream"
        expected_meta, actual_meta = self._compare_headers(planned, dest, content_type=content_type, carried=carried) if copied else ({}, {})
        meta = metadata_columns(expected_meta, actual_meta)
        if source_length != record.size:
            notes.append(f"the source now has {source_length:,} bytes, the plan listed {record.size:,} (changed since the plan)")
        if dest_length != source_length:
            status, detail = SIZE_DIFFERS, f"the destination has {dest_length:,} bytes, the source {source_length:,}"
        elif dest_sha != source_sha:
            status, detail = CHECKSUM_DIFFERS, "same size, but the SHA-256 of the bytes differs from the source's"
        elif expected_meta:
            status, detail = METADATA_DIFFERS, describe_metadata(expected_meta, actual_meta)
        else:
            status, detail = MATCH, ""
        if status in (SIZE_DIFFERS, CHECKSUM_DIFFERS) and expected_meta:
            notes.append(describe_metadata(expected_meta, actual_meta))
        return record_row(record, "deep", status=status, detail=join_notes(detail, *notes), **found, **checksums, **meta)

    def _compare_headers(
        self, planned: ObjectRecord, dest: ObjectInfo, *, content_type: str | None, carried: dict[str, str | None] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """`compare_metadata` with the SSE `run` applied to this record's rule."""
        sse, kms_key_id = self.options.encryption_for(planned.rule)
        return compare_metadata(planned, dest, expected_content_type=content_type, server_side_encryption=sse, kms_key_id=kms_key_id, carried=carried)

    def _headers_from_get(self, record: ObjectRecord, usable: JournalRow | None) -> bool:
        """True when the record's headers came from the GET and no journal row says what `run` sent.

        From the GET: a source that answers headers on read (S3), whose plan
        left the record's Content-Type null (no rule set it; README, Headers
        "from the GET").
        """
        from_get = bool(getattr(self.source, "headers_on_read", False)) and record.content_type is None
        return from_get and (usable is None or not usable.sent_headers)

    def _headers_from_source_head(self, record: ObjectRecord, dest: ObjectInfo) -> tuple[ObjectRecord, str, dict[str, str | None] | None]:
        """The headers `run` would have sent, from a HEAD of the source, the note for the row's detail, and the carried ones.

        Without it the destination would be compared with the manifest's
        nulls (false `metadata-differs`). A source object that is gone
        leaves nothing to compare: the destination's headers are taken as
        they are, and the detail says so.
        """
        source: ObjectInfo | None = self._retry(lambda: self.source.head(record.source_bucket, record.source_key))
        if source is None:
            unknown = replace(
                record,
                content_type=dest.content_type,
                cache_control=dest.cache_control,
                content_disposition=dest.content_disposition,
                user_metadata=dict(dest.user_metadata or {}),
            )
            return unknown, "the source object is gone and no journal row says which headers `run` sent: headers not compared", None
        return headers_from_source(record, source), _HEADERS_FROM_SOURCE.format(how="HEAD"), carried_headers(source)

    # -- unexpected objects ------------------------------------------------
    def _scan_unexpected(self, bucket: str, prefix: str) -> None:
        """List `bucket/prefix` and report every object no record maps to."""

        if self._listing is not None and prefix in self._listed.get(bucket, ()):
            # quick mode listed this prefix already: no second listing.
            for key, size, etag in self._listing.strays(self._expected_keys, bucket=bucket, prefix=prefix):  # sorted with the other unexpected rows
                self._add_unexpected(bucket, prefix, ObjectInfo(key=key, size=size, etag=etag))
            return

        def listing() -> KeySpool:
            found = KeySpool(self.sink.directory)
            for page in self.destination.iter_objects(bucket, prefix):
                if self.stop.is_set():
                    raise _Stopped()
                for info in page:
                    found.append(bucket, info.key, info.size, info.etag)
            return found

        try:
            listed = self._retry(listing)
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
                    "checked_at": now_utc(),
                },
            )
            return
        for key, size, etag in listed.strays(self._expected_keys, bucket=bucket, prefix=prefix):
            self._add_unexpected(bucket, prefix, ObjectInfo(key=key, size=size, etag=etag))
        listed.cleanup_parts()

    def _add_unexpected(self, bucket: str, prefix: str, info: ObjectInfo) -> None:
        self.sink.add_stray(
            {
                "dest_bucket": bucket,
                "dest_key": info.key,
                "status": UNEXPECTED,
                "detail": f"under the planned prefix {prefix!r} but no manifest record maps to it",
                "dest_size": info.size,
                "dest_etag": info.etag,
                "checked_mode": "listing",
                "checked_at": now_utc(),
            },
        )


# -- helpers ----------------------------------------------------------------------
_HEADERS_FROM_SOURCE = "no journal row says which headers `run` sent: compared with the source's ({how})"


class _Stopped(Exception):
    """The audit is stopping (fatal error or Ctrl-C): do no more work."""


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


def _batches(items: Iterator[tuple[int, ObjectRecord]], size: int) -> Iterator[list[tuple[int, ObjectRecord]]]:
    batch: list[tuple[int, ObjectRecord]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


