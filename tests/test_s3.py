"""S3Store (migrate/stores/s3.py) against a real SeaweedFS: paging, retries, metadata mapping, refused headers, SSE headers."""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from migrate.errors import BucketNotFound, ObjectError, ObjectNotFound
from migrate.metadata import decode_metadata
from migrate.stack.faultproxy import FaultProxy, FaultRule
from migrate.stack.seaweed import SeaweedServer
from migrate.stores.s3 import LIST_PAGE_SIZE, FolderKeyRefused, HeaderRefused, KeyNotKept, S3Location, S3Store, _NO_SETTINGS, write_settings

from tests.test_metadata import CORPUS


def _store(seaweed: SeaweedServer, endpoint_url: str | None = None, **options: Any) -> S3Store:
    location = S3Location(
        endpoint_url=endpoint_url or seaweed.endpoint_url, region=seaweed.region, access_key_id=seaweed.access_key, secret_access_key=seaweed.secret_key
    )
    return S3Store(location, timeout=20, **options)


def _fill(client: Any, bucket: str, count: int) -> list[str]:
    keys = [f"k/{index:05d}" for index in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=key.encode()), keys))
    return keys


def _listed(store: S3Store, bucket: str, prefix: str = "") -> tuple[list[str], int]:
    pages = list(store.iter_objects(bucket, prefix))
    return [info.key for page in pages for info in page], len(pages)


def test_iter_objects_pages_at_a_lowered_page_size(seaweed: SeaweedServer, s3_client: Any, s3_bucket: str) -> None:
    keys = _fill(s3_client, s3_bucket, 23)
    s3_client.put_object(Bucket=s3_bucket, Key="other/x", Body=b"x")
    keys_seen, pages = _listed(_store(seaweed, page_size=5), s3_bucket, "k/")
    # 23 keys at 5 a page: 5 pages, each key once, in order, the other prefix left out.
    assert (keys_seen, pages) == (keys, 5)


def test_iter_objects_pages_at_the_default_page_size(seaweed: SeaweedServer, s3_client: Any, s3_bucket: str) -> None:
    keys = _fill(s3_client, s3_bucket, 1100)
    store = _store(seaweed)
    assert store.page_size == LIST_PAGE_SIZE == 1000
    keys_seen, pages = _listed(store, s3_bucket)
    assert (keys_seen, pages) == (keys, 2)


def test_page_size_out_of_range_is_refused(seaweed: SeaweedServer) -> None:
    with pytest.raises(ValueError, match="page_size must be 1..1000"):
        _store(seaweed, page_size=1001)


def test_listing_and_bucket_checks_are_retried(seaweed: SeaweedServer, s3_client: Any, s3_bucket: str) -> None:
    keys = _fill(s3_client, s3_bucket, 7)
    backend = urllib.parse.urlsplit(seaweed.endpoint_url)
    with FaultProxy(backend.hostname or "127.0.0.1", backend.port or 80) as proxy:
        store = _store(seaweed, proxy.endpoint_url, page_size=3)
        proxy.add(FaultRule(action="slowdown", method="HEAD", path=f"^/{s3_bucket}/?$", count=2))
        store.check_bucket(s3_bucket)
        proxy.add(FaultRule(action="error500", method="GET", path=f"^/{s3_bucket}/?$", query="continuation-token", count=1))
        proxy.add(FaultRule(action="drop", method="GET", path=f"^/{s3_bucket}/?$", count=1))
        assert _listed(store, s3_bucket) == (keys, 3)
        assert [action for action, _, _ in proxy.injected].count("slowdown") == 2
        assert {action for action, _, _ in proxy.injected} == {"slowdown", "error500", "drop"}


