"""How a backup target is laid out, and the snapshot manifest schema (declared once, here).

Every target (a local folder or an S3 bucket + prefix) holds::

    <prefix>bodies/<h[:2]>/<h>               object bodies, stored once by SHA-256 (hex h)
    <prefix>snapshots/<snapshot id>.parquet  one manifest per complete snapshot

A snapshot id is its UTC time (to the microsecond) plus a random suffix
(`20261201T130405.123456Z-1a2b3c`), so ids sort by time. A manifest is written only after every body it names
is on the target: a snapshot is visible exactly when it is complete. Bodies
are immutable, so an unchanged object costs a manifest row, nothing more.
"""

from __future__ import annotations

import io
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import polars as pl

from migrate.errors import FatalError, PlanError, UserInputError
from migrate.retention import SnapshotRef
from migrate.retry import call_with_retries

if TYPE_CHECKING:
    from migrate.plan import BackupSettings, BackupTarget, Plan

T = TypeVar("T")

# One row per object of a snapshot. Documented in README.md ("Backups").
SNAPSHOT_SCHEMA: dict[str, pl.DataType] = {
    "snapshot_id": pl.Utf8(),
    "snapshot_time": pl.Datetime("us", "UTC"),
    "source_bucket": pl.Utf8(),
    "key": pl.Utf8(),
    "size": pl.Int64(),
    "sha256": pl.Utf8(),  # hex; names the body
    "content_type": pl.Utf8(),
    "cache_control": pl.Utf8(),
    "content_disposition": pl.Utf8(),
    "user_metadata": pl.Utf8(),  # JSON object
    "source_etag": pl.Utf8(),
    "last_modified": pl.Datetime("us", "UTC"),
    # An S3 source's Content-Encoding, Content-Language and Expires, as it answered them (absent in older snapshots).
    "content_encoding": pl.Utf8(),
    "content_language": pl.Utf8(),
    "expires": pl.Utf8(),
}

