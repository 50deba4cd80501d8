"""The manifest on disk, written and read in memory that does not grow with the object count.

`plan` lists one page at a time into Parquet part files (migrate/inventory.py).
`assemble_manifest` turns those parts into the manifest without holding its rows:

1. One pass over the parts spills two narrow key tables into hash partitions
   of about `PARTITION_ROWS` rows each: (row, source key) to find objects
   listed twice, and (row, source, destination key) of the `copy` rows to
   find collisions. Rows that share a key always share a partition, so each
   partition is checked on its own.
2. Per partition: the rows that repeat an earlier (source_bucket, source_key)
   are dropped (keep the first, as overlapping prefixes list an object
   twice), and `copy` rows that share a destination key are marked
   `collision` with the same reason `mark_collisions` gives.
3. One streaming polars query over the parts drops, marks and writes the
   manifest (`sink_parquet`), in listing order.

What stays in memory: one partition's key columns, plus the dropped row
numbers and the collision marks (both as large as the problems found, not as
the listing). `run` and `status` read the manifest back with lazy scans and
`copy_batches` (one slice of rows at a time).
"""

from __future__ import annotations

import io
import math
import shutil
import struct
from pathlib import Path
from typing import Iterator

import polars as pl

from migrate.errors import MigrateError, StateDirectoryError, UserInputError
from migrate.records import MANIFEST_SCHEMA, Action, ObjectRecord, frame_to_records
from migrate.rewrite import collision_reason, find_collisions

# Rows per hash partition (and key rows buffered before a spill): the working set of the
# collision and duplicate checks, so a 10M-object plan works in 100k-row pieces as a 100k one does.
PARTITION_ROWS = 100_000
# Rows per Parquet row group of the manifest: what the streaming sink buffers before it writes.
ROW_GROUP_ROWS = 20_000
# Rows read per batch when `run` and `status` read the manifest back (one row group).
READ_BATCH_ROWS = ROW_GROUP_ROWS
_ROW = "_row"
_REASON = "_collision_reason"
_SOURCE = ("source_bucket", "source_key")
_DEST = ("source_bucket", "source_key", "dest_bucket", "dest_key")


class _Spill:
    """Key rows bucketed by hash into one file per partition under `folder`, appended whenever `flush_rows` are buffered.

    Each append is one length-prefixed Arrow IPC stream, so a partition is
    one file however many flushes fed it.
    """

    def __init__(self, folder: Path, partitions: int, *, flush_rows: int):
        self.folder = folder
        self.partitions = partitions
        self.flush_rows = flush_rows
        self._buffers: dict[tuple[str, int], list[pl.DataFrame]] = {}
        self._buffered = 0
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, kind: str, frame: pl.DataFrame, key: list[pl.Expr]) -> None:
        if frame.height == 0:
            return
        keyed = frame.with_columns((pl.struct(key).hash(seed=0) % self.partitions).alias("_partition"))
        for (partition,), piece in keyed.partition_by("_partition", as_dict=True, include_key=False).items():
            self._buffers.setdefault((kind, int(partition)), []).append(piece)  # type: ignore[arg-type]
        self._buffered += frame.height
        if self._buffered >= self.flush_rows:
            self.flush()

    def _path(self, kind: str, partition: int) -> Path:
        return self.folder / f"{kind}-{partition:05d}.arrows"

    def flush(self) -> None:
        for (kind, partition), pieces in self._buffers.items():
            chunk = io.BytesIO()
            pl.concat(pieces).write_ipc_stream(chunk, compression="uncompressed")
            with self._path(kind, partition).open("ab") as file:
                file.write(struct.pack("<Q", chunk.getbuffer().nbytes))
                file.write(chunk.getbuffer())
        self._buffers.clear()
        self._buffered = 0

    def read(self, kind: str, partition: int) -> pl.DataFrame | None:
        try:
            data = self._path(kind, partition).read_bytes()
        except FileNotFoundError:
            return None
        chunks, offset = [], 0
        while offset < len(data):
            (size,) = struct.unpack_from("<Q", data, offset)
            chunks.append(pl.read_ipc_stream(io.BytesIO(data[offset + 8 : offset + 8 + size])))
            offset += 8 + size
        return pl.concat(chunks).sort(_ROW)


def _duplicate_rows(spill: _Spill) -> pl.Series:
    """Row numbers that repeat an earlier row's (source_bucket, source_key), sorted."""
    found = [pl.Series(_ROW, [], dtype=pl.Int64)]
    for partition in range(spill.partitions):
        frame = spill.read("source", partition)
        if frame is not None:
            found.append(frame.filter(~pl.struct(*_SOURCE).is_first_distinct())[_ROW])
    return pl.concat(found).sort()


def _collision_marks(spill: _Spill, dropped: pl.Series) -> pl.DataFrame:
    """(row, reason) of every `copy` row whose destination key another `copy` row shares."""
    marks = [pl.DataFrame(schema={_ROW: pl.Int64, _REASON: pl.Utf8})]
    for partition in range(spill.partitions):
        frame = spill.read("dest", partition)
        if frame is None:
            continue
        if dropped.len():
            frame = frame.filter(~pl.col(_ROW).is_in(dropped.implode()))
        collided = find_collisions(frame)
        if collided.height == 0:
            continue
        reasons = collided.select(
            *_SOURCE,
            pl.struct("dest_bucket", "dest_key", "colliding_sources")
            .map_elements(lambda s: collision_reason(s["dest_bucket"], s["dest_key"], s["colliding_sources"]), return_dtype=pl.Utf8)
            .alias(_REASON),
        ).unique(subset=list(_SOURCE), keep="first")
        marks.append(frame.join(reasons, on=list(_SOURCE), how="inner").select(_ROW, _REASON))
    return pl.concat(marks).sort(_ROW)


