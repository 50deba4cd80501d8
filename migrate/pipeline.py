"""Orchestration: the calls that chain stages (plan -> run, plan -> verify).

Stages (`inventory`, `transfer`, `verify`) import only lower layers; this
module, the CLI and the library API (`migrate/__init__.py`) are the only
places that call one stage after another.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from migrate.encryption import EncryptionSettings
from migrate.errors import MigrateError, StateDirectoryError, UserInputError
from migrate.inventory import PlanResult, load_manifest, plan_migration
from migrate.journal import TransferJournal
from migrate.manifest import copy_records, count_rows, scan_manifest
from migrate.progress import Progress
from migrate.records import BLOCKING_ACTIONS, ObjectRecord
from migrate.report import UPLOAD_IN_PROGRESS, VerificationReport, report_frame
from migrate.retry import call_with_retries
from migrate.rundir import RunDirectory
from migrate.stores.base import SourceStore
from migrate.stores.factory import open_destination, open_source
from migrate.stores.s3 import S3Store
from migrate.transfer import TransferOptions, TransferResult, transfer_objects
from migrate.verify import VERIFIED_ACTIONS, ManifestScan, VerifyOptions, source_audit_for_plan, verify_migration

if TYPE_CHECKING:
    from migrate.cluster import DaskExecutor
    from migrate.plan import Plan


@dataclass
class RunOutcome:
    """`run_migration`'s answer: the transfer result plus where things are."""

    result: TransferResult
    run_dir: Path
    replanned: bool
    plan_summary: str | None = None


def read_manifest(run_dir: RunDirectory) -> pl.DataFrame:
    """The run directory's manifest; a damaged file is one clear error (exit 4), not a traceback."""
    try:
        return load_manifest(run_dir)
    except MigrateError:
        raise
    except Exception as err:  # noqa: BLE001 - polars/arrow raise many types for a damaged file
        raise StateDirectoryError(
            f"{run_dir.manifest}: the manifest cannot be read ({type(err).__name__}); run `migrate plan` again to rewrite it"
        ) from err


@dataclass(frozen=True)
class PendingUpload:
    """An unfinished multipart upload under a planned destination key."""

    source_bucket: str
    source_key: str
    dest_bucket: str
    dest_key: str
    upload_id: str


def planned_uploads(manifest: pl.DataFrame | pl.LazyFrame, destination: S3Store) -> list[PendingUpload]:
    """In-progress multipart uploads under the manifest's `copy` destination keys (only those: never anyone else's keys).

    One ListMultipartUploads listing per (bucket, common prefix of the planned keys). The planned keys are
    never held in Python: the common prefix of a bucket's keys is that of its smallest and largest key, and
    the (usually few) uploads found are matched against the manifest by polars.
    """
    copies = manifest.lazy().filter(pl.col("action") == "copy").select("source_bucket", "source_key", "dest_bucket", "dest_key")
    spans = copies.group_by("dest_bucket").agg(pl.col("dest_key").min().alias("first"), pl.col("dest_key").max().alias("last")).collect()
    found: list[PendingUpload] = []
    for bucket, first, last in sorted(spans.iter_rows()):
        prefix = os.path.commonprefix([first, last])
        uploads = call_with_retries(lambda: destination.list_multipart_uploads(bucket, prefix), max_attempts=5)
        if not uploads:
            continue
        ids = pl.LazyFrame({"dest_key": [key for key, _ in uploads], "upload_id": [upload_id for _, upload_id in uploads]})
        matched = copies.filter(pl.col("dest_bucket") == bucket).join(ids, on="dest_key", how="inner").collect()
        found.extend(PendingUpload(row["source_bucket"], row["source_key"], bucket, row["dest_key"], row["upload_id"]) for row in matched.iter_rows(named=True))
    return sorted(found, key=lambda u: (u.dest_bucket, u.dest_key, u.upload_id))


def upload_rows(uploads: list[PendingUpload]) -> pl.DataFrame:
    """The verify report's `upload-in-progress` rows."""
    now = datetime.now(timezone.utc)
    return report_frame(
        {
            "source_bucket": u.source_bucket,
            "source_key": u.source_key,
            "dest_bucket": u.dest_bucket,
            "dest_key": u.dest_key,
            "status": UPLOAD_IN_PROGRESS,
            "detail": f"unfinished multipart upload {u.upload_id}: a run in progress, or left behind (`migrate uploads PLAN --abort`)",
            "checked_mode": "listing",
            "checked_at": now,
        }
        for u in uploads
    )


