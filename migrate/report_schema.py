"""The `verify` report's schema: statuses, modes, checksum bases and columns, declared once.

The bottom floor of the report: `migrate.report` (the report object and its
files), `migrate.report_render` (Markdown and HTML) and the stages that
produce rows all import these names from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import polars as pl

from migrate.errors import UserInputError

# -- statuses ---------------------------------------------------------------
MATCH = "match"
MISSING = "missing"
# Planned but not migratable as it is (invalid key or metadata, unreadable source key): the audit is INCOMPLETE.
NOT_MIGRATED = "not-migrated"
SIZE_DIFFERS = "size-differs"
CHECKSUM_DIFFERS = "checksum-differs"
METADATA_DIFFERS = "metadata-differs"
ERROR = "error"
UNEXPECTED = "unexpected"
#: An unfinished multipart upload under a planned key (a run in progress, or one left behind: `migrate uploads PLAN --abort`).
UPLOAD_IN_PROGRESS = "upload-in-progress"
CATALOG_ONLY = "catalog-only"
STORAGE_ONLY = "storage-only"
CATALOG_DIFFERS = "catalog-differs"

#: Outcomes of checking the migration, most severe first after `match`.
VERIFY_STATUSES: tuple[str, ...] = (MATCH, ERROR, MISSING, NOT_MIGRATED, SIZE_DIFFERS, CHECKSUM_DIFFERS, METADATA_DIFFERS, UNEXPECTED, UPLOAD_IN_PROGRESS)
#: Outcomes of the Supabase catalog cross-check (pre-existing state of the source).
CATALOG_STATUSES: tuple[str, ...] = (CATALOG_ONLY, STORAGE_ONLY, CATALOG_DIFFERS)
STATUSES: tuple[str, ...] = VERIFY_STATUSES + CATALOG_STATUSES
#: Statuses that make the audit INCOMPLETE.
FAILING_STATUSES: tuple[str, ...] = tuple(s for s in VERIFY_STATUSES if s != MATCH)

STATUS_MEANINGS: dict[str, str] = {
    MATCH: "at the destination with the planned size, checksum and metadata",
    ERROR: "could not be checked (the detail says why)",
    MISSING: "not at the destination",
    NOT_MIGRATED: "planned, but not migratable as it is (S3 cannot hold its key or user metadata, or its source key cannot be read safely); exclude it or fix it at the source",
    SIZE_DIFFERS: "at the destination with a different size",
    CHECKSUM_DIFFERS: "same size, different bytes",
    METADATA_DIFFERS: "same bytes, but Content-Type, Cache-Control, user metadata, storage class or encryption not as planned",
    UNEXPECTED: "at the destination under a planned prefix, but no manifest record maps to it",
    UPLOAD_IN_PROGRESS: "an unfinished multipart upload under a planned key (a run going on, or left behind: `migrate uploads PLAN --abort`)",
    CATALOG_ONLY: "listed in the Supabase catalog, but its bytes are not in the source storage",
    STORAGE_ONLY: "in the source storage, but not listed in the Supabase catalog",
    CATALOG_DIFFERS: "in both, but the catalog's size or eTag disagrees with the storage",
}

#: How a row was checked (`checked_mode`): per manifest record, or by listing a prefix / the catalog.
OBJECT_MODES: tuple[str, ...] = ("quick", "fast", "deep")
CHECKED_MODES: tuple[str, ...] = OBJECT_MODES + ("listing", "catalog")

#: Where `expected_checksum` came from (`checksum_basis`).
CHECKSUM_BASES: dict[str, str] = {
    "journal-sha256": "destination's stored SHA-256 vs the SHA-256 `run` computed while streaming the source",
    "journal-checksum": "destination's stored checksum (a full-object CRC for multipart) vs the one `run` sent",
    "journal-md5": "destination ETag (plain MD5) vs the MD5 `run` computed while streaming",
    "journal-etag": "destination ETag vs the ETag the destination answered when `run` wrote it",
    "source-etag": "destination ETag vs the source eTag, both plain MD5s (no journal row)",
    "listing-md5": "listed ETag (plain MD5) vs the MD5 `run` computed while streaming; headers as `run` sent them (journal), not re-read",
    "listing-etag": "listed ETag (multipart) vs the ETag the destination answered when `run` wrote it; headers as `run` sent them, not re-read",
    "listing-source-etag": "listed ETag vs the source eTag, both plain MD5s (skip-existing: not written by `run`)",
    "deep-read": "SHA-256 of the source bytes vs SHA-256 of the destination bytes, both read again",
    "none": "no checksum could be compared: size only",
}

# -- the schema ---------------------------------------------------------------
#: (column, type, meaning): the one declaration of the report's shape.
REPORT_COLUMNS: tuple[tuple[str, pl.DataType, str], ...] = (
    ("source_bucket", pl.Utf8(), "source bucket (manifest); null for `unexpected` rows"),
    ("source_key", pl.Utf8(), "source key (manifest); null for `unexpected` rows"),
    ("dest_bucket", pl.Utf8(), "destination bucket the record maps to (or where an `unexpected` object was found)"),
    ("dest_key", pl.Utf8(), "destination key the record maps to (or of the `unexpected` object)"),
    ("rule", pl.Utf8(), "rewrite rule that mapped the key (manifest)"),
    ("action", pl.Utf8(), "manifest action of the record (`copy`, `skip-existing`); null for listing/catalog rows"),
    ("size", pl.Int64(), "planned size in bytes (manifest); for catalog rows the size that side lists"),
    ("source_etag", pl.Utf8(), "source eTag as planned (manifest), unquoted"),
    ("status", pl.Utf8(), "one of STATUSES"),
    ("detail", pl.Utf8(), "why, in words: what differs, what was (not) compared, the error; the UploadId for upload-in-progress"),
    ("dest_size", pl.Int64(), "size found at the destination; null when missing or not checked"),
    ("dest_etag", pl.Utf8(), "ETag found at the destination, unquoted"),
    ("expected_checksum", pl.Utf8(), "`<algorithm>:<value>` the object should have (see checksum_basis)"),
    ("actual_checksum", pl.Utf8(), "`<algorithm>:<value>` found, same algorithm and encoding as expected_checksum"),
    ("checksum_basis", pl.Utf8(), "what was compared: one of CHECKSUM_BASES; `none` = size only"),
    ("expected_metadata", pl.Utf8(), "JSON object: planned values of the metadata fields that differ; null when none differ"),
    ("actual_metadata", pl.Utf8(), "JSON object: values found for those same fields"),
    ("checked_mode", pl.Utf8(), "`quick` (proven by the listing + journal), `fast` (HEAD), `deep` (both sides re-read), `listing` (unexpected and upload-in-progress scans) or `catalog`"),
    ("checked_at", pl.Datetime("us", "UTC"), "when this row was checked (UTC)"),
)
REPORT_SCHEMA: dict[str, pl.DataType] = {name: dtype for name, dtype, _ in REPORT_COLUMNS}

REPORT_FILE = "report.parquet"
CSV_FILE = "report.csv"
MARKDOWN_FILE = "summary.md"
HTML_FILE = "summary.html"

#: Failing objects listed in summary.md / summary.html (all are in report.csv).
LISTING_CAP = 200
#: Confidence level of the sampling statement.
CONFIDENCE = 0.95


def empty_report() -> pl.DataFrame:
    return pl.DataFrame(schema=REPORT_SCHEMA)


def report_frame(rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Build a report-shaped frame from row dicts (missing columns are null)."""
    frame = pl.DataFrame([{name: row.get(name) for name in REPORT_SCHEMA} for row in rows], schema=REPORT_SCHEMA)
    check_report_schema(frame)
    return frame


