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
metadata, which `migrate` never wrote. Records that cannot be migrated as
they are (`invalid-key`, `invalid-metadata`: S3 cannot hold them;
`unreadable-key`: the source cannot be read safely) get a `not-migrated` row (the audit is
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

Memory does not grow with the object count: the report rows, the
destination keys the manifest maps to and the destination listings are
written to parquet files in a temporary directory as they come
(`migrate.report_spool`); the unexpected-object scan anti-joins them a hash
partition at a time, quick mode looks a window of records up in the
listing at a time, and the report is summarised and written from lazy scans.

Layout: this module holds the entry points; the audit that drives the
stores is `migrate.verify_audit`, the pure comparisons `migrate.verify_checks`,
the Supabase catalog cross-check `migrate.catalog_check` (their public names
are importable from here too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Iterator

import polars as pl

from migrate.catalog_check import catalog_cross_check, inventory_frame
from migrate.journal import TransferJournal
from migrate.manifest import READ_BATCH_ROWS, action_batches, count_rows
from migrate.progress import NullProgress, Progress
from migrate.records import ObjectRecord, frame_to_records
from migrate.report import VerificationReport
from migrate.report_schema import REPORT_SCHEMA
from migrate.stores.base import SourceStore
from migrate.stores.s3 import S3Store
from migrate.verify_audit import Audit
from migrate.verify_checks import (
    MODES,
    VERIFIED_ACTIONS,
    ChecksumComparison,
    VerifyOptions,
    VerifyStats,
    compare_metadata,
    expected_headers,
    compare_recorded_checksum,
    now_utc,
)

if TYPE_CHECKING:
    from migrate.source_audit import SourceAudit


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
    audit = Audit(source=source, destination=destination, journal=journal, options=options, progress=progress or NullProgress())
    rows, _ = audit.run(records)
    try:
        return rows.collect()
    finally:
        audit.sink.directory.cleanup()


def verify_migration(
    records: Iterable[ObjectRecord],
    *,
    plan_name: str,
    source: SourceStore,
    destination: S3Store,
    journal: TransferJournal | None,
    options: VerifyOptions,
    progress: Progress | None = None,
    catalog_rows: pl.DataFrame | pl.LazyFrame | None = None,
    executor: Any = None,
) -> VerificationReport:
    """`verify_records` plus the report metadata (times, sampling facts); `catalog_rows` from `catalog_cross_check` are appended."""
    started = now_utc()
    spool = None
    frame: pl.DataFrame | pl.LazyFrame
    if executor is not None:
        # A cluster (migrate.cluster.DaskExecutor) checks the records on its workers; same rows, same order,
        # and the records stream through the driver as they do here (never a list of them).
        frame, stats, spool = executor.verify(records, source=source, destination=destination, journal=journal, options=options, progress=progress)
    else:
        audit = Audit(source=source, destination=destination, journal=journal, options=options, progress=progress or NullProgress())
        frame, stats = audit.run(records)
        spool = audit.sink.directory  # the rows stay on disk until the report is gone
    if catalog_rows is not None:
        frame = pl.concat([frame.lazy(), _kept(catalog_rows.lazy().select(list(REPORT_SCHEMA)), spool)])
    return VerificationReport(
        frame=frame,
        plan_name=plan_name,
        mode=options.mode,
        started_at=started,
        finished_at=now_utc(),
        population=stats.population,
        sample_size=options.sample,
        seed=options.seed if options.sample is not None else None,
        not_verified=stats.not_verified,
        spool=spool,
    )



class ManifestScan:
    """A manifest scan seen as records, read `slice_rows` at a time in manifest order: never whole in memory.

    The lazy counterpart of `ManifestRecords` for a manifest on disk
    (`migrate.manifest.scan_manifest`): every action, since every record
    that maps a key makes that key expected.
    """

    def __init__(self, manifest: pl.LazyFrame, *, slice_rows: int = READ_BATCH_ROWS) -> None:
        self.manifest = manifest
        self.slice_rows = slice_rows

    def __iter__(self) -> Iterator[ObjectRecord]:
        for batch in action_batches(self.manifest, batch_rows=self.slice_rows):  # a corrupt manifest: StateDirectoryError, not a polars traceback
            yield from frame_to_records(batch)

    def totals(self, actions: Iterable[str]) -> tuple[int, int]:
        """(records, bytes) whose action is one of `actions`, counted by polars."""
        return count_rows(self.manifest, *actions)


def _kept(rows: pl.LazyFrame, spool: Any) -> pl.LazyFrame:
    """`rows` as the report can keep them: copied into its spool, which lives as long as the report.

    The source audit's rows may be a scan of its own files, gone with the audit.
    """
    if spool is None:
        return rows.collect().lazy()  # a cluster's rows are in memory anyway
    path = spool.new_file("catalog")
    rows.sink_parquet(path)
    return pl.scan_parquet(path)


def source_audit_for_plan(manifest: pl.DataFrame | pl.LazyFrame, source: SourceStore, options: VerifyOptions) -> "SourceAudit | None":
    """The bytes audit of a Supabase source's verified rows (sampled like the checks); None for other sources.

    Comparing the catalog with the REST listing proves nothing (both read
    `storage.objects`); reading the first byte reaches the storage backend.
    The manifest is read a batch at a time; keep the result until the report
    is written (`rows()` may scan its files).
    """
    from migrate.source_audit import audit_source_bytes, manifest_objects

    if not hasattr(source, "has_bytes"):
        return None
    listed = manifest_objects(manifest, *VERIFIED_ACTIONS)
    return audit_source_bytes(listed, source, sample=options.sample, concurrency=options.concurrency, seed=options.seed)  # type: ignore[arg-type]


__all__ = [
    "MODES",
    "ManifestScan",
    "VerifyOptions",
    "VerifyStats",
    "VERIFIED_ACTIONS",
    "ChecksumComparison",
    "compare_recorded_checksum",
    "compare_metadata",
    "expected_headers",
    "verify_records",
    "verify_migration",
    "inventory_frame",
    "catalog_cross_check",
    "source_audit_for_plan",
]