def uploads_stage(plan: "Plan", *, state_dir: str | Path | None = None, abort: bool = False) -> tuple[list[PendingUpload], int]:
    """List (and with `abort`, abort) the unfinished multipart uploads under the plan's planned keys.

    Aborting takes the run directory's lock, so it never pulls the rug from
    under a running `migrate run`. Returns (uploads found, uploads aborted).
    """
    run_dir = RunDirectory.for_plan(plan.name, state_dir=state_dir)
    if not run_dir.manifest.exists():
        raise UserInputError(f"{plan.path or plan.name}: no manifest yet; run `migrate plan` first")
    manifest = read_manifest(run_dir)
    destination = open_destination(plan, concurrency=4)
    try:
        destination.check_bucket(plan.destination.bucket)
        if not abort:
            return planned_uploads(manifest, destination), 0
        with run_dir.lock():
            uploads = planned_uploads(manifest, destination)
            journal = TransferJournal(run_dir.journal) if run_dir.journal.exists() else None
            try:
                for upload in uploads:
                    call_with_retries(
                        lambda: destination.abort_multipart_upload(upload.dest_bucket, upload.dest_key, upload.upload_id), max_attempts=5
                    )
                    if journal is not None:
                        stub = ObjectRecord(source_bucket=upload.source_bucket, source_key=upload.source_key, size=0)
                        journal.forget_parts(upload.upload_id)
                        row = journal.row(upload.source_bucket, upload.source_key)
                        if row is not None and row.upload_id == upload.upload_id:
                            journal.set_upload(stub, None, None)
            finally:
                if journal is not None:
                    journal.close()
            return uploads, len(uploads)
    finally:
        destination.close()


def plan_stage(plan: "Plan", *, state_dir: str | Path | None = None, **kwargs: Any) -> PlanResult:
    """`plan_migration` under the run directory's lock (a plan must not rewrite the manifest under a running run)."""
    with RunDirectory.for_plan(plan.name, state_dir=state_dir).lock():
        return plan_migration(plan, state_dir=state_dir, **kwargs)


def run_migration(
    plan: "Plan",
    *,
    state_dir: str | Path | None = None,
    reports_dir: str | Path = "reports",
    workers: int | None = None,
    replan: bool = False,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    source: SourceStore | None = None,
    destination: S3Store | None = None,
    executor: "DaskExecutor | None" = None,
) -> RunOutcome:
    """Move every `copy` object of the plan's manifest that is not already migrated.

    Plans first when there is no manifest, when the plan changed since the
    manifest was made, or when `replan` is set (to pick up new or changed
    source objects for an incremental sync). Refuses to start while the
    manifest has collisions. `executor`: a `migrate.cluster.DaskExecutor`
    moves the objects on a cluster instead of local threads.
    """
    if workers is not None and workers < 1:
        raise UserInputError(f"--workers must be at least 1, got {workers}")
    run_dir = RunDirectory.for_plan(plan.name, state_dir=state_dir)
    replanned = False
    plan_summary = None
    concurrency = workers or plan.transfer.concurrency
    options = TransferOptions(
        concurrency=concurrency,
        part_size=plan.transfer.part_size,
        multipart_threshold=plan.transfer.multipart_threshold,
        max_attempts=plan.transfer.max_attempts,
        checksum_algorithm=plan.transfer.checksum_algorithm,
        server_side_encryption=plan.destination.server_side_encryption,
        kms_key_id=plan.destination.kms_key_id,
        encryption_by_rule=EncryptionSettings.from_plan(plan).by_rule,
        on_conflict=plan.destination.on_conflict,
        max_bandwidth=plan.transfer.max_bandwidth,
        max_requests_per_second=plan.transfer.max_requests_per_second,
    )
    owns_source, owns_destination = source is None, destination is None
    source = source or open_source(plan, concurrency=concurrency, headers_from_read=True)
    destination = destination or open_destination(plan, concurrency=concurrency)
    try:
        # Environment checks before anything is written (a failing command leaves no run directory).
        destination.check_bucket(plan.destination.bucket)
        with run_dir.lock():
            info = run_dir.read_info()
            if replan or info is None or not run_dir.manifest.exists() or info.get("plan_fingerprint") != plan.fingerprint():
                planned = plan_migration(plan, state_dir=state_dir, reports_dir=reports_dir, source=source)
                replanned, plan_summary = True, planned.summary_text()
            # A lazy scan: counts are aggregates, and the copy rows are read a batch at a time.
            manifest = scan_manifest(run_dir.manifest)
            collisions, _ = count_rows(manifest, "collision")
            if collisions:
                raise UserInputError(
                    f"{plan.path or plan.name}: {collisions} objects collide on destination keys; "
                    "fix the rules (see the plan summary) and run `migrate plan` again"
                )
            unwritable, _ = count_rows(manifest, *BLOCKING_ACTIONS)
            if unwritable:
                first = manifest.filter(pl.col("action").is_in(list(BLOCKING_ACTIONS))).head(1).collect().row(0, named=True)
                raise UserInputError(
                    f"{plan.path or plan.name}: {unwritable} planned objects cannot be migrated as they are "
                    f"(first: {first['source_bucket']}/{first['source_key']}: {first['reason']}); "
                    "exclude them with filters.exclude (or a rule with exclude: true), or fix them at the source, and run `migrate plan` again"
                )
            if progress is not None:
                copy_objects, copy_bytes = count_rows(manifest, "copy")
                progress.start(objects=copy_objects, total_bytes=copy_bytes, description="objects")
            with TransferJournal(run_dir.journal) as journal:
                previous = journal.last_run()
                run_id = journal.start_run(plan.fingerprint())
                result = TransferResult()
                outcome = "failed"  # a fatal stop (exception) is journaled as failed, never "ok"
                try:
                    if executor is not None:
                        # An earlier run that did not finish may have left work its journal never heard of.
                        resuming = previous is not None and previous.get("outcome") != "ok"
                        result = executor.transfer(copy_records(manifest), journal=journal, options=options, progress=progress, stop=stop, resuming=resuming)
                    else:
                        result = transfer_objects(
                            copy_records(manifest), source=source, destination=destination, journal=journal, options=options, progress=progress, stop=stop
                        )
                    outcome = "interrupted" if result.interrupted else ("ok" if result.ok else "incomplete")
                except KeyboardInterrupt:
                    outcome = "interrupted"
                    raise
                finally:
                    journal.finish_run(run_id, outcome=outcome, copied=result.copied, failed=len(result.failures), bytes_copied=result.bytes_copied)
    finally:
        if progress is not None:
            progress.close()
        if owns_source:
            source.close()
        if owns_destination:
            destination.close()
    return RunOutcome(result=result, run_dir=run_dir.path, replanned=replanned, plan_summary=plan_summary)


