"""The final delta's deletions: reported after a replan, removed at the destination only with --delete-removed --yes."""

from __future__ import annotations

import sqlite3

import pytest

from migrate.cli import main
from migrate.journal import TransferJournal
from migrate.rundir import RunDirectory
from tests.fixtures_cutover import CutoverWorld


def _keys(world: CutoverWorld) -> set[str]:
    return {item["Key"] for page in world.s3.get_paginator("list_objects_v2").paginate(Bucket=world.dest) for item in page.get("Contents", [])}


def _run(world: CutoverWorld, *args: str) -> int:
    return main(["run", str(world.plan_path), "--state-dir", str(world.state_dir), "--reports-dir", str(world.tmp / "reports"), "--no-progress", *args])


def test_removed_at_source_are_reported_listed_then_deleted_only_with_yes(cutover_world: CutoverWorld, capsys: pytest.CaptureFixture[str]) -> None:
    world = cutover_world
    foreign = f"{world.private_bucket}/reports/uploaded-by-someone-else.txt"
    world.s3.put_object(Bucket=world.dest, Key=foreign, Body=b"not ours")
    # An object whose destination key someone else had already filled: `run` skipped it (on_conflict: skip),
    # so its copy is not ours, and its deletion at the source must not delete that key.
    not_written = world.dest_key(world.private_bucket, "reports/theirs.txt")
    world.s3.put_object(Bucket=world.dest, Key=not_written, Body=b"written by another tool")
    world.upload(world.private_bucket, "reports/theirs.txt", b"source version")
    assert _run(world, "--replan") == 0
    run_dir = RunDirectory.for_plan(world.plan().name, state_dir=world.state_dir)
    with TransferJournal(run_dir.journal, readonly=True) as transfer:
        theirs = transfer.row(world.private_bucket, "reports/theirs.txt")
        assert theirs is not None and theirs.state == "skipped"
    world.remove(world.private_bucket, "reports/theirs.txt")
    gone = [(world.private_bucket, "reports/2024/summary.csv"), (world.public_bucket, "users/u2/a b (1).txt")]
    gone_dest = {world.dest_key(b, k) for b, k in gone}
    for bucket, key in gone:
        world.remove(bucket, key)
    before = _keys(world)
    assert gone_dest <= before
    capsys.readouterr()

    # A replan reports the deletions and keeps the copies.
    assert _run(world, "--replan") == 0
    out = capsys.readouterr().out
    assert "2 objects (30 bytes) were deleted at the source since an earlier plan" in out
    assert "--replan --delete-removed" in out
    assert _keys(world) == before

    # --delete-removed without --yes: a listing, nothing deleted.
    assert _run(world, "--replan", "--delete-removed") == 0
    out = capsys.readouterr().out
    for key in gone_dest:
        assert f"would delete s3://{world.dest}/{key}" in out
    assert "Dry run: nothing was deleted" in out
    assert _keys(world) == before

    # --yes deletes exactly the removed objects this plan wrote.
    assert _run(world, "--replan", "--delete-removed", "--yes") == 0
    out = capsys.readouterr().out
    assert "Deleted 2 objects (30 bytes) at the destination" in out
    assert _keys(world) == before - gone_dest
    assert {foreign, not_written} <= _keys(world)
    with sqlite3.connect(run_dir.path / "removals.sqlite") as journal:
        rows = journal.execute("SELECT dest_key, deleted_at IS NOT NULL FROM removed ORDER BY dest_key").fetchall()
    assert rows == sorted((key, 1) for key in gone_dest)
    with TransferJournal(run_dir.journal, readonly=True) as transfer:
        assert all(transfer.row(b, k) is None for b, k in gone)

    # Nothing left to report; a re-upload of the same bytes is copied again (the journal forgot the old copy).
    assert _run(world, "--replan", "--delete-removed", "--yes") == 0
    assert "deleted at the source" not in capsys.readouterr().out
    world.upload(world.private_bucket, "reports/2024/summary.csv", b"a,b\n1,2\n")
    assert _run(world, "--replan") == 0
    assert world.dest_key(world.private_bucket, "reports/2024/summary.csv") in _keys(world)


def test_a_plan_in_between_does_not_lose_the_removals(cutover_world: CutoverWorld, capsys: pytest.CaptureFixture[str]) -> None:
    """`migrate plan` replaces the manifest too: removals it sees are kept for the next `run --replan`."""
    world = cutover_world
    world.remove(world.private_bucket, "reports/q1.pdf")
    assert main(["plan", str(world.plan_path), "--state-dir", str(world.state_dir), "--reports-dir", str(world.tmp / "reports")]) == 0
    assert "deleted at the source since the last plan" in capsys.readouterr().out
    assert _run(world, "--replan", "--delete-removed", "--yes") == 0
    assert "Deleted 1 objects" in capsys.readouterr().out
    assert world.dest_key(world.private_bucket, "reports/q1.pdf") not in _keys(world)


def test_delete_removed_needs_replan(cutover_world: CutoverWorld, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(cutover_world, "--delete-removed", "--yes") == 2
    assert "--delete-removed needs --replan" in capsys.readouterr().err
