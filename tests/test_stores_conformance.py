"""One conformance suite for the writable stores (fsspec `tests/abstract`, rclone `fstests`):
the same checks run against `LocalStore` (a tmp folder) and `S3Store` (SeaweedFS)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any, Iterator

import pytest

from migrate.stores.local import LocalStore
from migrate.stores.s3 import ConditionalWriteFailed, S3Location, S3Store

ARGS: dict[str, Any] = {"content_type": "text/plain", "cache_control": "max-age=60", "content_disposition": "attachment",
                        "metadata": {"origin": "conformance"}, "storage_class": None, "sse": None, "kms_key_id": None}
PART = 5 * 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def store_and_bucket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    if request.param == "local":
        yield LocalStore(tmp_path), "bkt"
        return
    seaweed = request.getfixturevalue("seaweed")
    bucket = request.getfixturevalue("make_s3_bucket")()
    store = S3Store(S3Location(endpoint_url=seaweed.endpoint_url, region="us-east-1", access_key_id=seaweed.access_key,
                               secret_access_key=seaweed.secret_key))
    yield store, bucket
    store.close()


def _put(store: Any, bucket: str, key: str, body: bytes) -> str:
    digest = hashlib.sha256(body).digest()
    return str(store.put_object(bucket, key, body, content_md5=hashlib.md5(body).digest(),
                                checksum=("SHA256", base64.b64encode(digest).decode()), sha256_hex=digest.hex(), **ARGS))


def test_put_then_head_gives_size_etag_and_metadata(store_and_bucket: tuple[Any, str]) -> None:
    store, bucket = store_and_bucket
    body = b"conformance body"
    etag = _put(store, bucket, "dir/a.txt", body)
    info = store.head(bucket, "dir/a.txt")
    assert info is not None
    assert (info.size, info.etag, etag) == (len(body), hashlib.md5(body).hexdigest(), hashlib.md5(body).hexdigest())
    assert (info.content_type, info.cache_control, info.content_disposition) == ("text/plain", "max-age=60", "attachment")
    assert info.user_metadata == {"origin": "conformance"}
    assert info.checksums.get("sha256") == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert store.head(bucket, "dir/none") is None


def test_ranged_reads_match_the_bytes(store_and_bucket: tuple[Any, str]) -> None:
    store, bucket = store_and_bucket
    body = bytes(range(256)) * 40
    _put(store, bucket, "r.bin", body)
    for offset, length in ((0, None), (7, 100), (len(body) - 5, None), (1000, 1)):
        _, chunks = store.open(bucket, "r.bin", offset=offset, length=length)
        assert b"".join(chunks) == (body[offset:] if length is None else body[offset : offset + length])


def test_ranges_read_into_a_reused_buffer_match_the_bytes(store_and_bucket: tuple[Any, str]) -> None:
    """`open_into` (part buffers from the pool): every slice it yields lies in the buffer, which ends up holding the range."""
    store, bucket = store_and_bucket
    body = bytes(range(256)) * 12_000  # about 3 MiB: several receive slices on the lean S3 path
    _put(store, bucket, "into.bin", body)
    buffer = bytearray(len(body))
    for offset, length in ((0, len(body)), (7, 2_500_000), (len(body) - 5, 5), (1000, 1)):
        view = memoryview(buffer)[:length]
        _, pieces = store.open_into(bucket, "into.bin", view, offset=offset)
        yielded = b"".join(bytes(piece) for piece in pieces)
        assert yielded == bytes(view) == body[offset : offset + length]


def test_listing_is_recursive_sorted_and_honours_the_prefix(store_and_bucket: tuple[Any, str]) -> None:
    store, bucket = store_and_bucket
    keys = ["b/2", "a/1", "a/z/3", "ab", "c"]
    for key in keys:
        _put(store, bucket, key, key.encode())
    assert [i.key for page in store.iter_objects(bucket) for i in page] == sorted(keys)
    assert [i.key for page in store.iter_objects(bucket, "a") for i in page] == ["a/1", "a/z/3", "ab"]
    assert {i.key: i.size for page in store.iter_objects(bucket, "a/") for i in page} == {"a/1": 3, "a/z/3": 5}


def test_conditional_write_refuses_an_existing_key(store_and_bucket: tuple[Any, str]) -> None:
    store, bucket = store_and_bucket
    if not store.supports_conditional_writes(bucket):
        pytest.skip("this server does not honour If-None-Match: * (callers HEAD first)")
    _put(store, bucket, "once", b"first")
    with pytest.raises(ConditionalWriteFailed):
        store.put_object(bucket, "once", b"second", content_md5=hashlib.md5(b"second").digest(), if_none_match=True, **ARGS)
    assert b"".join(store.open(bucket, "once")[1]) == b"first"


def test_multipart_upload_round_trip_and_abort(store_and_bucket: tuple[Any, str]) -> None:
    store, bucket = store_and_bucket
    parts = [b"x" * PART, b"y" * 17]
    upload = store.create_multipart_upload(bucket, "mp.bin", **ARGS)
    assert ("mp.bin", upload) in store.list_multipart_uploads(bucket)
    etags = [store.upload_part(bucket, "mp.bin", upload, n, data, content_md5=hashlib.md5(data).digest()) for n, data in enumerate(parts, 1)]
    assert {n: p["size"] for n, p in store.list_parts(bucket, "mp.bin", upload).items()} == {1: PART, 2: 17}
    etag = store.complete_multipart_upload(bucket, "mp.bin", upload, [{"PartNumber": n, "ETag": f'"{e}"'} for n, e in enumerate(etags, 1)])
    assert etag == hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-2"
    assert b"".join(store.open(bucket, "mp.bin")[1]) == b"".join(parts)
    info = store.head(bucket, "mp.bin")
    assert info is not None and info.content_type == "text/plain" and info.user_metadata == {"origin": "conformance"}
    other = store.create_multipart_upload(bucket, "gone.bin", **ARGS)
    store.abort_multipart_upload(bucket, "gone.bin", other)
    assert store.list_multipart_uploads(bucket) == [] and store.head(bucket, "gone.bin") is None


def test_delete_is_idempotent(store_and_bucket: tuple[Any, str]) -> None:
    store, bucket = store_and_bucket
    _put(store, bucket, "d", b"x")
    store.delete_object(bucket, "d")
    store.delete_object(bucket, "d")
    assert store.head(bucket, "d") is None
    assert [i.key for page in store.iter_objects(bucket) for i in page] == []


