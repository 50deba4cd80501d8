"""Report rows and destination listings kept on disk while `verify` runs, so its memory does not grow with the object count.

`RowSpool` collects report rows as checks complete (in any order; whole
frames too: a cluster shard's rows, each at its manifest position), writes
them to parquet part files every `rows_per_part` rows, and reads them back
as one lazy frame in manifest order (then `unexpected` rows by key, each
once). `KeySpool` holds (bucket, key, size, etag, storage class) rows: the
destination listing, or the keys the manifest maps to; `strays` anti-joins
one against the other a hash partition at a time, `lookup` answers a window
of keys. `SortedKeys` holds (bucket, key, size) rows that come in any order
and reads them back sorted (the source audit's rows without bytes): in memory
up to one part, past that sorted parts on disk merged as they are read.
Everything lives in one temporary directory, removed with the spool.
"""

from __future__ import annotations

import heapq
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import polars as pl

from migrate.report_schema import REPORT_SCHEMA, UNEXPECTED

_SEQ = "_seq"
_ROWS_PER_PART = 20_000
# Sorting reads this many manifest positions at a time: the parts are sorted, so a window touches few row groups.
_SEQ_WINDOW = 50_000
_ROW_GROUP = 5_000
# Hash partitions per this many keys when the listing is anti-joined with the manifest's keys.
_KEYS_PER_PARTITION = 250_000
# Rows all the sorted parts of a `SortedKeys` hold in memory together while they are merged.
_MERGE_ROWS = 100_000

KEY_SCHEMA = {"bucket": pl.Utf8(), "key": pl.Utf8(), "size": pl.Int64(), "etag": pl.Utf8(), "storage_class": pl.Utf8()}


class _Directory:
    """A temporary directory that numbers the files written into it."""

    def __init__(self, directory: str | Path | None = None, *, prefix: str = "migrate-verify-") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix, dir=directory)
        self.path = Path(self._tmp.name)
        self._count = 0
        self._lock = threading.Lock()

    def new_file(self, stem: str) -> Path:
        with self._lock:
            self._count += 1
            return self.path / f"{stem}-{self._count:06d}.parquet"

    def cleanup(self) -> None:
        self._tmp.cleanup()


class RowSpool:
    """Thread-safe report rows on disk; `ordered()` is REPORT_SCHEMA in report order."""

    def __init__(self, *, rows_per_part: int = _ROWS_PER_PART, directory: _Directory | None = None) -> None:
        self.directory = directory or _Directory()
        self._rows_per_part = rows_per_part
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        # Rows that arrive already made (a cluster shard's report), with their positions: folded with `_rows`.
        self._frames: list[pl.DataFrame] = []
        self._frame_rows = 0
        self._strays: list[dict[str, Any]] = []
        self._parts: list[Path] = []
        self._stray_parts: list[Path] = []
        self._schema = {_SEQ: pl.Int64(), **REPORT_SCHEMA}
        self.count = 0

    def add(self, seq: int, row: dict[str, Any]) -> None:
        """One row; `seq` is its manifest position (-1: before every record). `unexpected` rows go to `add_stray`."""
        with self._lock:
            self._rows.append({_SEQ: seq, **row})
            self.count += 1
            if len(self._rows) >= self._rows_per_part:
                self._fold()

    def add_frame(self, positions: Sequence[int], frame: pl.DataFrame) -> None:
        """REPORT_SCHEMA rows made elsewhere (a cluster shard's report); `positions[i]` is row i's manifest position."""
        if len(positions) != frame.height:
            raise ValueError(f"{frame.height} report rows for {len(positions)} manifest positions")
        typed = frame.select([pl.col(name).cast(dtype) for name, dtype in REPORT_SCHEMA.items()])
        with self._lock:
            self._frames.append(typed.with_columns(pl.Series(_SEQ, positions, dtype=pl.Int64())).select(list(self._schema)))
            self._frame_rows += frame.height
            self.count += frame.height
            if len(self._rows) + self._frame_rows >= self._rows_per_part:
                self._fold()

    def add_stray(self, row: dict[str, Any]) -> None:
        """An `unexpected` row: reported after the records, by key, each key once."""
        with self._lock:
            self._strays.append({_SEQ: 0, **row})
            self.count += 1
            if len(self._strays) >= self._rows_per_part:
                self._fold()

    def _fold(self) -> None:
        made, self._frames, self._frame_rows = self._frames, [], 0
        for rows, frames, parts, sort in (
            (self._rows, made, self._parts, [_SEQ, "dest_bucket", "dest_key"]),
            (self._strays, [], self._stray_parts, ["dest_bucket", "dest_key"]),
        ):
            if rows or frames:
                path = self.directory.new_file("rows")
                pl.concat([pl.DataFrame(rows, schema=self._schema), *frames]).sort(sort, nulls_last=True, maintain_order=True).write_parquet(path, row_group_size=_ROW_GROUP)
                parts.append(path)
                rows.clear()

    def ordered(self) -> pl.LazyFrame:
        """Record rows by manifest position (ties by destination key), then `unexpected` rows by key, each once.

        Writes the ordered rows once more, a window of positions at a time,
        and returns a scan of those files: nothing holds every row.
        """
        with self._lock:
            self._fold()
        ordered: list[Path] = []
        if self._parts:
            bounds = pl.scan_parquet(self._parts).select(pl.col(_SEQ).min().alias("lo"), pl.col(_SEQ).max().alias("hi")).collect()
            lo, hi = int(bounds["lo"][0]), int(bounds["hi"][0])
            for start in range(lo, hi + 1, _SEQ_WINDOW):
                window = (
                    pl.scan_parquet(self._parts)
                    .filter(pl.col(_SEQ).is_between(start, start + _SEQ_WINDOW - 1))
                    .sort([_SEQ, "dest_bucket", "dest_key"], nulls_last=True, maintain_order=True)
                    .collect()
                )
                if window.height:
                    path = self.directory.new_file("ordered")
                    window.drop(_SEQ).write_parquet(path, row_group_size=_ROW_GROUP)
                    ordered.append(path)
        if self._stray_parts:
            # Strays are as many as the objects nobody planned: usually few; sorted in memory.
            strays = (
                pl.scan_parquet(self._stray_parts)
                .unique(subset=["dest_bucket", "dest_key"], keep="first", maintain_order=True)
                .sort(["dest_bucket", "dest_key"], nulls_last=True, maintain_order=True)
                .drop(_SEQ)
                .collect()
            )
            path = self.directory.new_file("ordered")
            strays.write_parquet(path, row_group_size=_ROW_GROUP)
            ordered.append(path)
        if not ordered:
            return pl.DataFrame(schema=REPORT_SCHEMA).lazy()
        return pl.scan_parquet(ordered).select(list(REPORT_SCHEMA))


