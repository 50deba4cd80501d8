"""Which backup snapshots to keep: pure functions, no I/O.

The policy follows restic's `forget` (https://restic.readthedocs.io/en/stable/060_forget.html):

- `keep` (restic's --keep-last): the newest N snapshots;
- `keep_daily`: for the last N days that have snapshots, the newest snapshot of each day;
- `keep_weekly`: for the last N ISO weeks that have snapshots, the newest of each week.

A snapshot is kept when any rule keeps it; days and weeks are UTC. What is
not kept is forgotten. `unreferenced_bodies` then says which stored bodies
no kept snapshot needs: the only bodies prune may delete.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Hashable, Iterable, Sequence

DEFAULT_KEEP = 3


@dataclass(frozen=True)
class RetentionPolicy:
    """How many snapshots survive a prune. `keep` must be at least 1: prune never empties a target."""

    keep: int = DEFAULT_KEEP
    keep_daily: int = 0
    keep_weekly: int = 0

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ValueError("keep must be at least 1")
        if self.keep_daily < 0 or self.keep_weekly < 0:
            raise ValueError("keep_daily and keep_weekly cannot be negative")


@dataclass(frozen=True)
class SnapshotRef:
    """A snapshot as retention sees it: an id and when it was taken."""

    snapshot_id: str
    taken_at: datetime


@dataclass(frozen=True)
class RetentionDecision:
    keep: tuple[SnapshotRef, ...]
    forget: tuple[SnapshotRef, ...]
    # Why each kept snapshot is kept: {"snapshot id": ["last", "daily", ...]}.
    reasons: dict[str, tuple[str, ...]]


def _newest_per_bucket(snapshots: Sequence[SnapshotRef], count: int, bucket_of: Callable[[datetime], Hashable]) -> list[str]:
    """The newest snapshot of each of the `count` most recent buckets (days, weeks) that have any."""
    chosen: list[str] = []
    seen: set[Hashable] = set()
    for snapshot in snapshots:  # newest first
        bucket = bucket_of(snapshot.taken_at)
        if bucket in seen:
            continue
        if len(seen) >= count:
            break
        seen.add(bucket)
        chosen.append(snapshot.snapshot_id)
    return chosen


def decide(snapshots: Iterable[SnapshotRef], policy: RetentionPolicy) -> RetentionDecision:
    """Split snapshots into kept and forgotten under `policy` (newest first in both)."""
    ordered = sorted(snapshots, key=lambda s: (s.taken_at, s.snapshot_id), reverse=True)
    reasons: dict[str, list[str]] = {}
    for snapshot_id in [s.snapshot_id for s in ordered[: policy.keep]]:
        reasons.setdefault(snapshot_id, []).append("last")
    for snapshot_id in _newest_per_bucket(ordered, policy.keep_daily, lambda t: t.date()):
        reasons.setdefault(snapshot_id, []).append("daily")
    for snapshot_id in _newest_per_bucket(ordered, policy.keep_weekly, lambda t: tuple(t.isocalendar())[:2]):
        reasons.setdefault(snapshot_id, []).append("weekly")
    keep = tuple(s for s in ordered if s.snapshot_id in reasons)
    forget = tuple(s for s in ordered if s.snapshot_id not in reasons)
    return RetentionDecision(keep=keep, forget=forget, reasons={k: tuple(v) for k, v in reasons.items()})


def unreferenced_bodies(stored: Iterable[str], referenced: Iterable[str]) -> set[str]:
    """Bodies present on a target that no remaining snapshot references: safe to delete."""
    return set(stored) - set(referenced)
