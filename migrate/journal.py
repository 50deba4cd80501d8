"""The transfer journal: resume state in SQLite (WAL), one file per run directory.

Written before and after each object and each multipart part, so a run
killed at any moment (kill -9 included) resumes where it stopped:

- `objects`: one row per source object: state (`in-progress`, `done`,
  `failed`), attempts, last error, the digests computed while streaming, the
  destination ETag/checksum, the multipart UploadId and part size, and the
  *fingerprint* of what was copied. An object counts as migrated only when its
  row is `done` AND its fingerprint equals the current manifest record's, so a
  re-plan after source changes moves exactly the difference.
- `parts`: every completed part of an unfinished multipart upload (ETag,
  checksum, size), cross-checked with ListParts on resume.
- `runs`: one row per `migrate run`, for `migrate status` and reports.
- `probes`: destination keys of conditional-write probes being written, so a
  probe left by a killed run is deleted at the next start.

Multipart uploads are journaled as an *intent* (`upload_intent = 1`) before
CreateMultipartUpload is sent: a run killed before it learns the UploadId, or
whose create answer was lost and retried, leaves the intent behind, and the
next run lists the uploads under that key and aborts the ones that are not
ours-and-current.

WAL with synchronous=NORMAL survives a killed process (not a power cut, which
at worst loses the last few commits: those objects are simply sent again).
Other processes (`migrate status`) read concurrently while a run writes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from migrate.errors import StateDirectoryError
from migrate.records import ObjectRecord
from migrate.redact import redact

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    source_bucket TEXT NOT NULL,
    source_key TEXT NOT NULL,
    dest_bucket TEXT NOT NULL,
    dest_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    sha256 TEXT,
    md5 TEXT,
    dest_etag TEXT,
    dest_checksum TEXT,
    checksum_algorithm TEXT,
    upload_id TEXT,
    part_size INTEGER,
    updated_at REAL NOT NULL,
    upload_intent INTEGER NOT NULL DEFAULT 0,
    sent_headers TEXT,
    PRIMARY KEY (source_bucket, source_key)
);
CREATE INDEX IF NOT EXISTS objects_state ON objects(state);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    checksum TEXT,
    sha256 TEXT,
    PRIMARY KEY (upload_id, part_number)
);
CREATE TABLE IF NOT EXISTS probes (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    finished_at REAL,
    plan_fingerprint TEXT,
    outcome TEXT,
    copied INTEGER,
    failed INTEGER,
    bytes INTEGER
);
"""

STATE_IN_PROGRESS = "in-progress"
STATE_DONE = "done"
STATE_FAILED = "failed"
# The destination already had the key and the conflict policy said skip.
STATE_SKIPPED = "skipped"

_BEGIN_SQL = """
INSERT INTO objects (source_bucket, source_key, dest_bucket, dest_key, size, fingerprint, state, attempts, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)
ON CONFLICT (source_bucket, source_key) DO UPDATE SET
    dest_bucket = excluded.dest_bucket, dest_key = excluded.dest_key, size = excluded.size,
    upload_id = CASE WHEN objects.fingerprint = excluded.fingerprint THEN objects.upload_id END,
    part_size = CASE WHEN objects.fingerprint = excluded.fingerprint THEN objects.part_size END,
    fingerprint = excluded.fingerprint, state = excluded.state,
    attempts = objects.attempts + 1, error = NULL, updated_at = excluded.updated_at
"""

_DONE_SQL = """
UPDATE objects SET state = ?, error = NULL, sha256 = ?, md5 = ?, dest_etag = ?, dest_checksum = ?,
    checksum_algorithm = ?, sent_headers = ?, upload_id = NULL, updated_at = ?
WHERE source_bucket = ? AND source_key = ?
"""

# Group commit of `done` marks for whole objects: at most this many rows or
# this many seconds are buffered. Losing them (a crash) only means those
# objects are sent again; nothing is ever marked done early.
FLUSH_ROWS = 64
FLUSH_SECONDS = 0.25


