"""Listing objects the way Supabase Storage lists them, in SQL that scales.

v1 (`POST /object/list/{bucket}`, storage.search in the real schema,
migrations/tenant/0063-fix-search-name-relative-to-prefix.sql):
one folder level under `prefix` (a "/" is appended, src/storage/object.ts
`searchObjects`); `search` extends the prefix; matching and ordering are
case-insensitive on `lower(name) COLLATE "C"`; names are relative to the
prefix; a sub-folder is a row with only its name; `offset` counts folders and
files alike; at most 1500 rows.

v2 (`POST /object/list-v2/{bucket}`, src/storage/object.ts `listObjectsV2`
over knex.ts `listObjectsV2` and storage.list_objects_with_delimiter /
storage.search_by_timestamp, migrations/tenant/0059-search-functions-user-metadata.sql):
case-sensitive `name COLLATE "C"` order, full names, at most 1000 rows, an
opaque base64 cursor (`l:<last name>\\no:<order>\\nc:<column>\\na:<timestamp>`),
recursive unless `with_delimiter`.

Name-ordered listings with a delimiter use a skip scan: keyset pages over the
(bucket_id, name) index, jumping over a whole folder once it is seen, so a
folder with 100k objects costs one row, not 100k.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, Iterator

import psycopg

from migrate.stack.supabase_server import errors
from migrate.stack.supabase_server.catalog import iso_timestamp

DELIMITER = "/"
V1_MAX_LIMIT = 1500
V2_MAX_LIMIT = 1000
_FIRST_BATCH = 32
_MAX_BATCH = 1000
_ROW_COLUMNS = "name, id, updated_at, created_at, last_accessed_at, metadata, user_metadata"

Conn = psycopg.Connection[dict[str, Any]]


def upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (C collation)."""
    if not prefix:
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def folder_end(key: str, prefix_length: int) -> int | None:
    """Index of the delimiter that makes `key` a folder below the prefix, if any."""
    index = key.find(DELIMITER, prefix_length)
    return index if index >= 0 else None


@dataclass
class Entry:
    """A listing row: a folder (`name` without its trailing "/") or an object row."""

    name: str
    row: dict[str, Any] | None = None  # the object's row; None for a folder
    folder_row: dict[str, Any] | None = None  # a folder's timestamps, when listed by time

    @property
    def is_folder(self) -> bool:
        """Folders have no row."""
        return self.row is None


@dataclass(frozen=True)
class Bound:
    """Where a scan resumes: past (or, `inclusive`, at) the row sorting as (key, name)."""

    key: str
    name: str = ""
    inclusive: bool = False


