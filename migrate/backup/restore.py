"""`migrate backup list|verify|restore PLAN`: what the targets hold, whether it is intact, and getting it back.

- `list`: per target, every complete snapshot with its object count and
  bytes, and the bodies stored.
- `verify`: every body a snapshot names is on the target with the right size
  and, where the store keeps one, the right SHA-256 (fast: HEAD); `deep`
  reads every body back and hashes it.
- `restore`: a snapshot (or the keys under `--prefix`) into a Supabase
  bucket, an S3 bucket (+ prefix) or a local folder, with content type,
  cache control and user metadata. Without `yes` it only says what it would
  write (a dry run, like `migrate plan`). Every body is hashed while it
  streams and must match the manifest; a mismatch fails that object before
  its last byte is sent, so no corrupt object is ever completed. A restore
  never overwrites: a key that already exists is reported as failed (S3 and
  folders: a conditional write; Supabase: no `x-upsert`).
"""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import polars as pl

from migrate.backup.layout import Target, backup_settings, metadata_of, open_target, require_snapshot, select_target
from migrate.errors import IntegrityError, MigrateError, UserInputError
from migrate.headers import CARRIED_HEADERS
from migrate.redact import redact
from migrate.retry import call_with_retries

if TYPE_CHECKING:
    from migrate.plan import Plan


# -- list ------------------------------------------------------------------------------
@dataclass
class SnapshotSummary:
    snapshot_id: str
    taken_at: str
    objects: int
    bytes: int


@dataclass
class TargetListing:
    target: str
    snapshots: list[SnapshotSummary] = field(default_factory=list)
    bodies: int = 0
    body_bytes: int = 0
    error: str | None = None


def list_backups(plan: "Plan") -> list[TargetListing]:
    """Every target's snapshots (oldest first) with counts and bytes; an unreachable target carries its error."""
    listings: list[TargetListing] = []
    for settings in backup_settings(plan).targets:
        target = open_target(settings, max_attempts=plan.transfer.max_attempts)
        listing = TargetListing(target=target.name)
        try:
            target.check()
            for ref in target.list_snapshots():
                frame = target.read_manifest(ref.snapshot_id)
                listing.snapshots.append(SnapshotSummary(ref.snapshot_id, ref.taken_at.isoformat(), frame.height, int(frame["size"].sum() or 0)))
            bodies = target.list_bodies()
            listing.bodies, listing.body_bytes = len(bodies), sum(bodies.values())
        except (MigrateError, OSError) as err:
            listing.error = redact(str(err))
        finally:
            target.close()
        listings.append(listing)
    return listings


# -- verify ----------------------------------------------------------------------------
@dataclass
class VerifyOutcome:
    target: str
    snapshot_id: str
    deep: bool
    objects: int = 0
    bodies: int = 0
    missing: list[str] = field(default_factory=list)
    wrong_size: list[str] = field(default_factory=list)
    wrong_checksum: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.wrong_size or self.wrong_checksum)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _hex_to_b64(sha: str) -> str:
    return base64.b64encode(bytes.fromhex(sha)).decode()


def verify_snapshot(target: Target, snapshot_id: str, *, deep: bool = False, workers: int = 8) -> VerifyOutcome:
    """Check every body of one snapshot on one target (see the module docstring)."""
    frame = target.read_manifest(snapshot_id)
    bodies = frame.select("sha256", "size").unique().rows()
    outcome = VerifyOutcome(target=target.name, snapshot_id=snapshot_id, deep=deep, objects=frame.height, bodies=len(bodies))

    def check(body: tuple[str, int]) -> tuple[str, str] | None:
        sha, size = body
        info = target.retry(lambda: target.store.head(target.bucket, target.body_key(sha)))
        if info is None:
            return "missing", sha
        if info.size != size:
            return "wrong_size", sha
        if deep:
            def digest() -> tuple[int, str]:
                hasher, count = hashlib.sha256(), 0
                _, chunks = target.open_body(sha)
                for chunk in chunks:
                    hasher.update(chunk)
                    count += len(chunk)
                return count, hasher.hexdigest()

            count, actual = target.retry(digest)
            if count != size:
                return "wrong_size", sha
            return ("wrong_checksum", sha) if actual != sha else None
        stored = info.checksums.get("sha256")
        # A multipart body carries a checksum of its parts ("...-N"): not comparable; --deep settles it.
        if stored and "-" not in stored and stored != _hex_to_b64(sha):
            return "wrong_checksum", sha
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for problem in pool.map(check, bodies):
            if problem is not None:
                getattr(outcome, problem[0]).append(problem[1])
    return outcome


