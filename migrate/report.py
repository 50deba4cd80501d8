"""The `verify` report: one polars schema, a summary for people, files on disk.

`migrate.verify` produces rows; this module holds the report object (its
numbers, verdict and files). The schema is declared in
`migrate.report_schema`, the Markdown and HTML in `migrate.report_render`;
their names are importable from here. Everything is pure (no network): a
report is built from a frame and metadata, and can be summarised, rendered
and written in tests without a server.

The report is the manifest's identifying columns (source_bucket, source_key,
dest_bucket, dest_key, rule, action, size, source_etag) plus what
verification found. Its schema is `REPORT_SCHEMA`, declared once (report_schema.py),
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

import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from migrate.errors import ExitStatus
from migrate.estimate import human_size
from migrate.report_render import display, render_html, render_markdown
from migrate.report_schema import (
    CATALOG_DIFFERS,
    CATALOG_ONLY,
    CATALOG_STATUSES,
    CHECKED_MODES,
    CHECKSUM_BASES,
    CHECKSUM_DIFFERS,
    CONFIDENCE,
    CSV_FILE,
    ERROR,
    FAILING_STATUSES,
    HTML_FILE,
    LISTING_CAP,
    MARKDOWN_FILE,
    MATCH,
    METADATA_DIFFERS,
    MISSING,
    MODE_MEANINGS,
    NOT_MIGRATED,
    OBJECT_MODES,
    REPORT_COLUMNS,
    REPORT_FILE,
    REPORT_SCHEMA,
    SIZE_DIFFERS,
    STATUS_MEANINGS,
    STATUSES,
    STORAGE_ONLY,
    UNEXPECTED,
    UPLOAD_IN_PROGRESS,
    VERIFY_STATUSES,
    check_report_schema,
    empty_report,
    load_report,
    report_frame,
)

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
class _Rows:
    """The `frame` field: a DataFrame or a LazyFrame (rows spooled to disk by `verify`), read back as a DataFrame.

    The report itself only ever uses `rows` (lazy): summaries are aggregates
    and listings are capped, so a report of millions of rows is written
    without holding them. `frame` collects every row: for tests and callers
    that want them all.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> pl.DataFrame:
        if obj is None:
            raise AttributeError("frame")  # no default: dataclasses makes the field required
        value = getattr(obj, self._name)
        return value.collect() if isinstance(value, pl.LazyFrame) else value

    def __set__(self, obj: Any, value: pl.DataFrame | pl.LazyFrame) -> None:
        setattr(obj, self._name, value)