def check_report_schema(frame: pl.DataFrame, *, where: str = "report") -> None:
    """Raise UserInputError unless `frame` has exactly REPORT_SCHEMA and known statuses."""
    actual = dict(frame.schema)
    if list(actual) != list(REPORT_SCHEMA) or any(actual[name] != dtype for name, dtype in REPORT_SCHEMA.items()):
        missing = [name for name in REPORT_SCHEMA if name not in actual]
        extra = [name for name in actual if name not in REPORT_SCHEMA]
        wrong = [name for name in REPORT_SCHEMA if name in actual and actual[name] != REPORT_SCHEMA[name]]
        parts = [f"missing {missing}" if missing else "", f"unknown {extra}" if extra else "", f"wrong types {wrong}" if wrong else ""]
        found = "; ".join(p for p in parts if p) or "columns out of order"
        raise UserInputError(f"{where}: not a `migrate verify` report ({found}); rerun `migrate verify` to produce one")
    unknown = frame.filter(~pl.col("status").is_in(STATUSES) | pl.col("status").is_null())
    if unknown.height:
        raise UserInputError(f"{where}: unknown status {unknown['status'][0]!r} (known: {', '.join(STATUSES)})")


def load_report(path: str | Path) -> pl.DataFrame:
    """Read a report written by `VerificationReport.write` (its directory or report.parquet), schema-checked."""
    path = Path(path)
    file = path / REPORT_FILE if path.is_dir() else path
    try:
        frame = pl.read_parquet(file)
    except FileNotFoundError:
        raise UserInputError(f"{file}: no report there; pass a directory written by `migrate verify`") from None
    except (pl.exceptions.ComputeError, OSError) as err:
        raise UserInputError(f"{file}: cannot read the report as Parquet ({type(err).__name__})") from None
    check_report_schema(frame, where=str(file))
    return frame

#: What each `--mode` checks, in one line (the report states it).
MODE_MEANINGS = {
    "quick": "listing + journal: existence, size, ETag vs the digest `run` recorded; headers as `run` sent them; HEAD only what the listing cannot prove",
    "fast": "HEAD only: existence, size, stored checksum vs the journal, metadata",
    "deep": "both sides re-read and hashed (SHA-256)",
}