def record_fingerprint(record: ObjectRecord, *, sse: str | None = None, kms_key_id: str | None = None) -> str:
    """A digest of everything that decides what the destination object must be.

    Same fingerprint => the copy made earlier is still the right one.
    """
    material = json.dumps(
        [
            record.dest_bucket,
            record.dest_key,
            record.size,
            record.source_etag,
            record.content_type,
            record.cache_control,
            record.content_disposition,
            record.user_metadata,
            record.storage_class,
            sse,
            kms_key_id,
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def sent_headers_json(
    *, content_type: str | None, cache_control: str | None, content_disposition: str | None, user_metadata: Any, carried: Mapping[str, str | None]
) -> str:
    """The journal's record of the headers one write carried (JSON, keys sorted).

    `carried`: Content-Encoding, Content-Language and Expires as sent
    (`migrate.headers.CARRIED_HEADERS`, None when not sent). A journal
    written before they were recorded lacks these keys: verify reads that
    as "not recorded", not as "sent none".
    """
    return json.dumps(
        {
            "content_type": content_type, "cache_control": cache_control, "content_disposition": content_disposition,
            "user_metadata": user_metadata or {}, **carried,
        },
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )


@dataclass(frozen=True)
class JournalRow:
    source_bucket: str
    source_key: str
    dest_bucket: str
    dest_key: str
    size: int
    fingerprint: str
    state: str
    attempts: int
    error: str | None
    sha256: str | None
    md5: str | None
    dest_etag: str | None
    dest_checksum: str | None
    checksum_algorithm: str | None
    upload_id: str | None
    part_size: int | None
    upload_intent: int = 0
    # JSON {"content_type", "cache_control", "content_disposition", "user_metadata", and since they are
    # carried "content_encoding", "content_language", "expires"}: the headers
    # `run` sent with the object (None: it wrote nothing, or an older journal). See `sent_headers_json`.
    sent_headers: str | None = None


@dataclass(frozen=True)
class CompletedPart:
    part_number: int
    size: int
    etag: str
    checksum: str | None
    sha256: str | None


class TransferJournal:
    """Thread-safe access to one run directory's journal."""

    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._pending: list[tuple[object, ...]] = []
        self._pending_since = time.monotonic()
        try:
            self._open(readonly)
        except sqlite3.DatabaseError as err:
            raise StateDirectoryError(
                f"{self.path}: not a usable journal ({err}); move it aside and rerun "
                "(objects already at the destination are recognised, not sent again)"
            ) from err

    def _open(self, readonly: bool) -> None:
        if readonly:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=30)
            self._db.execute("SELECT COUNT(*) FROM objects").fetchone()  # a corrupt file fails here, not mid-command
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(objects)")}
            if "upload_intent" not in columns:  # a journal written before upload intents existed
                self._db.execute("ALTER TABLE objects ADD COLUMN upload_intent INTEGER NOT NULL DEFAULT 0")
            if "sent_headers" not in columns:  # a journal written before sent headers were recorded
                self._db.execute("ALTER TABLE objects ADD COLUMN sent_headers TEXT")
        # What SELECTs read into a JournalRow; a read-only open of an older journal reads NULL for newer columns.
        present = {row[1] for row in self._db.execute("PRAGMA table_info(objects)")}
        self._columns = ", ".join(name if name in present else f"NULL AS {name}" for name in JournalRow.__dataclass_fields__)

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()

    def __enter__(self) -> "TransferJournal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _execute(self, sql: str, params: Iterable[object] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, tuple(params))

    # -- runs --------------------------------------------------------------
    def start_run(self, plan_fingerprint: str) -> int:
        cursor = self._execute("INSERT INTO runs (started_at, plan_fingerprint) VALUES (?, ?)", (time.time(), plan_fingerprint))
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, *, outcome: str, copied: int, failed: int, bytes_copied: int) -> None:
        self._execute(
            "UPDATE runs SET finished_at = ?, outcome = ?, copied = ?, failed = ?, bytes = ? WHERE id = ?",
            (time.time(), outcome, copied, failed, bytes_copied, run_id),
        )

    # -- objects -----------------------------------------------------------
    def row(self, source_bucket: str, source_key: str) -> JournalRow | None:
        with self._lock:
            cursor = self._db.execute(
                f"SELECT {self._columns} FROM objects WHERE source_bucket = ? AND source_key = ?",
                (source_bucket, source_key),
            )
            found = cursor.fetchone()
        return JournalRow(*found) if found else None

    def rows(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], JournalRow]:
        """Rows for many (source_bucket, source_key) pairs at once, for fast skip checks."""
        found: dict[tuple[str, str], JournalRow] = {}
        columns = self._columns
        # One bucket per query, `source_bucket = ? AND source_key IN (...)`: SQLite searches the primary key for
        # that form, while a row-value `IN (VALUES ...)` scans the whole table per batch (EXPLAIN QUERY PLAN:
        # SCAN objects), which made run and verify quadratic in the object count.
        by_bucket: dict[str, list[str]] = {}
        for bucket, key in keys:
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, bucket_keys in by_bucket.items():
            for start in range(0, len(bucket_keys), 400):
                batch = bucket_keys[start : start + 400]
                placeholders = ", ".join("?" for _ in batch)
                with self._lock:
                    result = self._db.execute(
                        f"SELECT {columns} FROM objects WHERE source_bucket = ? AND source_key IN ({placeholders})", [bucket, *batch]
                    ).fetchall()
                for values in result:
                    row = JournalRow(*values)
                    found[(row.source_bucket, row.source_key)] = row
        return found

    def begin(self, record: ObjectRecord, fingerprint: str) -> None:
        """Mark an object in progress (before the first byte moves). Keeps a resumable upload."""
        self.begin_many([(record, fingerprint)])

    def begin_many(self, items: list[tuple[ObjectRecord, str]]) -> None:
        """`begin` for a batch of objects, in one transaction (before any of them is queued)."""
        if not items:
            return
        now = time.time()
        rows = [
            (r.source_bucket, r.source_key, r.dest_bucket, r.dest_key, r.size, fingerprint, STATE_IN_PROGRESS, now)
            for r, fingerprint in items
        ]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(_BEGIN_SQL, rows)
            self._db.execute("COMMIT")

    def add_attempt(self, record: ObjectRecord, error: str) -> None:
        self._execute(
            "UPDATE objects SET attempts = attempts + 1, error = ?, updated_at = ? WHERE source_bucket = ? AND source_key = ?",
            (redact(error), time.time(), record.source_bucket, record.source_key),
        )

    def set_upload(self, record: ObjectRecord, upload_id: str | None, part_size: int | None) -> None:
        """Record the upload now in use (or none); clears the intent, so call it only once stray uploads are dealt with."""
        self._execute(
            "UPDATE objects SET upload_id = ?, part_size = ?, upload_intent = 0, updated_at = ? WHERE source_bucket = ? AND source_key = ?",
            (upload_id, part_size, time.time(), record.source_bucket, record.source_key),
        )

    def intend_upload(self, record: ObjectRecord) -> None:
        """Committed before CreateMultipartUpload is sent: uploads under this key may exist that we do not know of."""
        self._execute(
            "UPDATE objects SET upload_intent = 1, updated_at = ? WHERE source_bucket = ? AND source_key = ?",
            (time.time(), record.source_bucket, record.source_key),
        )

    def intended_uploads(self) -> list[JournalRow]:
        """Rows whose create may have reached the destination unseen (killed, or answer lost)."""
        return self._rows_where("upload_intent = 1")

    def _rows_where(self, condition: str) -> list[JournalRow]:
        with self._lock:
            rows = self._db.execute(f"SELECT {self._columns} FROM objects WHERE {condition}").fetchall()
        return [JournalRow(*row) for row in rows]

    def clear_intent(self, source_bucket: str, source_key: str) -> None:
        self._execute("UPDATE objects SET upload_intent = 0 WHERE source_bucket = ? AND source_key = ?", (source_bucket, source_key))

    # -- probes ------------------------------------------------------------
    def add_probe(self, bucket: str, key: str) -> None:
        self._execute("INSERT OR IGNORE INTO probes (bucket, key) VALUES (?, ?)", (bucket, key))

    def forget_probe(self, bucket: str, key: str) -> None:
        self._execute("DELETE FROM probes WHERE bucket = ? AND key = ?", (bucket, key))

    def probes(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(str(b), str(k)) for b, k in self._db.execute("SELECT bucket, key FROM probes").fetchall()]

    def done(
        self,
        record: ObjectRecord,
        *,
        sha256: str | None,
        md5: str | None,
        dest_etag: str | None,
        dest_checksum: str | None,
        checksum_algorithm: str | None,
        state: str = STATE_DONE,
        deferred: bool = False,
        sent_headers: str | None = None,
    ) -> None:
        """Mark an object migrated: called only after the destination confirmed the whole object.

        `deferred` (whole objects, no multipart state) joins the group commit.
        `sent_headers` (`sent_headers_json`) are the headers the write carried.
        """
        if deferred:
            row = (state, sha256, md5, dest_etag, dest_checksum, checksum_algorithm, sent_headers, time.time(), record.source_bucket, record.source_key)
            with self._lock:
                if not self._pending:
                    self._pending_since = time.monotonic()
                self._pending.append(row)
                due = len(self._pending) >= FLUSH_ROWS or time.monotonic() - self._pending_since >= FLUSH_SECONDS
            if due:
                self.flush()
            return
        self.flush()
        with self._lock:
            self._db.execute("BEGIN")
            row = self._db.execute(
                "SELECT upload_id FROM objects WHERE source_bucket = ? AND source_key = ?", (record.source_bucket, record.source_key)
            ).fetchone()
            if row and row[0]:
                self._db.execute("DELETE FROM parts WHERE upload_id = ?", (row[0],))
            self._db.execute(
                _DONE_SQL,
                (state, sha256, md5, dest_etag, dest_checksum, checksum_algorithm, sent_headers, time.time(), record.source_bucket, record.source_key),
            )
            self._db.execute("COMMIT")

    def flush(self) -> None:
        """Commit buffered `done` marks in one transaction."""
        with self._lock:
            rows, self._pending = self._pending, []
            if rows:
                self._db.execute("BEGIN")
                self._db.executemany(_DONE_SQL, rows)
                self._db.execute("COMMIT")

    def failed(self, record: ObjectRecord, error: str, *, keep_upload: bool) -> None:
        self._execute(
            f"""
            UPDATE objects SET state = ?, error = ?, updated_at = ?{'' if keep_upload else ', upload_id = NULL'}
            WHERE source_bucket = ? AND source_key = ?
            """,
            (STATE_FAILED, redact(error), time.time(), record.source_bucket, record.source_key),
        )

    # -- parts -------------------------------------------------------------
    def part_done(self, upload_id: str, part: CompletedPart) -> None:
        self._execute(
            "INSERT OR REPLACE INTO parts (upload_id, part_number, size, etag, checksum, sha256) VALUES (?, ?, ?, ?, ?, ?)",
            (upload_id, part.part_number, part.size, part.etag, part.checksum, part.sha256),
        )

    def parts(self, upload_id: str) -> dict[int, CompletedPart]:
        with self._lock:
            rows = self._db.execute(
                "SELECT part_number, size, etag, checksum, sha256 FROM parts WHERE upload_id = ? ORDER BY part_number", (upload_id,)
            ).fetchall()
        return {row[0]: CompletedPart(*row) for row in rows}

    def forget_parts(self, upload_id: str) -> None:
        self._execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))

    def open_uploads(self) -> list[JournalRow]:
        """Objects with an unfinished multipart upload recorded."""
        return self._rows_where("upload_id IS NOT NULL")

    # -- reporting ---------------------------------------------------------
    def counts(self) -> dict[str, tuple[int, int]]:
        """{state: (objects, bytes)}."""
        self.flush()
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM objects GROUP BY state").fetchall()
        return {state: (int(count), int(size)) for state, count, size in rows}

    def forget(self, keys: Iterable[tuple[str, str]]) -> None:
        """Drop the rows of objects removed from the destination, so a later copy is never skipped as done."""
        self.flush()
        with self._lock:
            self._db.executemany("DELETE FROM objects WHERE source_bucket = ? AND source_key = ?", list(keys))

    def counts_for(self, keys: Iterable[tuple[str, str]]) -> tuple[dict[str, tuple[int, int]], int]:
        """({state: (objects, bytes)} over the given (source_bucket, source_key)s only, rows outside them).

        `migrate status` passes the current manifest's `copy` objects, so the
        counts add up to the manifest: a row for an object the plan now
        excludes is reported apart, never as `in-progress`.
        """
        self.flush()
        with self._lock:
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS planned (source_bucket TEXT, source_key TEXT, PRIMARY KEY (source_bucket, source_key))")
            self._db.execute("DELETE FROM planned")
            self._db.executemany("INSERT OR IGNORE INTO planned VALUES (?, ?)", keys)
            rows = self._db.execute(
                "SELECT o.state, COUNT(*), COALESCE(SUM(o.size), 0) FROM objects o "
                "JOIN planned p ON p.source_bucket = o.source_bucket AND p.source_key = o.source_key GROUP BY o.state"
            ).fetchall()
            outside = self._db.execute(
                "SELECT COUNT(*) FROM objects o WHERE NOT EXISTS "
                "(SELECT 1 FROM planned p WHERE p.source_bucket = o.source_bucket AND p.source_key = o.source_key)"
            ).fetchone()[0]
            self._db.execute("DELETE FROM planned")
        return {state: (int(count), int(size)) for state, count, size in rows}, int(outside)

    def iter_rows(self, state: str | None = None) -> Iterator[JournalRow]:
        self.flush()
        columns = self._columns
        sql = f"SELECT {columns} FROM objects" + (" WHERE state = ?" if state else "") + " ORDER BY source_bucket, source_key"
        with self._lock:
            rows = self._db.execute(sql, (state,) if state else ()).fetchall()
        for row in rows:
            yield JournalRow(*row)

    def import_rows(self, rows: Iterable[JournalRow]) -> None:
        """Write rows another journal produced (a cluster worker's scratch journal), replacing ours, in one transaction."""
        columns = list(JournalRow.__dataclass_fields__)
        values = [tuple(getattr(row, name) for name in columns) + (time.time(),) for row in rows]
        if not values:
            return
        self.flush()
        placeholders = ", ".join("?" for _ in range(len(columns) + 1))
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(f"INSERT OR REPLACE INTO objects ({', '.join(columns)}, updated_at) VALUES ({placeholders})", values)
            self._db.execute("COMMIT")

    def last_run(self) -> dict[str, object] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, started_at, finished_at, plan_fingerprint, outcome, copied, failed, bytes FROM runs ORDER BY id DESC LIMIT 1"
            ).fetchone()
        if not row:
            return None
        keys = ("id", "started_at", "finished_at", "plan_fingerprint", "outcome", "copied", "failed", "bytes")
        return dict(zip(keys, row))