class KeySpool:
    """(bucket, key, size, etag, storage_class) rows on disk, appended in pages; one spool per listing."""

    def __init__(self, directory: _Directory, *, rows_per_part: int = 50_000) -> None:
        self.directory = directory
        self._rows_per_part = rows_per_part
        self._columns: dict[str, list[Any]] = {name: [] for name in KEY_SCHEMA}
        self._parts: list[Path] = []
        self._lock = threading.Lock()
        self.count = 0

    def append(self, bucket: str, key: str, size: int = 0, etag: str | None = None, storage_class: str | None = None) -> None:
        with self._lock:
            for name, value in zip(KEY_SCHEMA, (bucket, key, size, etag, storage_class)):
                self._columns[name].append(value)
            self.count += 1
            if len(self._columns["key"]) >= self._rows_per_part:
                self._fold()

    def _fold(self) -> None:
        if self._columns["key"]:
            path = self.directory.new_file("keys")
            pl.DataFrame(self._columns, schema=KEY_SCHEMA).write_parquet(path, row_group_size=_ROW_GROUP)
            self._parts.append(path)
            self._columns = {name: [] for name in KEY_SCHEMA}

    def extend(self, other: "KeySpool") -> None:
        """Take over `other`'s rows (a listing that completed)."""
        other.flush()
        with self._lock:
            self._fold()
            self._parts.extend(other._parts)
            self.count += other.count
            other._parts = []

    def flush(self) -> None:
        with self._lock:
            self._fold()

    def scan(self) -> pl.LazyFrame:
        self.flush()
        if not self._parts:
            return pl.DataFrame(schema=KEY_SCHEMA).lazy()
        return pl.scan_parquet(self._parts)

    def lookup(self, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str | None, str | None]]:
        """(bucket, key) -> (size, etag, storage class) for the wanted keys that are in the spool."""
        by_bucket: dict[str, list[str]] = {}
        for bucket, key in wanted:
            by_bucket.setdefault(bucket, []).append(key)
        found: dict[tuple[str, str], tuple[int, str | None, str | None]] = {}
        scan = self.scan()
        for bucket, keys in by_bucket.items():
            # The key range first: a listing is in key order, so the Parquet reader skips the row groups outside it.
            in_range = pl.col("key").is_between(pl.lit(min(keys)), pl.lit(max(keys)))
            hits = scan.filter((pl.col("bucket") == bucket) & in_range & pl.col("key").is_in(keys)).collect()
            for b, key, size, etag, storage_class in hits.iter_rows():
                found[(b, key)] = (size, etag, storage_class)
        return found

    def strays(self, expected: "KeySpool", *, bucket: str, prefix: str) -> Iterable[tuple[str, int, str | None]]:
        """(key, size, etag) of this spool's rows under bucket/prefix that `expected` does not hold, a hash partition at a time."""
        partitions = max(1, (self.count + expected.count) // _KEYS_PER_PARTITION + 1)
        mine = self.scan().filter((pl.col("bucket") == bucket) & pl.col("key").str.starts_with(prefix))
        theirs = expected.scan().filter(pl.col("bucket") == bucket).select("key")
        for part in range(partitions):
            slot = (pl.col("key").hash(seed=0) % partitions) == part
            found = mine.filter(slot).join(theirs.filter(slot).unique(), on="key", how="anti").select("key", "size", "etag").collect()
            yield from found.iter_rows()

    def cleanup_parts(self) -> None:
        for path in self._parts:
            path.unlink(missing_ok=True)
        self._parts = []


TRIPLE_SCHEMA = {"source_bucket": pl.Utf8(), "source_key": pl.Utf8(), "size": pl.Int64()}


class SortedKeys:
    """(bucket, key, size) rows added in any order, read back sorted as tuples (`iter`) or a lazy frame (`scan`).

    Up to `rows_per_part` rows stay in memory and no directory is made; past
    that each full part is sorted and written, and reading merges the parts
    (`heapq.merge`, a slice of each part at a time), so the rows are never
    all in memory. Thread-safe to add to.
    """

    def __init__(self, *, rows_per_part: int | None = None, prefix: str = "migrate-audit-") -> None:
        self._rows_per_part = rows_per_part or _ROWS_PER_PART
        self._prefix = prefix
        self._directory: _Directory | None = None
        self._lock = threading.Lock()
        self._rows: list[tuple[str, str, int]] = []
        self._parts: list[tuple[Path, int]] = []
        self._merged: list[Path] | None = None
        self.count = 0

    def add(self, bucket: str, key: str, size: int) -> None:
        with self._lock:
            self._rows.append((bucket, key, size))
            self.count += 1
            self._merged = None
            if len(self._rows) >= self._rows_per_part:
                self._fold()

    def _fold(self) -> None:
        if self._directory is None:
            self._directory = _Directory(prefix=self._prefix)
        self._rows.sort()
        path = self._directory.new_file("sorted")
        pl.DataFrame(self._rows, schema=TRIPLE_SCHEMA, orient="row").write_parquet(path, row_group_size=_ROW_GROUP)
        self._parts.append((path, len(self._rows)))
        self._rows = []

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[str, str, int]]:
        with self._lock:
            parts, rows = list(self._parts), sorted(self._rows)
        slice_rows = max(_ROW_GROUP // 20, _MERGE_ROWS // max(1, len(parts)))
        return heapq.merge(rows, *(_read_sorted(path, height, slice_rows) for path, height in parts))

    def head(self, limit: int) -> list[tuple[str, str, int]]:
        """The first `limit` rows in order (reads one slice of each part)."""
        found = []
        for row in self:
            if len(found) == limit:
                break
            found.append(row)
        return found

    def scan(self) -> pl.LazyFrame:
        """The rows, sorted (TRIPLE_SCHEMA): in memory while they fit one part, else a scan of the merged parts, written once."""
        with self._lock:
            if not self._parts:
                return pl.DataFrame(sorted(self._rows), schema=TRIPLE_SCHEMA, orient="row").lazy()
            merged = self._merged
        if merged is None:
            merged = []
            chunk: list[tuple[str, str, int]] = []
            for row in self:
                chunk.append(row)
                if len(chunk) == self._rows_per_part:
                    merged.append(self._write_merged(chunk))
                    chunk = []
            if chunk:
                merged.append(self._write_merged(chunk))
            with self._lock:
                self._merged = merged
        return pl.scan_parquet(merged)

    def _write_merged(self, rows: list[tuple[str, str, int]]) -> Path:
        assert self._directory is not None  # there are parts, so there is a directory
        path = self._directory.new_file("merged")
        pl.DataFrame(rows, schema=TRIPLE_SCHEMA, orient="row").write_parquet(path, row_group_size=_ROW_GROUP)
        return path

    def cleanup(self) -> None:
        if self._directory is not None:
            self._directory.cleanup()


def _read_sorted(path: Path, height: int, slice_rows: int) -> Iterator[tuple[str, str, int]]:
    scan = pl.scan_parquet(path)
    for offset in range(0, height, slice_rows):
        yield from scan.slice(offset, slice_rows).collect().iter_rows()
