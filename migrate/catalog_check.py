"""The Supabase catalog cross-check: `storage.objects` against the source storage itself, as report rows.

Pure: two inventories in, REPORT_SCHEMA rows out. These rows describe the
source as it was before the migration; the report keeps them in a section of
their own and they never change the verdict.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Mapping

import polars as pl

from migrate.report_schema import CATALOG_DIFFERS, CATALOG_ONLY, REPORT_SCHEMA, STORAGE_ONLY, empty_report
from migrate.stores.base import ObjectInfo

_INVENTORY_SCHEMA = {"bucket": pl.Utf8(), "key": pl.Utf8(), "size": pl.Int64(), "etag": pl.Utf8()}


def inventory_frame(inventory: Any, *, bucket: str | None = None) -> pl.DataFrame:
    """Normalise an inventory to a frame (bucket, key, size, etag), one row per object.

    Accepts:
    - a polars frame with `key` or `source_key`, `size`, optionally `etag`
      or `source_etag`, and `bucket` or `source_bucket` (else `bucket=`);
    - a mapping {key or (bucket, key): ObjectInfo | (size, etag) | size | None};
      None means "looked for, not there" (a HEAD that found nothing) and is dropped;
    - an iterable of ObjectInfo, of pages (lists) of them as
      `SourceStore.iter_objects` yields, or of (bucket, key, size[, etag]) tuples.
    ObjectInfo and bare keys carry no bucket: pass `bucket=`.
    """
    if isinstance(inventory, pl.DataFrame):
        return _frame_inventory(inventory, bucket=bucket)
    rows: list[tuple[str | None, str, int | None, str | None]] = []
    if isinstance(inventory, Mapping):
        for name, value in inventory.items():
            if value is None:
                continue
            item_bucket, key = name if isinstance(name, tuple) else (bucket, name)
            size, etag = _size_etag(value)
            rows.append((item_bucket, key, size, etag))
    else:
        for item in _flatten(inventory):
            if isinstance(item, ObjectInfo):
                rows.append((bucket, item.key, item.size, item.etag))
            elif isinstance(item, tuple) and len(item) in (3, 4):
                rows.append((item[0], item[1], item[2], item[3] if len(item) == 4 else None))
            else:
                raise TypeError(f"inventory item {item!r}: expected ObjectInfo or (bucket, key, size[, etag])")
    frame = pl.DataFrame(rows, schema=_INVENTORY_SCHEMA, orient="row")
    return _require_bucket(frame)


def _flatten(items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        if isinstance(item, list):
            yield from item
        else:
            yield item


def _size_etag(value: Any) -> tuple[int | None, str | None]:
    if isinstance(value, ObjectInfo):
        return value.size, value.etag
    if isinstance(value, tuple):
        return value[0], value[1] if len(value) > 1 else None
    if isinstance(value, int):
        return value, None
    raise TypeError(f"inventory value {value!r}: expected ObjectInfo, (size, etag), size or None")


def _frame_inventory(frame: pl.DataFrame, *, bucket: str | None) -> pl.DataFrame:
    def pick(*names: str) -> str | None:
        return next((n for n in names if n in frame.columns), None)

    key, size = pick("key", "source_key"), pick("size")
    if key is None or size is None:
        raise TypeError(f"inventory frame needs `key` (or `source_key`) and `size` columns, has {frame.columns}")
    bucket_col, etag_col = pick("bucket", "source_bucket"), pick("etag", "source_etag")
    out = frame.select(
        (pl.col(bucket_col) if bucket_col else pl.lit(bucket)).cast(pl.Utf8).alias("bucket"),
        pl.col(key).cast(pl.Utf8).alias("key"),
        pl.col(size).cast(pl.Int64).alias("size"),
        (pl.col(etag_col) if etag_col else pl.lit(None)).cast(pl.Utf8).alias("etag"),
    )
    return _require_bucket(out)


def _require_bucket(frame: pl.DataFrame) -> pl.DataFrame:
    if frame.height and frame["bucket"].null_count():
        raise TypeError("inventory entries without a bucket: pass bucket= or give (bucket, key) pairs")
    return frame


def catalog_cross_check(catalog: Any, storage: Any, *, bucket: str | None = None) -> pl.DataFrame:
    """Compare the Supabase catalog (`storage.objects`) with the source storage itself; REPORT_SCHEMA rows.

    Pure: give it two inventories in any form `inventory_frame` accepts,
    e.g. `CatalogStore.iter_objects(b)` pages for the catalog and
    `SupabaseStore.iter_objects(b)` pages (or a {key: head-or-None} mapping
    of HEAD results) for the storage, with `bucket=b`.

    - `catalog-only`: in the catalog, not in the storage (bytes lost before the migration);
    - `storage-only`: in the storage, not in the catalog;
    - `catalog-differs`: in both, but the sizes, or both eTags, disagree.

    These rows describe the source as it was; the report keeps them in a
    section of their own and they never change the verdict.
    """
    keys = ["bucket", "key"]
    cat = inventory_frame(catalog, bucket=bucket).unique(keys, keep="first")
    sto = inventory_frame(storage, bucket=bucket).unique(keys, keep="first")
    now = datetime.now(timezone.utc)

    def rows(frame: pl.DataFrame, status: str, detail: pl.Expr, **extra: pl.Expr) -> pl.DataFrame:
        values: dict[str, pl.Expr] = {
            "source_bucket": pl.col("bucket"),
            "source_key": pl.col("key"),
            "size": pl.col("size"),
            "source_etag": pl.col("etag"),
            "status": pl.lit(status),
            "detail": detail,
            "checked_mode": pl.lit("catalog"),
            "checked_at": pl.lit(now),
            **extra,
        }
        return frame.select(
            [(values[name] if name in values else pl.lit(None)).cast(dtype).alias(name) for name, dtype in REPORT_SCHEMA.items()]
        )

    only_catalog = rows(
        cat.join(sto, on=keys, how="anti"),
        CATALOG_ONLY,
        pl.lit("listed in the Supabase catalog but not found in the source storage: its bytes were lost before the migration"),
    )
    only_storage = rows(
        sto.join(cat, on=keys, how="anti"),
        STORAGE_ONLY,
        pl.lit("found in the source storage but not listed in the Supabase catalog: Supabase does not know this object"),
    )
    both = cat.join(sto, on=keys, how="inner", suffix="_storage")
    etags_differ = pl.col("etag").is_not_null() & pl.col("etag_storage").is_not_null() & (pl.col("etag") != pl.col("etag_storage"))
    differs = both.filter((pl.col("size") != pl.col("size_storage")) | etags_differ)
    disagreement = rows(
        differs,
        CATALOG_DIFFERS,
        pl.format(
            "the catalog lists {} bytes (eTag {}), the storage has {} bytes (eTag {})",
            pl.col("size"),
            pl.col("etag").fill_null("unknown"),
            pl.col("size_storage"),
            pl.col("etag_storage").fill_null("unknown"),
        ),
        expected_checksum=pl.concat_str(pl.lit("etag:"), pl.col("etag")),
        actual_checksum=pl.concat_str(pl.lit("etag:"), pl.col("etag_storage")),
    )
    result = pl.concat([only_catalog, only_storage, disagreement]).sort(["source_bucket", "source_key", "status"])
    return result if result.height else empty_report()



__all__ = ["inventory_frame", "catalog_cross_check"]
