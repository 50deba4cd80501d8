"""Supabase Storage inventory from its PostgreSQL catalog (`storage.objects`).

Far faster than the REST API for millions of objects: one read-only,
repeatable-read transaction (a consistent snapshot, never a write) pages
through `storage.objects` with keyset pagination on `name COLLATE "C"`, the
order the real server itself lists in (supabase/storage
src/storage/database/knex.ts, `listObjects`: `orderBy(knex.raw('name COLLATE "C"'))`).
Bytes are still read through the REST API, so `head` and `read` delegate to a
`SupabaseStore`.

A dropped connection (or a failover) mid-listing is a transient fault: the
page is retried through the one retry policy on a new connection, from the
keyset position already reached. The snapshot then starts afresh at that
position (one transaction cannot outlive its connection), which is what a
resumed plan does anyway.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator, TypeVar

import psycopg

from migrate.errors import AccessDenied, BucketNotFound, ServiceUnavailable, TransientError
from migrate.redact import redact, register_secret
from migrate.retry import call_with_retries
from migrate.stores.base import ListedPage, ObjectInfo, SourceStore
from migrate.stores.supabase import SupabaseStore, parse_timestamp

T = TypeVar("T")

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
        user_metadata=dict(json.loads(user_metadata)) if user_metadata else {},  # JSON values as they are (migrate/metadata.py)
    )


class CatalogStore(SourceStore):
    """Lists from `storage.objects`; reads bytes through the REST store."""

    kind = "supabase-catalog"

    @property
    def endpoint(self) -> str:
        return self.rest.endpoint

    def __init__(self, database_url: str, rest: SupabaseStore, *, page_size: int = CATALOG_PAGE, max_attempts: int = 5):
        """`page_size`: rows per keyset query; `max_attempts`: tries per query before the stage stops (exit 4)."""
        if page_size < 1:
            raise ValueError("the catalog page size must be at least 1")
        self.database_url = database_url
        info = psycopg.conninfo.conninfo_to_dict(database_url)
        register_secret(str(info.get("password") or ""))
        self.rest = rest
        self.page_size = page_size
        self.max_attempts = max_attempts
        self._where = _host_of(database_url)
        self._conn: psycopg.Connection[Any] | None = None

    def __repr__(self) -> str:
        return f"CatalogStore({redact(self._where)!r})"

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.database_url, connect_timeout=10)
        except psycopg.OperationalError as err:
            text = str(err).lower()
            if "password" in text or "authentication" in text or "permission" in text:
                raise AccessDenied(f"catalog {self._where}: PostgreSQL refused the login; check the user and password in database_url") from None
            raise TransientError(f"catalog {self._where}: cannot connect to PostgreSQL") from None
        # Never write: the listing is a read-only snapshot.
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        return conn

    def _query(self, run: Callable[[psycopg.Connection[Any]], T], *, what: str) -> T:
        """Run one read on the kept connection, reconnecting and retrying after a dropped connection."""

        def attempt() -> T:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            try:
                return run(self._conn)
            except psycopg.OperationalError as err:
                # The server went away (restart, failover, idle kill): a new connection next attempt.
                self._drop()
                raise TransientError(f"{what}: the PostgreSQL connection to {self._where} dropped ({type(err).__name__})") from None

        try:
            return call_with_retries(attempt, max_attempts=self.max_attempts)
        except TransientError as err:
            raise ServiceUnavailable(
                f"{err}; check database_url and that the database is reachable ({self.max_attempts} attempts); "
                "rerun the same command to continue"
            ) from None

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def list_buckets(self) -> list[str]:
        rows = self._query(lambda conn: conn.execute("SELECT id FROM storage.buckets ORDER BY id").fetchall(), what=f"catalog {self._where}")
        return [str(row[0]) for row in rows]

    def check_bucket(self, bucket: str) -> None:
        """Raise BucketNotFound unless `storage.buckets` has the bucket."""
        exists = self._query(
            lambda conn: conn.execute("SELECT 1 FROM storage.buckets WHERE id = %s", (bucket,)).fetchone(), what=f"catalog {self._where}"
        )
        if not exists:
            raise BucketNotFound(f"supabase bucket {bucket!r}: not found in the catalog at {self._where}; check the bucket names in the plan")

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[list[ObjectInfo]]:
        for page in self.iter_pages(bucket, prefix):
            yield page.objects

    def iter_pages(self, bucket: str, prefix: str = "", *, resume: str | None = None) -> Iterator[ListedPage]:
        """Keyset pages on `name COLLATE "C"`; the resume position is the last name listed."""
        after = str(json.loads(resume)["after"]) if resume else ""
        if not resume:
            self.check_bucket(bucket)
        pattern = _like_prefix(prefix)
        what = f"catalog {self._where} (bucket {bucket!r})"
        while True:
            # PostgreSQL extracts the fields and casts the timestamp: no jsonb
            # document is decoded into Python per row (3-4x faster listing).
            rows = self._query(
                lambda conn: conn.execute(
                    """
                    SELECT name, (metadata->>'size')::bigint, metadata->>'eTag', metadata->>'mimetype',
                           metadata->>'cacheControl', metadata->>'lastModified', updated_at,
                           NULLIF(NULLIF(user_metadata::text, '{}'), 'null')
                    FROM storage.objects
                    WHERE bucket_id = %s AND name COLLATE "C" > %s AND name LIKE %s
                    ORDER BY name COLLATE "C"
                    LIMIT %s
                    """,
                    (bucket, after, pattern, self.page_size),
                ).fetchall(),
                what=what,
            )
            if not rows:
                break
            after = rows[-1][0]
            more = len(rows) >= self.page_size
            yield ListedPage([_row_info(row) for row in rows], json.dumps({"api": "catalog", "after": after}) if more else None)
            if not more:
                break
        self._end_snapshot()

    def _end_snapshot(self) -> None:
        """End the read-only transaction a listing held open (the next listing takes a fresh snapshot)."""
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.rollback()
            except psycopg.Error:
                self._drop()

    def object_versions(self, bucket: str) -> list[tuple[str, str | None]]:
        """(name, version) of every row of the bucket: the backend stores bytes under the version (source audit)."""
        rows = self._query(
            lambda conn: conn.execute(
                'SELECT name, version FROM storage.objects WHERE bucket_id = %s ORDER BY name COLLATE "C"', (bucket,)
            ).fetchall(),
            what=f"catalog {self._where} (bucket {bucket!r})",
        )
        self._end_snapshot()
        return [(str(name), version) for name, version in rows]

    def unreadable_reason(self, key: str) -> str | None:
        """Bytes come through the REST API, so its limits on keys are ours."""
        return self.rest.unreadable_reason(key)

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        return self.rest.head(bucket, key)

    def open(self, bucket: str, key: str, *, offset: int = 0, length: int | None = None) -> tuple[ObjectInfo, Iterator[bytes]]:
        return self.rest.open(bucket, key, offset=offset, length=length)

    def has_bytes(self, bucket: str, key: str, *, size: int) -> bool:
        """See `SupabaseStore.has_bytes`: bytes are only ever reached through the REST API."""
        return self.rest.has_bytes(bucket, key, size=size)

    def close(self) -> None:
        self._drop()
        self.rest.close()
