"""Supabase Storage inventory from its PostgreSQL catalog (`storage.objects`).

Far faster than the REST API for millions of objects: one read-only,
repeatable-read transaction (a consistent snapshot, never a write) pages
through `storage.objects` with keyset pagination on `name COLLATE "C"`, the
order the real server itself lists in (supabase/storage
src/storage/database/knex.ts, `listObjects`: `orderBy(knex.raw('name COLLATE "C"'))`).
Bytes are still read through the REST API, so `head` and `read` delegate to a
`SupabaseStore`.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import psycopg

from migrate.errors import AccessDenied, BucketNotFound, ServiceUnavailable
from migrate.redact import redact, register_secret
from migrate.stores.base import ObjectInfo, SourceStore
from migrate.stores.supabase import SupabaseStore, parse_timestamp

CATALOG_PAGE = 5000


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _host_of(database_url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def _row_info(row: tuple[Any, ...]) -> ObjectInfo:
    """One extracted catalog row as ObjectInfo (the same values `info_from_metadata` gives for the document)."""
    name, size, etag, mimetype, cache_control, last_modified, updated_at, user_metadata = row
    return ObjectInfo(
        key=name,
        size=int(size or 0),
        etag=etag.strip('"') if etag else None,
        content_type=mimetype,
        cache_control=cache_control,
        last_modified=parse_timestamp(last_modified) or updated_at,
        user_metadata={str(k): str(v) for k, v in json.loads(user_metadata).items()} if user_metadata else {},
    )


class CatalogStore(SourceStore):
    """Lists from `storage.objects`; reads bytes through the REST store."""

    kind = "supabase-catalog"

    @property
    def endpoint(self) -> str:
        return self.rest.endpoint

    def __init__(self, database_url: str, rest: SupabaseStore):
        self.database_url = database_url
        info = psycopg.conninfo.conninfo_to_dict(database_url)
        register_secret(str(info.get("password") or ""))
        self.rest = rest
        self._where = _host_of(database_url)

    def __repr__(self) -> str:
        return f"CatalogStore({redact(self._where)!r})"

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.database_url, connect_timeout=10)
        except psycopg.OperationalError as err:
            text = str(err).lower()
            if "password" in text or "authentication" in text or "permission" in text:
                raise AccessDenied(f"catalog {self._where}: PostgreSQL refused the login; check the user and password in database_url") from None
            raise ServiceUnavailable(f"catalog {self._where}: cannot connect to PostgreSQL; check database_url and that the database is reachable") from None
        # Never write: the whole inventory is one read-only snapshot.
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        return conn

    def list_buckets(self) -> list[str]:
        with self._connect() as conn:
            rows = conn.execute("SELECT id FROM storage.buckets ORDER BY id").fetchall()
        return [str(row[0]) for row in rows]

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[list[ObjectInfo]]:
        with self._connect() as conn:
            exists = conn.execute("SELECT 1 FROM storage.buckets WHERE id = %s", (bucket,)).fetchone()
            if not exists:
                raise BucketNotFound(f"supabase bucket {bucket!r}: not found in the catalog at {self._where}; check the bucket names in the plan")
            after = ""
            pattern = _like_prefix(prefix)
            while True:
                # PostgreSQL extracts the fields and casts the timestamp: no jsonb
                # document is decoded into Python per row (3-4x faster listing).
                rows = conn.execute(
                    """
                    SELECT name, (metadata->>'size')::bigint, metadata->>'eTag', metadata->>'mimetype',
                           metadata->>'cacheControl', metadata->>'lastModified', updated_at,
                           NULLIF(NULLIF(user_metadata::text, '{}'), 'null')
                    FROM storage.objects
                    WHERE bucket_id = %s AND name COLLATE "C" > %s AND name LIKE %s
                    ORDER BY name COLLATE "C"
                    LIMIT %s
                    """,
                    (bucket, after, pattern, CATALOG_PAGE),
                ).fetchall()
                if not rows:
                    return
                yield [_row_info(row) for row in rows]
                after = rows[-1][0]
                if len(rows) < CATALOG_PAGE:
                    return

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        return self.rest.head(bucket, key)

    def open(self, bucket: str, key: str, *, offset: int = 0, length: int | None = None) -> tuple[ObjectInfo, Iterator[bytes]]:
        return self.rest.open(bucket, key, offset=offset, length=length)


    def close(self) -> None:
        self.rest.close()
