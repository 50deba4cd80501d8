"""ListObjectsV2 over `storage.objects`, in S3's byte order, any delimiter, no row read twice.

src/storage/protocols/s3/s3-handler.ts listObjectsV2: prefix, delimiter,
max-keys (at most 1000), start-after, continuation token; CommonPrefixes for
the delimiter. Names sort in byte order (`COLLATE "C"`, the index the hosted
schema has). A common prefix is skipped in one step: the next query starts at
the first name past every name that begins with it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from migrate.stack.supabase_server.catalog import ConnectionPool
from migrate.stack.supabase_server.s3.xml import S3Error, iso_time

MAX_KEYS = 1000


@dataclass
class Listing:
    """One page: objects, common prefixes, and where the next page starts."""

    contents: list[dict[str, Any]] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_token: str | None = None


def successor(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with `prefix` (None: no bound)."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1])
        if code < 0x10FFFF:
            following = code + 1
            if 0xD800 <= following <= 0xDFFF:
                following = 0xE000
            chars[-1] = chr(following)
            return "".join(chars)
        chars.pop()
    return None


def encode_token(kind: str, value: str) -> str:
    """An opaque continuation token: `k:<key>` (after this key) or `p:<prefix>` (past this prefix)."""
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


def decode_token(token: str) -> tuple[str, str]:
    """The token's kind and value; InvalidArgument if it is not one of ours."""
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
    except (ValueError, UnicodeDecodeError) as err:
        raise S3Error("InvalidArgument", 400, "The continuation token provided is incorrect") from err
    if kind not in ("k", "p"):
        raise S3Error("InvalidArgument", 400, "The continuation token provided is incorrect")
    return kind, value


def list_objects(
    pool: ConnectionPool,
    *,
    bucket_id: str,
    prefix: str,
    delimiter: str,
    max_keys: int,
    start_after: str | None,
    token: str | None,
) -> Listing:
    """One ListObjectsV2 page."""
    listing = Listing()
    lower, inclusive = prefix, True
    if token:
        kind, value = decode_token(token)
        if kind == "k":
            lower, inclusive = max(value, prefix), value < prefix
        else:
            bound = successor(value)
            if bound is None:
                return listing
            lower, inclusive = max(bound, prefix), True
    elif start_after and start_after >= prefix:
        lower, inclusive = start_after, False
    upper = successor(prefix) if prefix else None
    if max_keys == 0:
        return listing
    entries = 0
    last: tuple[str, str] | None = None
    batch = min(max_keys + 1, MAX_KEYS + 1)
    with pool.connection() as conn:
        while True:
            rows = conn.execute(
                "SELECT name, metadata->>'eTag' AS etag, (metadata->>'size')::bigint AS size, updated_at"
                " FROM storage.objects WHERE bucket_id = %s"
                f" AND name COLLATE \"C\" {'>=' if inclusive else '>'} %s"
                + (" AND name COLLATE \"C\" < %s" if upper is not None else "")
                + " ORDER BY name COLLATE \"C\" LIMIT %s",
                [bucket_id, lower, *([upper] if upper is not None else []), batch],
            ).fetchall()
            if not rows:
                return listing
            skip_to: str | None = None
            for row in rows:
                name = row["name"]
                if skip_to is not None and name.startswith(skip_to):
                    continue
                skip_to = None
                common = None
                if delimiter:
                    cut = name.find(delimiter, len(prefix))
                    if cut >= 0:
                        common = name[: cut + len(delimiter)]
                if entries == max_keys:
                    listing.truncated = True
                    assert last is not None
                    listing.next_token = encode_token(*last)
                    return listing
                if common is not None:
                    listing.prefixes.append(common)
                    last = ("p", common)
                    skip_to = common
                else:
                    listing.contents.append(_content(row))
                    last = ("k", name)
                entries += 1
            if len(rows) < batch:
                return listing
            # Next batch: past the last key, or past every name under the last prefix.
            assert last is not None
            if last[0] == "p":
                bound = successor(last[1])
                if bound is None or (upper is not None and bound >= upper):
                    return listing
                lower, inclusive = bound, True
            else:
                lower, inclusive = last[1], False


def _content(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "Key": row["name"],
        "LastModified": iso_time(row["updated_at"]),
        "ETag": row["etag"],
        "Size": row["size"] or 0,
        "StorageClass": "STANDARD",
    }
