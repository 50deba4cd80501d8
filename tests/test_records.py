"""The record and manifest schema helpers (pure, no server)."""

from __future__ import annotations

import pytest

from migrate.records import Action, ManifestRecords, ObjectRecord, frame_to_records, records_to_frame


def _records() -> list[ObjectRecord]:
    return [
        ObjectRecord(source_bucket="b", source_key="a.png", size=10, dest_bucket="d", dest_key="x/a.png", user_metadata={"owner": "ü"}),
        ObjectRecord(source_bucket="b", source_key="b.png", size=20, action=Action.EXCLUDED.value),
        ObjectRecord(source_bucket="b", source_key="c.png", size=30, dest_bucket="d", dest_key="x/c.png", action=Action.SKIP_EXISTING.value),
    ]


def test_manifest_records_reads_the_frame_as_the_records_it_was_built_from() -> None:
    records = _records()
    view = ManifestRecords(records_to_frame(records))
    assert len(view) == 3
    assert list(view) == records
    assert view[1] == records[1] and view[-1] == records[2]
    assert list(view[1:]) == records[1:]
    with pytest.raises(IndexError):
        view[3]
    assert view.totals(("copy", "skip-existing")) == (2, 40)


def test_records_read_back_alike_in_manifest_column_order_or_any_other() -> None:
    """`frame_to_records` reads manifest-ordered frames as tuples; any other column order by name, to the same records."""
    records = _records() + [ObjectRecord(source_bucket="b", source_key="d.png", size=1, user_metadata={"n": [1, {"x": None}], "e": ""})]
    frame = records_to_frame(records)
    assert frame["user_metadata"].to_list()[1] == "{}"
    assert list(frame_to_records(frame)) == records
    assert list(frame_to_records(frame.select(list(reversed(frame.columns))))) == records
    assert all(isinstance(record.user_metadata, dict) for record in frame_to_records(frame))