def test_user_metadata_corpus_round_trips_and_raw_headers_decode(seaweed: SeaweedServer, s3_client: Any, s3_bucket: str) -> None:
    """JSON types, unicode, CJK and emoji: written by both data paths, read back equal; boto3's raw headers decode to the source's JSON."""
    for fast in (True, False):
        store = _store(seaweed, fast_data_path=fast)
        key = f"meta-{fast}.bin"
        body = b"metadata"
        store.put_object(s3_bucket, key, body, content_md5=hashlib.md5(body).digest(), **{**_NO_SETTINGS, "metadata": CORPUS})
        head = store.head(s3_bucket, key)
        assert head is not None
        assert head.user_metadata == {name.lower(): value for name, value in CORPUS.items()}
        raw = s3_client.head_object(Bucket=s3_bucket, Key=key)["Metadata"]
        assert all(value.isascii() for value in raw.values())
        assert decode_metadata(raw) == {name.lower(): value for name, value in CORPUS.items()}
        assert json.loads(raw["tags"][len("json:") :]) == CORPUS["tags"]


def test_a_refused_cache_control_is_named_per_object(seaweed: SeaweedServer, s3_bucket: str) -> None:
    """SeaweedFS refuses a Cache-Control it cannot parse with InvalidDigest; AWS S3 stores any text.

    Either way the failure is a per-object ObjectError naming the header, never "bytes corrupted in flight".
    """
    store = _store(seaweed)
    body = b"x"
    value = "max-age=public, max-age=86400"
    with pytest.raises(HeaderRefused, match=r"Cache-Control: 'max-age=public, max-age=86400'") as caught:
        store.put_object(s3_bucket, "cc.txt", body, content_md5=hashlib.md5(body).digest(), **{**_NO_SETTINGS, "cache_control": value})
    assert isinstance(caught.value, ObjectError) and "corrupted" not in str(caught.value)
    # What AWS does: stores it verbatim; the lean path sends it verbatim.
    fine = "public, max-age=86400"
    store.put_object(s3_bucket, "cc2.txt", body, content_md5=hashlib.md5(body).digest(), **{**_NO_SETTINGS, "cache_control": fine})
    head = store.head(s3_bucket, "cc2.txt")
    assert head is not None and head.cache_control == fine


def test_a_non_ascii_header_is_a_per_object_failure_not_a_signature_error(seaweed: SeaweedServer, s3_bucket: str) -> None:
    store = _store(seaweed)
    with pytest.raises(ObjectError, match=r"the Content-Disposition value 'attachment; filename=\"Zürich.pdf\"' is not US-ASCII"):
        store.put_object(
            s3_bucket, "cd.pdf", b"x", content_md5=hashlib.md5(b"x").digest(), **{**_NO_SETTINGS, "content_disposition": 'attachment; filename="Zürich.pdf"'}
        )


def test_sse_kms_headers_sent() -> None:
    """SSE-KMS cannot be tested on SeaweedFS (no KMS): the headers both paths send are checked instead."""
    settings = {**_NO_SETTINGS, "sse": "aws:kms", "kms_key_id": "arn:aws:kms:eu-west-1:111122223333:key/abcd"}
    assert write_settings(as_headers=True, **settings) == {
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:eu-west-1:111122223333:key/abcd",
    }
    assert write_settings(as_headers=False, **settings) == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "arn:aws:kms:eu-west-1:111122223333:key/abcd"}
    # AES256 carries no key id even when one is configured.
    assert write_settings(as_headers=True, **{**settings, "sse": "AES256"}) == {"x-amz-server-side-encryption": "AES256"}


def test_a_key_ending_in_slash_with_bytes_is_never_left_as_zero_bytes(seaweed: SeaweedServer, s3_client: Any, s3_bucket: str) -> None:
    """SeaweedFS keeps `folder/` as an empty folder whatever the body; AWS S3 keeps the bytes. Either the bytes arrive or the write fails and is undone."""
    store = _store(seaweed)
    body = b"bytes of a key that ends in a slash"
    with pytest.raises(FolderKeyRefused, match=r"s3://.*/folder/: the destination kept 0 of 35 bytes for this key ending in '/'"):
        store.put_object(s3_bucket, "folder/", body, content_md5=hashlib.md5(body).digest(), **_NO_SETTINGS)
    assert "Contents" not in s3_client.list_objects_v2(Bucket=s3_bucket)
    # A real folder marker (0 bytes) is fine, as is any other key.
    store.put_object(s3_bucket, "empty-folder/", b"", content_md5=hashlib.md5(b"").digest(), **_NO_SETTINGS)
    assert store.head(s3_bucket, "empty-folder/") is not None



