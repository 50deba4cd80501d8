"""The final delta's other half: objects deleted at the source since the last plan.

`migrate run --replan` copies what is new or changed. Around it:

1. `manifest_snapshot(run_dir)` keeps the manifest as it was while `plan` or
   `run` works (a hard link, so no copy is made; removed afterwards);
2. when a new manifest replaced it, `record_removed` compares the two: a row that
   was migrated before and whose source object is in no row of the new
   manifest was deleted at the source. Only objects this plan wrote (its
   transfer journal says `done` for that destination key) and whose
   destination key no new row uses are recorded, in `removals.sqlite`, so
   the list survives later plans and interrupted deletions;
3. `delete_removed(plan, ...)` deletes those keys at the destination, 1000
   per request, marks each one deleted (with the time) in `removals.sqlite`
   and drops its transfer journal row, so a later re-upload is copied again.

Nothing is deleted unless the caller asks (`migrate run --delete-removed
--yes`); without `--yes` the CLI lists what would go.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import polars as pl

from migrate.journal import STATE_DONE, TransferJournal
from migrate.object_index import MIGRATED_ACTIONS
from migrate.retry import call_with_retries
from migrate.rundir import RunDirectory
from migrate.stores.s3_cutover import DELETE_BATCH, delete_keys

if TYPE_CHECKING:
    from migrate.plan import Plan
    from migrate.stores.s3 import S3Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS removed (
    source_bucket TEXT NOT NULL,
    source_key TEXT NOT NULL,
    dest_bucket TEXT NOT NULL,
    dest_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    detected_at REAL NOT NULL,
    deleted_at REAL,
    error TEXT,
    PRIMARY KEY (source_bucket, source_key)
);
"""
_KEYS = ["source_bucket", "source_key"]


@dataclass(frozen=True)
class Removal:
    """One object deleted at the source whose copy this plan wrote."""

    source_bucket: str
    source_key: str
    dest_bucket: str
    dest_key: str
    size: int


@dataclass
class DeletionResult:
    deleted: int = 0
    bytes_deleted: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # dest key -> error code


def removals_path(run_dir: RunDirectory) -> Path:
    return run_dir.path / "removals.sqlite"


@dataclass
class ManifestSnapshot:
    """The manifest as it was before a stage ran; `added` is how many removals the comparison recorded."""

    path: Path | None
    stamp: tuple[int, int] | None
    added: int = 0


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:  # no manifest (or no run directory at all): nothing to compare
        return None
    return stat.st_size, stat.st_mtime_ns


@contextmanager
def manifest_snapshot(run_dir: RunDirectory) -> Iterator[ManifestSnapshot]:
    """Keep the manifest as it is (a hard link) while the block runs; afterwards record what it lost.

    When the block replaced the manifest (a plan, a replan), `record_removed`
    compares old and new, even if the block then failed (the new manifest is
    what later stages see). When it did not, nothing is written. The link is
    removed either way.
    """
    snapshot = ManifestSnapshot(path=None, stamp=_stamp(run_dir.manifest))
    if snapshot.stamp is not None:
        snapshot.path = run_dir.path / f".manifest.previous.{os.getpid()}.parquet"
        snapshot.path.unlink(missing_ok=True)
        try:
            os.link(run_dir.manifest, snapshot.path)
        except OSError:
            shutil.copyfile(run_dir.manifest, snapshot.path)
    try:
        yield snapshot
    finally:
        try:
            if snapshot.path is not None and _stamp(run_dir.manifest) not in (None, snapshot.stamp):
                snapshot.added = record_removed(run_dir, previous=snapshot.path)
        finally:
            if snapshot.path is not None:
                snapshot.path.unlink(missing_ok=True)


def _connect(run_dir: RunDirectory) -> sqlite3.Connection:
    connection = sqlite3.connect(removals_path(run_dir))
    connection.executescript(_SCHEMA)
    return connection


