"""Object filters, key globs and storage-class tiers: pure, no network."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from migrate.filters import GlobError, format_size, glob_to_regex, is_placeholder, object_filter, tier_selector
from migrate.plan import Filters, Tier
from migrate.stores.base import ObjectInfo

UTC = timezone.utc


def matches(pattern: str, key: str) -> bool:
    return re.fullmatch(glob_to_regex(pattern), key, re.DOTALL) is not None


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("*.tmp", "a.tmp", True),
        ("*.tmp", "dir/a.tmp", False),  # * never crosses '/'
        ("**/*.tmp", "a.tmp", True),
        ("**/*.tmp", "x/y/a.tmp", True),
        ("**/*.tmp", "x/y/a.tmpx", False),
        ("tmp/**", "tmp/a", True),
        ("tmp/**", "tmp/a/b/c", True),
        ("tmp/**", "tmp", False),
        ("tmp/**", "tmpx/a", False),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("a/**/b", "a/x/y/c", False),
        ("**", "anything/at/all", True),
        ("u?/*", "u1/x", True),
        ("u?/*", "u12/x", False),
        ("**/~$*", "docs/~$report.docx", True),
        ("a.b", "aXb", False),  # regex metacharacters are literal
        ("\\*.txt", "*.txt", True),
        ("\\*.txt", "a.txt", False),
        ("[x].txt", "[x].txt", True),
    ],
)
def test_glob_semantics(pattern, key, expected):
    assert matches(pattern, key) is expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "empty glob; use ** for every key"),
        ("a**", "glob 'a**': ** must be a whole path segment (as in a/**/b); use * inside a segment"),
        ("a/b\\", "glob 'a/b\\\\' ends a segment with a lone backslash; write \\\\ for a literal one"),
    ],
)
def test_bad_globs_are_refused(pattern, message):
    with pytest.raises(GlobError) as info:
        glob_to_regex(pattern)
    assert str(info.value) == message


def info(key: str, size: int = 100, modified: datetime | None = None) -> ObjectInfo:
    return ObjectInfo(key=key, size=size, last_modified=modified)


def test_placeholders_are_skipped_by_default_and_can_be_kept():
    keep_all = object_filter(Filters())
    assert keep_all(info("a/.emptyFolderPlaceholder", 0)) == (
        "placeholder object (.emptyFolderPlaceholder); set filters.skip_placeholders: false to copy it"
    )
    assert keep_all(info(".emptyFolderPlaceholder", 0)) is not None
    assert keep_all(info("a/x.emptyFolderPlaceholder", 0)) is None
    assert object_filter(Filters(skip_placeholders=False))(info("a/.emptyFolderPlaceholder", 0)) is None
    assert is_placeholder("x/y/.emptyFolderPlaceholder") and not is_placeholder("x/y/.emptyFolderPlaceholderz")


def test_include_and_exclude_globs_give_reasons():
    check = object_filter(Filters(include=("docs/**", "*.md"), exclude=("**/*.tmp", "docs/private/**")))
    assert check(info("docs/a.pdf")) is None
    assert check(info("README.md")) is None
    assert check(info("src/a.py")) == "not matched by any filters.include glob"
    assert check(info("docs/x/a.tmp")) == "matches filters.exclude glob '**/*.tmp'"
    assert check(info("docs/private/a.pdf")) == "matches filters.exclude glob 'docs/private/**'"


def test_size_bounds_are_inclusive():
    check = object_filter(Filters(min_size=10, max_size=1 << 20))
    assert check(info("a", 10)) is None
    assert check(info("a", 1 << 20)) is None
    assert check(info("a", 9)) == "size 9 bytes is below filters.min_size (10 bytes)"
    assert check(info("a", (1 << 20) + 1)) == "size 1048577 bytes is above filters.max_size (1 MiB)"


def test_time_bounds_are_half_open_and_unknown_times_pass():
    after = datetime(2024, 1, 1, tzinfo=UTC)
    before = datetime(2025, 1, 1, tzinfo=UTC)
    check = object_filter(Filters(modified_after=after, modified_before=before))
    assert check(info("a", modified=after)) is None
    assert check(info("a", modified=before - timedelta(seconds=1))) is None
    assert check(info("a", modified=before)) == (
        "last modified 2025-01-01T00:00:00Z, not before filters.modified_before (2025-01-01T00:00:00Z)"
    )
    assert check(info("a", modified=after - timedelta(seconds=1))) == (
        "last modified 2023-12-31T23:59:59Z, before filters.modified_after (2024-01-01T00:00:00Z)"
    )
    # A naive time from a store is read as UTC, not local time.
    assert check(info("a", modified=datetime(2024, 6, 1))) is None
    assert check(info("a", modified=None)) is None


def test_tier_selector_needs_every_condition_and_takes_the_first_match():
    select = tier_selector(
        [
            Tier(name="old-docs", storage_class="STANDARD_IA", buckets=("documents",),
                 modified_before=datetime(2024, 1, 1, tzinfo=UTC)),
            Tier(name="big", storage_class="INTELLIGENT_TIERING", min_size=100 << 20),
            Tier(name="logs", storage_class="GLACIER_IR", include=("logs/**",), max_size=1 << 20),
        ]
    )
    old = datetime(2023, 1, 1, tzinfo=UTC)
    new = datetime(2025, 1, 1, tzinfo=UTC)
    assert select("documents", info("a", 1, old)).name == "old-docs"
    assert select("avatars", info("a", 1, old)) is None  # wrong bucket
    assert select("documents", info("a", 200 << 20, old)).name == "old-docs"  # first match wins
    assert select("documents", info("a", 200 << 20, new)).name == "big"
    assert select("documents", info("a", 200 << 20, None)).name == "big"  # unknown age: no time tier
    assert select("documents", info("a", 1, None)) is None
    assert select("x", info("logs/a.log", 10)).name == "logs"
    assert select("x", info("logs/a.log", 2 << 20)) is None


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 bytes"), (1, "1 byte"), (1536, "1536 bytes"), (16 << 20, "16 MiB"), (5 << 30, "5 GiB"),
     (10**9, "1 GB"), (2048, "2 KiB"), (1 << 40, "1 TiB")],
)
def test_format_size(size, text):
    assert format_size(size) == text