@pytest.mark.parametrize("fast_data_path", [True, False])
def test_a_key_stored_under_another_key_is_not_found_and_its_write_fails(seaweed: SeaweedServer, s3_client: Any, s3_bucket: str, fast_data_path: bool) -> None:
    """SeaweedFS stores `a//b.txt` as `a/b.txt` and `/lead` as `lead`, and answers HEAD/GET of the written key with that object; AWS S3 keeps both keys."""
    store = _store(seaweed, fast_data_path=fast_data_path)
    s3_client.put_object(Bucket=s3_bucket, Key="a/b.txt", Body=b"another object")
    assert store.head(s3_bucket, "a//b.txt") is None and store.head(s3_bucket, "a/b.txt") is not None
    with pytest.raises(ObjectNotFound, match=r"s3://.*/a//b.txt: no object is listed under this key"):
        store.open(s3_bucket, "a//b.txt")
    with pytest.raises(ObjectNotFound, match=r"no object is listed under this key"):  # a multipart part's ranged read too
        store.open_into(s3_bucket, "a//b.txt", memoryview(bytearray(5)), offset=0)
    for key in ("a//b.txt", "/lead"):
        with pytest.raises(KeyNotKept, match=rf"s3://.*/{key}: the destination lists no object under this key after the write"):
            store.put_object(s3_bucket, key, b"12345", content_md5=hashlib.md5(b"12345").digest(), **_NO_SETTINGS)

def test_stores_share_one_botocore_data_loader() -> None:
    """A run opens a source and a destination store: the S3 service model is loaded once for both, not per client."""
    first = S3Store(S3Location(endpoint_url="http://127.0.0.1:1", region="us-east-1", access_key_id="AKSOURCE", secret_access_key="s1"))
    second = S3Store(S3Location(endpoint_url="http://127.0.0.1:2", region="eu-west-1", access_key_id="AKDEST", secret_access_key="s2"))
    try:
        assert first.client._loader is second.client._loader  # type: ignore[attr-defined]
        assert first.client.meta.region_name == "us-east-1" and second.client.meta.region_name == "eu-west-1"
    finally:
        first.close()
        second.close()


def test_the_lean_listing_lists_exactly_what_botocore_lists(seaweed: SeaweedServer, s3_client: Any, s3_bucket: str) -> None:
    """ListObjectsV2 through the lean client (URL-encoded keys, decoded here) gives the same ObjectInfo as botocore, page by page."""
    odd = ["plus+and=eq", "sp ace", "100% sure", "ünï/café.txt", "semi;colon,&amp", "tab\tkey", "a//b", "/lead", "big-ish"]
    for key in odd:
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=key.encode(), StorageClass="STANDARD_IA" if key == "big-ish" else "STANDARD")
    _fill(s3_client, s3_bucket, 12)
    lean, boto = _store(seaweed, page_size=4), _store(seaweed, page_size=4, fast_data_path=False)
    assert lean.http is not None and boto.http is None

    def not_botocore(**kwargs: Any) -> None:
        raise AssertionError("the lean store listed through botocore")

    lean.client.list_objects_v2 = not_botocore  # type: ignore[method-assign]
    for prefix in ("", "k/", "ünï/", "plus+"):
        assert list(lean.iter_objects(s3_bucket, prefix)) == list(boto.iter_objects(s3_bucket, prefix)), prefix
    assert len(list(lean.iter_objects(s3_bucket))) == 6  # 21 keys, 4 a page
    with pytest.raises(BucketNotFound):
        list(lean.iter_objects(s3_bucket + "-missing"))