class LevelScanner:
    """Walk one level of a bucket below a prefix in key order, folders collapsed.

    `fold_case` selects v1's case-insensitive order (`lower(name)`), otherwise
    names compare byte-wise (`name COLLATE "C"`), as in v2. Sort keys are
    computed by PostgreSQL, so bounds compare exactly as the index does.
    """

    def __init__(self, conn: Conn, *, bucket_id: str, prefix: str, fold_case: bool, descending: bool):
        self.conn = conn
        self.bucket_id = bucket_id
        self.fold_case = fold_case
        self.descending = descending
        self.key_sql = 'lower(name) COLLATE "C"' if fold_case else 'name COLLATE "C"'
        if fold_case and prefix:
            row = conn.execute("SELECT lower(%s) AS prefix", [prefix]).fetchone()
            prefix = row["prefix"] if row else prefix.lower()
        self.prefix = prefix
        self.high = upper_bound(prefix)

    def _where(self, bound: Bound | None) -> tuple[list[str], list[Any]]:
        where = ["bucket_id = %s"]
        params: list[Any] = [self.bucket_id]
        if self.prefix:
            where.append(f"{self.key_sql} >= %s")
            params.append(self.prefix)
        if self.high is not None:
            where.append(f"{self.key_sql} < %s")
            params.append(self.high)
        if bound is None:
            return where, params
        # The plain comparison on the indexed key bounds the index range; the row
        # comparison (v1 only) orders names that are equal once lowered.
        if self.descending:
            where.append(f"{self.key_sql} <= %s")
            params.append(bound.key)
            if self.fold_case:
                where.append(f'({self.key_sql}, name COLLATE "C") < (%s, %s)')
                params += [bound.key, bound.name]
            else:
                where.append(f"{self.key_sql} < %s")
                params.append(bound.key)
            return where, params
        where.append(f"{self.key_sql} >= %s")
        params.append(bound.key)
        op = ">=" if bound.inclusive else ">"
        if self.fold_case:
            where.append(f'({self.key_sql}, name COLLATE "C") {op} (%s, %s)')
            params += [bound.key, bound.name]
        elif not bound.inclusive:
            where.append(f"{self.key_sql} > %s")
            params.append(bound.key)
        return where, params

    def _batch(self, bound: Bound | None, size: int) -> list[dict[str, Any]]:
        """Up to `size` rows past `bound`, in scan order, each with its `sort_key`."""
        where, params = self._where(bound)
        order = "DESC" if self.descending else "ASC"
        tiebreak = f', name COLLATE "C" {order}' if self.fold_case else ""
        sql = (
            f"SELECT {_ROW_COLUMNS}, {self.key_sql} AS sort_key FROM storage.objects"
            f" WHERE {' AND '.join(where)} ORDER BY {self.key_sql} {order}{tiebreak} LIMIT %s"
        )
        return self.conn.execute(sql, [*params, size]).fetchall()

    def past_folder(self, folder_key: str) -> Bound:
        """The bound that resumes the scan after every key inside `folder_key` + "/"."""
        if self.descending:
            return Bound(folder_key + DELIMITER)
        return Bound(folder_key + chr(ord(DELIMITER) + 1), inclusive=True)

    def start_after(self, name: str) -> Bound:
        """Resume after a cursor: past the whole folder if `name` is one, else past that row."""
        like = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + DELIMITER + "%"
        literal_key = "lower(%s::text)" if self.fold_case else "%s::text"
        row = self.conn.execute(
            f"SELECT {literal_key} AS sort_key,"
            ' EXISTS (SELECT 1 FROM storage.objects WHERE bucket_id = %s AND name COLLATE "C" LIKE %s) AS is_folder',
            [name, self.bucket_id, like],
        ).fetchone()
        assert row is not None
        if row["is_folder"]:
            return self.past_folder(row["sort_key"])
        return Bound(row["sort_key"], name)

    def entries(self, bound: Bound | None = None) -> Iterator[Entry]:
        """Folders and objects past `bound`, in order, each folder once."""
        size = _FIRST_BATCH
        while True:
            rows = self._batch(bound, size)
            for row in rows:
                key = row["sort_key"]
                end = folder_end(key, len(self.prefix))
                if end is not None:
                    yield Entry(name=row["name"][:end])
                    bound = self.past_folder(key[:end])
                    size = _FIRST_BATCH  # folders often come in runs; keep pages small
                    break
                yield Entry(name=row["name"], row=row)
                bound = Bound(key, row["name"])
            else:
                if len(rows) < size:
                    return
                size = min(size * 2, _MAX_BATCH)


# -- v1 ------------------------------------------------------------------------


def search_v1(
    conn: Conn,
    *,
    bucket_id: str,
    prefix: str,
    limit: int,
    offset: int,
    search: str,
    sort_column: str,
    sort_order: str,
) -> list[dict[str, Any]]:
    """Rows of `POST /object/list/{bucket}` (already in wire form)."""
    if prefix and not prefix.endswith(DELIMITER):
        prefix += DELIMITER  # object.ts searchObjects: "assuming prefix is always a folder"
    limit = min(max(limit, 1), V1_MAX_LIMIT)
    descending = sort_order.lower() == "desc"
    if sort_column not in ("name", "updated_at", "created_at", "last_accessed_at"):
        sort_column = "name"
    if sort_column != "name":
        return _search_v1_by_column(conn, bucket_id, prefix, search, limit, offset, sort_column, descending)
    scanner = LevelScanner(conn, bucket_id=bucket_id, prefix=prefix + search, fold_case=True, descending=descending)
    rows: list[dict[str, Any]] = []
    skipped = 0
    for entry in scanner.entries():
        if skipped < offset:
            skipped += 1
            continue
        rows.append(_v1_row(entry.name[len(prefix) :], entry.row))
        if len(rows) >= limit:
            break
    return rows