@dataclass
class VerificationReport:
    """A verification's rows (`frame`, exactly REPORT_SCHEMA) and what the run was.

    `frame` may be given as a LazyFrame (`verify` passes a scan of its
    spooled rows and keeps their directory alive in `spool`); `rows` is
    always the lazy view.

    `population` is how many records were eligible for verification and
    `sample_size` how many were asked for (None: every one); `not_verified`
    counts manifest records whose action is not verified (excluded,
    collision); invalid-key/invalid-metadata/unreadable-key records are `not-migrated` rows.
    """

    frame: pl.DataFrame = _Rows()  # type: ignore[assignment]
    plan_name: str
    mode: str
    started_at: datetime
    finished_at: datetime
    population: int | None = None
    sample_size: int | None = None
    seed: int | None = None
    not_verified: int = 0
    path: Path | None = field(default=None)
    spool: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        rows = self._frame  # type: ignore[attr-defined]
        check_report_schema(rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(schema=rows.collect_schema()))

    @property
    def rows(self) -> pl.LazyFrame:
        """Every row, lazily (REPORT_SCHEMA, report order)."""
        return self._frame.lazy()  # type: ignore[attr-defined]

    def _count(self, predicate: pl.Expr) -> int:
        return int(self.rows.filter(predicate).select(pl.len()).collect().item())

    # -- numbers -------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Rows per status, every status present (0 when none)."""
        found = dict(self.rows.group_by("status").len().collect().iter_rows())
        return {status: int(found.get(status, 0)) for status in STATUSES}

    @property
    def migration_rows(self) -> pl.DataFrame:
        return self.rows.filter(pl.col("status").is_in(VERIFY_STATUSES)).collect()

    @property
    def catalog_rows(self) -> pl.DataFrame:
        return self.rows.filter(pl.col("status").is_in(CATALOG_STATUSES)).collect()

    def catalog_listing(self, limit: int = LISTING_CAP) -> tuple[pl.DataFrame, int]:
        """The first `limit` catalog cross-check rows and how many there are."""
        catalog = self.rows.filter(pl.col("status").is_in(CATALOG_STATUSES))
        return catalog.head(limit).collect(), int(catalog.select(pl.len()).collect().item())

    @property
    def objects_checked(self) -> int:
        """Manifest records verified (unexpected objects are not records)."""
        return self._count(pl.col("checked_mode").is_in(OBJECT_MODES))

    @property
    def bytes_verified(self) -> int:
        """Bytes of the objects found to match."""
        return int(self.rows.filter(pl.col("status") == MATCH).select(pl.col("size").sum()).collect().item() or 0)

    @property
    def size_only_matches(self) -> int:
        """Matches for which no checksum could be compared (fast mode without journal or MD5 eTags)."""
        return self._count((pl.col("status") == MATCH) & (pl.col("checksum_basis") == "none"))

    @property
    def sampled(self) -> bool:
        return self.sample_size is not None and self.population is not None and self.sample_size < self.population

    def sample_confidence(self) -> SampleConfidence | None:
        if not self.sampled:
            return None
        failing = self._count(pl.col("checked_mode").is_in(OBJECT_MODES) & (pl.col("status") != MATCH))
        return SampleConfidence(population=self.population or 0, sampled=self.objects_checked, failing=failing)

    @property
    def exit_status(self) -> ExitStatus:
        """OK when every verified object matches and nothing unexpected was found; INCOMPLETE otherwise.

        Catalog cross-check rows never change it: that damage predates the
        migration. "The audit itself failed" is not a report at all: it is
        an exception (FatalError -> ExitStatus.FATAL) raised before one exists.
        """
        failing = self._count(pl.col("status").is_in(FAILING_STATUSES))
        return ExitStatus.INCOMPLETE if failing else ExitStatus.OK

    def failing(self, limit: int | None = None) -> pl.DataFrame:
        """Migration rows that are not `match`, most severe first, then by key (the first `limit` of them when given)."""
        order = {status: index for index, status in enumerate(FAILING_STATUSES)}
        ranked = (
            self.rows.filter(pl.col("status").is_in(FAILING_STATUSES))
            .with_columns(pl.col("status").replace_strict(order, return_dtype=pl.Int32).alias("_order"))
            .sort(["_order", "dest_bucket", "dest_key", "source_key"], nulls_last=True)
            .drop("_order")
        )
        return (ranked if limit is None else ranked.head(limit)).collect()

    def failing_count(self) -> int:
        return self._count(pl.col("status").is_in(FAILING_STATUSES))

    def breakdown(self, by: str, *, statuses: tuple[str, ...] = VERIFY_STATUSES) -> pl.DataFrame:
        """Counts per status for each value of `by` (a column), plus matching bytes; null shown as "(none)"."""
        # One aggregate over the rows (by x status), then shaped in memory: as small as the distinct values of `by`.
        grouped = (
            self.rows.filter(pl.col("status").is_in(statuses))
            .with_columns(pl.col(by).fill_null("(none)"))
            .group_by(by, "status")
            .agg(pl.len(), pl.col("size").filter(pl.col("status") == MATCH).sum().fill_null(0).cast(pl.Int64).alias("bytes_matching"))
            .collect()
        )
        present = [s for s in statuses if s in set(grouped["status"].unique().to_list())]
        if not grouped.height:
            return pl.DataFrame(schema={by: pl.Utf8(), "objects": pl.UInt32(), "bytes_matching": pl.Int64()})
        wide = grouped.pivot(on="status", index=by, values="len").fill_null(0)
        totals = grouped.group_by(by).agg(pl.col("len").sum().cast(pl.UInt32).alias("objects"), pl.col("bytes_matching").sum().cast(pl.Int64))
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

    def facts(self) -> list[tuple[str, str]]:
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
        return render_markdown(self)

    def to_html(self) -> str:
        """summary.html: self-contained (inline CSS, no scripts, no external assets), every value escaped."""
        return render_html(self)

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
            # Streamed from the rows (on disk after `verify`): the files are written without holding every row.
            self.rows.sink_parquet(staging / REPORT_FILE)
            self.rows.sink_csv(staging / CSV_FILE)
            (staging / MARKDOWN_FILE).write_text(self.to_markdown(), encoding="utf-8")
            (staging / HTML_FILE).write_text(self.to_html(), encoding="utf-8")
            os.chmod(staging, 0o755)
            target = _rename_unique(staging, reports_dir / base)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.path = target
        return target


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


__all__ = [
    "REPORT_SCHEMA",
    "REPORT_COLUMNS",
    "STATUSES",
    "VERIFY_STATUSES",
    "CATALOG_STATUSES",
    "FAILING_STATUSES",
    "STATUS_MEANINGS",
    "CHECKSUM_BASES",
    "CHECKED_MODES",
    "OBJECT_MODES",
    "MODE_MEANINGS",
    "MATCH",
    "MISSING",
    "NOT_MIGRATED",
    "SIZE_DIFFERS",
    "CHECKSUM_DIFFERS",
    "METADATA_DIFFERS",
    "ERROR",
    "UNEXPECTED",
    "UPLOAD_IN_PROGRESS",
    "CATALOG_ONLY",
    "STORAGE_ONLY",
    "CATALOG_DIFFERS",
    "REPORT_FILE",
    "CSV_FILE",
    "MARKDOWN_FILE",
    "HTML_FILE",
    "LISTING_CAP",
    "CONFIDENCE",
    "SampleConfidence",
    "VerificationReport",
    "display",
    "empty_report",
    "report_frame",
    "check_report_schema",
    "load_report",
]
