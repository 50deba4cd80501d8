"""Which source objects a plan keeps, and which storage class by age or size.

Pure functions over `ObjectInfo`: no I/O. The plan's `filters:` section
becomes one predicate (`object_filter`) that returns None to keep an object
or the reason it is left out; the `tiering:` section becomes one selector
(`tier_selector`) that picks a storage class from an object's bucket, key,
size and age.

Globs are matched against the whole source key (not the bucket):

- `*` matches any run of characters inside one path segment (never `/`),
- `?` matches one character other than `/`,
- `**` as a whole segment matches any number of segments, including none:
  `**/*.tmp` matches `a.tmp` and `x/y/a.tmp`; `tmp/**` matches everything
  under `tmp/`,
- `\\` escapes the next character; everything else is literal.

So `*.tmp` only matches top-level keys: write `**/*.tmp` for "anywhere".
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Sequence

from migrate.patterns import GlobError, compile_globs, format_size, glob_to_regex  # noqa: F401 - re-exported
from migrate.stores.base import ObjectInfo

if TYPE_CHECKING:
    from migrate.plan import Filters, Tier

#: Supabase's dashboard creates this zero-byte object to make a folder exist.
PLACEHOLDER_NAME = ".emptyFolderPlaceholder"

ObjectFilter = Callable[[ObjectInfo], "str | None"]
TierSelector = Callable[[str, ObjectInfo], "Tier | None"]


def object_filter(filters: "Filters") -> ObjectFilter:
    """Compile the plan's `filters:` into `info -> None (keep) | reason (leave out)`.

    Checks run in a fixed order and the first failing one gives the reason:
    placeholder, include, exclude, size bounds, time bounds. Size bounds are
    inclusive (`min_size <= size <= max_size`); time bounds are half-open
    (`modified_after <= last_modified < modified_before`). An object whose
    store reports no last-modified time passes the time bounds: a migration
    should not drop what it cannot date.
    """
    include = compile_globs(filters.include)
    exclude_each = [(p, re.compile(glob_to_regex(p), re.DOTALL)) for p in filters.exclude]
    exclude_any = compile_globs(filters.exclude)
    skip_placeholders = filters.skip_placeholders
    min_size, max_size = filters.min_size, filters.max_size
    after = _aware(filters.modified_after) if filters.modified_after else None
    before = _aware(filters.modified_before) if filters.modified_before else None

    def reason(info: ObjectInfo) -> str | None:
        key = info.key
        if skip_placeholders and is_placeholder(key):
            return f"placeholder object ({PLACEHOLDER_NAME}); set filters.skip_placeholders: false to copy it"
        if include is not None and include.fullmatch(key) is None:
            return "not matched by any filters.include glob"
        if exclude_any is not None and exclude_any.fullmatch(key) is not None:
            pattern = next(p for p, rx in exclude_each if rx.fullmatch(key) is not None)
            return f"matches filters.exclude glob {pattern!r}"
        if min_size is not None and info.size < min_size:
            return f"size {format_size(info.size)} is below filters.min_size ({format_size(min_size)})"
        if max_size is not None and info.size > max_size:
            return f"size {format_size(info.size)} is above filters.max_size ({format_size(max_size)})"
        if info.last_modified is not None and (after is not None or before is not None):
            modified = _aware(info.last_modified)
            if after is not None and modified < after:
                return f"last modified {format_time(modified)}, before filters.modified_after ({format_time(after)})"
            if before is not None and modified >= before:
                return f"last modified {format_time(modified)}, not before filters.modified_before ({format_time(before)})"
        return None

    return reason


def tier_selector(tiers: Sequence["Tier"]) -> TierSelector:
    """Compile the plan's `tiering:` into `(bucket, info) -> first matching Tier | None`.

    Every condition a tier states must hold (bucket, include globs, size and
    time bounds, with the same bounds semantics as `object_filter`). An
    object with no last-modified time never matches a tier that has a time
    bound: a storage class is a cost decision, so unknown age means no change.
    """
    compiled = []
    for tier in tiers:
        compiled.append(
            (
                tier,
                frozenset(tier.buckets) if tier.buckets else None,
                compile_globs(tier.include),
                _aware(tier.modified_after) if tier.modified_after else None,
                _aware(tier.modified_before) if tier.modified_before else None,
            )
        )

    def select(bucket: str, info: ObjectInfo) -> "Tier | None":
        for tier, buckets, include, after, before in compiled:
            if buckets is not None and bucket not in buckets:
                continue
            if include is not None and include.fullmatch(info.key) is None:
                continue
            if tier.min_size is not None and info.size < tier.min_size:
                continue
            if tier.max_size is not None and info.size > tier.max_size:
                continue
            if after is not None or before is not None:
                if info.last_modified is None:
                    continue
                modified = _aware(info.last_modified)
                if after is not None and modified < after:
                    continue
                if before is not None and modified >= before:
                    continue
            return tier
        return None

    return select


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, to the second: how times appear in reasons."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _aware(moment: datetime) -> datetime:
    # Stores should return aware times; a naive one is taken as UTC rather than local time.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def is_placeholder(key: str) -> bool:
    """True for Supabase's `.emptyFolderPlaceholder` marker objects."""
    return key == PLACEHOLDER_NAME or key.endswith("/" + PLACEHOLDER_NAME)
