"""The `verify` report: one polars schema, a summary for people, files on disk.

`migrate.verify` produces rows; this module owns what they look like and how
they are presented. Everything here is pure (no network): a report is built
from a frame and metadata, and can be summarised, rendered and written in
tests without a server.

The report is the manifest's identifying columns (source_bucket, source_key,
dest_bucket, dest_key, rule, action, size, source_etag) plus what
verification found. Its schema is `REPORT_SCHEMA`, declared once below,
column by column with its meaning (`REPORT_COLUMNS`).

Two sections share the schema but never mix in the verdict:

- **migration** (`VERIFY_STATUSES`): did the migration deliver each planned
  object? Any status other than `match` makes `exit_status` INCOMPLETE.
- **catalog** (`CATALOG_STATUSES`): Supabase's catalog (`storage.objects`)
  against its own storage. Damage found there existed before the migration,
  so it is reported on its own and never counted against the migration.

`write(reports_dir)` creates `reports_dir/<plan>-<UTC timestamp>/` with
`report.parquet` (the frame, exactly `REPORT_SCHEMA`), `report.csv` (same
columns; keys with commas, quotes and newlines round-trip), `summary.md` and
a self-contained `summary.html` (inline CSS, every value HTML-escaped).
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import polars as pl

from migrate.errors import ExitStatus, UserInputError
from migrate.estimate import human_size

# -- statuses ---------------------------------------------------------------
MATCH = "match"
MISSING = "missing"
# Planned but not writable to S3 as it is (invalid key or metadata): not migrated, so the audit is INCOMPLETE.
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
    NOT_MIGRATED: "planned, but S3 cannot hold it as it is (invalid key or user metadata); exclude it or fix it at the source",
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


# -- sampling -------------------------------------------------------------------
@dataclass(frozen=True)
class SampleConfidence:
    """What a random sample of n objects says about all `population` of them."""

    population: int
    sampled: int
    failing: int
    confidence: float = CONFIDENCE

    @property
    def upper_bound(self) -> float | None:
        """With 0 failures in n: the failure rate is below 1 - (1-c)^(1/n) (~3/n at 95%: the rule of three)."""
        if self.failing or not self.sampled:
            return None
        return 1.0 - (1.0 - self.confidence) ** (1.0 / self.sampled)

    @property
    def observed_rate(self) -> float:
        return self.failing / self.sampled if self.sampled else 0.0

    def describe(self) -> str:
        head = f"sample of {self.sampled:,} of {self.population:,} objects"
        if not self.sampled:
            return f"{head}: nothing was checked, so nothing can be said about the rest"
        bound = self.upper_bound
        if bound is not None:
            objects = math.ceil(bound * self.population)
            return (
                f"{head}: none differ, so at {self.confidence:.0%} confidence fewer than {_percent(bound)} "
                f"of all objects differ (at most ~{objects:,} of {self.population:,}); run without --sample to check every object"
            )
        estimate = round(self.observed_rate * self.population)
        return (
            f"{head}: {self.failing:,} differ (observed rate {_percent(self.observed_rate)}, ~{estimate:,} objects if the sample is "
            f"representative); run without --sample to find every one"
        )


# -- the report -------------------------------------------------------------------
@dataclass
class VerificationReport:
    """A verification's rows (`frame`, exactly REPORT_SCHEMA) and what the run was.

    `population` is how many records were eligible for verification and
    `sample_size` how many were asked for (None: every one); `not_verified`
    counts manifest records whose action is not verified (excluded,
    collision); invalid-key/invalid-metadata records are `not-migrated` rows.
    """

    frame: pl.DataFrame
    plan_name: str
    mode: str
    started_at: datetime
    finished_at: datetime
    population: int | None = None
    sample_size: int | None = None
    seed: int | None = None
    not_verified: int = 0
    path: Path | None = field(default=None)

    def __post_init__(self) -> None:
        check_report_schema(self.frame)

    # -- numbers -------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Rows per status, every status present (0 when none)."""
        found = dict(self.frame.group_by("status").len().iter_rows())
        return {status: int(found.get(status, 0)) for status in STATUSES}

    @property
    def migration_rows(self) -> pl.DataFrame:
        return self.frame.filter(pl.col("status").is_in(VERIFY_STATUSES))

    @property
    def catalog_rows(self) -> pl.DataFrame:
        return self.frame.filter(pl.col("status").is_in(CATALOG_STATUSES))

    @property
    def objects_checked(self) -> int:
        """Manifest records verified (unexpected objects are not records)."""
        return int(self.frame.filter(pl.col("checked_mode").is_in(OBJECT_MODES)).height)

    @property
    def bytes_verified(self) -> int:
        """Bytes of the objects found to match."""
        return int(self.frame.filter(pl.col("status") == MATCH)["size"].sum() or 0)

    @property
    def size_only_matches(self) -> int:
        """Matches for which no checksum could be compared (fast mode without journal or MD5 eTags)."""
        return int(self.frame.filter((pl.col("status") == MATCH) & (pl.col("checksum_basis") == "none")).height)

    @property
    def sampled(self) -> bool:
        return self.sample_size is not None and self.population is not None and self.sample_size < self.population

    def sample_confidence(self) -> SampleConfidence | None:
        if not self.sampled:
            return None
        failing = self.frame.filter(pl.col("checked_mode").is_in(OBJECT_MODES) & (pl.col("status") != MATCH)).height
        return SampleConfidence(population=self.population or 0, sampled=self.objects_checked, failing=int(failing))

    @property
    def exit_status(self) -> ExitStatus:
        """OK when every verified object matches and nothing unexpected was found; INCOMPLETE otherwise.

        Catalog cross-check rows never change it: that damage predates the
        migration. "The audit itself failed" is not a report at all: it is
        an exception (FatalError -> ExitStatus.FATAL) raised before one exists.
        """
        failing = self.frame.filter(pl.col("status").is_in(FAILING_STATUSES)).height
        return ExitStatus.INCOMPLETE if failing else ExitStatus.OK

    def failing(self) -> pl.DataFrame:
        """Migration rows that are not `match`, most severe first, then by key."""
        order = {status: index for index, status in enumerate(FAILING_STATUSES)}
        return (
            self.frame.filter(pl.col("status").is_in(FAILING_STATUSES))
            .with_columns(pl.col("status").replace_strict(order, return_dtype=pl.Int32).alias("_order"))
            .sort(["_order", "dest_bucket", "dest_key", "source_key"], nulls_last=True)
            .drop("_order")
        )

    def breakdown(self, by: str, *, statuses: tuple[str, ...] = VERIFY_STATUSES) -> pl.DataFrame:
        """Counts per status for each value of `by` (a column), plus matching bytes; null shown as "(none)"."""
        rows = self.frame.filter(pl.col("status").is_in(statuses)).with_columns(pl.col(by).fill_null("(none)"))
        present = [s for s in statuses if s in set(rows["status"].unique().to_list())]
        if not rows.height:
            return pl.DataFrame(schema={by: pl.Utf8(), "objects": pl.UInt32(), "bytes_matching": pl.Int64()})
        wide = (
            rows.group_by(by, "status")
            .len()
            .pivot(on="status", index=by, values="len")
            .fill_null(0)
        )
        totals = rows.group_by(by).agg(
            pl.len().alias("objects"),
            pl.col("size").filter(pl.col("status") == MATCH).sum().fill_null(0).cast(pl.Int64).alias("bytes_matching"),
        )
        return totals.join(wide, on=by).select([by, "objects", *present, "bytes_matching"]).sort(by)

    # -- text ----------------------------------------------------------------
    def verdict(self) -> str:
        if self.exit_status == ExitStatus.OK:
            return "OK: every verified object matches"
        failing = sum(count for status, count in self.counts().items() if status in FAILING_STATUSES)
        return f"INCOMPLETE: {failing:,} object(s) need attention"

    def summary_text(self) -> str:
        """A few lines for the terminal, ending with where the report is (once written)."""
        counts = self.counts()
        elapsed = (self.finished_at - self.started_at).total_seconds()
        lines = [
            f"verify {self.plan_name!r} ({self.mode}): {self.objects_checked:,} objects checked, "
            f"{human_size(self.bytes_verified)} verified in {elapsed:.1f}s -> {self.verdict()}",
            "  " + ", ".join(f"{status} {counts[status]:,}" for status in VERIFY_STATUSES if counts[status] or status == MATCH),
        ]
        if self.size_only_matches:
            lines.append(
                f"  {self.size_only_matches:,} of the matches are by size only (no checksum could be compared); "
                "run with --mode deep to compare bytes"
            )
        confidence = self.sample_confidence()
        if confidence is not None:
            lines.append("  " + confidence.describe())
        catalog = {status: counts[status] for status in CATALOG_STATUSES if counts[status]}
        if catalog:
            lines.append(
                "  catalog cross-check (pre-existing, not counted against the migration): "
                + ", ".join(f"{status} {count:,}" for status, count in catalog.items())
            )
        if self.path is not None:
            lines.append(f"  report: {self.path / HTML_FILE}")
        return "\n".join(lines)

    def _facts(self) -> list[tuple[str, str]]:
        facts = [
            ("plan", self.plan_name),
            ("mode", f"{self.mode} ({MODE_MEANINGS.get(self.mode, self.mode)})"),
            ("started", _iso(self.started_at)),
            ("finished", _iso(self.finished_at)),
            ("objects checked", f"{self.objects_checked:,}"),
            ("bytes verified (matching)", human_size(self.bytes_verified)),
            ("verdict", self.verdict()),
        ]
        if self.size_only_matches:
            facts.append(("matches by size only", f"{self.size_only_matches:,} (no checksum could be compared; run --mode deep)"))
        if self.not_verified:
            facts.append(("records not verified", f"{self.not_verified:,} (action excluded or collision)"))
        confidence = self.sample_confidence()
        if confidence is not None:
            facts.append(("sample", f"{confidence.describe()} (seed {self.seed})"))
        elif self.sample_size is not None:
            facts.append(("sample", f"{self.sample_size:,} requested, {self.population or 0:,} eligible: every object was checked"))
        return facts

    def to_markdown(self) -> str:
        """summary.md: the same sections as the HTML, as GitHub-flavoured Markdown."""
        counts = self.counts()
        out = [f"# Verification of {_md(self.plan_name)}", ""]
        out += ["| | |", "|---|---|", *[f"| {_md(k)} | {_md(v)} |" for k, v in self._facts()], ""]
        out += ["## Counts by status", "", "| status | objects | meaning |", "|---|---:|---|"]
        out += [f"| {s} | {counts[s]:,} | {_md(STATUS_MEANINGS[s])} |" for s in VERIFY_STATUSES]
        out.append("")
        failing = self.failing()
        out += [f"## Objects needing attention ({failing.height:,})", ""]
        if failing.height:
            out += _md_table(_listing(failing.head(LISTING_CAP)))
            if failing.height > LISTING_CAP:
                out.append(f"\n... and {failing.height - LISTING_CAP:,} more: see {CSV_FILE} or {REPORT_FILE}.")
        else:
            out.append("None.")
        out.append("")
        for title, by in (("By destination bucket", "dest_bucket"), ("By rule", "rule")):
            out += [f"## {title}", ""] + _md_table(self.breakdown(by)) + [""]
        catalog = self.catalog_rows
        if catalog.height:
            out += ["## Supabase catalog cross-check", ""]
            out += ["Pre-existing state of the source: not caused by the migration and not counted in the verdict.", ""]
            out += ["| status | objects | meaning |", "|---|---:|---|"]
            out += [f"| {s} | {counts[s]:,} | {_md(STATUS_MEANINGS[s])} |" for s in CATALOG_STATUSES]
            out += [""] + _md_table(_catalog_listing(catalog.head(LISTING_CAP)))
            if catalog.height > LISTING_CAP:
                out.append(f"\n... and {catalog.height - LISTING_CAP:,} more: see {CSV_FILE}.")
            out.append("")
        return "\n".join(out)

    def to_html(self) -> str:
        """summary.html: self-contained (inline CSS, no scripts, no external assets), every value escaped."""
        counts = self.counts()
        ok = self.exit_status == ExitStatus.OK
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>Verification of {_h(self.plan_name)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>Verification of {_h(self.plan_name)}</h1>",
            f'<p class="verdict {"ok" if ok else "bad"}">{_h(self.verdict())}</p>',
            _html_table(pl.DataFrame({"": [k for k, _ in self._facts()], " ": [v for _, v in self._facts()]}), header=False),
            "<h2>Counts by status</h2>",
            _html_table(
                pl.DataFrame(
                    {
                        "status": list(VERIFY_STATUSES),
                        "objects": [f"{counts[s]:,}" for s in VERIFY_STATUSES],
                        "meaning": [STATUS_MEANINGS[s] for s in VERIFY_STATUSES],
                    }
                )
            ),
        ]
        failing = self.failing()
        parts.append(f"<h2>Objects needing attention ({failing.height:,})</h2>")
        if failing.height:
            parts.append(_html_table(_listing(failing.head(LISTING_CAP))))
            if failing.height > LISTING_CAP:
                parts.append(f"<p>... and {failing.height - LISTING_CAP:,} more: see {CSV_FILE} or {REPORT_FILE}.</p>")
        else:
            parts.append("<p>None.</p>")
        for title, by in (("By destination bucket", "dest_bucket"), ("By rule", "rule")):
            parts += [f"<h2>{title}</h2>", _html_table(self.breakdown(by))]
        catalog = self.catalog_rows
        if catalog.height:
            parts += [
                "<h2>Supabase catalog cross-check</h2>",
                "<p>Pre-existing state of the source: not caused by the migration and not counted in the verdict.</p>",
                _html_table(
                    pl.DataFrame(
                        {
                            "status": list(CATALOG_STATUSES),
                            "objects": [f"{counts[s]:,}" for s in CATALOG_STATUSES],
                            "meaning": [STATUS_MEANINGS[s] for s in CATALOG_STATUSES],
                        }
                    )
                ),
                _html_table(_catalog_listing(catalog.head(LISTING_CAP))),
            ]
            if catalog.height > LISTING_CAP:
                parts.append(f"<p>... and {catalog.height - LISTING_CAP:,} more: see {CSV_FILE}.</p>")
        parts.append(f'<p class="foot">Every row: {CSV_FILE}, {REPORT_FILE}. Generated by migrate verify.</p>')
        parts.append("</body></html>")
        return "\n".join(parts)

    # -- files ---------------------------------------------------------------
    def write(self, reports_dir: str | Path) -> Path:
        """Write `reports_dir/<plan>-<UTC timestamp>/` (report.parquet, report.csv, summary.md, summary.html).

        The directory appears complete or not at all: files are written into
        a temporary sibling that is renamed into place. Returns the directory
        (also kept in `self.path`).
        """
        reports_dir = Path(reports_dir)
        reports_dir.mkdir(parents=True, exist_ok=True)
        stamp = self.started_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        base = f"{_safe_name(self.plan_name)}-{stamp}"
        staging = Path(tempfile.mkdtemp(dir=reports_dir, prefix=f".{base}."))
        try:
            self.frame.write_parquet(staging / REPORT_FILE)
            self.frame.write_csv(staging / CSV_FILE)
            (staging / MARKDOWN_FILE).write_text(self.to_markdown(), encoding="utf-8")
            (staging / HTML_FILE).write_text(self.to_html(), encoding="utf-8")
            os.chmod(staging, 0o755)
            target = _rename_unique(staging, reports_dir / base)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.path = target
        return target