def verify_backups(plan: "Plan", *, target_name: str | None, snapshot_id: str | None, deep: bool, workers: int = 8) -> list[VerifyOutcome]:
    """Verify one snapshot (default: the newest) on the chosen target, or on every target when none is named."""
    targets = [open_target(t, max_attempts=plan.transfer.max_attempts) for t in backup_settings(plan).targets]
    chosen = [select_target(targets, target_name)] if target_name else targets
    try:
        return [verify_snapshot(t, require_snapshot(t, snapshot_id), deep=deep, workers=workers) for t in chosen]
    finally:
        for target in targets:
            target.close()


# -- restore ---------------------------------------------------------------------------
@dataclass
class RestorePlan:
    """Where a restore writes, parsed from `--to`: supabase:BUCKET, s3://BUCKET[/PREFIX] or local:PATH (or a path)."""

    kind: str
    bucket: str | None
    prefix: str = ""
    path: str | None = None

    @classmethod
    def parse(cls, text: str) -> "RestorePlan":
        if text.startswith("supabase:"):
            bucket = text[len("supabase:") :].strip("/")
            if not bucket or "/" in bucket:
                raise UserInputError(f"--to {text}: expected supabase:BUCKET")
            return cls("supabase", bucket)
        if text.startswith("s3://"):
            bucket, _, prefix = text[len("s3://") :].partition("/")
            if not bucket:
                raise UserInputError(f"--to {text}: expected s3://BUCKET[/PREFIX]")
            return cls("s3", bucket, prefix=prefix if not prefix or prefix.endswith("/") else prefix + "/")
        path = text[len("local:") :] if text.startswith("local:") else text
        if not (path.startswith("/") or path.startswith(".") or path.startswith("~")) or "\x00" in path:
            raise UserInputError(f"--to {text}: expected supabase:BUCKET, s3://BUCKET[/PREFIX] or local:/PATH")
        return cls("local", None, path=path)

    def describe(self) -> str:
        return f"local:{self.path}" if self.kind == "local" else (f"supabase:{self.bucket}" if self.kind == "supabase" else f"s3://{self.bucket}/{self.prefix}")


@dataclass
class RestoreResult:
    target: str
    snapshot_id: str
    destination: str
    dry_run: bool
    objects: int = 0
    bytes: int = 0
    restored: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    sample: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def verified_chunks(target: Target, sha: str, size: int) -> Iterator[bytes]:
    """The body's bytes; the last chunk is only released once size and SHA-256 match the manifest."""
    hasher, count, held = hashlib.sha256(), 0, None
    _, chunks = target.open_body(sha)
    for chunk in chunks:
        if held is not None:
            yield held
        hasher.update(chunk)
        count += len(chunk)
        held = chunk
    if count != size or hasher.hexdigest() != sha:
        raise IntegrityError(f"body {sha[:12]}... on {target.name}: {count} bytes hashing to {hasher.hexdigest()[:12]}..., the manifest says {size} bytes {sha[:12]}...")
    if held is not None:
        yield held


def _s3_access(plan: "Plan") -> Any:
    from migrate.stores.factory import s3_location

    if plan.destination is not None and plan.destination.type == "s3":
        return s3_location(plan.destination)
    for target in backup_settings(plan).targets:
        if target.type == "s3":
            return s3_location(target)
    from migrate.stores.s3 import S3Location

    return S3Location()