LOCAL_BUCKET = "backup"  # the name a local target's folder answers to (see LocalStore(bucket=...))
_SNAPSHOT_ID = re.compile(r"(\d{8}T\d{6}\.\d{6}Z)-[0-9a-f]{6}\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


def new_snapshot_id(now: datetime) -> str:
    return f"{now.astimezone(timezone.utc):%Y%m%dT%H%M%S.%fZ}-{secrets.token_hex(3)}"


def snapshot_time(snapshot_id: str) -> datetime | None:
    found = _SNAPSHOT_ID.match(snapshot_id)
    if not found:
        return None
    return datetime.strptime(found.group(1), "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc)


def manifest_bytes(rows: list[dict[str, Any]]) -> bytes:
    """A snapshot manifest as Parquet bytes (rows sorted by bucket and key)."""
    frame = pl.DataFrame(rows, schema=SNAPSHOT_SCHEMA, orient="row").sort(["source_bucket", "key"])
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


@dataclass
class Target:
    """One backup target: a store, the bucket and prefix the layout lives under, and how S3 writes are made."""

    settings: "BackupTarget"
    store: Any  # LocalStore or S3Store: the same primitives
    bucket: str
    prefix: str
    max_attempts: int = 5

    @property
    def name(self) -> str:
        return self.settings.name

    def write_args(self) -> dict[str, Any]:
        """How bodies and manifests are written: storage class and SSE(-KMS) on S3, nothing on a folder."""
        return {
            "content_type": "application/octet-stream",
            "cache_control": None,
            "content_disposition": None,
            "metadata": None,
            "storage_class": self.settings.storage_class,
            "sse": self.settings.server_side_encryption,
            "kms_key_id": self.settings.kms_key_id,
        }

    def retry(self, func: Callable[[], T]) -> T:
        return call_with_retries(func, max_attempts=self.max_attempts)

    def body_key(self, sha256: str) -> str:
        return f"{self.prefix}bodies/{sha256[:2]}/{sha256}"

    def manifest_key(self, snapshot_id: str) -> str:
        return f"{self.prefix}snapshots/{snapshot_id}.parquet"

    def check(self) -> None:
        """Raise a FatalError when the target cannot be used at all (missing folder or bucket, no access)."""
        self.retry(lambda: self.store.check_bucket(self.bucket))

    def list_bodies(self) -> dict[str, int]:
        """{sha256: size} of every body on the target."""
        bodies: dict[str, int] = {}
        for page in self.retry(lambda: list(self.store.iter_objects(self.bucket, f"{self.prefix}bodies/"))):
            for info in page:
                name = info.key.rsplit("/", 1)[-1]
                if _SHA256.match(name):
                    bodies[name] = info.size
        return bodies

    def list_snapshots(self) -> list[SnapshotRef]:
        """Complete snapshots on the target (manifests present), oldest first."""
        found: list[SnapshotRef] = []
        for page in self.retry(lambda: list(self.store.iter_objects(self.bucket, f"{self.prefix}snapshots/"))):
            for info in page:
                name = info.key.rsplit("/", 1)[-1]
                if name.endswith(".parquet"):
                    snapshot_id = name[: -len(".parquet")]
                    taken = snapshot_time(snapshot_id)
                    if taken is not None:
                        found.append(SnapshotRef(snapshot_id, taken))
        return sorted(found, key=lambda s: (s.taken_at, s.snapshot_id))

    def read_manifest(self, snapshot_id: str) -> pl.DataFrame:
        def read() -> bytes:
            _, chunks = self.store.open(self.bucket, self.manifest_key(snapshot_id))
            return b"".join(chunks)

        return pl.read_parquet(io.BytesIO(self.retry(read)))

    def write_manifest(self, snapshot_id: str, data: bytes) -> None:
        import hashlib

        self.retry(
            lambda: self.store.put_object(
                self.bucket, self.manifest_key(snapshot_id), data, content_md5=hashlib.md5(data).digest(), **self.write_args()
            )
        )

    def delete_manifest(self, snapshot_id: str) -> None:
        self.retry(lambda: self.store.delete_object(self.bucket, self.manifest_key(snapshot_id)))

    def delete_body(self, sha256: str) -> None:
        self.retry(lambda: self.store.delete_object(self.bucket, self.body_key(sha256)))

    def open_body(self, sha256: str, *, offset: int = 0, length: int | None = None) -> Any:
        return self.store.open(self.bucket, self.body_key(sha256), offset=offset, length=length)

    def close(self) -> None:
        self.store.close()


def open_target(settings: "BackupTarget", *, max_attempts: int = 5) -> Target:
    """The store behind one `backup.targets` entry."""
    if settings.type == "local":
        from migrate.stores.local import LocalStore

        assert settings.path is not None
        return Target(settings, LocalStore(settings.path, bucket=LOCAL_BUCKET), LOCAL_BUCKET, "", max_attempts)
    from migrate.stores.factory import s3_location
    from migrate.stores.s3 import S3Store

    assert settings.bucket is not None
    return Target(settings, S3Store(s3_location(settings)), settings.bucket, settings.prefix, max_attempts)  # type: ignore[arg-type]


def select_target(targets: list[Target], name: str | None) -> Target:
    """The target `--target` names (its name or its position from 1), or the first one."""
    if name is None:
        return targets[0]
    for index, target in enumerate(targets, 1):
        if target.name == name or str(index) == name:
            return target
    raise UserInputError(f"--target {name}: no such backup target; choose one of: {', '.join(t.name for t in targets)}")


def metadata_of(row: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in json.loads(row.get("user_metadata") or "{}").items()}


def require_snapshot(target: Target, snapshot_id: str | None) -> str:
    """`snapshot_id`, checked to exist on the target; None means the newest."""
    snapshots = target.list_snapshots()
    if not snapshots:
        raise FatalError(f"backup target {target.name}: has no complete snapshot yet; run `migrate backup PLAN` first")
    if snapshot_id is None:
        return snapshots[-1].snapshot_id
    if snapshot_id not in {s.snapshot_id for s in snapshots}:
        raise UserInputError(f"--snapshot {snapshot_id}: not on target {target.name}; `migrate backup list PLAN` shows the snapshots")
    return snapshot_id


def backup_settings(plan: "Plan") -> "BackupSettings":
    if plan.backup is None:
        raise PlanError("has no backup: section; add backup: {targets: [{type: local, path: ...}], keep: 3}", path=plan.path, key="backup")
    return plan.backup



__all__ = ["SNAPSHOT_SCHEMA", "Target", "open_target", "new_snapshot_id", "snapshot_time"]
