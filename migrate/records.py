"""The one record that flows through every stage, and the manifest schema.

`plan` turns each source object into an `ObjectRecord` and writes them as the
manifest (Parquet). `run` reads the manifest, moves every record whose action
is `copy`, and keeps per-object state in the journal. `verify` reads the same
records and adds a status per object to its report.

The manifest is exactly `MANIFEST_SCHEMA`: one fixed polars schema, declared
here and nowhere else. User metadata is stored as a JSON object string so the
schema does not depend on which metadata keys a store happens to use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, Iterable, Iterator, Sequence, overload

import polars as pl


class Action(StrEnum):
    """What `run` will do with a manifest row."""

    COPY = "copy"
    # Already at the destination with the same size and checksum (--check-destination).
    SKIP_EXISTING = "skip-existing"
    # Filtered out by the plan (globs, size/time bounds, placeholders, unmatched keys).
    EXCLUDED = "excluded"
    # Two or more source objects rewrite to the same destination key.
    COLLISION = "collision"
    # The destination key is one S3 rejects or that is dangerous.
    INVALID_KEY = "invalid-key"
    # User metadata S3 cannot carry (key not a header name, keys equal once lowercased, over 2 KB).
    INVALID_METADATA = "invalid-metadata"
    # The source key cannot be read without risking another object's bytes (Supabase REST: a `.`/`..` segment).
    UNREADABLE_KEY = "unreadable-key"


#: Planned objects that cannot be migrated as they are: `run` refuses the plan until they are excluded
#: (or fixed at the source), and `verify` reports them `not-migrated`.
BLOCKING_ACTIONS: tuple[str, ...] = (Action.INVALID_KEY.value, Action.INVALID_METADATA.value, Action.UNREADABLE_KEY.value)


@dataclass(slots=True)
class ObjectRecord:
    """One source object and what the migration does with it."""

    source_bucket: str
    source_key: str
    size: int
    dest_bucket: str | None = None
    dest_key: str | None = None
    # The source's own entity tag, unquoted (Supabase: md5 hex of the body for
    # plain uploads; S3: md5 hex, or "<md5>-<parts>" for multipart uploads).
    source_etag: str | None = None
    content_type: str | None = None
    cache_control: str | None = None
    content_disposition: str | None = None
    # Supabase user metadata is JSON: values may be any JSON type (see migrate/metadata.py).
    user_metadata: dict[str, Any] = field(default_factory=dict)
    last_modified: datetime | None = None
    storage_class: str | None = None
    # Name of the rewrite rule that matched (None when no rule matched).
    rule: str | None = None
    action: str = Action.COPY.value
    reason: str | None = None

    def to_row(self) -> dict[str, Any]:
        # Every field is a scalar but user_metadata, which is serialised: no deep copy (asdict) needed.
        row = {name: getattr(self, name) for name in RECORD_FIELDS}
        row["user_metadata"] = json.dumps(self.user_metadata, sort_keys=True, ensure_ascii=False)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "ObjectRecord":
        values = {name: row.get(name) for name in RECORD_FIELDS}
        values["user_metadata"] = json.loads(values["user_metadata"] or "{}")
        return cls(**values)


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ObjectRecord))

# The manifest schema. Documented column by column in README.md ("The manifest").
MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "source_bucket": pl.Utf8(),
    "source_key": pl.Utf8(),
    "size": pl.Int64(),
    "dest_bucket": pl.Utf8(),
    "dest_key": pl.Utf8(),
    "source_etag": pl.Utf8(),
    "content_type": pl.Utf8(),
    "cache_control": pl.Utf8(),
    "content_disposition": pl.Utf8(),
    "user_metadata": pl.Utf8(),
    "last_modified": pl.Datetime("us", "UTC"),
    "storage_class": pl.Utf8(),
    "rule": pl.Utf8(),
    "action": pl.Utf8(),
    "reason": pl.Utf8(),
}
assert tuple(MANIFEST_SCHEMA) == RECORD_FIELDS, "MANIFEST_SCHEMA and ObjectRecord must list the same fields"


def records_to_frame(records: Iterable[ObjectRecord]) -> pl.DataFrame:
    """Build a manifest-shaped DataFrame from records (one batch of them), column by column."""
    batch = list(records)
    columns: dict[str, list[Any]] = {name: [getattr(r, name) for r in batch] for name in RECORD_FIELDS}
    columns["user_metadata"] = [json.dumps(r.user_metadata, sort_keys=True, ensure_ascii=False) if r.user_metadata else "{}" for r in batch]
    return pl.DataFrame(columns, schema=MANIFEST_SCHEMA)


def frame_to_records(frame: pl.DataFrame) -> Iterator[ObjectRecord]:
    """Iterate a manifest-shaped DataFrame as records."""
    if frame.columns != list(RECORD_FIELDS):  # another column order, or some missing: by name
        for named in frame.iter_rows(named=True):
            yield ObjectRecord.from_row(named)
        return
    # Columns in field order (every manifest): rows as tuples, no dict per row, and no JSON
    # parse for the usual empty metadata: a quarter of the cost per record `run` reads.
    loads = json.loads
    for row in frame.iter_rows():
        record = ObjectRecord(*row)
        metadata: Any = record.user_metadata  # still the column's JSON text here
        record.user_metadata = loads(metadata) if metadata and metadata != "{}" else {}
        yield record


class ManifestRecords(Sequence[ObjectRecord]):
    """A manifest frame seen as records, built one at a time as they are read (the frame stays columnar).

    A stage that walks millions of records keeps the compact frame, not a
    million Python objects: `verify` streams it like this.
    """

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame

    def __len__(self) -> int:
        return self.frame.height

    @overload
    def __getitem__(self, index: int) -> ObjectRecord: ...
    @overload
    def __getitem__(self, index: slice) -> "ManifestRecords": ...
    def __getitem__(self, index: int | slice) -> "ObjectRecord | ManifestRecords":
        if isinstance(index, slice):
            start, stop, step = index.indices(self.frame.height)
            if step != 1:
                raise ValueError("ManifestRecords slices take no step")
            return ManifestRecords(self.frame.slice(start, max(0, stop - start)))
        if index < 0:
            index += self.frame.height
        if not 0 <= index < self.frame.height:
            raise IndexError(index)
        return ObjectRecord.from_row(self.frame.row(index, named=True))

    def __iter__(self) -> Iterator[ObjectRecord]:
        return frame_to_records(self.frame)

    def totals(self, actions: Iterable[str]) -> tuple[int, int]:
        """(records, bytes) whose action is one of `actions`, counted by polars."""
        chosen = self.frame.filter(pl.col("action").is_in(list(actions)))
        return chosen.height, int(chosen["size"].sum() or 0)


def empty_manifest() -> pl.DataFrame:
    return pl.DataFrame(schema=MANIFEST_SCHEMA)
