"""Orchestration: the calls that chain stages (plan -> run, plan -> verify).

Stages (`inventory`, `transfer`, `verify`) import only lower layers; this
module, the CLI and the library API (`migrate/__init__.py`) are the only
places that call one stage after another.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from migrate.errors import UserInputError
from migrate.inventory import copy_records, load_manifest, plan_migration
from migrate.journal import TransferJournal
from migrate.progress import Progress
from migrate.records import ObjectRecord
from migrate.report import VerificationReport
from migrate.rundir import RunDirectory
from migrate.stores.base import SourceStore
from migrate.stores.factory import open_destination, open_source
from migrate.stores.s3 import S3Store
from migrate.transfer import TransferOptions, TransferResult, transfer_objects
from migrate.verify import VerifyOptions, catalog_rows_for_plan, verify_migration

if TYPE_CHECKING:
    from migrate.plan import Plan


@dataclass
class RunOutcome:
    """`run_migration`'s answer: the transfer result plus where things are."""

    result: TransferResult
    run_dir: Path
    replanned: bool
    plan_summary: str | None = None


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
) -> RunOutcome:
    """Move every `copy` object of the plan's manifest that is not already migrated.

    Plans first when there is no manifest, when the plan changed since the
    manifest was made, or when `replan` is set (to pick up new or changed
    source objects for an incremental sync). Refuses to start while the
    manifest has collisions.
    """
    run_dir = RunDirectory.for_plan(plan.name, state_dir=state_dir)
    info = run_dir.read_info()
    replanned = False
    plan_summary = None
    concurrency = workers or plan.transfer.concurrency
    owns_source, owns_destination = source is None, destination is None
    source = source or open_source(plan, concurrency=concurrency)
    destination = destination or open_destination(plan, concurrency=concurrency)
    try:
        if replan or info is None or not run_dir.manifest.exists() or info.get("plan_fingerprint") != plan.fingerprint():
            planned = plan_migration(plan, state_dir=state_dir, reports_dir=reports_dir, source=source)
            replanned, plan_summary = True, planned.summary_text()
        manifest = load_manifest(run_dir)
        collisions = manifest.filter(pl.col("action") == "collision").height
        if collisions:
            raise UserInputError(
                f"{plan.path or plan.name}: {collisions} objects collide on destination keys; "
                "fix the rules (see the plan summary) and run `migrate plan` again"
            )
        destination.check_bucket(plan.destination.bucket)
        options = TransferOptions(
            concurrency=concurrency,
            part_size=plan.transfer.part_size,
            multipart_threshold=plan.transfer.multipart_threshold,
            max_attempts=plan.transfer.max_attempts,
            checksum_algorithm=plan.transfer.checksum_algorithm,
            server_side_encryption=plan.destination.server_side_encryption,
            kms_key_id=plan.destination.kms_key_id,
            on_conflict=plan.destination.on_conflict,
        )
        copies = manifest.filter(pl.col("action") == "copy")
        if progress is not None:
            progress.start(objects=copies.height, total_bytes=int(copies["size"].sum() or 0), description="objects")
        with TransferJournal(run_dir.journal) as journal:
            run_id = journal.start_run(plan.fingerprint())
            result = TransferResult()
            try:
                result = transfer_objects(
                    copy_records(manifest), source=source, destination=destination, journal=journal, options=options, progress=progress, stop=stop
                )
            finally:
                outcome = "interrupted" if result.interrupted else ("ok" if result.ok else "incomplete")
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
) -> VerificationReport:
    """Audit a plan's migration and write the report under `reports_dir`.

    Uses the plan's manifest (or re-inventories the source first with
    `fresh`, which also refreshes the manifest) and the run journal when
    there is one. With a Supabase `database_url`, the catalog is
    cross-checked against the REST listing and the differences reported in
    their own section. Nothing is written to the source or the destination.
    """
    run_dir = RunDirectory.for_plan(plan.name, state_dir=state_dir)
    if fresh:
        plan_migration(plan, state_dir=state_dir, reports_dir=reports_dir)
    if not run_dir.manifest.exists():
        raise UserInputError(f"{plan.path or plan.name}: no manifest yet; run `migrate plan` (and `migrate run`) first, or pass --fresh")
    manifest = load_manifest(run_dir)
    settings = plan.verify
    if sample is None and settings.sample_percent:
        sample = max(1, round(manifest.filter(pl.col("action").is_in(["copy", "skip-existing"])).height * settings.sample_percent / 100))
    options = VerifyOptions(
        mode=(mode or settings.mode),  # type: ignore[arg-type]
        concurrency=settings.concurrency,
        sample=sample if sample is not None else settings.sample,
        seed=seed,
        max_attempts=plan.transfer.max_attempts,
        server_side_encryption=plan.destination.server_side_encryption,
        kms_key_id=plan.destination.kms_key_id,
        expect_prefixes=((plan.destination.bucket, plan.destination.prefix),),
    )
    source = open_source(plan, concurrency=options.concurrency, fetch_user_metadata=False)
    destination = open_destination(plan, concurrency=options.concurrency)
    journal = TransferJournal(run_dir.journal, readonly=True) if run_dir.journal.exists() else None
    try:
        destination.check_bucket(plan.destination.bucket)
        catalog_rows = catalog_rows_for_plan(plan, source)
        records = [ObjectRecord.from_row(row) for row in manifest.iter_rows(named=True)]
        report = verify_migration(
            records,
            plan_name=plan.name,
            source=source,
            destination=destination,
            journal=journal,
            options=options,
            progress=progress,
            catalog_rows=catalog_rows,
        )
    finally:
        if journal is not None:
            journal.close()
        source.close()
        destination.close()
    report.write(reports_dir)
    return report


__all__ = ["RunOutcome", "run_migration", "verify_plan"]