def record_removed(run_dir: RunDirectory, *, previous: Path) -> int:
    """Compare `previous` with the run directory's manifest; record newly removed objects. Returns how many.

    Also forgets pending removals whose source object is back in the new manifest.
    """
    if not previous.exists() or not run_dir.manifest.exists():
        return 0
    new = pl.scan_parquet(run_dir.manifest)
    gone = (
        pl.scan_parquet(previous)
        .filter(pl.col("action").is_in(list(MIGRATED_ACTIONS)))
        .join(new.select(_KEYS), on=_KEYS, how="anti")
        .join(new.filter(pl.col("action").is_in(list(MIGRATED_ACTIONS))).select("dest_bucket", "dest_key"), on=["dest_bucket", "dest_key"], how="anti")
        .select("source_bucket", "source_key", "dest_bucket", "dest_key", "size")
        .collect()
    )
    now = time.time()
    connection = _connect(run_dir)
    try:
        with connection:
            before = connection.total_changes
            written: set[tuple[str, str]] = set()
            if run_dir.journal.exists() and gone.height:
                with TransferJournal(run_dir.journal, readonly=True) as journal:
                    rows = journal.rows(list(gone.select(_KEYS).iter_rows()))
                written = {key for key, row in rows.items() if row.state == STATE_DONE}
            connection.executemany(
                "INSERT OR IGNORE INTO removed (source_bucket, source_key, dest_bucket, dest_key, size, detected_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(*row, now) for row in gone.iter_rows() if (row[0], row[1]) in written],
            )
            added = connection.total_changes - before
            pending = pl.DataFrame(connection.execute("SELECT source_bucket, source_key FROM removed WHERE deleted_at IS NULL").fetchall(), schema={"source_bucket": pl.Utf8, "source_key": pl.Utf8}, orient="row")
            back = pending.lazy().join(new.select(_KEYS), on=_KEYS, how="semi").collect()
            connection.executemany("DELETE FROM removed WHERE source_bucket = ? AND source_key = ? AND deleted_at IS NULL", back.iter_rows())
        return added
    finally:
        connection.close()


def pending_removals(run_dir: RunDirectory) -> Iterator[Removal]:
    """Recorded removals not deleted at the destination yet, in key order."""
    if not removals_path(run_dir).exists():
        return
    connection = _connect(run_dir)
    try:
        for row in connection.execute(
            "SELECT source_bucket, source_key, dest_bucket, dest_key, size FROM removed WHERE deleted_at IS NULL ORDER BY dest_bucket, dest_key"
        ):
            yield Removal(*row)
    finally:
        connection.close()


def removal_counts(run_dir: RunDirectory) -> dict[str, int]:
    """{"pending", "pending_bytes", "deleted"} from `removals.sqlite` (zeros when there is none)."""
    if not removals_path(run_dir).exists():
        return {"pending": 0, "pending_bytes": 0, "deleted": 0}
    connection = _connect(run_dir)
    try:
        pending, size = connection.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM removed WHERE deleted_at IS NULL").fetchone()
        (deleted,) = connection.execute("SELECT COUNT(*) FROM removed WHERE deleted_at IS NOT NULL").fetchone()
        return {"pending": int(pending), "pending_bytes": int(size), "deleted": int(deleted)}
    finally:
        connection.close()


def delete_removed(
    plan: "Plan",
    *,
    state_dir: str | Path | None = None,
    destination: "S3Store | None" = None,
) -> DeletionResult:
    """Delete every pending removal at the destination (1000 keys per request), journaling each one."""
    from migrate.stores.factory import open_destination

    run_dir = RunDirectory.for_plan(plan.name, state_dir=state_dir)
    store = destination or open_destination(plan, concurrency=1)
    result = DeletionResult()
    connection = _connect(run_dir)
    try:
        last: tuple[str, str] = ("", "")
        while True:
            batch = [
                Removal(*row)
                for row in connection.execute(
                    "SELECT source_bucket, source_key, dest_bucket, dest_key, size FROM removed"
                    " WHERE deleted_at IS NULL AND (dest_bucket, dest_key) > (?, ?) ORDER BY dest_bucket, dest_key LIMIT ?",
                    (*last, DELETE_BATCH),
                )
            ]
            if not batch:
                return result
            last = (batch[-1].dest_bucket, batch[-1].dest_key)
            for bucket in sorted({r.dest_bucket for r in batch}):
                _delete_batch(plan, store, connection, run_dir, [r for r in batch if r.dest_bucket == bucket], result)
    finally:
        connection.close()
        if destination is None:
            store.close()


def _delete_batch(
    plan: "Plan", store: "S3Store", connection: sqlite3.Connection, run_dir: RunDirectory, batch: list[Removal], result: DeletionResult
) -> None:
    bucket = batch[0].dest_bucket
    refused = call_with_retries(lambda: delete_keys(store, bucket, [r.dest_key for r in batch]), max_attempts=plan.transfer.max_attempts)
    now = time.time()
    done = [r for r in batch if r.dest_key not in refused]
    with connection:
        connection.executemany(
            "UPDATE removed SET deleted_at = ?, error = NULL WHERE source_bucket = ? AND source_key = ?",
            [(now, r.source_bucket, r.source_key) for r in done],
        )
        connection.executemany(
            "UPDATE removed SET error = ? WHERE source_bucket = ? AND source_key = ?",
            [(refused[r.dest_key], r.source_bucket, r.source_key) for r in batch if r.dest_key in refused],
        )
    if run_dir.journal.exists() and done:
        with TransferJournal(run_dir.journal) as journal:
            journal.forget((r.source_bucket, r.source_key) for r in done)
    result.deleted += len(done)
    result.bytes_deleted += sum(r.size for r in done)
    result.failed.update({r.dest_key: refused[r.dest_key] for r in batch if r.dest_key in refused})