MODE_MEANINGS = {
    "quick": "listing + journal: existence, size, ETag vs the digest `run` recorded; headers as `run` sent them; HEAD only what the listing cannot prove",
    "fast": "HEAD only: existence, size, stored checksum vs the journal, metadata",
    "deep": "both sides re-read and hashed (SHA-256)",
}


# -- helpers ---------------------------------------------------------------------
def _percent(rate: float) -> str:
    return f"{rate * 100:.2g}%" if rate < 0.1 else f"{rate * 100:.1f}%"


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _safe_name(name: str) -> str:
    # Same rule as RunDirectory.for_plan: a plan name must not escape reports_dir.
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip(".") or "plan"


def _rename_unique(staging: Path, target: Path) -> Path:
    candidate, n = target, 1
    while True:
        try:
            os.rename(staging, candidate)  # fails if it exists (and is non-empty): never overwrite a report
            return candidate
        except OSError:
            if not candidate.exists():
                raise
            n += 1
            candidate = target.with_name(f"{target.name}-{n}")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def display(value: Any) -> str:
    """A value as one visible line: control characters (newlines in keys) shown as escapes."""
    if value is None:
        return ""
    text = str(value)
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _h(value: Any) -> str:
    return html.escape(display(value), quote=True)


def _md(value: Any) -> str:
    # HTML-escape too: Markdown renderers pass inline HTML through.
    text = html.escape(display(value), quote=False)
    return re.sub(r"([\\`*_{}\[\]|#])", r"\\\1", text)


