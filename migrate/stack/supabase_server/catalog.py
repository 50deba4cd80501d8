"""The metadata store: `storage.buckets` and `storage.objects` in PostgreSQL.

One small pool of autocommit connections is shared by all request threads
(no per-request connects); bucket rows are cached for a moment because every
object request needs its bucket. Writes that replace an object take the same
per-key advisory lock the real server takes (src/storage/database/knex.ts
`waitObjectLock`) so the previous version's bytes can be removed safely.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Iterator

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from migrate.stack.supabase_server import errors

BUCKET_CACHE_SECONDS = 2.0

_OBJECT_COLUMNS = (
    "id, bucket_id, name, owner, owner_id, version, metadata, user_metadata, "
    "created_at, updated_at, last_accessed_at"
)
_BUCKET_COLUMNS = "id, name, owner, owner_id, public, file_size_limit, allowed_mime_types, created_at, updated_at, type"


def iso_timestamp(value: datetime | None) -> str | None:
    """A timestamp the way the real server's JSON has it (JS `Date.toISOString()`)."""
    if value is None:
        return None
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Bucket:
    """A `storage.buckets` row."""

    id: str
    name: str
    owner: str | None
    owner_id: str | None
    public: bool
    file_size_limit: int | None
    allowed_mime_types: list[str] | None
    created_at: datetime | None
    updated_at: datetime | None
    type: str

    def to_json(self) -> dict[str, Any]:
        """The row as bucketSchema (src/storage/schemas/bucket.ts) serialises it.

        `owner` is typed as a string there, so a null owner goes out as "".
        """
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner or "",
            "public": self.public,
            "file_size_limit": self.file_size_limit,
            "allowed_mime_types": self.allowed_mime_types,
            "created_at": iso_timestamp(self.created_at),
            "updated_at": iso_timestamp(self.updated_at),
        }


@dataclass(frozen=True)
class StoredObject:
    """A `storage.objects` row."""

    id: str
    bucket_id: str
    name: str
    owner: str | None
    owner_id: str | None
    version: str
    metadata: dict[str, Any]
    user_metadata: dict[str, Any] | None
    created_at: datetime | None
    updated_at: datetime | None
    last_accessed_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The row as objectSchema (src/storage/schemas/object.ts) serialises it."""
        return {
            "name": self.name,
            "bucket_id": self.bucket_id,
            "owner": self.owner or "",
            "owner_id": self.owner_id or "",
            "version": self.version,
            "id": self.id,
            "updated_at": iso_timestamp(self.updated_at),
            "created_at": iso_timestamp(self.created_at),
            "last_accessed_at": iso_timestamp(self.last_accessed_at),
            "metadata": self.metadata,
            # objectSchema types user_metadata as an object, and Fastify's
            # serializer writes a NULL column as {} (recorded: step `remove`).
            "user_metadata": {} if self.user_metadata is None else self.user_metadata,
        }


def _bucket(row: dict[str, Any]) -> Bucket:
    return Bucket(
        id=row["id"],
        name=row["name"],
        owner=str(row["owner"]) if row["owner"] else None,
        owner_id=row["owner_id"],
        public=bool(row["public"]),
        file_size_limit=row["file_size_limit"],
        allowed_mime_types=row["allowed_mime_types"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        type=str(row["type"]),
    )


def _object(row: dict[str, Any]) -> StoredObject:
    return StoredObject(
        id=str(row["id"]),
        bucket_id=row["bucket_id"],
        name=row["name"],
        owner=str(row["owner"]) if row["owner"] else None,
        owner_id=row["owner_id"],
        version=row["version"],
        metadata=row["metadata"] or {},
        user_metadata=row["user_metadata"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_accessed_at=row["last_accessed_at"],
    )


def _uuid_or_none(value: str | None) -> str | None:
    # knex.ts: `owner` (uuid) only when the JWT's sub is a UUID; `owner_id` always.
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


def schema_sql() -> str:
    """The DDL shipped as package data (schema.sql)."""
    return resources.files("migrate.stack.supabase_server").joinpath("schema.sql").read_text()


def ensure_schema(database_url: str) -> None:
    """Create the storage schema in the database at `database_url` (idempotent, no roles)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.transaction():
            # Two servers starting on one database must not race on CREATE TYPE.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('migrate.supabase_server.schema', 0))")
            conn.execute(schema_sql())  # a trusted script, not user input