def _v1_row(name: str, row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {"name": name, "id": None, "updated_at": None, "created_at": None, "last_accessed_at": None, "metadata": None}
    return {
        "name": name,
        "id": str(row["id"]),
        "updated_at": iso_timestamp(row["updated_at"]),
        "created_at": iso_timestamp(row["created_at"]),
        "last_accessed_at": iso_timestamp(row["last_accessed_at"]),
        "metadata": row["metadata"],
    }


def _search_v1_by_column(
    conn: Conn,
    bucket_id: str,
    prefix: str,
    search: str,
    limit: int,
    offset: int,
    column: str,
    descending: bool,
) -> list[dict[str, Any]]:
    # 0063: folders first (by name), then files by the column, offset over both.
    # Folder names are ordered like the name sort (lower(name), byte order) rather
    # than by the database's default collation, so the answer is the same everywhere.
    scope = (prefix + search).lower()
    high = upper_bound(scope)
    order = "DESC" if descending else "ASC"
    range_sql = 'lower(name) COLLATE "C" >= %(low)s' + (' AND lower(name) COLLATE "C" < %(high)s' if high else "")
    sql = f"""
        WITH matched AS (
            SELECT name, id, updated_at, created_at, last_accessed_at, metadata,
                   strpos(substr(name, %(scope_len)s + 1), '/') AS slash
            FROM storage.objects
            WHERE bucket_id = %(bucket)s AND {range_sql}
        ), listed AS (
            SELECT DISTINCT substr(left(name, %(scope_len)s + slash - 1), %(prefix_len)s + 1) AS name,
                   NULL::uuid AS id, NULL::timestamptz AS updated_at, NULL::timestamptz AS created_at,
                   NULL::timestamptz AS last_accessed_at, NULL::jsonb AS metadata, 0 AS kind
            FROM matched WHERE slash > 0
            UNION ALL
            SELECT substr(name, %(prefix_len)s + 1), id, updated_at, created_at, last_accessed_at, metadata, 1
            FROM matched WHERE slash = 0
        )
        SELECT name, id, updated_at, created_at, last_accessed_at, metadata FROM listed
        ORDER BY kind, {column} {order}, lower(name) COLLATE "C" {order}, name COLLATE "C" {order}
        LIMIT %(limit)s OFFSET %(offset)s
    """
    params = {
        "bucket": bucket_id,
        "low": scope,
        "high": high,
        "scope_len": len(scope),
        "prefix_len": len(prefix),
        "limit": limit,
        "offset": offset,
    }
    rows = conn.execute(sql, params).fetchall()
    return [_v1_row(row["name"], row if row["id"] is not None else None) for row in rows]


# -- v2 ------------------------------------------------------------------------


@dataclass
class Cursor:
    """A decoded list-v2 continuation token."""

    start_after: str = ""
    sort_order: str | None = None
    sort_column: str | None = None
    sort_column_after: str | None = None


_CURSOR_PARTS = (("l", "start_after"), ("o", "sort_order"), ("c", "sort_column"), ("a", "sort_column_after"))
_CURSOR_PART = re.compile(r"^(\S):(.*)", re.DOTALL)


def encode_cursor(cursor: Cursor) -> str:
    """object.ts encodeContinuationToken: base64 of `l:`/`o:`/`c:`/`a:` lines."""
    lines = [f"{letter}:{getattr(cursor, attr)}" for letter, attr in _CURSOR_PARTS if getattr(cursor, attr)]
    return base64.b64encode("\n".join(lines).encode()).decode()


def decode_cursor(token: str) -> Cursor:
    """Parse a cursor; raises InvalidParameter("continuation token") like the real server."""
    try:
        text = base64.b64decode(token.encode(), validate=False).decode()
    except (ValueError, UnicodeDecodeError) as err:
        raise errors.invalid_parameter("continuation token") from err
    cursor = Cursor(sort_order="asc")
    letters = dict(_CURSOR_PARTS)
    for part in text.split("\n"):
        match = _CURSOR_PART.match(part)
        if not match or match.group(1) not in letters:
            raise errors.invalid_parameter("continuation token")
        setattr(cursor, letters[match.group(1)], match.group(2))
    return cursor


def list_v2(
    conn: Conn,
    *,
    bucket_id: str,
    prefix: str,
    limit: int | None,
    cursor_token: str | None,
    with_delimiter: bool,
    sort_column: str | None,
    sort_order: str | None,
) -> dict[str, Any]:
    """The body of `POST /object/list-v2/{bucket}`."""
    limit = min(limit or V2_MAX_LIMIT, V2_MAX_LIMIT)
    cursor = decode_cursor(cursor_token) if cursor_token else None
    order = (cursor.sort_order if cursor else None) or sort_order or "asc"
    order = order.lower() if order.lower() in ("asc", "desc") else "asc"
    column = (cursor.sort_column if cursor else None) or sort_column
    after = cursor.sort_column_after if cursor else None
    start = cursor.start_after if cursor else ""
    fetch = limit + 1  # one more than asked says whether there is a next page
    if not with_delimiter:
        timestamp_column = column if column in ("updated_at", "created_at") else None
        rows = _recursive_rows(conn, bucket_id, prefix, fetch, start, order, timestamp_column, after)
        entries = [Entry(name=row["name"], row=row) for row in rows]
    elif column in ("updated_at", "created_at"):
        entries = _delimited_by_timestamp(conn, bucket_id, prefix, fetch, start, order, column, after)
    else:
        scanner = LevelScanner(conn, bucket_id=bucket_id, prefix=prefix, fold_case=False, descending=order == "desc")
        bound = scanner.start_after(start) if start else None
        entries = []
        for entry in scanner.entries(bound):
            entries.append(entry)
            if len(entries) >= fetch:
                break
    return _v2_body(entries, limit=limit, prefix=prefix, delimited=with_delimiter, order=order, column=column)


def _recursive_rows(
    conn: Conn,
    bucket_id: str,
    prefix: str,
    fetch: int,
    start: str,
    order: str,
    column: str | None,
    after: str | None,
) -> list[dict[str, Any]]:
    # knex.ts listObjectsV2 without a delimiter: a keyset page on (column, name).
    where = ["bucket_id = %s"]
    params: list[Any] = [bucket_id]
    high = upper_bound(prefix)
    if prefix:
        where.append('name COLLATE "C" >= %s')
        params.append(prefix)
    if high is not None:
        where.append('name COLLATE "C" < %s')
        params.append(high)
    op = ">" if order == "asc" else "<"
    if start:
        if column and after:
            where.append(
                f"ROW(date_trunc('milliseconds', {column}), name COLLATE \"C\") {op} "
                "ROW(COALESCE(NULLIF(%s, '')::timestamptz, 'epoch'::timestamptz), %s)"
            )
            params += [after, start]
        else:
            where.append(f'name COLLATE "C" {op} %s')
            params.append(start)
    ordering = (f"{column} {order}, " if column else "") + f'name COLLATE "C" {order}'
    sql = (
        "SELECT id, name, metadata, updated_at, created_at, last_accessed_at FROM storage.objects"
        f" WHERE {' AND '.join(where)} ORDER BY {ordering} LIMIT %s"
    )
    return conn.execute(sql, [*params, fetch]).fetchall()


def _delimited_by_timestamp(
    conn: Conn,
    bucket_id: str,
    prefix: str,
    fetch: int,
    start: str,
    order: str,
    column: str,
    after: str | None,
) -> list[Entry]:
    # storage.search_by_timestamp: folders carry the earliest created_at of
    # their objects in both timestamp columns. It aggregates the whole prefix,
    # as the real function does ("not efficient for large datasets").
    high = upper_bound(prefix)
    op = ">" if order == "asc" else "<"
    range_sql = 'name COLLATE "C" >= %(low)s' + (' AND name COLLATE "C" < %(high)s' if high else "")
    sql = f"""
        WITH raw AS (
            SELECT name, id, updated_at, created_at, last_accessed_at, metadata, user_metadata,
                   strpos(substr(name, %(plen)s + 1), '/') AS slash
            FROM storage.objects WHERE bucket_id = %(bucket)s AND {range_sql}
        ), combined AS (
            SELECT left(name, %(plen)s + slash - 1) AS name, NULL::uuid AS id,
                   min(created_at) AS updated_at, min(created_at) AS created_at,
                   NULL::timestamptz AS last_accessed_at, NULL::jsonb AS metadata, NULL::jsonb AS user_metadata
            FROM raw WHERE slash > 0 GROUP BY left(name, %(plen)s + slash - 1)
            UNION ALL
            SELECT name, id, updated_at, created_at, last_accessed_at, metadata, user_metadata
            FROM raw WHERE slash = 0
        )
        SELECT * FROM combined
        WHERE (%(start)s = '' OR ROW(date_trunc('milliseconds', {column}), name COLLATE "C") {op}
               ROW(COALESCE(NULLIF(%(after)s, '')::timestamptz, 'epoch'::timestamptz), %(start)s))
        ORDER BY COALESCE(date_trunc('milliseconds', {column}), 'epoch'::timestamptz) {order},
                 name COLLATE "C" {order}
        LIMIT %(fetch)s
    """
    params = {
        "bucket": bucket_id,
        "low": prefix,
        "high": high,
        "plen": len(prefix),
        "start": start,
        "after": after or "",
        "fetch": fetch,
    }
    rows = conn.execute(sql, params).fetchall()
    return [
        Entry(name=row["name"], folder_row=row) if row["id"] is None else Entry(name=row["name"], row=row)
        for row in rows
    ]


def _v2_body(
    entries: list[Entry], *, limit: int, prefix: str, delimited: bool, order: str, column: str | None
) -> dict[str, Any]:
    has_next = len(entries) > limit
    page = entries[:limit]
    levels = len(prefix.split(DELIMITER))
    folders: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    for entry in page:
        if entry.is_folder:
            folder_row = entry.folder_row
            folders.append(
                {
                    "key": _split_part(entry.name, levels),
                    "name": entry.name + DELIMITER,
                    "id": None,
                    "updated_at": iso_timestamp(folder_row["updated_at"]) if folder_row else None,
                    "created_at": iso_timestamp(folder_row["created_at"]) if folder_row else None,
                    "last_accessed_at": None,
                    "metadata": None,
                }
            )
        else:
            objects.append(_v2_object(entry, levels=levels, delimited=delimited))
    body: dict[str, Any] = {"hasNext": has_next, "folders": folders, "objects": objects}
    if has_next:
        last = page[-1]
        last_row = last.row or last.folder_row
        after = None
        if column in ("updated_at", "created_at") and last_row and last_row.get(column):
            after = iso_timestamp(last_row[column])
        body["nextCursor"] = encode_cursor(
            Cursor(start_after=last.name, sort_order=order, sort_column=column, sort_column_after=after)
        )
        body["nextCursorKey"] = last.name
    return body


def _v2_object(entry: Entry, *, levels: int, delimited: bool) -> dict[str, Any]:
    row = entry.row
    assert row is not None
    wire = {
        "id": str(row["id"]),
        "name": row["name"],
        "metadata": row["metadata"],
        "updated_at": iso_timestamp(row["updated_at"]),
        "created_at": iso_timestamp(row["created_at"]),
        "last_accessed_at": iso_timestamp(row["last_accessed_at"]),
    }
    if delimited:
        # search_v2 rows also carry the name's segment at the prefix level (no
        # user_metadata: the recorded upstream answer, ../shared/supabase-upstream).
        wire = {"key": _split_part(row["name"], levels), **wire}
    return wire


def _split_part(name: str, level: int) -> str:
    parts = name.split(DELIMITER)
    return parts[level - 1] if level - 1 < len(parts) else ""