def _location(bucket: Any, key: Any) -> str:
    return f"{bucket}/{key}" if bucket is not None and key is not None else ""


def _listing(rows: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "status": rows["status"].to_list(),
            "source": [_location(b, k) for b, k in zip(rows["source_bucket"], rows["source_key"])],
            "destination": [_location(b, k) for b, k in zip(rows["dest_bucket"], rows["dest_key"])],
            "detail": rows["detail"].to_list(),
        },
        schema={"status": pl.Utf8(), "source": pl.Utf8(), "destination": pl.Utf8(), "detail": pl.Utf8()},
    )


def _catalog_listing(rows: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "status": rows["status"].to_list(),
            "object": [_location(b, k) for b, k in zip(rows["source_bucket"], rows["source_key"])],
            "size": rows["size"].to_list(),
            "detail": rows["detail"].to_list(),
        },
        schema={"status": pl.Utf8(), "object": pl.Utf8(), "size": pl.Int64(), "detail": pl.Utf8()},
    )


def _cell(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return display(value)


def _md_table(frame: pl.DataFrame) -> list[str]:
    if not frame.height:
        return ["None."]
    lines = ["| " + " | ".join(_md(c) for c in frame.columns) + " |", "|" + "---|" * frame.width]
    for row in frame.iter_rows():
        lines.append("| " + " | ".join(_md(_cell(v)) for v in row) + " |")
    return lines


def _html_table(frame: pl.DataFrame, *, header: bool = True) -> str:
    if not frame.height:
        return "<p>None.</p>"
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{_h(c)}</th>" for c in frame.columns) + "</tr>")
    for row in frame.iter_rows(named=True):
        cells = []
        for name, value in row.items():
            css = f' class="s-{_h(value)}"' if name == "status" else (' class="n"' if isinstance(value, int) else "")
            cells.append(f"<td{css}>{_h(_cell(value))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


_CSS = (
    "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1f2328;max-width:80rem}"
    "h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}"
    "table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}"
    "td,th{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top;word-break:break-all}"
    "th{background:#f6f8fa}td.n{text-align:right}"
    ".verdict{font-weight:600;padding:.5rem .75rem;border-radius:.3rem;display:inline-block}"
    ".ok{background:#dafbe1}.bad{background:#ffebe9}"
    ".s-match{color:#1a7f37}.s-missing,.s-error,.s-size-differs,.s-checksum-differs{color:#cf222e;font-weight:600}"
    ".s-metadata-differs,.s-unexpected{color:#9a6700;font-weight:600}"
    ".foot{color:#656d76;font-size:.8rem;margin-top:2rem}"
)


__all__ = [
    "REPORT_SCHEMA",
    "REPORT_COLUMNS",
    "STATUSES",
    "VERIFY_STATUSES",
    "CATALOG_STATUSES",
    "FAILING_STATUSES",
    "STATUS_MEANINGS",
    "CHECKSUM_BASES",
    "SampleConfidence",
    "VerificationReport",
    "empty_report",
    "report_frame",
    "check_report_schema",
    "load_report",
]