class ConnectionPool:
    """At most `max_size` autocommit connections, reused across requests."""

    def __init__(self, conninfo: str, *, max_size: int = 16):
        self._conninfo = conninfo
        self._idle: queue.LifoQueue[psycopg.Connection[dict[str, Any]]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(max_size)

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        # synchronous_commit=off: a commit does not wait for the WAL flush, which
        # otherwise dominates every small upload. A PostgreSQL crash can then lose
        # the last moments of acknowledged writes (never corrupt them): fine for a
        # test and benchmark server, and the bytes-before-row order still holds.
        return psycopg.connect(
            self._conninfo, autocommit=True, row_factory=dict_row, options="-c synchronous_commit=off"
        )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection for one short piece of work, returned to the pool after."""
        with self._slots:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            try:
                yield conn
            finally:
                healthy = not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                if healthy:
                    self._idle.put(conn)
                else:
                    conn.close()

    def close(self) -> None:
        """Close the idle connections."""
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class Catalog:
    """Buckets and object rows; every method is one short statement or transaction."""

    def __init__(self, database_url: str, *, pool_size: int = 16):
        self.pool = ConnectionPool(database_url, max_size=pool_size)
        self._bucket_cache: dict[str, tuple[float, Bucket | None]] = {}
        self._cache_lock = threading.Lock()

    def close(self) -> None:
        """Close the idle connections."""
        self.pool.close()

    # -- buckets ---------------------------------------------------------------

    def get_bucket(self, bucket_id: str) -> Bucket | None:
        """The bucket row (cached for a moment), or None."""
        now = time.monotonic()
        cached = self._bucket_cache.get(bucket_id)
        if cached and cached[0] > now:
            return cached[1]
        with self.pool.connection() as conn:
            row = conn.execute(f"SELECT {_BUCKET_COLUMNS} FROM storage.buckets WHERE id = %s", [bucket_id]).fetchone()
        bucket = _bucket(row) if row else None
        with self._cache_lock:
            self._bucket_cache[bucket_id] = (now + BUCKET_CACHE_SECONDS, bucket)
        return bucket

    def _forget_bucket(self, bucket_id: str) -> None:
        with self._cache_lock:
            self._bucket_cache.pop(bucket_id, None)

    def list_buckets(self) -> list[Bucket]:
        """Every bucket, oldest first."""
        with self.pool.connection() as conn:
            rows = conn.execute(f"SELECT {_BUCKET_COLUMNS} FROM storage.buckets ORDER BY created_at, id").fetchall()
        return [_bucket(row) for row in rows]

    def create_bucket(
        self,
        *,
        bucket_id: str,
        name: str,
        owner: str | None,
        public: bool,
        file_size_limit: int | None,
        allowed_mime_types: list[str] | None,
    ) -> None:
        """Insert a bucket; raises bucket_already_exists when the id is taken."""
        try:
            with self.pool.connection() as conn:
                conn.execute(
                    "INSERT INTO storage.buckets (id, name, owner, owner_id, public, file_size_limit, allowed_mime_types)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [bucket_id, name, _uuid_or_none(owner), owner, public, file_size_limit, allowed_mime_types],
                )
        except pg_errors.UniqueViolation as err:
            raise errors.bucket_already_exists() from err
        finally:
            self._forget_bucket(bucket_id)

    def update_bucket(self, bucket_id: str, changes: dict[str, Any]) -> bool:
        """Apply the given changes; False when there is no such bucket."""
        columns = [column for column in ("public", "file_size_limit", "allowed_mime_types") if column in changes]
        if not columns:
            return self.get_bucket(bucket_id) is not None
        assignments = ", ".join(f"{column} = %s" for column in columns)
        with self.pool.connection() as conn:
            cursor = conn.execute(
                f"UPDATE storage.buckets SET {assignments}, updated_at = now() WHERE id = %s",
                [*(changes[column] for column in columns), bucket_id],
            )
        self._forget_bucket(bucket_id)
        return cursor.rowcount > 0

    def delete_bucket(self, bucket_id: str) -> bool:
        """Delete an empty bucket; raises bucket_not_empty when objects remain."""
        try:
            with self.pool.connection() as conn:
                cursor = conn.execute("DELETE FROM storage.buckets WHERE id = %s", [bucket_id])
        except pg_errors.ForeignKeyViolation as err:
            raise errors.bucket_not_empty() from err
        finally:
            self._forget_bucket(bucket_id)
        return cursor.rowcount > 0

    def empty_bucket(self, bucket_id: str) -> list[str]:
        """Delete every object row of the bucket; returns the versions whose bytes can go."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "DELETE FROM storage.objects WHERE bucket_id = %s RETURNING version", [bucket_id]
            ).fetchall()
        return [row["version"] for row in rows if row["version"]]

    # -- objects ---------------------------------------------------------------

    def find_object(self, bucket_id: str, name: str) -> StoredObject | None:
        """The object row, or None."""
        with self.pool.connection() as conn:
            row = conn.execute(
                f"SELECT {_OBJECT_COLUMNS} FROM storage.objects WHERE bucket_id = %s AND name = %s",
                [bucket_id, name],
            ).fetchone()
        return _object(row) if row else None

    def object_exists(self, bucket_id: str, name: str) -> bool:
        """Whether a row with this name exists in the bucket."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM storage.objects WHERE bucket_id = %s AND name = %s", [bucket_id, name]
            ).fetchone()
        return row is not None

    def existing_names(self, bucket_id: str, names: list[str]) -> set[str]:
        """Which of `names` exist in the bucket."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT name FROM storage.objects WHERE bucket_id = %s AND name = ANY(%s)", [bucket_id, names]
            ).fetchall()
        return {row["name"] for row in rows}

    def insert_object(
        self,
        *,
        bucket_id: str,
        name: str,
        owner: str | None,
        version: str,
        metadata: dict[str, Any],
        user_metadata: dict[str, Any] | None,
    ) -> StoredObject:
        """Insert a new row; raises key_already_exists when the name is taken."""
        try:
            with self.pool.connection() as conn:
                row = conn.execute(
                    "INSERT INTO storage.objects (bucket_id, name, owner, owner_id, version, metadata, user_metadata)"
                    f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_OBJECT_COLUMNS}",
                    [bucket_id, name, _uuid_or_none(owner), owner, version, Jsonb(metadata), _jsonb(user_metadata)],
                ).fetchone()
        except pg_errors.UniqueViolation as err:
            raise errors.key_already_exists() from err
        except pg_errors.ForeignKeyViolation as err:
            raise errors.no_such_bucket() from err
        assert row is not None
        return _object(row)

    def upsert_object(
        self,
        *,
        bucket_id: str,
        name: str,
        owner: str | None,
        version: str,
        metadata: dict[str, Any],
        user_metadata: dict[str, Any] | None,
    ) -> tuple[StoredObject, str | None]:
        """Insert or replace the row; returns it and the replaced version (whose bytes can go)."""
        try:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"{bucket_id}/{name}"])
                previous = conn.execute(
                    "SELECT version FROM storage.objects WHERE bucket_id = %s AND name = %s", [bucket_id, name]
                ).fetchone()
                row = conn.execute(
                    "INSERT INTO storage.objects (bucket_id, name, owner, owner_id, version, metadata, user_metadata)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (bucket_id, name) DO UPDATE SET"
                    " owner = EXCLUDED.owner, owner_id = EXCLUDED.owner_id, version = EXCLUDED.version,"
                    " metadata = EXCLUDED.metadata, user_metadata = EXCLUDED.user_metadata"
                    f" RETURNING {_OBJECT_COLUMNS}",
                    [bucket_id, name, _uuid_or_none(owner), owner, version, Jsonb(metadata), _jsonb(user_metadata)],
                ).fetchone()
        except pg_errors.ForeignKeyViolation as err:
            raise errors.no_such_bucket() from err
        assert row is not None
        return _object(row), (previous["version"] if previous else None)

    def delete_objects(self, bucket_id: str, names: list[str]) -> list[StoredObject]:
        """Delete the rows with these names; returns the deleted rows."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"DELETE FROM storage.objects WHERE bucket_id = %s AND name = ANY(%s) RETURNING {_OBJECT_COLUMNS}",
                [bucket_id, names],
            ).fetchall()
        return [_object(row) for row in rows]

    def rename_object(self, bucket_id: str, name: str, *, to_bucket: str, to_name: str) -> StoredObject | None:
        """Move a row to a new bucket/name (the bytes are keyed by version and stay put)."""
        try:
            with self.pool.connection() as conn:
                row = conn.execute(
                    "UPDATE storage.objects SET bucket_id = %s, name = %s"
                    f" WHERE bucket_id = %s AND name = %s RETURNING {_OBJECT_COLUMNS}",
                    [to_bucket, to_name, bucket_id, name],
                ).fetchone()
        except pg_errors.UniqueViolation as err:
            raise errors.resource_already_exists() from err
        except pg_errors.ForeignKeyViolation as err:
            raise errors.no_such_bucket() from err
        return _object(row) if row else None


def _jsonb(value: dict[str, Any] | None) -> Jsonb | None:
    return Jsonb(value) if value is not None else None
