"""The transfer journal (migrate/journal.py): batched look-ups by key."""

from __future__ import annotations

from pathlib import Path

from migrate.journal import TransferJournal
from migrate.records import ObjectRecord


def _record(bucket: str, key: str) -> ObjectRecord:
    return ObjectRecord(source_bucket=bucket, source_key=key, size=1, dest_bucket="dest", dest_key=key)


def test_rows_finds_every_key_of_several_buckets_and_nothing_else(tmp_path: Path) -> None:
    with TransferJournal(tmp_path / "journal.sqlite") as journal:
        records = [_record(bucket, f"k/{n:04d}") for bucket in ("avatars", "docs") for n in range(900)]
        journal.begin_many([(record, "fp") for record in records])
        asked = [("avatars", f"k/{n:04d}") for n in range(0, 900, 2)] + [("docs", "k/0899"), ("docs", "missing"), ("nowhere", "k/0001")]
        found = journal.rows(asked)
    assert set(found) == set(asked) - {("docs", "missing"), ("nowhere", "k/0001")}
    assert all(row.source_bucket == bucket and row.source_key == key for (bucket, key), row in found.items())


def test_rows_searches_the_primary_key_instead_of_scanning_the_table(tmp_path: Path) -> None:
    # A look-up that scans the table per batch makes run and verify quadratic in the object count.
    with TransferJournal(tmp_path / "journal.sqlite") as journal:
        journal.begin_many([(_record("b", f"k{n}"), "fp") for n in range(50)])
        statements: list[str] = []
        journal._db.set_trace_callback(statements.append)
        journal.rows([("b", "k1"), ("b", "k2"), ("c", "k3")])
        journal._db.set_trace_callback(None)
        lookups = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
        assert lookups
        plans = [" ".join(str(step[-1]) for step in journal._db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()) for sql in lookups]
    assert all("SCAN objects" not in plan and "USING INDEX" in plan for plan in plans), plans