class _Writer:
    """Writes one restored object into the chosen destination store."""

    def __init__(self, plan: "Plan", where: RestorePlan):
        self.where = where
        self.part_size = plan.transfer.part_size
        self.threshold = plan.transfer.multipart_threshold
        if where.kind == "supabase":
            from migrate.stores.supabase import SupabaseStore

            if plan.source.kind != "supabase":
                raise UserInputError("--to supabase:BUCKET needs a plan whose source is a Supabase project (its url and key are used)")
            self.store: Any = SupabaseStore(plan.source.url, plan.source.key)  # type: ignore[union-attr]
        elif where.kind == "s3":
            from migrate.stores.s3 import S3Store

            self.store = S3Store(_s3_access(plan))
        else:
            from migrate.stores.local import LocalStore

            self.store = LocalStore(where.path or ".")

    def check(self) -> None:
        if self.where.kind == "local":
            from pathlib import Path

            Path(self.where.path or ".").expanduser().mkdir(parents=True, exist_ok=True)
        else:
            self.store.check_bucket(self.where.bucket)

    def write(self, target: Target, row: dict[str, Any]) -> None:
        sha, size, key = row["sha256"], int(row["size"]), row["key"]
        metadata = metadata_of(row)
        if self.where.kind == "supabase":
            self.store.upload_object(self.where.bucket, key, verified_chunks(target, sha, size), size=size,
                                     content_type=row["content_type"], cache_control=row["cache_control"], metadata=metadata)
            return
        settings = {"content_type": row["content_type"], "cache_control": row["cache_control"],
                    "content_disposition": row["content_disposition"], "metadata": metadata,
                    **{name: row.get(name) for name in CARRIED_HEADERS}}  # older snapshots have no such columns
        if self.where.kind == "local":
            self.store.put_stream(row["source_bucket"], key, verified_chunks(target, sha, size), if_none_match=True, **settings)
            return
        dest_key = f"{self.where.prefix}{key}"
        s3_settings = {**settings, "storage_class": None, "sse": None, "kms_key_id": None}
        if size <= self.threshold:
            body = b"".join(verified_chunks(target, sha, size))
            self.store.put_object(self.where.bucket, dest_key, body, content_md5=hashlib.md5(body).digest(),
                                  checksum=("SHA256", _hex_to_b64(sha)), sha256_hex=sha, if_none_match=True, **s3_settings)
            return
        upload_id = self.store.create_multipart_upload(self.where.bucket, dest_key, **s3_settings)
        try:
            parts, buffer, number = [], bytearray(), 0
            for chunk in verified_chunks(target, sha, size):
                buffer += chunk
                while len(buffer) >= self.part_size:
                    number += 1
                    data, buffer = bytes(buffer[: self.part_size]), buffer[self.part_size :]
                    etag = self.store.upload_part(self.where.bucket, dest_key, upload_id, number, data, content_md5=hashlib.md5(data).digest())
                    parts.append({"PartNumber": number, "ETag": f'"{etag}"'})
            if buffer or not parts:
                number += 1
                data = bytes(buffer)
                etag = self.store.upload_part(self.where.bucket, dest_key, upload_id, number, data, content_md5=hashlib.md5(data).digest())
                parts.append({"PartNumber": number, "ETag": f'"{etag}"'})
            self.store.complete_multipart_upload(self.where.bucket, dest_key, upload_id, parts, if_none_match=True)
        except BaseException:
            self.store.abort_multipart_upload(self.where.bucket, dest_key, upload_id)
            raise

    def close(self) -> None:
        self.store.close()


def restore_snapshot(
    plan: "Plan",
    *,
    to: str,
    target_name: str | None = None,
    snapshot_id: str | None = None,
    prefix: str = "",
    bucket: str | None = None,
    yes: bool = False,
    workers: int = 4,
) -> RestoreResult:
    """Restore a snapshot (newest by default) from one target; only a dry run unless `yes`."""
    where = RestorePlan.parse(to)
    targets = [open_target(t, max_attempts=plan.transfer.max_attempts) for t in backup_settings(plan).targets]
    target = select_target(targets, target_name)
    try:
        target.check()
        chosen_id = require_snapshot(target, snapshot_id)
        frame = target.read_manifest(chosen_id)
        if bucket is not None:
            frame = frame.filter(pl.col("source_bucket") == bucket)
        if prefix:
            frame = frame.filter(pl.col("key").str.starts_with(prefix))
        buckets = frame["source_bucket"].unique().to_list()
        if where.kind != "local" and len(buckets) > 1:
            raise UserInputError(f"snapshot {chosen_id} holds {len(buckets)} buckets ({', '.join(sorted(buckets))}); choose one with --bucket")
        result = RestoreResult(target=target.name, snapshot_id=chosen_id, destination=where.describe(), dry_run=not yes,
                               objects=frame.height, bytes=int(frame["size"].sum() or 0), sample=frame["key"].head(10).to_list())
        if not yes:
            return result
        writer = _Writer(plan, where)
        try:
            writer.check()

            def one(row: dict[str, Any]) -> dict[str, str] | None:
                try:
                    call_with_retries(lambda: writer.write(target, row), max_attempts=plan.transfer.max_attempts)
                    return None
                except MigrateError as err:
                    return {"bucket": row["source_bucket"], "key": row["key"], "error": redact(str(err))}

            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                for failure in pool.map(one, frame.iter_rows(named=True)):
                    if failure is None:
                        result.restored += 1
                    else:
                        result.failures.append(failure)
        finally:
            writer.close()
        return result
    finally:
        for each in targets:
            each.close()
