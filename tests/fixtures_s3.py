"""S3 fixtures backed by a real SeaweedFS, started once per test session.

`seaweed` is the server (127.0.0.1, random ports, a tmp data dir), `s3_client`
a boto3 client for it, `s3_bucket` a fresh bucket per test and
`make_s3_bucket` a factory for tests that need more than one. Buckets a test
created are emptied and deleted after it, so the session's server does not
fill up with volumes.
"""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from migrate.stack.seaweed import SeaweedServer, launch


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A SeaweedFS S3 server for the whole session; stopped (by PID) at the end."""
    data_dir: Path = tmp_path_factory.mktemp("seaweed")
    server = launch(
        data_dir=data_dir,
        access_key=f"AKTEST{secrets.token_hex(6).upper()}",
        secret_key=secrets.token_urlsafe(30),
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_client(seaweed: SeaweedServer) -> Any:
    """A boto3 S3 client for the session's SeaweedFS (path-style, SigV4, us-east-1)."""
    return seaweed.client()


def _empty_and_delete(client: Any, bucket: str) -> None:
    # The server refuses to delete a non-empty bucket, like AWS S3.
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys[start : start + 1000], "Quiet": True})
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def make_s3_bucket(s3_client: Any) -> Iterator[Callable[[], str]]:
    """Factory: create a fresh, uniquely named bucket (`t-<uuid8>`); all are removed after the test."""
    created: list[str] = []

    def create() -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        s3_client.create_bucket(Bucket=name)
        created.append(name)
        return name

    yield create
    for name in created:
        try:
            _empty_and_delete(s3_client, name)
        except Exception:  # noqa: BLE001 - cleanup must not mask the test's own result
            pass


@pytest.fixture
def s3_bucket(make_s3_bucket: Callable[[], str]) -> str:
    """A fresh, empty bucket for this test."""
    return make_s3_bucket()
