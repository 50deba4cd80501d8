"""Report rows and key listings spooled to disk by `verify`: order, de-duplication, anti-join, look-ups."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

import pytest

import migrate.report_spool as report_spool
from migrate.report_schema import REPORT_SCHEMA
from migrate.report_spool import KeySpool, RowSpool

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
