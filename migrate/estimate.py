"""What a planned migration will cost in requests, money and time. Pure functions over the manifest.

Assumptions, stated wherever the numbers are shown:
- Requests at the destination: one PUT per object below the multipart
  threshold; CreateMultipartUpload + one UploadPart per part +
  CompleteMultipartUpload above it (all billed as PUT-class requests).
  Source reads: one GET per object, one ranged GET per part.
- Storage: bytes per storage class at the plan's GB-month prices (GB = 2^30
  bytes, as S3 bills), for one month.
- Duration: the larger of a per-request bound (each worker completes about
  `REQUESTS_PER_WORKER_PER_SECOND` requests a second on small objects) and a
  bandwidth bound (`ASSUMED_BANDWIDTH` bytes a second in aggregate). Both are
  rough; `migrate run` prints the real rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

REQUESTS_PER_WORKER_PER_SECOND = 20.0
ASSUMED_BANDWIDTH = 100 * 1024 * 1024
GB = 1 << 30


@dataclass(frozen=True)
class Estimate:
    objects: int
    bytes: int
    multipart_objects: int
    put_requests: int
    get_requests: int
    request_cost: float
    storage_cost_per_month: dict[str, float] = field(default_factory=dict)
    bytes_per_storage_class: dict[str, int] = field(default_factory=dict)
    duration_seconds: float = 0.0
    currency: str = "USD"
    assumptions: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def part_count_expr(part_size: int, threshold: int) -> pl.Expr:
    """Parts per object: 0 below the multipart threshold, ceil(size / part_size) above it."""
    return (
        pl.when(pl.col("size") >= threshold)
        .then(((pl.col("size") + part_size - 1) // part_size).clip(lower_bound=1))
        .otherwise(0)
    )


def estimate(
    copies: pl.DataFrame | pl.LazyFrame,
    *,
    part_size: int,
    multipart_threshold: int,
    concurrency: int,
    storage_prices: dict[str, float],
    put_per_1000: float,
    get_per_1000: float,
    currency: str = "USD",
    default_storage_class: str | None = None,
) -> Estimate:
    """Estimate requests, cost and duration for the rows that will be copied.

    `copies` may be a lazy scan: only aggregates are collected (streaming), never the rows.
    """
    rows = copies.lazy()
    parts = part_count_expr(part_size, multipart_threshold)
    totals, by_class = pl.collect_all(
        [
            rows.select(pl.len().alias("objects"), (parts > 0).sum().alias("multipart"), parts.sum().alias("parts"), pl.col("size").sum().alias("bytes")),
            rows.with_columns(pl.col("storage_class").fill_null(default_storage_class or "STANDARD")).group_by("storage_class").agg(pl.col("size").sum()),
        ],
        engine="streaming",
    )
    objects, multipart, total_parts, total_bytes = (int(value or 0) for value in totals.row(0))
    if objects == 0:
        return Estimate(0, 0, 0, 0, 0, 0.0, currency=currency, assumptions=_assumptions(concurrency))
    single = objects - multipart
    put_requests = single + total_parts + 2 * multipart
    get_requests = single + total_parts
    bytes_per_class = {str(row[0]): int(row[1]) for row in by_class.sort("storage_class").iter_rows()}
    storage_cost = {
        cls: round(size / GB * storage_prices.get(cls, storage_prices.get("STANDARD", 0.0)), 4) for cls, size in bytes_per_class.items()
    }
    request_bound = put_requests / (max(1, concurrency) * REQUESTS_PER_WORKER_PER_SECOND)
    bandwidth_bound = total_bytes / ASSUMED_BANDWIDTH
    return Estimate(
        objects=objects,
        bytes=total_bytes,
        multipart_objects=multipart,
        put_requests=put_requests,
        get_requests=get_requests,
        request_cost=round(put_requests / 1000 * put_per_1000 + get_requests / 1000 * get_per_1000, 4),
        storage_cost_per_month=storage_cost,
        bytes_per_storage_class=bytes_per_class,
        duration_seconds=math.ceil(max(request_bound, bandwidth_bound)),
        currency=currency,
        assumptions=_assumptions(concurrency),
    )


def _assumptions(concurrency: int) -> str:
    return (
        f"{concurrency} workers x ~{REQUESTS_PER_WORKER_PER_SECOND:.0f} requests/s each, "
        f"~{ASSUMED_BANDWIDTH // (1024 * 1024)} MiB/s aggregate; storage priced for one month"
    )


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def human_size(size: int | float) -> str:
    """`38.0 MiB`: rounded, for summaries (`migrate.filters.format_size` is exact, for plan values)."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
