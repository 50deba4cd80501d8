"""Retention as pure functions: restic-style keep-last / daily / weekly, no network."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from migrate.retention import RetentionPolicy, SnapshotRef, decide, unreferenced_bodies

START = datetime(2026, 11, 2, 3, 0, tzinfo=timezone.utc)  # a Monday


def _snaps(hours: list[float]) -> list[SnapshotRef]:
    return [SnapshotRef(f"s{i:02d}", START + timedelta(hours=h)) for i, h in enumerate(hours)]


def test_keep_last_three_by_default() -> None:
    snaps = _snaps([0, 1, 2, 3])
    decision = decide(snaps, RetentionPolicy())
    assert [s.snapshot_id for s in decision.keep] == ["s03", "s02", "s01"]
    assert [s.snapshot_id for s in decision.forget] == ["s00"]


def test_fewer_snapshots_than_keep_forgets_nothing() -> None:
    assert decide(_snaps([0, 1]), RetentionPolicy(keep=3)).forget == ()
    assert decide([], RetentionPolicy()).keep == ()


def test_keep_daily_keeps_the_newest_of_each_of_the_last_n_days() -> None:
    # Two snapshots a day for five days.
    snaps = _snaps([d * 24 + h for d in range(5) for h in (1, 13)])
    decision = decide(snaps, RetentionPolicy(keep=1, keep_daily=3))
    kept = {s.snapshot_id: s.taken_at for s in decision.keep}
    # keep=1: the newest; daily 3: the 13:00 snapshot of each of the last three days (the newest is one of them).
    assert sorted(kept.values()) == [START + timedelta(hours=d * 24 + 13) for d in (2, 3, 4)]
    assert decision.reasons["s09"] == ("last", "daily")


def test_keep_weekly_uses_iso_weeks() -> None:
    snaps = _snaps([w * 24 * 7 + d * 24 for w in range(4) for d in (0, 3)])
    decision = decide(snaps, RetentionPolicy(keep=1, keep_weekly=2))
    kept = sorted(s.taken_at for s in decision.keep)
    assert kept == [START + timedelta(days=7 * 2 + 3), START + timedelta(days=7 * 3 + 3)]


def test_rules_combine_as_a_union() -> None:
    snaps = _snaps([d * 24 for d in range(10)])
    decision = decide(snaps, RetentionPolicy(keep=2, keep_daily=4, keep_weekly=2))
    # Last 2 are inside the last 4 days; weekly adds the newest of the previous ISO week (Sunday 8 Nov is day 6).
    assert [s.snapshot_id for s in decision.keep] == ["s09", "s08", "s07", "s06"]
    assert len(decision.keep) + len(decision.forget) == 10


def test_policy_bounds() -> None:
    with pytest.raises(ValueError):
        RetentionPolicy(keep=0)
    with pytest.raises(ValueError):
        RetentionPolicy(keep_daily=-1)


def test_unreferenced_bodies_are_only_the_ones_no_kept_snapshot_names() -> None:
    assert unreferenced_bodies({"a", "b", "c"}, {"b", "x"}) == {"a", "c"}
    assert unreferenced_bodies(set(), {"a"}) == set()
