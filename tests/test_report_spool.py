"""Report rows and key listings spooled to disk by `verify` (order, de-duplication, anti-join, look-ups), and the source audit's sorted keys."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

import pytest

import migrate.report_spool as report_spool
from migrate.report_schema import REPORT_SCHEMA
from migrate.report_spool import KeySpool, RowSpool, SortedKeys

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)


def _row(key: str, status: str = "match") -> dict[str, Any]:
    return {"source_bucket": "s", "source_key": key, "dest_bucket": "d", "dest_key": key, "status": status, "checked_mode": "fast", "checked_at": T0}


def test_rows_added_in_any_order_come_back_in_manifest_order_then_strays_by_key_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_spool, "_SEQ_WINDOW", 7)  # many windows, rows of one window in several parts
    spool = RowSpool(rows_per_part=5)
    order = list(range(100))
    random.Random(1).shuffle(order)
    for seq in order:
        spool.add(seq, _row(f"k{seq:03d}"))
    for key in ("z", "b", "z", "a"):
        spool.add_stray({"dest_bucket": "d", "dest_key": key, "status": "unexpected", "checked_mode": "listing", "checked_at": T0})
    spool.add(-1, {"dest_bucket": "d", "dest_key": "p/", "status": "error", "checked_mode": "listing", "checked_at": T0})
    frame = spool.ordered().collect()
    assert dict(frame.schema) == REPORT_SCHEMA
    assert frame["dest_key"].to_list() == ["p/", *[f"k{i:03d}" for i in range(100)], "a", "b", "z"]
    spool.directory.cleanup()


def test_whole_frames_at_their_positions_interleave_with_single_rows_in_manifest_order() -> None:
    from migrate.report_schema import report_frame

    spool = RowSpool(rows_per_part=6)
    # Shards of a cluster verify come back in any order; rows between them (not-migrated) are added one by one.
    shards = [list(range(start, start + 4)) for start in range(0, 40, 5)]
    random.Random(2).shuffle(shards)
    for positions in shards:
        spool.add_frame(positions, report_frame([_row(f"k{seq:03d}") for seq in positions]))
    for seq in range(4, 40, 5):
        spool.add(seq, _row(f"k{seq:03d}", status="not-migrated"))
    with pytest.raises(ValueError, match="2 report rows for 1 manifest positions"):
        spool.add_frame([99], report_frame([_row("x"), _row("y")]))
    frame = spool.ordered().collect()
    assert dict(frame.schema) == REPORT_SCHEMA
    assert frame["dest_key"].to_list() == [f"k{i:03d}" for i in range(40)]
    assert frame.filter(frame["status"] == "not-migrated")["dest_key"].to_list() == [f"k{i:03d}" for i in range(4, 40, 5)]
    spool.directory.cleanup()


def test_an_empty_spool_is_an_empty_report() -> None:
    spool = RowSpool()
    frame = spool.ordered().collect()
    assert frame.height == 0 and dict(frame.schema) == REPORT_SCHEMA
    spool.directory.cleanup()


def test_strays_are_listed_keys_nobody_expects_in_every_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_spool, "_KEYS_PER_PARTITION", 10)  # several hash partitions
    directory = RowSpool().directory
    listed, expected = KeySpool(directory, rows_per_part=9), KeySpool(directory, rows_per_part=4)
    for i in range(60):
        listed.append("d", f"p/{i:02d}", i, f"e{i}")
    listed.append("other", "p/99", 1, "x")  # another bucket: not this scan's business
    listed.append("d", "q/00", 1, "x")  # outside the prefix
    for i in range(0, 60, 3):
        expected.append("d", f"p/{i:02d}")
    expected.append("other", "p/01")  # same key in another bucket does not make d's expected
    strays = sorted(listed.strays(expected, bucket="d", prefix="p/"))
    assert strays == [(f"p/{i:02d}", i, f"e{i}") for i in range(60) if i % 3]
    assert listed.lookup([("d", "p/05"), ("d", "p/zz"), ("other", "p/99")]) == {("d", "p/05"): (5, "e5", None), ("other", "p/99"): (1, "x", None)}
    directory.cleanup()


def test_sorted_keys_stay_in_memory_within_a_part_and_merge_sorted_parts_past_it() -> None:
    rows = [(f"b{random.Random(i).randrange(3)}", f"k/{(i * 7919) % 1000:04d}", i % 5) for i in range(1000)]
    small, large = SortedKeys(rows_per_part=len(rows) + 1), SortedKeys(rows_per_part=64)
    for row in rows:
        small.add(*row)
        large.add(*row)
    files = sorted(large._directory.path.iterdir()) if large._directory else []  # type: ignore[union-attr]
    assert small._directory is None and len(files) == len(rows) // 64  # full parts on disk, the rest in memory
    for spool in (small, large):
        assert len(spool) == 1000 and list(spool) == sorted(rows) and spool.head(3) == sorted(rows)[:3]
        assert spool.scan().collect().rows() == sorted(rows) and spool.scan().collect().rows() == sorted(rows)  # scanned twice: same
    large.add("a", "first", 1)  # added after a scan: the next scan has it
    assert large.scan().collect().row(0) == ("a", "first", 1) and large.scan().collect().height == 1001
    large.cleanup()
    assert not list(SortedKeys()) and SortedKeys().scan().collect().height == 0
