"""The manifest assembled in bounded memory gives the same rows and summary as the whole-manifest algorithm."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from migrate.errors import StateDirectoryError, UserInputError
from migrate.estimate import estimate
from migrate.inventory import summarise
from migrate.manifest import action_batches, assemble_manifest, copy_records, count_rows, scan_manifest
from migrate.plan import parse_plan
from migrate.records import MANIFEST_SCHEMA, Action, ObjectRecord, records_to_frame
from migrate.rewrite import mark_collisions

PLAN = """\
version: 1
name: streamed
source:
  type: supabase
  url: ${SUPABASE_URL}
  key: ${SUPABASE_SERVICE_ROLE_KEY}
  buckets: [a, b]
destination:
  bucket: dest
"""


def _records() -> list[ObjectRecord]:
    """Sixty rows over two buckets: collisions whose rows sit in different parts, an object listed twice, excluded and invalid rows."""
    records = []
    for index in range(60):
        bucket = "a" if index % 3 else "b"
        key = f"k/{index:03d}.bin"
        dest = f"{bucket}/{key}"
        if index in (2, 41, 57):
            dest = "shared/one.bin"  # three sources, three different parts: one collision group
        if index in (10, 11):
            dest = "shared/two.bin"
        action = Action.EXCLUDED.value if index % 7 == 0 else Action.COPY.value
        reason = "excluded by filters.exclude" if action == Action.EXCLUDED.value else None
        if index == 23:
            action, reason = Action.INVALID_KEY.value, "key longer than 1024 bytes"
        records.append(
            ObjectRecord(
                source_bucket=bucket,
                source_key=key,
                size=1000 + index * 37,
                dest_bucket="dest",
                dest_key=dest,
                source_etag=f"{index:032x}",
                user_metadata={"n": index},
                rule="all" if index % 2 else None,
                storage_class="GLACIER" if index % 5 == 0 else None,
                action=action,
                reason=reason,
            )
        )
    # An object listed twice (overlapping prefixes), once in a later part: kept once, and never a collision with itself.
    records.append(records[40])
    # An excluded row sharing a collided destination writes nothing, so it does not collide.
    records.append(ObjectRecord("a", "z/excluded.bin", 5, dest_bucket="dest", dest_key="shared/one.bin", action=Action.EXCLUDED.value, reason="excluded"))
    return records


def _write_parts(folder: Path, records: list[ObjectRecord], *, per_part: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for number, start in enumerate(range(0, len(records), per_part)):
        path = folder / f"part-0000-{number:06d}.parquet"
        records_to_frame(records[start : start + per_part]).write_parquet(path)
        parts.append(path)
    return parts


def _expected(parts: list[Path]) -> pl.DataFrame:
    """The whole-manifest algorithm: read every part, keep the first row per object, mark collisions."""
    whole = pl.read_parquet(parts).unique(subset=["source_bucket", "source_key"], keep="first", maintain_order=True)
    return mark_collisions(whole)


@pytest.mark.parametrize("partition_rows", [1, 4, 1000])
def test_streamed_manifest_matches_the_whole_manifest_algorithm(tmp_path: Path, partition_rows: int) -> None:
    parts = _write_parts(tmp_path / "parts", _records(), per_part=7)
    target = tmp_path / "manifest.parquet"

    rows = assemble_manifest(parts, target, work_dir=tmp_path / "keys", partition_rows=partition_rows)

    streamed = pl.read_parquet(target)
    expected = _expected(parts)
    assert dict(streamed.schema) == MANIFEST_SCHEMA
    assert rows == streamed.height == expected.height == 61
    assert streamed.equals(expected)
    assert streamed.filter(pl.col("action") == Action.COLLISION.value)["source_key"].to_list() == ["k/002.bin", "k/010.bin", "k/011.bin", "k/041.bin", "k/057.bin"]
    assert not (tmp_path / "keys").exists()


def test_streamed_summary_and_estimate_match_the_eager_ones(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path / "parts", _records(), per_part=5)
    target = tmp_path / "manifest.parquet"
    assemble_manifest(parts, target, work_dir=tmp_path / "keys", partition_rows=3)
    plan = parse_plan(PLAN, source_name="streamed.yaml", environ={"SUPABASE_URL": "http://127.0.0.1:9", "SUPABASE_SERVICE_ROLE_KEY": "unused"})
    expected = _expected(parts)
    copies = {"part_size": 1024, "multipart_threshold": 2000, "concurrency": 4, "storage_prices": {"STANDARD": 0.023, "GLACIER": 0.004}, "put_per_1000": 0.005, "get_per_1000": 0.0004}

    est = estimate(scan_manifest(target).filter(pl.col("action") == "copy"), **copies)  # type: ignore[arg-type]
    assert est == estimate(expected.filter(pl.col("action") == "copy"), **copies)  # type: ignore[arg-type]
    assert est.objects == expected.filter(pl.col("action") == "copy").height and est.multipart_objects > 0

    streamed = summarise(scan_manifest(target), plan, buckets=["a", "b"], elapsed=1.0, est=est, source_kind="supabase")
    eager = summarise(expected, plan, buckets=["a", "b"], elapsed=1.0, est=est, source_kind="supabase")
    streamed.pop("created_at"), eager.pop("created_at")
    assert streamed == eager
    assert streamed["actions"]["collision"]["objects"] == 5 and streamed["problem_count"] == 6
    assert [row["source_key"] for row in streamed["largest"]][:2] == ["k/059.bin", "k/058.bin"]


def test_an_empty_listing_gives_an_empty_manifest(tmp_path: Path) -> None:
    target = tmp_path / "manifest.parquet"
    assert assemble_manifest([], target, work_dir=tmp_path / "keys") == 0
    assert count_rows(scan_manifest(target)) == (0, 0)
    assert list(copy_records(scan_manifest(target))) == []


def test_copy_rows_are_read_back_in_batches_in_manifest_order(tmp_path: Path) -> None:
    records = _records()
    parts = _write_parts(tmp_path / "parts", records, per_part=9)
    target = tmp_path / "manifest.parquet"
    assemble_manifest(parts, target, work_dir=tmp_path / "keys", partition_rows=10)
    manifest = scan_manifest(target)
    expected = [ObjectRecord.from_row(row) for row in _expected(parts).filter(pl.col("action") == "copy").iter_rows(named=True)]

    batches = list(action_batches(manifest, "copy", batch_rows=4))
    assert all(0 < batch.height <= 4 for batch in batches)  # one slice of the manifest at a time
    assert list(copy_records(manifest)) == expected
    assert sum(batch.height for batch in batches) == len(expected) == count_rows(manifest, "copy")[0]
    assert count_rows(manifest, "copy")[1] == sum(r.size for r in expected)


def test_a_missing_or_damaged_manifest_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="run `migrate plan` first"):
        scan_manifest(tmp_path / "manifest.parquet")
    (tmp_path / "manifest.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(StateDirectoryError, match="cannot be read"):
        scan_manifest(tmp_path / "manifest.parquet")
    pl.DataFrame({"source_key": ["x"]}).write_parquet(tmp_path / "manifest.parquet")
    with pytest.raises(UserInputError, match="manifest schema"):
        scan_manifest(tmp_path / "manifest.parquet")
