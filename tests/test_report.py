"""The verification report as pure code: schema, verdict, sampling maths, rendering, files."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from migrate.errors import ExitStatus, UserInputError
from migrate.records import MANIFEST_SCHEMA
from migrate.report import (
    CATALOG_STATUSES,
    CSV_FILE,
    FAILING_STATUSES,
    HTML_FILE,
    LISTING_CAP,
    MARKDOWN_FILE,
    REPORT_FILE,
    REPORT_SCHEMA,
    STATUSES,
    SampleConfidence,
    VerificationReport,
    load_report,
    report_frame,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def _row(key: str, status: str = "match", **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source_bucket": "photos",
        "source_key": key,
        "dest_bucket": "archive",
        "dest_key": f"moved/{key}",
        "rule": "all",
        "action": "copy",
        "size": 100,
        "status": status,
        "detail": "" if status == "match" else f"{status} because of reasons",
        "dest_size": 100,
        "checksum_basis": "journal-sha256",
        "checked_mode": "fast",
        "checked_at": T0,
    }
    row.update(values)
    return row


def _report(rows: list[dict[str, Any]], **meta: Any) -> VerificationReport:
    values: dict[str, Any] = {"plan_name": "photos", "mode": "fast", "started_at": T0, "finished_at": T0 + timedelta(seconds=5)}
    values.update(meta)
    return VerificationReport(frame=report_frame(rows), **values)


# -- schema ---------------------------------------------------------------------------
def test_report_reuses_the_manifest_identifying_columns() -> None:
    for name in ("source_bucket", "source_key", "dest_bucket", "dest_key", "rule", "action", "size", "source_etag"):
        assert REPORT_SCHEMA[name] == MANIFEST_SCHEMA[name], name
    assert list(REPORT_SCHEMA)[:2] == ["source_bucket", "source_key"]
    assert {"status", "detail", "dest_size", "expected_checksum", "actual_checksum", "checked_mode"} <= set(REPORT_SCHEMA)


def test_schema_and_statuses_are_enforced(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="unknown status 'fine'"):
        report_frame([_row("a", status="fine")])
    good = report_frame([_row("a")])
    with pytest.raises(UserInputError, match="missing"):
        VerificationReport(frame=good.drop("detail"), plan_name="p", mode="fast", started_at=T0, finished_at=T0)
    with pytest.raises(UserInputError, match="wrong types"):
        VerificationReport(frame=good.with_columns(pl.col("size").cast(pl.Utf8)), plan_name="p", mode="fast", started_at=T0, finished_at=T0)
    not_a_report = tmp_path / "other.parquet"
    pl.DataFrame({"x": [1]}).write_parquet(not_a_report)
    with pytest.raises(UserInputError, match="not a `migrate verify` report"):
        load_report(not_a_report)
    with pytest.raises(UserInputError, match="no report there"):
        load_report(tmp_path / "nowhere")


# -- verdict ----------------------------------------------------------------------------
def test_exit_status_ok_only_when_everything_matches() -> None:
    assert _report([_row("a"), _row("b")]).exit_status == ExitStatus.OK
    assert _report([]).exit_status == ExitStatus.OK
    for status in FAILING_STATUSES:
        assert _report([_row("a"), _row("b", status=status)]).exit_status == ExitStatus.INCOMPLETE, status


def test_catalog_findings_never_fail_the_migration() -> None:
    rows = [_row("a")] + [_row(f"c-{s}", status=s, dest_bucket=None, dest_key=None, checked_mode="catalog") for s in CATALOG_STATUSES]
    report = _report(rows)
    assert report.exit_status == ExitStatus.OK
    assert report.objects_checked == 1 and report.catalog_rows.height == 3
    assert "pre-existing, not counted against the migration" in report.summary_text()


def test_counts_bytes_and_order_of_failures() -> None:
    rows = [
        _row("m1", size=10),
        _row("m2", size=32, checksum_basis="none"),
        _row("meta", status="metadata-differs"),
        _row("x", status="unexpected", source_bucket=None, source_key=None, checked_mode="listing"),
        _row("gone", status="missing"),
        _row("err", status="error"),
    ]
    report = _report(rows)
    counts = report.counts()
    assert set(counts) == set(STATUSES)
    assert (counts["match"], counts["missing"], counts["error"], counts["unexpected"], counts["size-differs"]) == (2, 1, 1, 1, 0)
    assert report.bytes_verified == 42 and report.size_only_matches == 1
    assert report.objects_checked == 5  # the unexpected object is not a manifest record
    assert report.failing()["status"].to_list() == ["error", "missing", "metadata-differs", "unexpected"]


def test_breakdowns_by_bucket_and_rule() -> None:
    rows = [_row("a"), _row("b", status="missing", rule="thumbs"), _row("c", dest_bucket="other"), _row("d", rule=None)]
    by_bucket = {r["dest_bucket"]: r for r in _report(rows).breakdown("dest_bucket").iter_rows(named=True)}
    assert (by_bucket["archive"]["objects"], by_bucket["archive"]["match"], by_bucket["archive"]["missing"]) == (3, 2, 1)
    assert by_bucket["archive"]["bytes_matching"] == 200 and by_bucket["other"]["objects"] == 1
    by_rule = {r["rule"]: r["objects"] for r in _report(rows).breakdown("rule").iter_rows(named=True)}
    assert by_rule == {"all": 2, "thumbs": 1, "(none)": 1}


# -- sampling ----------------------------------------------------------------------------
def test_sample_confidence_rule_of_three() -> None:
    clean = SampleConfidence(population=1_000_000, sampled=300, failing=0)
    assert clean.upper_bound == pytest.approx(1 - 0.05 ** (1 / 300))
    assert clean.upper_bound == pytest.approx(3 / 300, rel=0.01)  # the rule of three
    assert "95% confidence fewer than 0.99%" in clean.describe()
    dirty = SampleConfidence(population=1000, sampled=200, failing=4)
    assert dirty.upper_bound is None and dirty.observed_rate == pytest.approx(0.02)
    assert "4 differ (observed rate 2%" in dirty.describe() and "~20 objects" in dirty.describe()


def test_sample_facts_in_the_summary() -> None:
    sampled = _report([_row(f"k{i}") for i in range(50)], population=10_000, sample_size=50, seed=3)
    assert sampled.sampled and "sample of 50 of 10,000 objects: none differ" in sampled.summary_text()
    assert "(seed 3)" in sampled.to_markdown()
    everything = _report([_row("a")], population=1, sample_size=50, seed=3)
    assert not everything.sampled and everything.sample_confidence() is None
    assert "every object was checked" in everything.to_markdown()


# -- rendering ---------------------------------------------------------------------------
NASTY = 'a,b "quoted" <script>alert(1)</script>|pipe\nnewline.png'


def test_html_is_self_contained_and_escapes_everything() -> None:
    rows = [_row(NASTY, status="missing", dest_bucket="<b>bucket</b>"), _row("ok")]
    page = _report(rows, plan_name="<plan>").to_html()
    assert "<script>" not in page and "<b>bucket</b>" not in page and "<plan>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;bucket&lt;/b&gt;" in page
    assert "\\n" in page  # the newline in the key is shown, not swallowed
    # No external assets: no links, scripts, images or remote URLs.
    assert not re.search(r"<(script|link|img|iframe)\b|https?://|src=", page)
    assert page.count("<style>") == 1


def test_failing_listing_is_capped_and_says_how_many_more() -> None:
    rows = [_row(f"bad-{i:04d}", status="missing") for i in range(LISTING_CAP + 25)]
    report = _report(rows)
    for text in (report.to_html(), report.to_markdown()):
        assert "bad-0000" in text and f"bad-{LISTING_CAP - 1:04d}" in text and f"bad-{LISTING_CAP:04d}" not in text
        assert "and 25 more" in text


def test_markdown_tables_survive_pipes_and_newlines_in_keys() -> None:
    markdown = _report([_row(NASTY, status="missing")]).to_markdown()
    section = markdown.split("## Objects needing attention")[1].split("##")[0]
    table_rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(table_rows) == 3  # header, rule, one object: the newline did not split the row
    assert all(len(re.findall(r"(?<!\\)\|", line)) == 5 for line in table_rows)
    assert "<script>" not in markdown


def test_summary_text_is_short() -> None:
    report = _report([_row("a"), _row("b", status="checksum-differs")])
    text = report.summary_text()
    assert len(text.splitlines()) <= 6
    assert "INCOMPLETE" in text and "checksum-differs 1" in text and "match 1" in text
    assert "report:" not in text  # not written yet


# -- files ------------------------------------------------------------------------------
def test_write_creates_one_timestamped_directory_per_report(tmp_path: Path) -> None:
    meta = json.dumps({"owner": "a,b", "note": 'say "hi"\nbye'})
    rows = [_row(NASTY, status="metadata-differs", expected_metadata=meta, actual_metadata="{}"), _row("fine")]
    report = _report(rows, plan_name="../../escape attempt")
    first = report.write(tmp_path / "reports")
    second = _report(rows, plan_name="../../escape attempt").write(tmp_path / "reports")
    assert first.parent == second.parent == tmp_path / "reports"
    # The plan name cannot climb out of reports_dir or hide the directory.
    assert first.name == "_.._escape_attempt-20250301T120000Z"
    assert second.name == first.name + "-2"
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == sorted([first.name, second.name])  # no staging leftovers
    assert {p.name for p in first.iterdir()} == {REPORT_FILE, CSV_FILE, MARKDOWN_FILE, HTML_FILE}
    assert load_report(first).equals(report.frame)
    csv = pl.read_csv(first / CSV_FILE, schema=REPORT_SCHEMA)
    assert csv.equals(report.frame)
    assert json.loads(csv.filter(pl.col("status") == "metadata-differs")["expected_metadata"][0])["note"] == 'say "hi"\nbye'
    assert report.path == first and str(first / HTML_FILE) in report.summary_text()


def test_a_report_over_a_lazy_scan_writes_and_summarises_like_the_frame(tmp_path: Path) -> None:
    """`verify` hands the report a scan of its spooled rows: every number, summary and file is the frame's."""
    rows = [_row(f"k{i}.png", "missing" if i % 7 == 0 else "match") for i in range(LISTING_CAP + 60)]
    rows.append(_row("stray", "unexpected", source_key=None, checked_mode="listing"))
    eager = _report(rows)
    report_frame(rows).write_parquet(tmp_path / "rows.parquet")
    lazy = VerificationReport(frame=pl.scan_parquet(tmp_path / "rows.parquet"), plan_name="photos", mode="fast", started_at=T0, finished_at=T0 + timedelta(seconds=5))
    assert isinstance(lazy.frame, pl.DataFrame) and lazy.frame.equals(eager.frame)
    assert lazy.counts() == eager.counts() and lazy.exit_status == eager.exit_status
    assert lazy.failing().equals(eager.failing()) and lazy.failing(3).equals(eager.failing().head(3))
    assert lazy.failing_count() == eager.failing().height
    assert lazy.to_markdown() == eager.to_markdown() and lazy.to_html() == eager.to_html()
    written = lazy.write(tmp_path / "out")
    assert load_report(written).equals(eager.frame)
    assert pl.read_csv(written / CSV_FILE, schema=REPORT_SCHEMA).equals(eager.frame)
