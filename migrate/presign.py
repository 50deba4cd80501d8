"""Presigned GET URLs for migrated objects, asked for by their OLD (source) bucket and key.

    url = presign_source_object(plan, "documents", "reports/q1.pdf", expires=3600)

The manifest says where the object went (renamed keys included); the URL is
signed with the destination's boto3 client (`migrate.stores.factory`), so
endpoint, region and credentials resolve exactly as they do for `run`.
Nothing is sent to S3: presigning is a local computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from migrate.errors import UserInputError
from migrate.object_index import IndexedObject, ObjectIndex
from migrate.plan import parse_duration
from migrate.rundir import RunDirectory

if TYPE_CHECKING:
    from migrate.plan import Plan
    from migrate.stores.s3 import S3Store


@dataclass(frozen=True)
class PresignedUrl:
    """A presigned GET URL and what it opens. `url` carries a signature: never log it."""

    url: str
    expires_in: int
    source_bucket: str
    source_key: str
    dest_bucket: str
    dest_key: str

    def __repr__(self) -> str:
        return f"PresignedUrl(s3://{self.dest_bucket}/{self.dest_key}, expires_in={self.expires_in})"


def split_source_key(value: str, *, bucket: str | None = None) -> tuple[str, str]:
    """`bucket/key` (as Supabase URLs write it) -> (bucket, key); with `bucket` given, `value` is the whole key."""
    if bucket:
        return bucket, value
    head, slash, tail = value.partition("/")
    if not slash or not head or not tail:
        raise UserInputError(f"{value!r}: give the old object as BUCKET/KEY (e.g. avatars/u1.png), or pass --bucket")
    return head, tail


def expiry_seconds(plan: "Plan", expires: int | str | None) -> int:
    """`expires` (seconds or e.g. "1h"), else the plan's cutover.presign_expires."""
    if expires is None:
        return plan.cutover.presign_expires
    try:
        return parse_duration(expires)
    except ValueError as err:
        raise UserInputError(f"--expires: {err}") from None


def presign_indexed(
    store: "S3Store", obj: IndexedObject, *, expires: int, content_disposition: str | None = None
) -> PresignedUrl:
    """Sign a GET for an object already looked up; keeps its stored Content-Disposition unless told otherwise."""
    from migrate.stores.s3_cutover import presigned_get_url

    disposition = content_disposition or obj.content_disposition
    url = presigned_get_url(store, obj.dest_bucket, obj.dest_key, expires=expires, content_disposition=disposition)
    return PresignedUrl(url, expires, obj.source_bucket, obj.source_key, obj.dest_bucket, obj.dest_key)


def presign_source_object(
    plan: "Plan",
    source_bucket: str,
    source_key: str,
    *,
    expires: int | str | None = None,
    content_disposition: str | None = None,
    state_dir: str | Path | None = None,
    destination: "S3Store | None" = None,
) -> PresignedUrl:
    """A presigned GET URL for the object that was `source_bucket/source_key`.

    Raises `UserInputError` when the manifest has no migrated object by that
    name (so a typo never signs a URL for nothing).
    """
    from migrate.stores.factory import open_destination

    seconds = expiry_seconds(plan, expires)
    label = plan.path or plan.name
    index = ObjectIndex.for_run(RunDirectory.for_plan(plan.name, state_dir=state_dir), plan_label=label)
    try:
        obj = index.lookup(source_bucket, source_key)
    finally:
        index.close()
    if obj is None:
        raise UserInputError(f"{source_bucket}/{source_key}: not a migrated object of {label}; check the name (see migrate urls {label})")
    store = destination or open_destination(plan, concurrency=1)
    try:
        return presign_indexed(store, obj, expires=seconds, content_disposition=content_disposition)
    finally:
        if destination is None:
            store.close()
