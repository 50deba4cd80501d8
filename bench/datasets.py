"""The benchmark's datasets, generated reproducibly from a seed, and seeding them into S3.

Every object's key, size and bytes follow from (seed, dataset) alone: the
bytes of an object are `random.Random(f"{seed}:{key}")`'s stream, so two
runs of the benchmark on two machines move the same data. Large objects are
generated chunk by chunk into a temporary file and uploaded from it, so no
more than one chunk of a 200 MiB object is ever in the harness's memory.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

GENERATE_CHUNK = 8 * MiB


@dataclass(frozen=True)
class DatasetSpec:
    """How many objects, how big, and what they are for."""

    name: str
    title: str
    count: int
    min_size: int
    max_size: int
    content_type: str
    users: int = 200

    @property
    def is_large(self) -> bool:
        return self.min_size >= 16 * MiB


@dataclass(frozen=True)
class ExpectedObject:
    key: str
    size: int
    md5: str


def dataset_specs(*, quick: bool) -> dict[str, DatasetSpec]:
    """A, B, S, C and the memory object M, at full size or (quick) at smoke-test size.

    Full sizes are chosen so that `bash bench/run` (3 rounds of everything)
    finishes within 45 minutes on a 2-core machine (bench/README.md).
    """
    if quick:
        return {
            "A": DatasetSpec("A", "small objects, nested keys", 300, 1 * KiB, 64 * KiB, "image/png"),
            # Above the engine's 64 MiB multipart threshold, so --quick still exercises multipart.
            "B": DatasetSpec("B", "large objects", 2, 72 * MiB, 72 * MiB, "application/octet-stream"),
            "S": DatasetSpec("S", "small objects with user metadata on a Supabase server", 300, 1 * KiB, 64 * KiB, "image/png"),
            "C": DatasetSpec("C", "many tiny objects (inventory)", 2_000, 64, 2 * KiB, "image/png", users=50),
            "M": DatasetSpec("M", "one large object (memory)", 1, 160 * MiB, 160 * MiB, "application/octet-stream"),
        }
    return {
        "A": DatasetSpec("A", "5,000 small objects (1-64 KiB), nested keys", 5_000, 1 * KiB, 64 * KiB, "image/png"),
        "B": DatasetSpec("B", "6 large objects (200 MiB)", 6, 200 * MiB, 200 * MiB, "application/octet-stream"),
        "S": DatasetSpec("S", "6,000 small objects (1-64 KiB) with user metadata on a Supabase server", 6_000, 1 * KiB, 64 * KiB, "image/png"),
        "C": DatasetSpec("C", "50,000 tiny objects (64 B-2 KiB) for inventory", 50_000, 64, 2 * KiB, "image/png", users=1_000),
        "M": DatasetSpec("M", "one 1 GiB object (memory bound)", 1, 1 * GiB, 1 * GiB, "application/octet-stream"),
    }


def object_layout(spec: DatasetSpec, seed: int) -> list[tuple[str, int]]:
    """(key, size) of every object, e.g. `u00042/photos/2023/file_00007.png`, in a stable order."""
    rng = random.Random(f"{seed}:{spec.name}:layout")
    layout: list[tuple[str, int]] = []
    for index in range(spec.count):
        if spec.is_large:
            key = f"large/{spec.name.lower()}_{index:02d}.bin"
        else:
            user = rng.randrange(spec.users)
            year = 2019 + rng.randrange(6)
            folder = rng.choice(("photos", "photos", "avatars", "docs"))
            key = f"u{user:05d}/{folder}/{year}/file_{index:06d}.png"
        size = spec.min_size if spec.min_size == spec.max_size else rng.randint(spec.min_size, spec.max_size)
        layout.append((key, size))
    return layout


def object_chunks(seed: int, key: str, size: int, *, chunk: int = GENERATE_CHUNK) -> Iterator[bytes]:
    """The bytes of one object, `chunk` at a time.

    The stream depends on the chunk size, so every caller keeps the default.
    """
    rng = random.Random(f"{seed}:{key}")
    left = size
    while left > 0:
        step = min(chunk, left)
        yield rng.randbytes(step)
        left -= step


def object_bytes(seed: int, key: str, size: int) -> bytes:
    """A small object's whole body (only for objects far below GENERATE_CHUNK)."""
    return b"".join(object_chunks(seed, key, size))


def write_object_file(seed: int, key: str, size: int, directory: Path) -> tuple[Path, str]:
    """Stream one object's bytes into a temporary file; returns the file and its MD5."""
    digest = hashlib.md5()
    fd, name = tempfile.mkstemp(prefix="bench-object-", dir=directory)
    with os.fdopen(fd, "wb") as out:
        for part in object_chunks(seed, key, size):
            digest.update(part)
            out.write(part)
    return Path(name), digest.hexdigest()


@dataclass
class SeedReport:
    objects: int
    bytes: int
    seconds: float


def seed_s3_bucket(
    client: Any,
    bucket: str,
    spec: DatasetSpec,
    *,
    seed: int,
    scratch: Path,
    workers: int = 32,
) -> tuple[dict[str, ExpectedObject], SeedReport]:
    """Create `bucket` and fill it with the dataset (plain single PUTs, so every source ETag is the MD5)."""
    started = time.perf_counter()
    client.create_bucket(Bucket=bucket)
    layout = object_layout(spec, seed)
    expected: dict[str, ExpectedObject] = {}

    if spec.is_large:
        for key, size in layout:
            path, md5 = write_object_file(seed, key, size, scratch)
            try:
                with open(path, "rb") as body:
                    client.put_object(Bucket=bucket, Key=key, Body=body, ContentLength=size, ContentType=spec.content_type)
            finally:
                path.unlink(missing_ok=True)
            expected[key] = ExpectedObject(key, size, md5)
    else:

        def put(item: tuple[str, int]) -> ExpectedObject:
            key, size = item
            body = object_bytes(seed, key, size)
            client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=spec.content_type)
            return ExpectedObject(key, size, hashlib.md5(body).hexdigest())

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for item in pool.map(put, layout):
                expected[item.key] = item
    total = sum(item.size for item in expected.values())
    return expected, SeedReport(objects=len(expected), bytes=total, seconds=time.perf_counter() - started)


def empty_and_delete_bucket(client: Any, bucket: str) -> None:
    """Delete every object (and unfinished upload) in a bucket we created, then the bucket."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys[start : start + 1000], "Quiet": True})
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    client.delete_bucket(Bucket=bucket)