def verify_plan(
    plan: "Plan",
    *,
    mode: str | None = None,
    sample: int | None = None,
    seed: int = 0,
    fresh: bool = False,
    state_dir: str | Path | None = None,
    reports_dir: str | Path = "reports",
    progress: Progress | None = None,
    executor: "DaskExecutor | None" = None,
) -> VerificationReport:
    """Audit a plan's migration and write the report under `reports_dir`.

    `executor`: a `migrate.cluster.DaskExecutor` checks the objects on a cluster.

    Uses the plan's manifest (or re-inventories the source first with
    `fresh`, which also refreshes the manifest) and the run journal when
    there is one. For a Supabase source, catalog rows whose bytes are gone
    (found by reading their first byte) are reported in their own section.
    Nothing is written to the source or the destination.
    """
    run_dir = RunDirectory.for_plan(plan.name, state_dir=state_dir)
    if fresh:
        plan_stage(plan, state_dir=state_dir, reports_dir=reports_dir)
    if not run_dir.manifest.exists():
        raise UserInputError(f"{plan.path or plan.name}: no manifest yet; run `migrate plan` (and `migrate run`) first, or pass --fresh")
    # A lazy scan: verify reads the manifest a slice at a time (ManifestScan), so its memory does not grow with it.
    manifest = scan_manifest(run_dir.manifest)
    settings = plan.verify
    if sample is None and settings.sample_percent:
        verified, _ = count_rows(manifest, *VERIFIED_ACTIONS)
        sample = max(1, round(verified * settings.sample_percent / 100))
    options = VerifyOptions(
        mode=(mode or settings.mode),  # type: ignore[arg-type]
        concurrency=settings.concurrency,
        sample=sample if sample is not None else settings.sample,
        seed=seed,
        max_attempts=plan.transfer.max_attempts,
        server_side_encryption=plan.destination.server_side_encryption,
        kms_key_id=plan.destination.kms_key_id,
        encryption_by_rule=EncryptionSettings.from_plan(plan).by_rule,
        expect_prefixes=((plan.destination.bucket, plan.destination.prefix),),
        max_bandwidth=plan.transfer.max_bandwidth,
        max_requests_per_second=plan.transfer.max_requests_per_second,
    )
    source = open_source(plan, concurrency=options.concurrency, fetch_user_metadata=False)
    destination = open_destination(plan, concurrency=options.concurrency)
    journal = TransferJournal(run_dir.journal, readonly=True) if run_dir.journal.exists() else None
    try:
        destination.check_bucket(plan.destination.bucket)
        # Held until verify_migration has copied its rows into the report's spool.
        source_audit = source_audit_for_plan(manifest, source, options)
        # Records are built one slice at a time from the manifest on disk, never all at once.
        records = ManifestScan(manifest)
        report = verify_migration(
            records,
            plan_name=plan.name,
            source=source,
            destination=destination,
            journal=journal,
            options=options,
            progress=progress,
            catalog_rows=source_audit.rows() if source_audit is not None else None,
            executor=executor,
        )
        uploads = planned_uploads(manifest, destination)
        if uploads:
            # Appended to the lazy rows: the report's rows stay in its spool on disk, as without uploads.
            report = replace(report, frame=pl.concat([report.rows, upload_rows(uploads).lazy()]))
    finally:
        if journal is not None:
            journal.close()
        source.close()
        destination.close()
    report.write(reports_dir)
    return report


__all__ = ["PendingUpload", "RunOutcome", "planned_uploads", "plan_stage", "uploads_stage", "upload_rows", "read_manifest", "run_migration", "verify_plan"]
