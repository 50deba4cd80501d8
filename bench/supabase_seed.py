"""Seed a dataset into the bundled Supabase Storage server's own layout, without HTTP.

Uploading 100,000 objects through the REST API would take far longer than
what the benchmark measures, so dataset C is written the way the server
stores it (migrate/stack/supabase_server: `blobs.py`, `routes.py` `_store`):

- bytes: one file per object version at `<data_dir>/blobs/<version[:2]>/<version>`;
- metadata: one `storage.objects` row per object with that `version` and the
  metadata document the server writes after an upload (`eTag` as the quoted
  MD5, `size`, `mimetype`, `cacheControl`, `lastModified`, `contentLength`,
  `httpStatusCode`), loaded with one COPY.

The server is started on that data directory and database afterwards and
serves the objects as if they had been uploaded.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.datasets import DatasetSpec, ExpectedObject, object_bytes, object_layout

LAST_MODIFIED = "2024-01-01T00:00:00.000Z"


@dataclass
class SupabaseSeed:
    expected: dict[str, ExpectedObject]
    # key -> the user metadata written for it (what a migration must carry over).
    user_metadata: dict[str, dict[str, str]]
    seconds: float
    files_seconds: float
    rows_seconds: float


def create_database(admin_url: str, name: str) -> str:
    """Create database `name` (ours: migrate_bench_*) and return its URL."""
    assert name.startswith("migrate_bench_"), name
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def drop_database(admin_url: str, name: str) -> None:
    """Drop a database this benchmark created (never any other)."""
    assert name.startswith("migrate_bench_"), name
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed_supabase(database_url: str, data_dir: Path, bucket: str, spec: DatasetSpec, *, seed: int) -> SupabaseSeed:
    """Write the dataset's bytes under `data_dir` and its rows into `storage.objects` (schema must exist)."""
    started = time.perf_counter()
    blob_dir = data_dir / "blobs"
    expected: dict[str, ExpectedObject] = {}
    user_metadata_of: dict[str, dict[str, str]] = {}
    rows: list[tuple[str, str, str, str, str]] = []
    # Versions are random UUIDs in the server; here they follow from the seed
    # so two seedings lay out the same files.
    namespace = uuid.UUID(int=seed)
    for key, size in object_layout(spec, seed):
        body = object_bytes(seed, key, size)
        md5 = hashlib.md5(body).hexdigest()
        version = str(uuid.uuid5(namespace, key))
        path = blob_dir / version[:2] / version
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        metadata = {
            "eTag": f'"{md5}"',
            "size": size,
            "mimetype": spec.content_type,
            "cacheControl": "max-age=3600",
            "lastModified": LAST_MODIFIED,
            "contentLength": size,
            "httpStatusCode": 200,
        }
        user_metadata = {"owner": key.split("/", 1)[0]}
        rows.append((bucket, key, version, json.dumps(metadata), json.dumps(user_metadata)))
        user_metadata_of[key] = user_metadata
        expected[key] = ExpectedObject(key, size, md5)
    files_done = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO storage.buckets (id, name, public) VALUES (%s, %s, false) ON CONFLICT (id) DO NOTHING", (bucket, bucket)
        )
        with conn.cursor() as cursor:
            with cursor.copy("COPY storage.objects (bucket_id, name, version, metadata, user_metadata) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        conn.execute("ANALYZE storage.objects")
    done = time.perf_counter()
    return SupabaseSeed(expected=expected, user_metadata=user_metadata_of, seconds=done - started, files_seconds=files_done - started, rows_seconds=done - files_done)
