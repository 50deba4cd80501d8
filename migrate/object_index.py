"""Find a migrated object by its old (source) bucket and key, fast, without holding the manifest in memory.

`presign` and the redirect route look objects up one at a time. Scanning a
ten-million-row manifest per request is too slow and a Python dict of it too
big, so the manifest's migrated rows are copied once into a SQLite table keyed
by (source_bucket, source_key): `<run dir>/object_index.sqlite`. It is rebuilt
when the manifest changes (its size and mtime are recorded), atomically.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from migrate.errors import UserInputError
from migrate.records import Action
from migrate.rundir import RunDirectory, atomic_path

# Manifest rows whose object is (or will be) at the destination.
MIGRATED_ACTIONS: tuple[str, ...] = (Action.COPY.value, Action.SKIP_EXISTING.value)
_SLICE = 50_000


@dataclass(frozen=True)
class IndexedObject:
    """What the cutover needs to know about one migrated object."""

    source_bucket: str
    source_key: str
    dest_bucket: str
    dest_key: str
    content_disposition: str | None


def _manifest_stamp(manifest: Path) -> str:
    stat = manifest.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _build(manifest: Path, target: Path, stamp: str) -> None:
    tmp = atomic_path(target)
    try:
        connection = sqlite3.connect(tmp)
        with connection:
            connection.execute(
                "CREATE TABLE objects (source_bucket TEXT NOT NULL, source_key TEXT NOT NULL, dest_bucket TEXT NOT NULL,"
                " dest_key TEXT NOT NULL, content_disposition TEXT, PRIMARY KEY (source_bucket, source_key)) WITHOUT ROWID"
            )
            connection.execute("CREATE TABLE stamp (value TEXT NOT NULL)")
            connection.execute("INSERT INTO stamp VALUES (?)", (stamp,))
            rows = (
                pl.scan_parquet(manifest)
                .filter(pl.col("action").is_in(list(MIGRATED_ACTIONS)))
                .select("source_bucket", "source_key", "dest_bucket", "dest_key", "content_disposition")
            )
            total = rows.select(pl.len()).collect().item()
            for offset in range(0, total, _SLICE):
                connection.executemany(
                    "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)", rows.slice(offset, _SLICE).collect().iter_rows()
                )
        connection.close()
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class ObjectIndex:
    """Read-only lookups of migrated objects by source bucket and key; safe to share between threads."""

    # How often `refresh_if_changed` looks at the manifest (a stat) at most.
    CHECK_SECONDS = 5.0

    def __init__(self, path: Path, *, run_dir: RunDirectory | None = None, plan_label: str = ""):
        self.path = path
        self._run_dir, self._plan_label = run_dir, plan_label
        self._stamp = _manifest_stamp(run_dir.manifest) if run_dir else None
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def refresh_if_changed(self) -> None:
        """Rebuild from the manifest when a new plan replaced it (checked at most every CHECK_SECONDS)."""
        if self._run_dir is None or time.monotonic() - self._checked < self.CHECK_SECONDS:
            return
        self._checked = time.monotonic()
        try:
            stamp = _manifest_stamp(self._run_dir.manifest)
        except FileNotFoundError:
            return  # between a plan's writes: keep answering from the index we have
        if stamp == self._stamp:
            return
        fresh = ObjectIndex.for_run(self._run_dir, plan_label=self._plan_label)
        with self._lock:
            old, self._connection = self._connection, fresh._connection
            self._stamp = fresh._stamp
        old.close()

    @classmethod
    def for_run(cls, run_dir: RunDirectory, *, plan_label: str) -> "ObjectIndex":
        """The index of `run_dir`'s manifest, built or rebuilt first when needed."""
        if not run_dir.manifest.exists():
            raise UserInputError(f"{plan_label}: no manifest yet; run `migrate plan {plan_label}` first")
        target = run_dir.path / "object_index.sqlite"
        stamp = _manifest_stamp(run_dir.manifest)
        current = None
        if target.exists():
            try:
                with sqlite3.connect(f"file:{target}?mode=ro", uri=True) as probe:
                    current = probe.execute("SELECT value FROM stamp").fetchone()[0]
            except sqlite3.Error:
                current = None
        if current != stamp:
            _build(run_dir.manifest, target, stamp)
        return cls(target, run_dir=run_dir, plan_label=plan_label)

    def lookup(self, bucket: str, key: str) -> IndexedObject | None:
        """The migrated object that was `bucket/key` at the source, or None (not in the manifest, or not migrated)."""
        with self._lock:
            row = self._connection.execute(
                "SELECT source_bucket, source_key, dest_bucket, dest_key, content_disposition FROM objects"
                " WHERE source_bucket = ? AND source_key = ?",
                (bucket, key),
            ).fetchone()
        return IndexedObject(*row) if row else None

    def close(self) -> None:
        self._connection.close()
