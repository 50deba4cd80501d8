"""Audit of the source itself: does every catalog row have bytes, and every stored object a row?

Supabase lists objects from its catalog (`storage.objects`); the REST
listing and `/object/info` read the same table, so comparing them proves
nothing about the bytes. This audit reads them: one ranged 1-byte GET per
object (concurrent, every object or a seeded sample), which reaches the
storage backend. A row whose bytes are gone is damage that predates the
migration; `plan --audit-source` reports it before anything is copied and
`verify` keeps it in the report's catalog section (it never changes the
verdict about the migration).

Where the user can reach the backend itself (the bundled server's data
directory), `blobs_without_rows` lists stored bytes that no row names.

Used by the plan stage and by verify; imports only stores and report types.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Protocol

import polars as pl

from migrate.errors import ObjectError, ServiceUnavailable
from migrate.report import CATALOG_ONLY, REPORT_SCHEMA, STORAGE_ONLY, empty_report


class ProbesBytes(Protocol):
    """A source that can tell whether an object's bytes exist (Supabase REST and catalog stores)."""

    def has_bytes(self, bucket: str, key: str, *, size: int) -> bool: ...


@dataclass
class SourceAudit:
    """What the bytes audit found. `missing` holds (bucket, key, size) of rows without bytes."""

    population: int
    checked: int
    missing: list[tuple[str, str, int]] = field(default_factory=list)
    #: Objects whose probe kept failing for another reason (neither proven present nor missing).
    unreadable: int = 0

    @property
    def sampled(self) -> bool:
        return self.checked < self.population

    def summary(self) -> dict[str, Any]:
        """Plain data for the plan summary."""
        return {
            "population": self.population,
            "checked": self.checked,
            "rows_without_bytes": len(self.missing),
            "unreadable": self.unreadable,
            "examples": [f"{bucket}/{key}" for bucket, key, _ in self.missing[:20]],
            "text": self.text(),
        }

    def text(self) -> str:
        """One or two lines for the terminal and summary.md."""
        scope = f"a sample of {self.checked} of {self.population}" if self.sampled else f"all {self.checked}"
        unreadable = f"; {self.unreadable} could not be read (see the errors of `run`/`verify`)" if self.unreadable else ""
        if not self.missing:
            return f"Source audit: read the first byte of {scope} listed objects; none lacks its bytes{unreadable}."
        from migrate.stores.supabase import NO_BYTES  # here, not at the top: an S3 source's plan never loads httpx and storage3

        shown = ", ".join(f"{bucket}/{key}" for bucket, key, _ in self.missing[:5])
        return (
            f"Source audit: {len(self.missing)} of {scope} listed objects: {NO_BYTES} "
            f"(pre-existing damage, they cannot be migrated): {shown}{' ...' if len(self.missing) > 5 else ''}{unreadable}"
        )

    def frame(self) -> pl.DataFrame:
        """The rows without bytes as report rows (status catalog-only)."""
        from migrate.stores.supabase import NO_BYTES

        return _report_rows(self.missing, CATALOG_ONLY, f"{NO_BYTES}: its bytes were lost before the migration")


def audit_source_bytes(
    objects: Iterable[tuple[str, str, int]], source: ProbesBytes, *, sample: int | None = None, concurrency: int = 16, seed: int = 0
) -> SourceAudit:
    """Read the first byte of every (bucket, key, size), or of a seeded random `sample` of them."""
    items = list(objects)
    chosen = items if sample is None or sample >= len(items) else random.Random(seed).sample(items, sample)

    def probe(item: tuple[str, str, int]) -> bool | None:
        bucket, key, size = item
        try:
            return source.has_bytes(bucket, key, size=size)
        except (ServiceUnavailable, ObjectError):
            # This one object kept failing (or vanished): unknown, not missing.
            # Credentials and missing buckets (other FatalErrors) stop the audit.
            return None

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        found = list(pool.map(probe, chosen))
    missing = sorted(item for item, present in zip(chosen, found) if present is False)
    unreadable = sum(1 for present in found if present is None)
    return SourceAudit(population=len(items), checked=len(chosen), missing=missing, unreadable=unreadable)


def manifest_objects(manifest: pl.DataFrame) -> list[tuple[str, str, int]]:
    """(bucket, key, size) of every listed object of a manifest."""
    return list(manifest.select("source_bucket", "source_key", "size").iter_rows())


def blobs_without_rows(data_dir: Path, versions: Iterable[str]) -> list[Path]:
    """Stored byte files of the bundled server (`<data>/blobs/<v[:2]>/<version>`) that no catalog row names."""
    named = set(versions)
    return sorted(path for path in (data_dir / "blobs").glob("*/*") if path.is_file() and path.name not in named)


def backend_key(tenant: str, bucket: str, name: str, version: str | None, *, separator: str = "/") -> str:
    """Where upstream Supabase Storage keeps an object's bytes in its backend (S3 bucket or file root).

    `${tenantId}/${bucketId}/${objectName}` plus `/version` (storage/object.ts
    `deleteObject`'s s3Key; backend/adapter.ts `withOptionalVersion`, whose
    separator is `-$v-` when the server runs with the TUS file-version separator).
    """
    key = f"{tenant}/{bucket}/{name}"
    return f"{key}{separator}{version}" if version else key


def compare_backend(
    stored: Iterable[tuple[str, int]], rows: Iterable[tuple[str, str, str | None]], *, tenant: str, separator: str = "/"
) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """Backend keys (key, size) against catalog rows (bucket, name, version).

    Returns (bytes without rows, rows without bytes): the first are backend
    objects no row names, the second (bucket, name) rows whose backend key is
    absent. Pure: list the backend with any S3 client (a self-hosted
    Supabase's global bucket under the tenant prefix) and the rows with
    `CatalogStore.object_versions`.
    """
    expected = {backend_key(tenant, bucket, name, version, separator=separator): (bucket, name) for bucket, name, version in rows}
    present = dict(stored)
    unnamed = sorted((key, size) for key, size in present.items() if key not in expected)
    lost = sorted(row for key, row in expected.items() if key not in present)
    return unnamed, lost


def blob_report(paths: Iterable[Path]) -> pl.DataFrame:
    """Unnamed blobs as report rows (status storage-only)."""
    rows = [("(backend)", str(path), path.stat().st_size) for path in paths]
    return _report_rows(rows, STORAGE_ONLY, "bytes in the storage backend that no catalog row names")


def _report_rows(items: list[tuple[str, str, int]], status: str, detail: str) -> pl.DataFrame:
    if not items:
        return empty_report()
    now = datetime.now(timezone.utc)
    values = {
        "source_bucket": [bucket for bucket, _, _ in items],
        "source_key": [key for _, key, _ in items],
        "size": [size for _, _, size in items],
        "status": [status] * len(items),
        "detail": [detail] * len(items),
        "checked_mode": ["catalog"] * len(items),
        "checked_at": [now] * len(items),
    }
    return pl.DataFrame(
        {name: values.get(name, [None] * len(items)) for name in REPORT_SCHEMA},
        schema=REPORT_SCHEMA,
    )