def assemble_manifest(parts: list[Path], target: Path, *, work_dir: Path, partition_rows: int = PARTITION_ROWS) -> int:
    """Write the manifest of `parts` (listing order) to `target`: duplicates dropped, collisions marked. Returns its rows.

    Gives the same rows as reading every part, keeping the first row per
    source object and applying `migrate.rewrite.mark_collisions`, in memory
    bounded by `partition_rows` rather than by the listing.
    """
    if not parts:
        pl.DataFrame(schema=MANIFEST_SCHEMA).write_parquet(target)
        return 0
    total = int(pl.scan_parquet(parts).select(pl.len()).collect().item())
    spill = _Spill(work_dir, max(1, math.ceil(total / partition_rows)), flush_rows=partition_rows)
    try:
        offset = 0
        for part in parts:
            keys = pl.read_parquet(part, columns=[*_DEST, "action"]).with_row_index(_ROW, offset=offset).with_columns(pl.col(_ROW).cast(pl.Int64))
            offset += keys.height
            spill.add("source", keys.select(_ROW, *_SOURCE), [pl.col(c) for c in _SOURCE])
            copies = keys.filter((pl.col("action") == Action.COPY.value) & pl.col("dest_key").is_not_null()).select(_ROW, *_DEST)
            spill.add("dest", copies, [pl.col("dest_bucket").fill_null(""), pl.col("dest_key")])
        spill.flush()
        dropped = _duplicate_rows(spill)
        marks = _collision_marks(spill, dropped)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    manifest = pl.scan_parquet(parts).with_row_index(_ROW).with_columns(pl.col(_ROW).cast(pl.Int64))
    if dropped.len():
        manifest = manifest.filter(~pl.col(_ROW).is_in(dropped.implode()))
    if marks.height:
        hit = pl.col(_REASON).is_not_null() & (pl.col("action") == Action.COPY.value)
        manifest = manifest.join(marks.lazy(), on=_ROW, how="left", maintain_order="left").with_columns(
            pl.when(hit).then(pl.lit(Action.COLLISION.value)).otherwise(pl.col("action")).alias("action"),
            pl.when(hit).then(pl.col(_REASON)).otherwise(pl.col("reason")).alias("reason"),
        )
    manifest.select(list(MANIFEST_SCHEMA)).sink_parquet(target, row_group_size=ROW_GROUP_ROWS, engine="streaming")
    return total - dropped.len()


def scan_manifest(path: Path) -> pl.LazyFrame:
    """A lazy scan of the manifest at `path`, after checking it has exactly the manifest schema.

    A missing file is a user error (run `plan` first); a damaged one a state-directory error (exit 4).
    """
    if not path.exists():
        raise UserInputError(f"no manifest in {path.parent}; run `migrate plan` first")
    try:
        schema = pl.read_parquet_schema(path)
    except Exception as err:  # noqa: BLE001 - polars/arrow raise many types for a damaged file
        raise StateDirectoryError(f"{path}: the manifest cannot be read ({type(err).__name__}); run `migrate plan` again to rewrite it") from err
    if dict(schema) != MANIFEST_SCHEMA:
        raise UserInputError(f"{path} does not have the manifest schema of this version; run `migrate plan` again")
    return pl.scan_parquet(path)


def count_rows(manifest: pl.LazyFrame, *actions: str) -> tuple[int, int]:
    """(rows, bytes) of the manifest rows with one of `actions` (every row when none is given)."""
    rows = manifest.filter(pl.col("action").is_in(list(actions))) if actions else manifest
    objects, size = rows.select(pl.len(), pl.col("size").sum()).collect(engine="streaming").row(0)
    return int(objects), int(size or 0)


def action_batches(
    manifest: pl.LazyFrame | pl.DataFrame, *actions: str, columns: list[str] | None = None, batch_rows: int = READ_BATCH_ROWS
) -> Iterator[pl.DataFrame]:
    """The rows with one of `actions` (every row when none is given), in manifest order, from `batch_rows` manifest rows at a time.

    Each batch is its own slice of the scan (the Parquet reader skips the
    row groups before it), read only when the consumer asks: unlike
    `collect_batches`, nothing runs ahead of a slow consumer (`run`) and
    buffers the rest of the manifest.
    """
    rows = manifest.lazy()
    try:
        total = int(rows.select(pl.len()).collect().item())
        for offset in range(0, total, batch_rows):
            batch = rows.slice(offset, batch_rows)
            batch = batch.filter(pl.col("action").is_in(list(actions))) if actions else batch
            batch = (batch.select(columns) if columns is not None else batch).collect()
            if batch.height:
                yield batch
    except MigrateError:
        raise
    except pl.exceptions.PolarsError as err:
        raise StateDirectoryError(f"the manifest cannot be read ({type(err).__name__}); run `migrate plan` again to rewrite it") from err


def copy_records(manifest: pl.LazyFrame | pl.DataFrame) -> Iterator[ObjectRecord]:
    """The manifest's `copy` rows as records, in manifest order, one batch at a time."""
    for batch in action_batches(manifest, Action.COPY.value):
        yield from frame_to_records(batch)
