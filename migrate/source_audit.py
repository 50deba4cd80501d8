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

Used by the plan stage and by verify; imports the manifest reader, the report types and the
report spool (never a store: the source is given). The audit holds what is in flight and what
it found, never the listing: the objects come as a stream (`manifest_objects` reads the
manifest a batch of rows at a time).
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

import polars as pl

from migrate.errors import ObjectError, ServiceUnavailable
from migrate.manifest import action_batches
from migrate.report import CATALOG_ONLY, REPORT_SCHEMA, STORAGE_ONLY
from migrate.report_spool import TRIPLE_SCHEMA, SortedKeys
from migrate.sampling import reservoir

# Probes in flight (or done but not yet counted) per worker: enough to keep every worker busy, and what
# bounds the objects held, however many the catalog lists.
_IN_FLIGHT_PER_WORKER = 2


class ProbesBytes(Protocol):
    """A source that can tell whether an object's bytes exist (Supabase REST and catalog stores)."""

    def has_bytes(self, bucket: str, key: str, *, size: int) -> bool: ...


@dataclass
class SourceAudit:
    """What the bytes audit found. `missing` holds (bucket, key, size) of rows without bytes, sorted (on disk past one part)."""

    population: int
    checked: int
    missing: SortedKeys = field(default_factory=SortedKeys)
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
            "examples": [f"{bucket}/{key}" for bucket, key, _ in self.missing.head(20)],
            "text": self.text(),
        }

    def text(self) -> str:
        """One or two lines for the terminal and summary.md."""
        scope = f"a sample of {self.checked} of {self.population}" if self.sampled else f"all {self.checked}"
        unreadable = f"; {self.unreadable} could not be read (see the errors of `run`/`verify`)" if self.unreadable else ""
        if not self.missing:
            return f"Source audit: read the first byte of {scope} listed objects; none lacks its bytes{unreadable}."
        from migrate.stores.supabase import NO_BYTES  # here, not at the top: an S3 source's plan never loads httpx and storage3

        shown = ", ".join(f"{bucket}/{key}" for bucket, key, _ in self.missing.head(5))
        return (
            f"Source audit: {len(self.missing)} of {scope} listed objects: {NO_BYTES} "
            f"(pre-existing damage, they cannot be migrated): {shown}{' ...' if len(self.missing) > 5 else ''}{unreadable}"
        )

    def rows(self) -> pl.LazyFrame:
        """The rows without bytes as report rows (status catalog-only), sorted; lazy: they may be on disk."""
        from migrate.stores.supabase import NO_BYTES

        return _report_rows(self.missing.scan(), CATALOG_ONLY, f"{NO_BYTES}: its bytes were lost before the migration")

    def frame(self) -> pl.DataFrame:
        """`rows()`, collected."""
        return self.rows().collect()


def audit_source_bytes(
    objects: Iterable[tuple[str, str, int]], source: ProbesBytes, *, sample: int | None = None, concurrency: int = 16, seed: int = 0
) -> SourceAudit:
    """Read the first byte of every (bucket, key, size), or of a seeded random `sample` of them.

    `objects` is read as a stream: without `sample`, at most
    `_IN_FLIGHT_PER_WORKER` x `concurrency` objects are held (the probes in
    flight); with it, the sample (a reservoir over the stream). Rows without
    bytes are kept sorted in a `SortedKeys`, on disk past one part.
    """
    counted = _Counted(objects)
    chosen: Iterable[tuple[str, str, int]] = counted if sample is None else reservoir(counted, sample, seed=seed)

    def probe(item: tuple[str, str, int]) -> bool | None:
        bucket, key, size = item
        try:
            return source.has_bytes(bucket, key, size=size)
        except (ServiceUnavailable, ObjectError):
            # This one object kept failing (or vanished): unknown, not missing.
            # Credentials and missing buckets (other FatalErrors) stop the audit.
            return None

    missing = SortedKeys()
    checked = unreadable = 0
    for item, present in _bounded_map(probe, chosen, workers=max(1, concurrency)):
        checked += 1
        if present is False:
            missing.add(*item)
        elif present is None:
            unreadable += 1
    return SourceAudit(population=counted.count, checked=checked, missing=missing, unreadable=unreadable)


class _Counted:
    """An iterable that counts what was taken from it (the audit's population, known once the stream ends)."""

    def __init__(self, items: Iterable[tuple[str, str, int]]) -> None:
        self._items = items
        self.count = 0

    def __iter__(self) -> Iterator[tuple[str, str, int]]:
        for item in self._items:
            self.count += 1
            yield item


def _bounded_map(
    probe: Callable[[tuple[str, str, int]], bool | None], items: Iterable[tuple[str, str, int]], *, workers: int
) -> Iterator[tuple[tuple[str, str, int], bool | None]]:
    """(item, probe(item)) in completion order; the next item is taken only when fewer than the window are pending."""
    window = workers * _IN_FLIGHT_PER_WORKER
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="migrate-audit")
    pending: dict[Future[bool | None], tuple[str, str, int]] = {}
    try:
        for item in items:
            while len(pending) >= window:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
            pending[pool.submit(probe, item)] = item
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    finally:
        # A fatal probe (credentials, missing bucket) stops the audit: what was not started never is.
        pool.shutdown(wait=True, cancel_futures=True)


def manifest_objects(manifest: pl.LazyFrame | pl.DataFrame, *actions: str) -> Iterator[tuple[str, str, int]]:
    """(bucket, key, size) of the manifest's rows with one of `actions` (every row when none is given), a batch of rows at a time."""
    for batch in action_batches(manifest, *actions, columns=["source_bucket", "source_key", "size"]):
        yield from batch.iter_rows()


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
    rows = pl.DataFrame([("(backend)", str(path), path.stat().st_size) for path in paths], schema=TRIPLE_SCHEMA, orient="row")
    return _report_rows(rows.lazy(), STORAGE_ONLY, "bytes in the storage backend that no catalog row names").collect()


def _report_rows(items: pl.LazyFrame, status: str, detail: str) -> pl.LazyFrame:
    """(source_bucket, source_key, size) rows as REPORT_SCHEMA rows with one status and detail, checked now."""
    given = {
        "status": pl.lit(status),
        "detail": pl.lit(detail),
        "checked_mode": pl.lit("catalog"),
        "checked_at": pl.lit(datetime.now(timezone.utc)),
    }
    return items.select(
        [(pl.col(name) if name in TRIPLE_SCHEMA else given.get(name, pl.lit(None))).cast(dtype).alias(name) for name, dtype in REPORT_SCHEMA.items()]
    )
